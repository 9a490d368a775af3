"""A version that reaches a partner's mailbox after a higher one of its alert (an ``alerts``
topic out of order, a late redelivery) never goes after it (docs/partners.md, "Order per
alert"): not while the higher one is being sent either."""

from __future__ import annotations

import asyncio
import json

import httpx

from adapters.audit import MemoryAudit
from tests.unit.adapters.factory import T0, FakeTime, alert, fake_hub, navapp_deliveries


async def test_an_older_version_submitted_while_a_higher_one_is_sent_never_goes() -> None:
    """The cancel v3 is being sent (the partner slow to answer) when update v2 of the alert
    comes: v2 waited in the mailbox and went next, a live zone after the cancel."""
    create, update, cancel = navapp_deliveries(
        alert("create", 1), alert("update", 2), alert("cancel", 3))
    got: list[tuple[int, str]] = []
    cancel_arrived, answer = asyncio.Event(), asyncio.Event()

    async def partner(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        got.append((body["data"]["version"], body["type"]))
        if body["type"] == "alert.cancelled":
            cancel_arrived.set()
            await answer.wait()
        return httpx.Response(200)

    audit = MemoryAudit()
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, FakeTime(T0), audit)
        async with hub:
            hub.submit(create)
            await hub.drain()
            hub.submit(cancel)
            await cancel_arrived.wait()
            hub.submit(update)  # older than the cancel under way
            answer.set()
    assert got == [(1, "alert.created"), (3, "alert.cancelled")]
    assert [(r.version, r.status) for r in audit.records if r.version == 2] == [
        (2, "superseded")]
