"""An ``alerts`` record is acked only once Kafka has the table records it made: the ``delivered``
record of its settled deliveries (fan-out) and its entry in the ``active-alerts`` table (the
``feed-table`` agent). A record Kafka did not take stops the worker (site ``settle``), the
``alerts`` record un-acked (broker.streams.table_writes).

Through Faust's ``table[key] = value`` the changelog record went fire-and-forget: a failed send
was only logged (faust/topics.py ``_on_published``) and a commit flushed the send buffer for at
most 0.1 s without progress, then committed: the alert's offset moved past a record Kafka never
had, and the restarted worker read the table without it. Here the worker's own app
(``create_app``), its real tables and agents; only the producer is a stand-in whose answers the
test gives (no Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.types.tuples import TP

import broker.streams.fanout_agent as fanout_agent
from adapters.dispatch import decode_settled
from adapters.fanout import LastSent
from broker import codec
from broker.failure import StopWork
from broker.streams.app import create_app
from broker.streams.fanout_agent import FanOutAgent
from broker.streams.settings import StreamSettings
from broker.streams.tables import life_key
from tests.unit.adapters.factory import CONFIG, T0, alert, lifecycle

if TYPE_CHECKING:
    from broker.streams.table_writes import TableWrites


@dataclass
class Record:
    topic: str
    key: bytes
    value: bytes | None
    answer: asyncio.Future[Any]


@dataclass
class Kafka:
    """The worker's producer as table writes reach it: ``send`` (a record straight to the
    producer, its future answered by the test) and Faust's send buffer (``send_soon``: taken,
    never answered, as a producer Kafka does not answer)."""

    records: list[Record] = field(default_factory=list)
    buffered: list[Any] = field(default_factory=list)

    def key_partition(self, topic: str, key: bytes) -> TP:  # Faust's eager partitioning
        return TP(topic, 0)

    def send_soon(self, fut: Any) -> None:
        self.buffered.append(fut)

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: None,
                   timestamp: None, headers: None) -> asyncio.Future[Any]:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.records.append(Record(topic, key, value, answer))
        return answer


@dataclass
class RecordingHub:
    """The partners: keeps each delivery's ``settled`` callback; ``settle_all`` delivers."""

    queued: list[Any] = field(default_factory=list)

    def submit(
        self, delivery: Any, on_settled: Any, delivered: Any = None, *, maybe_live: bool = False,
        on_maybe_live: Any = None,
    ) -> None:
        self.queued.append((delivery, on_settled))

    def settle_all(self) -> None:
        done, self.queued = self.queued, []
        for d, cb in done:
            cb(d, "delivered", LastSent(d.version, T0, d.message_id, d.view.ts))


@dataclass
class Worker:
    app: faust.App
    kafka: Kafka
    stops: list[StopWork]
    stopped: asyncio.Future[None]


def stopping(stops: list[StopWork]) -> tuple[Callable[..., Any], asyncio.Future[None]]:
    """A stand-in for the worker's stop (``Runtime.stop_worker`` exits the process)."""
    stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stop(*args: Any) -> None:
        stops.append(args[-1])
        if not stopped.done():
            stopped.set_result(None)

    return stop, stopped


