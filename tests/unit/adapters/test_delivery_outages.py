"""Delivery against a partner that rate-limits or stays down, through the worker: a
``Retry-After`` holds though a request sent before it is answered 200 after it. The same
worker, clock and ``httpx.MockTransport`` as ``test_delivery`` (``factory.fake_hub``)."""

from __future__ import annotations

import asyncio
import json

import httpx

from adapters.audit import MemoryAudit
from tests.unit.adapters.factory import T0, FakeTime, alert, fake_hub, navapp_deliveries


async def test_a_retry_after_holds_though_an_older_request_is_answered_200_after_it() -> None:
    """B's request goes first and its answer is slow; A's is answered 429, Retry-After: 60,
    then B's 200 comes in. It closed the breaker (the partner "came back") and woke A's retry,
    which went 0.25 s after the 429: with 16 requests in flight against a rate-limited partner,
    repeated bursts that ignored its Retry-After."""
    a, = navapp_deliveries(alert("create", 1, alert_id="U0:F1:approaching", vehicle_id="U0",
                                 ttl_s=3600))
    b, = navapp_deliveries(alert("create", 1, alert_id="U1:F1:approaching", vehicle_id="U1",
                                 ttl_s=3600))
    fake = FakeTime(T0)
    calls: list[tuple[float, str, int]] = []
    limited = asyncio.Event()

    async def partner(request: httpx.Request) -> httpx.Response:
        who = "A" if json.loads(request.content)["data"]["alert_id"] == a.view.alert_id else "B"
        t = (fake.now - T0).total_seconds()
        if who == "B":  # accepted before the partner began to rate-limit; answered slowly
            await limited.wait()
        elif not limited.is_set():
            limited.set()
            calls.append((t, who, 429))
            return httpx.Response(429, headers={"Retry-After": "60"})
        calls.append((t, who, 200))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, fake, MemoryAudit())
        async with hub:
            hub.submit(b)
            hub.submit(a)
    assert calls == [(0.0, "A", 429), (0.0, "B", 200), (60.0, "A", 200)]
