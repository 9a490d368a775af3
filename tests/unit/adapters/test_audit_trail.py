"""Nothing reaches a partner without its audit record, and nothing settles before its records
are durable: the ``sending`` record before each attempt, a failed audit write stopping the
worker before the send, Kafka's audit futures awaited before a request and before a delivery
settles (``adapters.delivery`` and ``adapters.delivery_loop`` with ``adapters.audit``;
httpx.MockTransport, fake time)."""

from __future__ import annotations

import asyncio
import errno
import inspect
from datetime import timedelta

import httpx
import pytest

from adapters.audit import AuditLost, AuditRecord, MemoryAudit, ProducerAudit, TeeAudit
from adapters.transparency import build_reports, format_text
from broker.failure import StopWork
from tests.unit.adapters.factory import CONFIG, T0, FakeTime, alert, fake_hub, navapp_deliveries


class HeldProducer:
    """A producer whose records Kafka has only once the test says so (``ack``/``fail``)."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[object]] = []
        self.values: list[bytes] = []

    def send(self, key: bytes, value: bytes) -> asyncio.Future[object]:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        self.values.append(value)
        return fut

    def ack(self) -> None:
        for f in self.futures:
            if not f.done():
                f.set_result(None)

    def fail(self) -> None:
        for f in self.futures:
            if not f.done():
                f.set_exception(RuntimeError("KafkaTimeoutError: batch expired"))

    def statuses(self) -> list[str]:
        return [v.split(b'"status":"')[1].split(b'"')[0].decode() for v in self.values]


async def turns(n: int = 30) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_send_cancelled_by_a_revoke_leaves_its_sending_record_and_the_report_says_so(
) -> None:
    """The partner had the body when a rebalance cancelled the send: the audit was empty and
    the report said 0 delivered (review item 3)."""
    got: list[str] = []
    gate = asyncio.Event()

    async def partner(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        await gate.wait()  # the partner has the body; its answer never comes back
        return httpx.Response(200)

    audit = MemoryAudit()
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), audit)
        (d,) = navapp_deliveries(alert("create", 1))
        hub.submit(d)
        await turns()
        await hub.revoke(lambda aid: True)
        await hub.stop()
    assert got == [d.message_id]
    (rec,) = audit.records
    assert (rec.status, rec.attempt, rec.message_id) == ("sending", 1, d.message_id)
    assert rec.started_at == d.view.started_at and rec.fields == d.view.fields_sent
    # the new owner finds the alert expired: its record says so, the partner may still have it
    audit.write(AuditRecord(at=T0, partner="navapp", alert_id=rec.alert_id, version=1,
                            action="create", status="expired", message_id=d.message_id,
                            started_at=rec.started_at))
    nav = {r.partner.id: r for r in build_reports(CONFIG, audit.records)}["navapp"]
    assert (nav.messages_delivered, nav.messages_uncertain, nav.alerts_uncertain) == (0, 1, 1)
    assert nav.undelivered["expired"] == 0  # not "dropped": it may have been received
    assert "1 more messages may have been received" in format_text([nav])


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   ValueError("an audit sink's bug")])
async def test_a_failed_audit_write_stops_the_worker_before_the_send(error: Exception) -> None:
    """The disk was full: the partner got the message, then the worker stopped, and every
    restart sent it again with nothing in the file (review item 6). A bug in a sink stops too:
    skipping it would send or ack without a record."""
    got: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        return httpx.Response(200)

    class Broken:
        def write(self, record: AuditRecord) -> None:
            raise error

    settled: list[str] = []
    stops: list[StopWork] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), Broken(), on_stop=stops.append)
        (d,) = navapp_deliveries(alert("create", 1))
        hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
        with pytest.raises(StopWork, match="audit failed"):
            await asyncio.wait_for(hub.drain(), 5)
        await hub.stop()
    assert got == [] and settled == []  # nothing sent, nothing acknowledged
    assert len(stops) == 1 and stops[0].failure.site == "audit"


async def test_the_request_waits_for_its_sending_record_and_settling_for_every_record() -> None:
    """Audit records to Kafka were fire-and-forget: an alert was acked while its records sat in
    the producer's buffer (a kill -9 lost them), and a failed produce went unnoticed (item 4)."""
    got: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        return httpx.Response(200)

    kafka = HeldProducer()
    audit = TeeAudit(ProducerAudit(kafka.send), MemoryAudit())
    settled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), audit)
        (d,) = navapp_deliveries(alert("create", 1))
        hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
        await turns()
        assert kafka.statuses() == ["sending"] and got == []  # not sent before Kafka has it
        kafka.ack()
        await turns()
        assert got == [d.message_id] and kafka.statuses() == ["sending", "delivered"]
        assert settled == []  # delivered, but its record is not in Kafka yet: not settled
        kafka.ack()
        await asyncio.wait_for(hub.drain(), 5)
    assert settled == ["delivered"]


