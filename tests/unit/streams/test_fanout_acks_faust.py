"""The fan-out's acks (broker.streams.fanout_agent ``message_acks``, ``stand_in``, ``let_go``)
against Faust's own consumer, built without Kafka: a record let go once it settled behind one
still owed is acked through a message made for it then, and Faust's consumer must count that
ack as the record's own. It counts an ack only for a topic it subscribed to with acks
(``Conductor.acks_enabled_for``) and files it under the message's ``tp``: a stand-in of another
topic name is dropped without a word, and the partition's commit stalls behind it for good."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.events import Event
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types.tuples import TP, ConsumerMessage

import broker.streams.fanout_agent as fanout_agent
from broker.drive import ALERTS
from broker.streams.app import create_app
from broker.streams.fanout_agent import FanOutAgent, let_go, message_acks
from broker.streams.ordered_acks import OrderedAcks
from broker.streams.settings import StreamSettings
from tests.unit.adapters.factory import CONFIG

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


@pytest.mark.parametrize("prefix", ["", "t7-"])
async def test_the_worker_acks_the_alerts_topic_faust_subscribed_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str,
) -> None:
    """The acks ``FanOutAgent.__init__`` builds in the worker's app (``create_app``) name the
    topic of the ``fan-out`` agent's channel, the one Faust counts acks of, prefix and all: a
    record let go is then counted as acked, and the partition's commit moves past it."""
    built: list[FanOutAgent] = []

    class Built(FanOutAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(fanout_agent, "FanOutAgent", Built)
    app = create_app(StreamSettings(topic_prefix=prefix, data_dir=tmp_path), partners=CONFIG)
    (agent,) = built
    try:
        (channel,) = [a.channel for a in app.agents.values() if a.name == "fan-out"]
        # what the conductor does once the agent subscribes (Conductor._update_indices)
        assert channel.acks
        app.topics.acking_topics.update(channel.topics)
        (name,) = channel.topics
        assert name == prefix + ALERTS
        tp = TP(name, 1)

        settle: list[Callable[[], None]] = []
        for offset in (10, 11):
            message = read(app, tp, offset).message
            message.ack(app.consumer)  # the feed-table agent's: the fan-out's is the last
            settle.append(agent.acks.track(1, offset, message))
            let_go(message)
        settle[1]()  # behind 10: let go, its offset only
        assert agent.acks._by_partition[1].records[1] is None
        settle[0]()
        consumer: Any = app.consumer  # the worker's (broker.streams.consumer), Faust's by kind
        assert consumer._acked == {tp: [10, 11]}
        assert consumer._new_offset(tp) == 12
    finally:
        await agent.client.aclose()
