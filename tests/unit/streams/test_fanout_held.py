"""What the fan-out agent holds of an ``alerts`` record whose ack waits (broker.streams.fanout_agent
``run``, ``message_acks``, ``let_go``): behind a delivery owed to a partner that is down, every
record read since stays in hand until the partner is back, so each must cost little. Held: the
record's Faust ``Message`` without its key, value and headers, not its ``Event``; once it has
settled behind an earlier record, and the ``feed-table`` agent has acked it too, its offset
only. Acked as ``Event.ack`` does it, in offset order, once its deliveries (and the
``feed-table`` agent's ack of the same message) are done."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

from faust.events import Event
from faust.types.tuples import TP, ConsumerMessage

from broker import codec
from broker.failure import FailurePolicy
from broker.streams.fanout_agent import FanOutAgent, message_acks
from tests.unit.adapters.factory import alert


class Consumer:
    """Faust's consumer as ``Message.ack`` reaches it: the final acks, in order."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.tps: list[TP] = []

    def ack(self, message: ConsumerMessage) -> bool:
        # Faust's reads ``tp`` for its bookkeeping, ``topic`` to tell whether its acks count
        assert message.tp == TP(message.topic, message.partition)
        message.acked = True
        self.acked.append(message.offset)
        self.tps.append(message.tp)
        return True

    def highwater(self, tp: TP) -> None:
        return None


class Dispatcher:
    """Takes each alert's ``settled`` callable; the test settles them in its own order."""

    def __init__(self) -> None:
        self.settle: list[Callable[[], None]] = []

    def handle(self, event: Any, ack: Callable[[], None]) -> int:
        self.settle.append(ack)
        return 1


class Stream:
    """``stream.noack().events()`` over ``events``, yielded then let go (as Faust's stream)."""

    def __init__(self, events: list[Event]) -> None:
        self.events_ = events

    def noack(self) -> Stream:
        return self

    async def events(self) -> AsyncIterator[Event]:
        while self.events_:
            yield self.events_.pop(0)


def agent(consumer: Consumer) -> FanOutAgent:
    a = object.__new__(FanOutAgent)
    a.app = SimpleNamespace(consumer=consumer)  # type: ignore[assignment]
    a.rt = SimpleNamespace(membership=SimpleNamespace(held=lambda: True))  # type: ignore[assignment]
    a.failures, a.alerts_topic = FailurePolicy(), "alerts"
    a.hub = SimpleNamespace(holding=False, release=lambda: None)  # type: ignore[assignment]
    a.dispatcher = Dispatcher()  # type: ignore[assignment]
    a.acks, a._behind, a._hold_timer = message_acks(a.app, "alerts"), set(), None
    return a


def records(app: Any, n: int, partition: int = 0) -> list[Event]:
    """``alerts`` records 10.. of one partition, as Faust hands them to the two agents of the
    topic (``fan-out`` and ``feed-table``: the message's refcount is 2, the event shared)."""
    out = []
    tp = TP("alerts", partition)
    for i in range(n):
        ev = alert("update", i + 2)
        message = ConsumerMessage("alerts", partition, 10 + i, 1.7e9, 0, [("h", b"v")],
                                  ev.alert_id.encode(), codec.encode(ev), None, tp=tp)
        message.incref(2)
        out.append(Event(app, message.key, message.value, message.headers, message))
    return out


def test_held_records_keep_neither_their_event_nor_their_bytes() -> None:
    consumer = Consumer()
    a = agent(consumer)
    events = records(a.app, 3)
    fed = [ev.ack() for ev in events]  # the feed-table agent's acks: not the final ones
    assert fed == [False] * 3
    messages = [weakref.ref(ev.message) for ev in events]
    gone = [weakref.ref(ev) for ev in events]
    stream = Stream(events)
    del events

    asyncio.run(a.run(stream))  # type: ignore[arg-type]
    gc.collect()
    assert a.acks.in_hand() == 3 and consumer.acked == []
    assert [ref() for ref in gone] == [None] * 3  # the events went with the stream
    held = [m() for m in messages]
    assert [(m.key, m.value, m.headers) for m in held] == [(None, None, None)] * 3  # type: ignore[union-attr]
    del held

    first, *later = a.dispatcher.settle  # type: ignore[attr-defined]
    for settled in later:  # 11 and 12 settle while 10 is still owed: held, as offsets only
        settled()
    gc.collect()
    assert consumer.acked == [] and [m() is None for m in messages] == [False, True, True]
    first()
    assert consumer.acked == [10, 11, 12] and a.acks.in_hand() == 0
    assert consumer.tps == [TP("alerts", 0)] * 3


def test_a_record_let_go_is_acked_in_its_own_partition() -> None:
    """The message made for the final ack of a record let go (``stand_in``) carries the record's
    own partition: the same offsets held in two partitions, each acked in its own."""
    consumer = Consumer()
    a = agent(consumer)
    events = [ev for pair in zip(records(a.app, 3, partition=0), records(a.app, 3, partition=5),
                                 strict=True) for ev in pair]  # read interleaved
    fed = [ev.ack() for ev in events]  # the feed-table agent's: the fan-out's is the last
    assert fed == [False] * 6
    messages = [weakref.ref(ev.message) for ev in events]
    asyncio.run(a.run(Stream(events)))  # type: ignore[arg-type]
    first0, first5, *later = a.dispatcher.settle  # type: ignore[attr-defined]
    for settled in later:  # 11 and 12 of each partition settle behind its 10: offsets only
        settled()
    gc.collect()
    assert [m() is None for m in messages] == [False, False, True, True, True, True]
    first5()
    first0()
    assert consumer.acked == [10, 11, 12] * 2
    assert consumer.tps == [TP("alerts", 5)] * 3 + [TP("alerts", 0)] * 3


def test_a_held_record_waits_for_the_feed_table_agent_too() -> None:
    """The two agents' acks count the shared message down together, as with ``Event.ack``:
    a record settled behind one still owed keeps its message while the other stream has not
    acked it, and is acked only once both have."""
    consumer = Consumer()
    a = agent(consumer)
    events = records(a.app, 2)
    late = events[1]
    events[0].ack()  # feed-table has the first, not yet the second
    asyncio.run(a.run(Stream(events)))  # type: ignore[arg-type]
    first, second = a.dispatcher.settle  # type: ignore[attr-defined]
    second()
    first()
    assert consumer.acked == [10] and late.message.refcount == 1  # feed-table still has 11
    late.ack()
    assert consumer.acked == [10, 11]