@pytest.fixture
async def fanout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[tuple[Worker, FanOutAgent, RecordingHub]]:
    built: list[FanOutAgent] = []

    class Built(FanOutAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(fanout_agent, "FanOutAgent", Built)
    app = create_app(StreamSettings(data_dir=tmp_path), partners=CONFIG)
    (agent,) = built
    kafka, stops = Kafka(), []
    app.producer = kafka  # type: ignore[assignment]
    stop, stopped = stopping(stops)
    monkeypatch.setattr(agent.rt, "stop_worker", stop)  # the agent's and its table's stops
    hub = RecordingHub()
    agent.dispatcher.hub = hub  # type: ignore[assignment]
    agent.dispatcher.owns = lambda aid: True
    try:
        yield Worker(app, kafka, stops, stopped), agent, hub
    finally:
        await agent.client.aclose()


async def handed_over(writes: TableWrites) -> None:
    """Until the writes so far are with the producer (its ordered queue drained)."""
    await writes._send.flush()


async def turns(n: int = 10) -> None:
    """Let the callbacks scheduled so far run (loop turns, no time passes)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_an_alert_is_acked_once_kafka_has_its_delivered_record(
    fanout: tuple[Worker, FanOutAgent, RecordingHub],
) -> None:
    worker, agent, hub = fanout
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    create = lifecycle(n_updates=0)[0]
    assert agent.dispatcher.handle(create, lambda: acked.set_result(None)) == 2
    hub.settle_all()
    assert not acked.done()  # settled, but its record is not in Kafka yet
    key = create.alert_id.encode()
    assert set(decode_settled(agent.tables.delivered.get(key))) == {"navapp", "county"}
    await handed_over(agent.delivered)
    changelog = agent.tables.delivered.changelog_topic.get_topic_name()
    assert [(r.topic, r.key) for r in worker.kafka.records] == [(changelog, key)] * 2
    assert worker.kafka.buffered == []  # not through Faust's fire-and-forget buffer
    first, last = worker.kafka.records
    last.answer.set_result(None)
    assert decode_settled(last.value) == decode_settled(agent.tables.delivered.get(key))
    await turns()
    assert not acked.done()  # the first write of the key is still unanswered
    first.answer.set_result(None)
    await asyncio.wait_for(acked, 5)
    assert worker.stops == []


async def test_a_delivered_record_kafka_did_not_take_stops_the_worker_unacked(
    fanout: tuple[Worker, FanOutAgent, RecordingHub],
) -> None:
    worker, agent, hub = fanout
    acks: list[str] = []
    events = lifecycle(n_updates=0)
    agent.dispatcher.handle(events[0], lambda: acks.append("create"))
    hub.settle_all()
    assert acks == []
    await handed_over(agent.delivered)
    for r in worker.kafka.records:
        r.answer.set_exception(KafkaTimeoutError())
    await asyncio.wait_for(worker.stopped, 5)
    (stop,) = worker.stops
    assert stop.failure.site == "settle" and "KafkaTimeoutError" in stop.failure.error
    assert acks == []
    # nothing is acked any more: a later record of the alert, whose deliveries settle, neither
    agent.dispatcher.handle(events[1], lambda: acks.append("cancel"))
    hub.settle_all()
    await handed_over(agent.delivered)
    for r in worker.kafka.records[2:]:
        r.answer.set_result(None)
    await turns()
    assert acks == [] and len(worker.stops) == 1


class Stream:
    """``stream.noack().events()`` over ``events``."""

    def __init__(self, events: list[Any]) -> None:
        self.events_ = events

    def noack(self) -> Stream:
        return self

    async def events(self) -> AsyncIterator[Any]:
        for ev in self.events_:
            yield ev


@dataclass
class Feed:
    worker: Worker
    agent: Callable[[Any], Any]  # the feed-table agent's function
    writes: list[TableWrites]  # its table's writes


@pytest.fixture
async def feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Feed]:
    app = create_app(StreamSettings(data_dir=tmp_path))
    kafka, stops = Kafka(), []
    app.producer = kafka  # type: ignore[assignment]
    stop, stopped = stopping(stops)
    monkeypatch.setattr(app.broker_runtime, "stop_worker", stop)  # type: ignore[attr-defined]
    (agent,) = [a for a in app.agents.values() if a.name == "feed-table"]
    made = getattr(app, "broker_feed_writes", None)  # (run on the code before: none)
    yield Feed(Worker(app, kafka, stops, stopped), agent.fun, [] if made is None else [made])


def events(acks: list[int], *versions: int, offset: int = 10,
           alert_id: str = "CFD-E7:F261125-0042:approaching") -> Iterator[Any]:
    """``alerts`` records of one partition from ``offset`` on, acked into ``acks`` (version)."""
    for i, v in enumerate(versions):
        ev = alert("update", v, alert_id=alert_id)
        yield SimpleNamespace(key=ev.alert_id.encode(), value=codec.encode(ev),
                              message=SimpleNamespace(partition=0, offset=offset + i),
                              ack=lambda v=v: acks.append(v))


async def test_the_feed_table_acks_a_record_once_kafka_has_its_entry(feed: Feed) -> None:
    acks: list[int] = []
    await feed.agent(Stream([*events(acks, 2)]))
    assert acks == []  # 2 waits for Kafka
    (writes,) = feed.writes
    await handed_over(writes)
    (record,) = feed.worker.kafka.records
    assert record.key == life_key(alert("update", 2)) and feed.worker.kafka.buffered == []
    assert record.topic == writes.table.changelog_topic.get_topic_name()
    record.answer.set_result(None)
    await turns()
    assert acks == [2] and feed.worker.stops == []


async def test_the_feed_table_acks_in_offset_order(feed: Feed) -> None:
    """A record that stores nothing (an older step) behind one whose entry is not in Kafka yet
    waits for it: Faust commits the first run of acked offsets wherever it starts, and the
    fan-out's acks of the same messages come in offset order too."""
    acks: list[int] = []
    await feed.agent(Stream([*events(acks, 3, 2, 1)]))  # 2 and 1 are older: nothing stored
    assert acks == []
    (writes,) = feed.writes
    await handed_over(writes)
    (record,) = feed.worker.kafka.records
    record.answer.set_result(None)
    await turns()
    assert acks == [3, 2, 1]


async def test_a_feed_entry_kafka_did_not_take_stops_the_worker_unacked(feed: Feed) -> None:
    acks: list[int] = []
    await feed.agent(Stream([*events(acks, 2)]))
    assert acks == []
    (writes,) = feed.writes
    await handed_over(writes)
    (record,) = feed.worker.kafka.records
    record.answer.set_exception(KafkaTimeoutError())
    await asyncio.wait_for(feed.worker.stopped, 5)
    (stop,) = feed.worker.stops
    assert stop.failure.site == "settle" and acks == []
    await feed.agent(Stream([*events(acks, 1)]))  # nothing to store, but the worker is stopping
    assert acks == []


async def test_a_write_failing_while_the_worker_stops_is_logged_not_a_new_stop(
    fanout: tuple[Worker, FanOutAgent, RecordingHub], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shutdown (or a stop already under way): the producer refuses what comes late. Nothing
    is acked (the restarted worker does it again), and no second, loud stop is made of it."""
    worker, agent, hub = fanout
    acks: list[str] = []
    agent.dispatcher.handle(lifecycle(n_updates=0)[0], lambda: acks.append("create"))
    hub.settle_all()
    await handed_over(agent.delivered)
    monkeypatch.setattr(agent.rt, "stopping", lambda app: True)
    for r in worker.kafka.records:
        r.answer.set_exception(KafkaTimeoutError())
    await turns()
    assert acks == [] and worker.stops == []
    assert "a record not written or acked while the worker stops" in caplog.text


async def test_a_feed_entry_answered_after_its_partition_moved_acks_nothing(feed: Feed) -> None:
    """Its partition revoked meanwhile: the owner reads the record again (a late ack of a
    partition that came back would count in Faust's new run of acked offsets)."""
    acks: list[int] = []
    await feed.agent(Stream([*events(acks, 2)]))
    (writes,) = feed.writes
    await handed_over(writes)
    alerts = feed.worker.app.broker_runtime.names.alerts  # type: ignore[attr-defined]
    await feed.worker.app.on_partitions_revoked.send(revoked={TP(alerts, 0)})
    (record,) = feed.worker.kafka.records
    record.answer.set_result(None)
    await turns()
    assert acks == []


async def test_the_feed_prune_deletes_in_order_with_the_entries(feed: Feed) -> None:
    """The prune's tombstones go through the same queue as the entries (Faust's buffer and
    this queue are two paths to the changelog: a tombstone could land before the entry it
    deletes, and the recovered table kept what the worker had dropped)."""
    from broker.streams.web import FeedClock, prune_owned

    acks: list[int] = []
    done = alert("cancel", 4, at=T0)
    ev = SimpleNamespace(key=done.alert_id.encode(), value=codec.encode(done),
                         message=SimpleNamespace(partition=0, offset=10),
                         ack=lambda: acks.append(4))
    await feed.agent(Stream([ev]))
    (writes,) = feed.writes
    rt = feed.worker.app.broker_runtime  # type: ignore[attr-defined]
    app = SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: [
        TP(rt.names.alerts, p) for p in range(rt.settings.partitions)]))
    tables = SimpleNamespace(active_alerts=writes.table)
    prune_owned(app, rt, tables, FeedClock(utc=lambda: T0 + timedelta(hours=2)), 900.0,  # type: ignore[arg-type]
                delete=writes.delete)
    await handed_over(writes)
    key = life_key(done)
    assert [(r.key, r.value is None) for r in feed.worker.kafka.records] == [
        (key, False), (key, True)]
    assert key not in writes and feed.worker.kafka.buffered == []


# ---- review of the branch: three holes, each a test that failed before its fix -------------

async def test_a_step_read_again_after_a_revoke_waits_for_its_entry_still_unanswered(
    feed: Feed,
) -> None:
    # offset 10 stored v2, its write not answered; the partition is revoked and comes back,
    # offset 10 is read again: the table holds v2 already (nothing stored), and it was acked
    # at once, before its entry was in Kafka
    from faust.types.tuples import TP

    acks: list[int] = []
    await feed.agent(Stream([*events(acks, 2)]))
    (writes,) = feed.writes
    await handed_over(writes)
    alerts = feed.worker.app.broker_runtime.names.alerts
    await feed.worker.app.on_partitions_revoked.send(revoked={TP(alerts, 0)})
    await feed.agent(Stream([*events(acks, 2)]))
    await turns()
    (record,) = feed.worker.kafka.records
    assert not record.answer.done() and acks == []
    record.answer.set_result(None)
    await turns()
    assert acks == [2]  # the read again, once its entry is in Kafka (the first one forgotten)


async def test_an_ack_that_raises_once_its_write_is_answered_stops_the_worker(
    fanout: Any,
) -> None:
    # the ack runs in the write's future callback: raising there went to the loop's handler
    # (a log line), the record never acked, the worker going on
    from tests.unit.adapters.factory import lifecycle

    worker, agent, hub = fanout

    def ack() -> None:
        raise RuntimeError("a bug in the ack path")

    agent.dispatcher.handle(lifecycle(n_updates=0)[0], ack)
    hub.settle_all()
    await handed_over(agent.delivered)
    for r in worker.kafka.records:
        r.answer.set_result(None)
    await turns()
    assert worker.stops


async def test_a_write_cancelled_while_the_worker_runs_stops_it(feed: Feed) -> None:
    # a CancelledError out of the producer (not the worker stopping): every later ack waited
    # for ever, nothing logged, nothing stopped
    kafka = feed.worker.kafka
    real, calls = kafka.send, [0]

    async def send(*args: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise asyncio.CancelledError()
        return await real(*args)

    kafka.send = send  # type: ignore[method-assign]
    acks: list[int] = []
    await feed.agent(Stream([*events(acks, 2)]))
    (writes,) = feed.writes
    await handed_over(writes)
    await turns()
    assert feed.worker.stops and acks == []
