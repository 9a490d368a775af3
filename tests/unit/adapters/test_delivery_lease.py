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
            hub.submit(d, lambda d, how, _last: settled.append(how))
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
