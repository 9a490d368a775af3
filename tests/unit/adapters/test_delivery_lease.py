"""Delivery while the shell may not act for its alerts (``may_send`` false: a worker resumed
after a stall past its group session, whose partitions another worker may own by now, and
which has sent newer versions): no attempt starts, not even a retry, until it may again, and a
revoke then takes the waiting versions away unsent (``make faults``, ``worker_freeze``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.unit.adapters.factory import T0, FakeTime, alert, fake_hub, navapp_deliveries


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_nothing_goes_while_the_lease_is_lapsed_and_a_revoke_drops_it(
    tmp_path: Path,
) -> None:
    fake = FakeTime(T0)
    sent: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        return httpx.Response(200)

    settled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake, may_send=lambda: False)
        for d in navapp_deliveries(alert(ttl_s=3600)):
            hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
        await asyncio.sleep(0.2)  # several rechecks
        assert sent == []
        await hub.revoke(lambda aid: True)  # the rebalance the stall ended in
        await asyncio.wait_for(hub.drain(), 5)
    assert sent == [] and settled == []  # the new owner sends from the durable record


async def test_a_lease_renewed_lets_the_waiting_versions_go(tmp_path: Path) -> None:
    fake = FakeTime(T0)
    sent: list[str] = []
    lease = [False]

    def partner(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake, may_send=lambda: lease[0])
        ds = navapp_deliveries(alert(ttl_s=3600))
        for d in ds:
            hub.submit(d)
        await asyncio.sleep(0.1)
        assert sent == []
        lease[0] = True  # a heartbeat answered: the stall was shorter than the session
        await asyncio.wait_for(hub.drain(), 5)
    assert sent == [d.message_id for d in ds]


async def test_a_retry_waits_for_the_lease_too(tmp_path: Path) -> None:
    """The first attempt fails (503); the lease lapses before the retry: no second attempt
    until it is held again."""
    fake = FakeTime(T0)
    answers = [503, 200]
    sent: list[int] = []
    lease = [True]

    def partner(request: httpx.Request) -> httpx.Response:
        status = answers[len(sent)]
        sent.append(status)
        if status == 503:
            lease[0] = False  # frozen right after: the retry comes after the thaw
        return httpx.Response(status)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake, may_send=lambda: lease[0])
        for d in navapp_deliveries(alert(ttl_s=3600)):
            hub.submit(d)
        await _turns()
        await asyncio.sleep(0.15)
        assert sent == [503]
        lease[0] = True
        await asyncio.wait_for(hub.drain(), 5)
    assert sent == [503, 200]


async def test_a_probe_after_the_lease_lapsed_is_not_sent(tmp_path: Path) -> None:
    """A delivery waiting for its partner's circuit-breaker probe when the worker froze: on
    thaw the probe is due at once, and the lease was looked at only before the wait (a stale
    version went out; the new owner's newer one could already be there)."""
    fake = FakeTime(T0)
    sent: list[tuple[str, bool]] = []
    lease = [True]

    def partner(request: httpx.Request) -> httpx.Response:
        sent.append((request.headers["webhook-id"], lease[0]))
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "5"})  # opens the breaker
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake, may_send=lambda: lease[0])
        a = navapp_deliveries(alert(ttl_s=3600, alert_id="U1:F1:approaching", vehicle_id="U1"))
        b = navapp_deliveries(alert(ttl_s=3600, alert_id="U2:F1:approaching", vehicle_id="U2"))
        for d in a:
            hub.submit(d)
        for _ in range(50):
            await asyncio.sleep(0)
            if sent:
                break
        for _ in range(5):
            await asyncio.sleep(0)  # the 429 recorded: the breaker is open
        for d in b:
            hub.submit(d)
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # B passed may_send and waits in permit for the probe
        lease[0] = False  # frozen past the session now
        await asyncio.sleep(0.3)
        await hub.revoke(lambda aid: True)
    assert [ok for _, ok in sent[1:]] == [], sent  # nothing may go with the lease lapsed


async def test_nothing_is_sent_after_stop_when_the_lease_comes_back(tmp_path: Path) -> None:
    """The hub stopped at shutdown while the lease was lapsed; a heartbeat answered then made
    its recheck timer start deliveries on a client already closed."""
    fake = FakeTime(T0)
    sent: list[str] = []
    lease = [False]

    def partner(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake, may_send=lambda: lease[0])
        for d in navapp_deliveries(alert(ttl_s=3600)):
            hub.submit(d)
        await asyncio.sleep(0.1)
        await hub.stop()  # the shutdown: drain timed out, the hub stopped
        lease[0] = True  # a heartbeat answered during the shutdown
        await asyncio.sleep(0.2)
    assert sent == []


async def test_a_lease_lapsed_while_the_sending_record_went_out_sends_nothing() -> None:
    """The audit's ``sending`` record is made durable (Kafka) between the lease's last look and
    the request: a stall then is looked at again; the attempt is recorded as not sent."""
    from adapters.audit import MemoryAudit

    fake = FakeTime(T0)
    sent: list[str] = []
    lease = [True]

    class LapsingAudit(MemoryAudit):
        def write(self, record) -> None:  # type: ignore[no-untyped-def]
            super().write(record)
            if record.status == "sending":
                lease[0] = False  # frozen past the session while the record was produced

    def partner(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        return httpx.Response(200)

    audit = LapsingAudit()
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, fake, audit, may_send=lambda: lease[0])
        for d in navapp_deliveries(alert(ttl_s=3600)):
            hub.submit(d)
        await _turns()
        await hub.revoke(lambda aid: True)
    assert sent == []
    assert [(r.status, r.detail, r.not_sent) for r in audit.records] == [
        ("sending", "", False), ("failed", "not sent: the worker's lease on the alert lapsed", True)
    ]
