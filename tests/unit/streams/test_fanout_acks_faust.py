"""The fan-out's acks (broker.streams.fanout_agent ``message_acks``, ``stand_in``, ``let_go``)
against Faust's own consumer, built without Kafka: a record let go once it settled behind one
still owed is acked through a message made for it then, and Faust's consumer must count that
ack as the record's own. It counts an ack only for a topic it subscribed to with acks
(``Conductor.acks_enabled_for``) and files it under the message's ``tp``: a stand-in of another
topic name is dropped without a word, and the partition's commit stalls behind it for good."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
from faust.events import Event
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types.tuples import TP, ConsumerMessage

from broker.streams.fanout_agent import let_go, message_acks
from broker.streams.ordered_acks import OrderedAcks

TOPIC = "ev-alerts"


def read(app: faust.App, tp: TP, offset: int) -> Event:
    """A record as Faust's conductor hands it to the topic's two agents (``fan-out`` and
    ``feed-table``: refcount 2, the event shared), tracked by the consumer as unacked."""
    message = ConsumerMessage(tp.topic, tp.partition, offset, 1.7e9, 0, [("h", b"v")], b"key",
                              b"v" * 100, None, tp=tp)
    message.incref(2)
    app.consumer.track_message(message)
    return Event(app, message.key, message.value, message.headers, message)


def faust_app(tmp_path: Path) -> faust.App:
    """An app whose consumer is Faust's aiokafka one (never started: nothing connects), with
    ``TOPIC`` acked as when an agent subscribes to it."""
    app = faust.App("test-stand-in", broker="kafka://127.0.0.1:1", store="memory://",
                    datadir=str(tmp_path), key_serializer="raw", value_serializer="raw")
    app.topics.acking_topics.add(TOPIC)
    return app


def outage(app: faust.App, acks: OrderedAcks[Any]) -> Iterator[tuple[str, object]]:
    """Records 10-14 of a partition whose committed offset is 10: 10 owed to a partner that is
    down; 11-13 settle behind it after the ``feed-table`` agent acked them (their fan-out ack is
    the last: let go, offsets only, with ``message_acks``); 14 settles behind it before. Yields
    what Faust's consumer has counted after each step (``_new_offset`` as a commit calls it,
    the commit then recorded as Faust does)."""
    consumer: Any = app.consumer  # Faust's aiokafka Consumer: its bookkeeping is untyped
    tp = TP(TOPIC, 3)
    consumer._committed_offset[tp] = 10

    def counted() -> object:
        return ({t: list(o) for t, o in consumer._acked.items() if o}, consumer._n_acked)

    events = {offset: read(app, tp, offset) for offset in range(10, 15)}
    settle = {offset: acks.track(3, offset, ev.message) for offset, ev in events.items()}
    for offset in (10, 11, 12, 13):
        events[offset].ack()  # the feed-table agent's
    for ev in events.values():
        let_go(ev.message)
    for offset in (11, 12, 13, 14):
        settle[offset]()
    yield "held", counted()
    yield "commit while 10 is owed", consumer._new_offset(tp)
    settle[10]()
    yield "10 settled", counted()
    new = consumer._new_offset(tp)
    yield "commit", new
    consumer._committed_offset[tp] = new
    events[14].ack()  # the feed-table agent's, late: the last ack 14 waited for
    yield "14 acked", counted()
    yield "commit", consumer._new_offset(tp)


def test_a_held_run_moves_faust_commit_as_the_records_own_messages_would(
    tmp_path: Path,
) -> None:
    app = faust_app(tmp_path)
    assert type(app.consumer) is AIOKafkaConsumer
    acks = message_acks(app, TOPIC)
    held = list(outage(app, acks))

    # the same acks on the records' own messages, kept in hand (no stand-in)
    plain_app = faust_app(tmp_path)

    def ack_own(partition: int, offset: int, message: Any) -> object:
        return message.ack(plain_app.consumer)  # as Event.ack: never let go here

    plain: OrderedAcks[Any] = OrderedAcks(ack_own)
    assert held == list(outage(plain_app, plain))

    tp = TP(TOPIC, 3)
    assert held == [
        ("held", ({}, 0)),
        ("commit while 10 is owed", None),
        ("10 settled", ({tp: [10, 11, 12, 13]}, 4)),
        ("commit", 14),
        ("14 acked", ({tp: [14]}, 5)),
        ("commit", 15),
    ]


def test_the_stand_in_path_is_the_one_taken(tmp_path: Path) -> None:
    """11-13 were held as offsets only (what the test above compares), 14 as its message."""
    app = faust_app(tmp_path)
    acks = message_acks(app, TOPIC)
    steps = outage(app, acks)
    next(steps)
    assert [type(r).__name__ for r in acks._by_partition[3].records] == [
        "ConsumerMessage", "NoneType", "NoneType", "NoneType", "ConsumerMessage"]
