"""Delivery against a partner that rate-limits or stays down, through the worker: a
``Retry-After`` holds though a request sent before it is answered 200 after it; the worker's
memory stays bounded while a cancel is owed through a long outage. The same worker, clock and
``httpx.MockTransport`` as ``test_delivery`` (``factory.fake_hub``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import timedelta

import httpx

from adapters.audit import MemoryAudit
from adapters.fanout import LastSent
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


async def test_a_request_let_go_before_a_429_waits_for_the_probe_if_it_has_not_gone() -> None:
    """A and B are let go at once (the breaker closed); B's ``sending`` record is durable only
    once A's answer is back: 429, Retry-After: 60. B then went 0.25 s after it, counted as the
    probe (the breaker's opening was read as it went), and its 200 closed the breaker: C, an
    alert that came after, went at once too. Now B waits for the probe, as C does."""
    a, b, c = (navapp_deliveries(alert("create", 1, alert_id=f"U{i}:F1:approaching",
                                       vehicle_id=f"U{i}", ttl_s=3600))[0] for i in range(3))
    fake = FakeTime(T0)
    calls: list[tuple[float, str, int]] = []
    b_writing, limited = asyncio.Event(), asyncio.Event()

    class SlowKafka(MemoryAudit):
        """B's first ``sending`` record is durable only once A's 429 is back."""

        def barrier(self) -> Awaitable[None] | None:
            last = self.records[-1]
            if (last.status == "sending" and last.alert_id == b.view.alert_id
                    and not limited.is_set()):
                b_writing.set()
                return limited.wait()
            return None

    who_of = {a.view.alert_id: "A", b.view.alert_id: "B", c.view.alert_id: "C"}

    async def partner(request: httpx.Request) -> httpx.Response:
        who = who_of[json.loads(request.content)["data"]["alert_id"]]
        if who == "A" and not limited.is_set():
            await b_writing.wait()  # B has its permit and waits for Kafka
            calls.append(((fake.now - T0).total_seconds(), who, 429))
            limited.set()
            return httpx.Response(429, headers={"Retry-After": "60"})
        calls.append(((fake.now - T0).total_seconds(), who, 200))
        return httpx.Response(200)

    audit = SlowKafka()
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, fake, audit)
        async with hub:
            hub.submit(a)
            hub.submit(b)
            await limited.wait()
            hub.submit(c)  # after the 429
    assert [who for t, who, _ in calls if t < 60] == ["A"]
    assert sorted(calls) == [(0.0, "A", 429), (60.0, "A", 200), (60.0, "B", 200),
                             (60.0, "C", 200)]
    held = [(r.status, r.not_sent) for r in audit.records if r.alert_id == b.view.alert_id]
    assert held[:3] == [("sending", False), ("failed", True), ("sending", False)]


async def test_memory_stays_bounded_while_a_cancel_is_owed_through_an_outage() -> None:
    """What the partner received of an alert was forgotten only once nothing was outstanding:
    a cancel owed through an outage (retried until the partner takes it) kept an entry for
    every alert life of it (301 after 2.5 h of a 60 s alert every 30 s). Now only those not
    yet long expired, and those still being sent, are kept."""
    fake = FakeTime(T0)
    create, cancel = navapp_deliveries(alert("create", 1, alert_id="A:F:approaching"),
                                       alert("cancel", 2, alert_id="A:F:approaching"))
    down = httpx.MockTransport(lambda r: httpx.Response(503))
    async with httpx.AsyncClient(transport=down) as client:
        hub = fake_hub(client, None, fake, MemoryAudit())
        # the partner had A's create before the outage: its cancel is owed, retried for ever
        hub.submit(cancel, delivered=LastSent(1, T0, create.message_id, T0, T0))
        w = hub.worker("navapp")
        for i in range(100):  # an alert every 30 s for 50 min, each live for 60 s
            now = fake.now
            d, = navapp_deliveries(alert("create", 1, alert_id=f"U{i}:F:approaching",
                                         vehicle_id=f"U{i}", at=now, started_at=now))
            hub.submit(d)
            for _ in range(100_000):  # the retries' sleeps move the fake clock on
                if fake.now >= now + timedelta(seconds=30):
                    break
                await asyncio.sleep(0)
        kept = set(w._forget_at)
        assert cancel.mailbox in w.active and cancel.mailbox in kept  # still being sent
        in_use = set(w.active) | set(w.waiting)
        # forgotten at the next settle after its time (here one every 30 s), if not in use
        due = fake.now - timedelta(seconds=30)
        assert {k for k in kept if w._forget_at[k] <= due} <= in_use
        assert len(kept) <= 14, len(kept)  # the lives within 6 min (expiry + CANCEL_TTL), A
        assert set(w.delivered) <= kept and w._live <= kept
        assert len(w._forget_heap) <= len(kept) + 1
        await hub.stop()
