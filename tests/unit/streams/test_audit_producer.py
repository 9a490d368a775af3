"""The audit topic's own producer: records reach it in the order written, each record's future
follows Kafka's answer, a start that finds no broker is tried again while the records wait (as
the worker's producer waits an outage out), and after ``stop`` a record fails at once.

An in-memory stand-in for aiokafka's producer here; the worker tests on a real Kafka
(tests/integration/test_worker_delivery.py) read the records back from the ``audit`` topic.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.audit import AuditLost, AuditRecord, ProducerAudit
from broker.streams import audit_producer
from broker.streams.audit_producer import AuditProducer


class MemoryKafka:
    """Makes producers like Faust's factory; the first ``refuse_starts`` of them find no broker."""

    def __init__(self, refuse_starts: int = 0) -> None:
        self.refuse_starts = refuse_starts
        self.made: list[MemoryProducer] = []

    def create_producer(self, **kwargs: Any) -> Any:
        return SimpleNamespace(_new_producer=self._new_producer)

    def _new_producer(self) -> MemoryProducer:
        refuse = len(self.made) < self.refuse_starts
        producer = MemoryProducer(ConnectionError("no broker at 127.0.0.1:1") if refuse else None)
        self.made.append(producer)
        return producer

    @property
    def sent(self) -> list[tuple[str, bytes | None, bytes, asyncio.Future[object]]]:
        return [record for producer in self.made for record in producer.sent]


class MemoryProducer:
    """Takes records like aiokafka's producer: ``send`` returns a future Kafka's answer resolves."""

    def __init__(self, start_error: Exception | None) -> None:
        self.start_error = start_error
        self.sent: list[tuple[str, bytes | None, bytes, asyncio.Future[object]]] = []
        self.started = self.stopped = self.flushed = False

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.started = True

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        assert self.started
        await asyncio.sleep(0)  # a send may yield (metadata, a full buffer)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, fut))
        return fut

    async def flush(self) -> None:
        self.flushed = True

    async def stop(self) -> None:
        self.stopped = True


def _producer(kafka: MemoryKafka) -> AuditProducer:
    return AuditProducer(SimpleNamespace(transport=kafka, beacon=None), "audit")  # type: ignore[arg-type]


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_records_reach_the_producer_in_order_and_resolve_with_kafkas_answer() -> None:
    async def run() -> None:
        kafka = MemoryKafka()
        audit = _producer(kafka)
        futures = [audit.send(b"p", str(i).encode()) for i in range(20)]
        await _turns(60)
        assert [(t, k, v) for t, k, v, _ in kafka.sent] == [
            ("audit", b"p", str(i).encode()) for i in range(20)]
        assert not any(f.done() for f in futures)  # Kafka has not answered yet
        kafka.sent[3][3].set_result("meta-3")
        kafka.sent[4][3].set_exception(RuntimeError("NotLeaderForPartition"))
        await _turns()
        assert futures[3].result() == "meta-3"
        with pytest.raises(RuntimeError, match="NotLeader"):
            futures[4].result()
        await audit.stop()
        assert kafka.made[0].flushed and kafka.made[0].stopped

    asyncio.run(run())


def test_a_start_that_finds_no_broker_is_tried_again_while_the_records_wait() -> None:
    async def run() -> None:
        kafka = MemoryKafka(refuse_starts=3)
        audit = _producer(kafka)
        audit.start()  # with the worker, before any record
        first = audit.send(b"p", b"1")
        for _ in range(500):  # 50 + 100 + 200 ms between the starts
            if kafka.sent:
                break
            await asyncio.sleep(0.02)
        assert len(kafka.made) == 4 and all(p.stopped for p in kafka.made[:3])
        assert audit.accepting and not first.done()  # waiting, not failed
        assert [v for _, _, v, _ in kafka.sent] == [b"1"]
        kafka.sent[0][3].set_result("meta")
        await _turns()
        assert first.result() == "meta"
        await audit.stop()

    asyncio.run(run())


def _record() -> AuditRecord:
    return AuditRecord(at=datetime(2026, 1, 1, tzinfo=UTC), partner="navapp", alert_id="ev1",
                       version=1, action="create", status="sending")


def test_a_record_the_producer_refuses_fails_it_and_every_later_one() -> None:
    async def run() -> None:
        kafka = MemoryKafka()
        audit = _producer(kafka)
        audit.send(b"p", b"1")
        await _turns(10)

        async def refuse(topic: str, value: bytes, key: bytes | None = None) -> Any:
            raise ValueError("MessageSizeTooLargeError")

        kafka.made[0].send = refuse  # type: ignore[method-assign]
        second = audit.send(b"p", b"2")
        await _turns(10)
        assert isinstance(second.exception(), ValueError) and not audit.accepting
        # the worker's sink on it: the write itself raises (nothing goes unrecorded), and
        # every later barrier: the worker stops
        sink = ProducerAudit(audit.send)
        with pytest.raises(AuditLost, match="MessageSizeTooLarge"):
            sink.write(_record())
        with pytest.raises(AuditLost):
            sink.barrier()
        await asyncio.wait_for(audit.stop(), 1.0)  # nothing queued: no wait

    asyncio.run(run())


def test_after_stop_records_fail_at_once_even_if_none_was_written_before() -> None:
    async def run() -> None:
        kafka = MemoryKafka()
        audit = _producer(kafka)
        await audit.stop()
        assert not audit.accepting
        late = audit.send(b"p", b"1")
        assert late.done() and isinstance(late.exception(), RuntimeError)
        audit.start()
        await _turns()
        assert kafka.made == []  # no producer started after the stop

    asyncio.run(run())


def test_stop_while_the_start_is_retried_fails_the_waiting_records_and_closes_every_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_producer, "STOP_WITHIN_S", 0.3)  # the records' wait at stop

    async def run() -> None:
        kafka = MemoryKafka(refuse_starts=1_000)
        audit = _producer(kafka)
        waiting = audit.send(b"p", b"1")
        await asyncio.sleep(0.1)
        assert kafka.made and not waiting.done()
        await asyncio.wait_for(audit.stop(), 30.0)
        assert isinstance(waiting.exception(), RuntimeError)
        assert all(p.stopped for p in kafka.made)

    asyncio.run(run())


def test_stop_with_nothing_written_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_producer, "STOP_WITHIN_S", 3600.0)  # a wait would time out below

    async def run() -> None:
        kafka = MemoryKafka(refuse_starts=1_000)  # Kafka away: the start is retried
        audit = _producer(kafka)
        audit.start()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(audit.stop(), 30.0)  # nothing queued: nothing to wait for
        assert all(p.stopped for p in kafka.made)

    asyncio.run(run())
