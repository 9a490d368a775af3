"""The live source's reader, on an in-memory stand-in for aiokafka's consumer (no Kafka)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndTimestamp

from adapters.audit import AuditRecord
from broker import codec
from broker.console import live
from broker.console.live import LiveSource, LiveTopics
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig

REPO = Path(__file__).resolve().parents[3]
ROUTE = REPO / "fixtures" / "incidents" / "route-downtown"
TOPICS = LiveTopics(alerts="alerts", audit="audit", routes="cad.routes", dlq="avl.dlq")


@dataclass(frozen=True)
class Record:
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    offset: int = 0  # set as the consumer hands it out


@dataclass
class Log:
    """The records of every partition (the 'cluster'), shared by every consumer made."""

    records: dict[TopicPartition, list[Record]] = field(default_factory=dict)
    fail_once: bool = False  # the first consumer's second fetch fails, as Kafka going away
    consumers: int = 0


class FakeConsumer:
    """What LiveSource calls of ``AIOKafkaConsumer``, over the class's ``log``."""

    log: Log

    def __init__(self, **_: Any) -> None:
        self.log.consumers += 1
        self.pos: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def assign(self, tps: list[TopicPartition]) -> None:
        self.pos = dict.fromkeys(tps, 0)

    async def offsets_for_times(self, wanted: dict[TopicPartition, int]
                                ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        return {tp: OffsetAndTimestamp(0, 0) if self.log.records.get(tp) else None
                for tp in wanted}

    async def seek_to_end(self, tp: TopicPartition) -> None:
        self.pos[tp] = len(self.log.records.get(tp, []))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.records.get(tp, [])) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]

    async def getmany(self, *, timeout_ms: int, max_records: int
                      ) -> dict[TopicPartition, list[Record]]:
        if self.log.fail_once and any(self.pos.values()):
            self.log.fail_once = False
            raise KafkaConnectionError("the broker went away")
        out = {}
        for tp, at in self.pos.items():
            got = self.log.records.get(tp, [])[at:]
            if got:
                out[tp] = [replace(rec, offset=at + i) for i, rec in enumerate(got)]
                self.pos[tp] = at + len(got)
        if not out:
            await asyncio.sleep(0.01)
        return out


def fake_consumer(log: Log) -> type[FakeConsumer]:
    """A consumer class reading ``log`` (every instance made counts in ``log.consumers``)."""
    return type("BoundFakeConsumer", (FakeConsumer,), {"log": log})


@pytest.fixture(scope="module")
def events():  # type: ignore[no-untyped-def]
    return replay_in_process(load_messages(ROUTE), cfg=EngineConfig()).events


async def read(log: Log, monkeypatch: pytest.MonkeyPatch, *, timeout_s: float = 5.0,
               settle_s: float = 0.0) -> LiveSource:
    """Run a LiveSource over ``log`` until it has caught up (and ``settle_s`` more)."""
    monkeypatch.setattr(live, "AIOKafkaConsumer", fake_consumer(log))
    source = LiveSource(bootstrap="fake:9092", topics=TOPICS, partitions=1)
    await source.start()
    try:
        await source.ready(timeout_s)
        await asyncio.sleep(settle_s)
    finally:
        await source.stop()
    return source


def test_an_unreadable_record_is_skipped_not_read_again_forever(
    events, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """A record the console cannot decode (corrupt, or a newer worker's audit status during a
    rolling upgrade) is logged and skipped. It used to end the reader, whose restart sought back
    to the lookback and met the same record again: the console stayed "loading" and showed no
    new alert until that record left the lookback window (15 min)."""
    create = events[0]
    audit = AuditRecord(at=datetime(2026, 11, 25, tzinfo=UTC), partner="p", alert_id="a",
                        version=1, action="create", status="delivered")
    newer = msgspec.json.encode(audit).replace(b'"delivered"', b'"throttled"')
    log = Log({
        TopicPartition("alerts", 0): [Record(b"\x00corrupt"), Record(codec.encode(create))],
        TopicPartition("audit", 0): [Record(newer), Record(msgspec.json.encode(audit))],
    })
    source = asyncio.run(read(log, monkeypatch))
    assert source.caught_up.is_set(), "the reader never caught up"
    assert [a["alert"]["alert_id"] for a in source.state.snapshot()["alerts"]] == [
        create.alert_id]
    assert log.consumers == 1, "the reader started over"


def test_a_reader_restart_resumes_where_it_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka fails under the reader (a broker restart): the new consumer goes on from the
    records already read. It used to seek back to the lookback and fold those records in a
    second time: every rejected input of the last 15 minutes counted twice on the page, and
    the delivery latencies (p50 / p99) held each attempt twice."""
    audit = AuditRecord(at=datetime(2026, 11, 25, tzinfo=UTC), partner="p", alert_id="a",
                        version=1, action="create", status="delivered", latency_ms=10.0)
    log = Log({
        TopicPartition("avl.dlq", 0): [Record(b"{", (("reason", b"bad_json"),))] * 3,
        TopicPartition("audit", 0): [Record(msgspec.json.encode(audit))],
    }, fail_once=True)
    source = asyncio.run(read(log, monkeypatch, settle_s=3.0))
    assert log.consumers == 2, "the reader did not start over after the failure"
    assert dict(source.state.rejected) == {"bad_json": 3}
    assert len(source.state.latencies_ms) == 1