async def test_a_failed_audit_produce_stops_the_worker_unsettled() -> None:
    got: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        return httpx.Response(200)

    kafka = HeldProducer()
    settled: list[str] = []
    stops: list[StopWork] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), ProducerAudit(kafka.send),
                       on_stop=stops.append)
        first, second = navapp_deliveries(alert("create", 1)), navapp_deliveries(
            alert("create", 1, alert_id="CFD-L2:F1:approaching", vehicle_id="L2"))
        hub.submit(first[0], lambda d, how, _last, _maybe: settled.append(how))
        await turns()
        kafka.ack()  # the first one's sending record: it goes
        await turns()
        kafka.fail()  # its delivered record is lost
        with pytest.raises(StopWork, match="audit failed"):
            await asyncio.wait_for(hub.drain(), 5)
        hub.submit(second[0], lambda d, how, _last, _maybe: settled.append(how))
        await turns()
        await hub.stop()
    assert settled == [] and len(stops) == 1 and stops[0].failure.site == "audit"
    assert got == [first[0].message_id]  # nothing went after the loss


async def test_deliveries_wait_for_the_audit_together_not_one_after_another() -> None:
    """Awaiting the audit does not serialise deliveries: four alerts' requests are at the
    partner at once (the partner answers only once all four are in)."""
    inside: list[str] = []
    all_in = asyncio.Event()

    async def partner(request: httpx.Request) -> httpx.Response:
        inside.append(request.headers["webhook-id"])
        if len(inside) == 4:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 5)
        return httpx.Response(200)

    kafka = HeldProducer()
    settled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), ProducerAudit(kafka.send))
        for i in range(4):
            (d,) = navapp_deliveries(
                alert("create", 1, alert_id=f"U{i}:F1:approaching", vehicle_id=f"U{i}"))
            hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
        await turns()
        assert kafka.statuses() == ["sending"] * 4  # all four began before any record is in
        kafka.ack()
        await asyncio.wait_for(all_in.wait(), 5)
        await turns()
        kafka.ack()
        await asyncio.wait_for(hub.drain(), 5)
    assert settled == ["delivered"] * 4


async def test_a_superseded_version_settles_once_its_record_is_durable() -> None:
    kafka = HeldProducer()
    settled: list[tuple[int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), ProducerAudit(kafka.send))
        hub.hold()  # both wait in the mailbox: v2 takes v1's place
        for d in navapp_deliveries(alert("create", 1), alert("update", 2)):
            hub.submit(d, lambda d, how, _last, _maybe: settled.append((d.version, how)))
        assert kafka.statuses() == ["superseded"] and settled == []
        kafka.ack()
        await turns()
        assert settled == [(1, "superseded")]
        hub.release()
        for _ in range(3):
            await turns()
            kafka.ack()
        await asyncio.wait_for(hub.drain(), 5)
    assert settled == [(1, "superseded"), (2, "delivered")]


