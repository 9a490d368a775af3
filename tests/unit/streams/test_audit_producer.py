"""The worker's audit records straight to the producer (``broker.streams.audit_producer``): in
the order written, durable only once Kafka answers, and a refusal stops delivery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.audit import AuditLost, AuditRecord, ProducerAudit
from broker.streams.audit_producer import AuditProducer
from tests.unit.adapters.factory import T0

SENDING = AuditRecord(at=T0, partner="navapp", alert_id="a", version=1, action="create",
                      status="sending")


class FakeProducer:
    """Faust's ``Producer.send``: appends (after ``hold_first`` is set, for the first record:
    a batch full or metadata missing), then returns the future of Kafka's answer."""

    def __init__(self, hold_first: bool = False, refuse: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes, Any]] = []
        self.answers: list[asyncio.Future[object]] = []
        self.release = asyncio.Event()
        self.hold_first = hold_first
        self.refuse = refuse

    async def send(self, topic: str, key: bytes, value: bytes, partition: None,
                   timestamp: None, headers: None) -> asyncio.Future[object]:
        if self.refuse:
            raise RuntimeError("producer stopped")
        if self.hold_first and not self.sent:
            await self.release.wait()
        self.sent.append((topic, key, value, partition))
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        return answer


async def turns(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_records_reach_the_producer_in_the_order_written() -> None:
    kafka = FakeProducer(hold_first=True)
    send = AuditProducer(lambda: kafka.send, "p.audit")
    futures = [send(b"navapp", b"1"), send(b"county", b"2")]
    await turns()
    assert kafka.sent == []  # the first waits in the producer: the second does not pass it
    send(b"navapp", b"3")
    kafka.release.set()
    await turns()
    assert [(t, k, v, p) for t, k, v, p in kafka.sent] == [
        ("p.audit", b"navapp", b"1", None), ("p.audit", b"county", b"2", None),
        ("p.audit", b"navapp", b"3", None)]  # partition None: the producer's partitioner
    assert not any(f.done() for f in futures)  # in the batch is not in Kafka


async def one_record_waited_on(kafka: FakeProducer) -> tuple[ProducerAudit, asyncio.Future[None]]:
    """The audit over ``kafka`` with one ``sending`` record written and a barrier on it."""
    audit = ProducerAudit(AuditProducer(lambda: kafka.send, "p.audit"))
    audit.write(SENDING)
    wait = audit.barrier()
    assert wait is not None
    waiting = asyncio.ensure_future(wait)
    await turns()
    return audit, waiting


async def test_a_record_is_durable_only_once_kafka_answers() -> None:
    kafka = FakeProducer()
    audit, waiting = await one_record_waited_on(kafka)
    assert len(kafka.answers) == 1 and not waiting.done()  # appended, not answered
    kafka.answers[0].set_result(None)
    await asyncio.wait_for(waiting, 1)
    assert audit.barrier() is None


async def test_kafka_refusing_a_record_stops_delivery() -> None:
    kafka = FakeProducer()
    _, waiting = await one_record_waited_on(kafka)
    kafka.answers[0].set_exception(RuntimeError("NotEnoughReplicas"))
    with pytest.raises(AuditLost, match="NotEnoughReplicas"):
        await asyncio.wait_for(waiting, 1)


async def test_a_stopped_producer_fails_the_record() -> None:
    kafka = FakeProducer(refuse=True)
    send = AuditProducer(lambda: kafka.send, "p.audit")
    answer = send(b"navapp", b"1")
    with pytest.raises(RuntimeError, match="producer stopped"):
        await asyncio.wait_for(answer, 1)
    later = send(b"navapp", b"2")  # the drain task ended with the queue: a new one takes it
    with pytest.raises(RuntimeError, match="producer stopped"):
        await asyncio.wait_for(later, 1)


async def test_a_drain_cancelled_mid_send_leaves_no_record_unanswered() -> None:
    kafka = FakeProducer(hold_first=True)
    send = AuditProducer(lambda: kafka.send, "p.audit")
    first, second = send(b"navapp", b"1"), send(b"county", b"2")
    await turns()
    assert send._drain is not None
    send._drain.cancel()  # the worker stopping while the producer holds the first record
    await turns()
    assert first.cancelled() and second.cancelled()  # a barrier on them fails, not hangs
    kafka.hold_first = False
    later = send(b"navapp", b"3")  # a new drain task takes what is written after
    await turns()
    assert not later.done() and kafka.sent[-1][2] == b"3"


async def test_flush_returns_once_every_record_is_with_the_producer() -> None:
    kafka = FakeProducer(hold_first=True)
    send = AuditProducer(lambda: kafka.send, "p.audit")
    send(b"navapp", b"1"), send(b"county", b"2")
    flushing = asyncio.ensure_future(send.flush())
    await turns()
    assert not flushing.done()  # the shutdown hook waits: the producer stops after it
    kafka.release.set()
    await asyncio.wait_for(flushing, 1)
    assert [v for _, _, v, _ in kafka.sent] == [b"1", b"2"]
    await asyncio.wait_for(send.flush(), 1)  # nothing queued: at once


class Fatal(BaseException):
    """Not an Exception: an interpreter-level exit of the kind SystemExit is (which asyncio
    would re-raise out of the loop, and so out of the test)."""


async def test_a_send_that_raises_past_exception_fails_the_records_and_propagates() -> None:
    class Exiting(FakeProducer):
        async def send(self, *args: Any) -> asyncio.Future[object]:
            raise Fatal

    send = AuditProducer(lambda: Exiting().send, "p.audit")
    first, second = send(b"navapp", b"1"), send(b"county", b"2")
    drain = send._drain
    assert drain is not None
    with pytest.raises(Fatal):
        await drain
    assert first.cancelled() and second.cancelled()
