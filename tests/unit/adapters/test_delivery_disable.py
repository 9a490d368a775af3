"""A 410 Gone ends the requests to the partner: an alert that waited for the breaker's probe, or
for its ``sending`` record to be durable, while another alert's attempt was answered 410 is
dead-lettered without a request of its own (docs/partners.md, "What is retried")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import httpx

from adapters.audit import AuditRecord, MemoryAudit
from adapters.dead_letters import DeadLetter
from adapters.fanout import Delivery
from adapters.retry import Breaker
from tests.unit.adapters.factory import (
    T0,
    FakeTime,
    alert,
    fake_hub,
    navapp_deliveries,
    run_hub,
)


def units(n: int) -> list[Delivery]:
    alerts = [alert("create", 1, alert_id=f"U{i}:F1:approaching", vehicle_id=f"U{i}",
                    ttl_s=3600) for i in range(n)]
    return [d for a in alerts for d in navapp_deliveries(a)]


async def test_no_request_after_a_410_from_alerts_that_waited_for_the_probe(tmp_path) -> None:
    """Three 503s open the breaker; the alerts behind it wait for the one probe, which is
    answered 410. The next waiting alert was given the probe after it and sent a request of
    its own to the partner that had asked us to stop (and disabled it a second time)."""
    answers: list[int] = []
    disabled: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        answers.append(503 if len(answers) < 3 else 410)
        return httpx.Response(answers[-1])

    ds = units(6)
    _hub, records, letters, _ = await run_hub(
        partner, ds, tmp_path, fake=FakeTime(T0), breaker=Breaker(threshold=3),
        on_disable=lambda pid, why: disabled.append(pid),
    )
    assert answers == [503, 503, 503, 410]
    assert disabled == ["navapp"]
    assert sorted(ltr.message_id for ltr in letters) == sorted(d.message_id for d in ds)
    assert [r.status for r in records].count("sending") == 4


class GatedAudit(MemoryAudit):
    """Records are durable at once, except the ``sending`` record of ``gated``'s attempt,
    which is durable once ``gate`` is set (Kafka slow to answer it); ``waiting`` is set once
    that attempt waits for it."""

    def __init__(self, gated: str) -> None:
        super().__init__()
        self.gated = gated
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    def barrier(self) -> Awaitable[None] | None:
        last: AuditRecord = self.records[-1]
        if last.status == "sending" and last.message_id == self.gated and not self.gate.is_set():
            self.waiting.set()
            return self.gate.wait()
        return None


async def test_no_request_after_a_410_that_came_while_its_sending_record_went_out() -> None:
    """Two alerts at once; the first's request is answered 410 once the second's ``sending``
    record waits for Kafka, which has it only after that (the partner disabled meanwhile): the
    second is held back, not sent, its record marked ``not_sent``, and dead-lettered."""
    first, second = units(2)
    audit = GatedAudit(second.message_id)
    requests: list[str] = []
    letters: list[DeadLetter] = []

    async def partner(request: httpx.Request) -> httpx.Response:
        requests.append(request.headers["webhook-id"])
        await audit.waiting.wait()
        return httpx.Response(410)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), audit, letters.append,
                       on_disable=lambda pid, why: audit.gate.set())
        async with hub:
            hub.submit(first)
            hub.submit(second)
    assert requests == [first.message_id]
    assert [ltr.message_id for ltr in letters] == [first.message_id, second.message_id]
    held = [r for r in audit.records if r.message_id == second.message_id]
    assert [(r.status, r.not_sent) for r in held] == [
        ("sending", False), ("failed", True), ("dead_letter", False)]