async def test_a_revoke_does_not_count_off_a_superseded_delivery_that_has_just_settled() -> None:
    """A superseded delivery's settling task had finished (and counted itself off) but stayed
    listed until its done-callback ran on the next turn; a revoke in that turn cancelled and
    counted it again: the hub looked idle with another alert still waiting (``drain`` at
    shutdown then waited its whole time, and pruning, which runs at idle, stopped)."""
    kafka = HeldProducer()
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    async with client:
        hub = fake_hub(client, None, FakeTime(T0), ProducerAudit(kafka.send))
        hub.hold()
        other = alert("create", 1, alert_id="U9:F1:approaching", vehicle_id="U9")
        hub.submit(navapp_deliveries(other)[0])  # waits (held) through the revoke
        mine = navapp_deliveries(alert("create", 1), alert("update", 2))
        for d in mine:
            hub.submit(d)  # v1 superseded by v2: its record waits for Kafka
        worker = hub.workers["navapp"]
        (settling,) = list(worker._settling)
        kafka.ack()
        for _ in range(100):  # to the turn it finishes in, not one more (asyncio.wait would)
            if settling.done():
                break
            await asyncio.sleep(0)
        # finished, its done-callback not run yet
        assert settling.done() and settling in worker._settling
        await worker.revoke(lambda aid: aid == mine[0].alert_id)
        assert worker._outstanding == 1 and not worker._idle.is_set()  # "other" still waits
        await hub.stop()


async def test_an_alert_that_expires_while_its_sending_record_waits_for_kafka_is_not_sent() -> None:
    """The expiry was looked at before the wait for Kafka and not after: the attempt went with
    no time left (a stale alert sent as live, or a timeout the breaker counted against a
    healthy partner, holding the next live alert behind its probe)."""
    kafka, memory, got = HeldProducer(), MemoryAudit(), []

    async def partner(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        return httpx.Response(200)

    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, fake, TeeAudit(ProducerAudit(kafka.send), memory))
        for i in range(3):  # three alerts near their end
            (d,) = navapp_deliveries(alert("create", 1, alert_id=f"U{i}:F1:approaching",
                                           vehicle_id=f"U{i}", ttl_s=2))
            hub.submit(d)
        for _ in range(30):
            await asyncio.sleep(0)
        fake.now += timedelta(seconds=5)  # Kafka took 5 s: they expired meanwhile
        kafka.ack()
        for _ in range(60):
            await asyncio.sleep(0)
        worker = hub.workers["navapp"]
        assert got == [] and worker.stats.failed_attempts == 0
        assert sorted(r.status for r in memory.records) == ["expired"] * 3 + ["sending"] * 3
        await hub.stop()


async def test_a_record_kafka_never_answers_stops_the_worker_rather_than_every_delivery() -> None:
    """A record whose future is never resolved (the producer's send queue died) held every
    delivery waiting for good; past ``answer_within_s`` it counts as lost."""
    kafka = HeldProducer()
    audit = ProducerAudit(kafka.send, answer_within_s=0.05)
    audit.write(AuditRecord(at=T0, partner="navapp", alert_id="a", version=1, action="create",
                            status="sending"))
    wait = audit.barrier()
    assert wait is not None
    with pytest.raises(AuditLost, match=r"no answer from Kafka in 0\.05 s"):
        await wait
    with pytest.raises(AuditLost):  # and every later write: nothing may go after a loss
        audit.write(AuditRecord(at=T0, partner="navapp", alert_id="a", version=2,
                                action="update", status="sending"))


