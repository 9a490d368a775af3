"""The audit topic's own producer: records reach it in the order written, each record's future
follows Kafka's answer, and a producer that cannot start or send fails every record (the worker
then stops on ``AuditLost``) instead of leaving them unanswered.

An in-memory stand-in for Faust's producer service here; the worker tests on a real Kafka
(tests/integration/test_worker_delivery.py) read the records back from the ``audit`` topic.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.audit import AuditLost, AuditRecord, ProducerAudit
from broker.streams.audit_producer import AuditProducer


class MemoryProducer:
    """Takes records like Faust's producer: ``send`` returns a future Kafka's answer resolves."""

    def __init__(self, start_error: Exception | None = None) -> None:
        self.start_error = start_error
        self.sent: list[tuple[str, bytes, bytes, asyncio.Future[object]]] = []
        self.started = self.stopped = self.flushed = False

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.started = True

    async def send(self, topic: str, key: bytes, value: bytes, partition: Any, timestamp: Any,
                   headers: Any) -> asyncio.Future[object]:
        await asyncio.sleep(0)  # a send may yield (metadata, a full buffer)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, fut))
        return fut

    async def flush(self) -> None:
        self.flushed = True

    async def stop(self) -> None:
        self.stopped = True


def _app(producer: MemoryProducer) -> Any:
    transport = SimpleNamespace(create_producer=lambda **kwargs: producer)
    return SimpleNamespace(transport=transport, beacon=None)


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_records_reach_the_producer_in_order_and_resolve_with_kafkas_answer() -> None:
    async def run() -> None:
        memory = MemoryProducer()
        audit = AuditProducer(_app(memory), "audit")
        futures = [audit.send(b"p", str(i).encode()) for i in range(20)]
        await _turns(60)
        assert memory.started
        assert [(t, v) for t, _, v, _ in memory.sent] == [("audit", str(i).encode())
                                                         for i in range(20)]
        assert not any(f.done() for f in futures)  # Kafka has not answered yet
        memory.sent[3][3].set_result("meta-3")
        memory.sent[4][3].set_exception(RuntimeError("NotLeaderForPartition"))
        await _turns()
        assert futures[3].result() == "meta-3"
        with pytest.raises(RuntimeError, match="NotLeader"):
            futures[4].result()
        await audit.stop()
        assert memory.flushed and memory.stopped

    asyncio.run(run())


def test_a_producer_that_cannot_start_fails_every_record_and_stops_the_worker() -> None:
    async def run() -> None:
        memory = MemoryProducer(start_error=ConnectionError("no broker at 127.0.0.1:1"))
        producer = AuditProducer(_app(memory), "audit")
        sink = ProducerAudit(producer.send)
        first = producer.send(b"p", b"1")
        await _turns()
        with pytest.raises(ConnectionError):
            first.result()
        assert producer.failed is not None
        later = producer.send(b"p", b"2")  # after the failure: failed at once, never queued
        assert later.done() and later.exception() is not None
        # the audit sink the worker uses turns it into AuditLost: the worker stops
        record = AuditRecord(at=datetime(2026, 1, 1, tzinfo=UTC), partner="navapp",
                             alert_id="ev1", version=1, action="create", status="sending")
        with pytest.raises(AuditLost):
            sink.write(record)  # the first record answered failed: the sink is lost
            barrier = sink.barrier()
            if barrier is not None:
                await barrier
        await asyncio.wait_for(producer.stop(), 1.0)  # nothing queued: no wait for a flush

    asyncio.run(run())


def test_records_written_after_stop_fail_at_once() -> None:
    async def run() -> None:
        memory = MemoryProducer()
        producer = AuditProducer(_app(memory), "audit")
        producer.send(b"p", b"1")
        await _turns(10)
        await producer.stop()
        late = producer.send(b"p", b"2")
        assert late.done() and isinstance(late.exception(), RuntimeError)
        assert len(memory.sent) == 1

    asyncio.run(run())