def test_a_record_the_kafka_sink_refuses_still_reaches_the_file_and_the_metrics() -> None:
    """The Kafka sink comes first in the worker's tee: a record it refused at once (a stopped
    producer) raised before the file and the metrics had it, so the local log lost the outcome
    of a request the partner did get."""

    class Refusing:
        def write(self, record: AuditRecord) -> None:
            raise AuditLost("an audit record was not produced: producer stopped")

    memory = MemoryAudit()
    record = AuditRecord(at=T0, partner="navapp", alert_id="ev1", version=1, action="create",
                         status="delivered")
    with pytest.raises(AuditLost, match="producer stopped"):
        TeeAudit(Refusing(), memory).write(record)
    assert memory.records == [record]


def test_a_record_the_producer_refuses_at_once_raises_at_write() -> None:
    """A producer that answers a record with a failed future at once (stopped, or refusing
    it): the write raised nothing, so a feed response went out unrecorded."""

    async def run() -> None:
        def refuse(key: bytes, value: bytes) -> asyncio.Future[object]:
            fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            fut.set_exception(RuntimeError("producer stopped"))
            return fut

        record = AuditRecord(at=T0, partner="navapp", alert_id="", version=0, action="feed",
                             status="feed_served")
        with pytest.raises(AuditLost, match="producer stopped"):
            ProducerAudit(refuse).write(record)

    asyncio.run(run())


async def test_a_barrier_resumes_its_delivery_one_loop_turn_after_kafka_answers() -> None:
    """Each delivery waits on a barrier before its request and before it settles; every loop
    turn between Kafka's answer and the delivery going on is a wait of a whole turn of a busy
    worker's loop (wait_for over shield took three)."""
    kafka = HeldProducer()
    audit = ProducerAudit(kafka.send)
    audit.write(AuditRecord(at=T0, partner="navapp", alert_id="a", version=1, action="create",
                            status="sending"))
    wait = audit.barrier()
    assert wait is not None
    waiting = asyncio.ensure_future(wait)
    await turns(3)
    assert not waiting.done()
    kafka.futures[0].set_result(None)
    n = 0
    while not waiting.done():
        await asyncio.sleep(0)
        n += 1
    assert n <= 2, n  # the answer's callback, then the waiting task
    waiting.result()  # no error: the record is in Kafka


async def test_a_barrier_whose_wait_never_starts_leaves_no_timer_behind() -> None:
    """A delivery task cancelled before its first step never runs the wait: its timer must
    not outlive it (it would fail the waiter later, an error nobody retrieves)."""
    kafka = HeldProducer()
    audit = ProducerAudit(kafka.send, answer_within_s=0.01)
    audit.write(AuditRecord(at=T0, partner="navapp", alert_id="a", version=1, action="create",
                            status="sending"))
    wait = audit.barrier()
    assert inspect.iscoroutine(wait)
    wait.close()  # never awaited
    await asyncio.sleep(0.05)
    assert not audit._waiters[0][2].done() and audit.lost is None


async def test_an_attempt_held_back_while_its_sending_record_went_out_is_marked_not_sent() -> None:
    """v2 comes while v1's ``sending`` record waits for Kafka: v1 is not sent, its record says
    so (``not_sent``), and the transparency report counts it as no possible receipt (it told
    the public a restart or a fault had cut such sends off; an operator review)."""
    got: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(request.headers["webhook-id"])
        return httpx.Response(200)

    kafka = HeldProducer()
    memory = MemoryAudit()
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), TeeAudit(ProducerAudit(kafka.send), memory))
        v1, v2 = navapp_deliveries(alert("create", 1), alert("update", 2))
        hub.submit(v1)
        await turns()
        assert kafka.statuses() == ["sending"]
        hub.submit(v2)  # comes while v1's record is on its way
        for _ in range(4):
            kafka.ack()
            await turns()
        await asyncio.wait_for(hub.drain(), 5)
    assert got == [v2.message_id]
    held = [r for r in memory.records if r.version == 1 and r.status == "superseded"]
    assert len(held) == 1 and held[0].not_sent and held[0].attempt == 1
    nav = {r.partner.id: r for r in build_reports(CONFIG, memory.records)}["navapp"]
    assert nav.messages_uncertain == 0
