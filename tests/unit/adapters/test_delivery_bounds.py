"""Delivery under a partner that hangs and a throttled update beside an attempt in flight:
each attempt is bounded as a whole (httpx's timeout is per socket read), and a throttled update
takes the place of a version not yet delivered, being retried or not. The same worker, clock and
``httpx.MockTransport`` as ``test_delivery`` (``factory.fake_hub``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta

import httpx

from adapters.audit import JsonlAudit, read_audit
from tests.unit.adapters.factory import T0, FakeTime, alert, fake_hub, navapp_deliveries

# ---- an attempt is bounded as a whole, not per socket operation --------------------------------

def _never_answers_first(got: list[tuple[int, str]]):  # type: ignore[no-untyped-def]
    """A partner whose first request never gets an answer (as one trickling its headers: the
    mock transport has no per-read timeout either); later ones are accepted."""
    calls = [0]

    async def partner(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] == 1:
            await asyncio.Event().wait()
        body = json.loads(request.content)
        got.append((body["data"]["version"], body["type"]))
        return httpx.Response(200)

    return partner


async def test_an_answer_that_never_completes_times_out_is_retried_and_a_newer_version_goes(
    tmp_path,
) -> None:
    """v1's attempt hangs: it fails at the partner's timeout_s (a ReadTimeout, like httpx's
    own) instead of holding the alert forever, and v2, which came meanwhile, replaces it."""
    got: list[tuple[int, str]] = []
    ds = navapp_deliveries(alert("create", 1, ttl_s=3600), alert("update", 2, ttl_s=3600))
    assert not ds[1].replace_only
    settled: list[tuple[int, str]] = []
    fake = FakeTime(T0)
    audit = JsonlAudit(tmp_path / "a.jsonl")
    async with httpx.AsyncClient(transport=httpx.MockTransport(_never_answers_first(got))) as c:
        hub = fake_hub(c, tmp_path, fake, audit)
        worker = hub.worker("navapp")
        worker.partner = replace(worker.partner, timeout_s=0.2)
        hub.submit(ds[0], lambda d, how, _last, _maybe: settled.append((d.version, how)))
        await asyncio.sleep(0)  # v1's attempt is under way
        hub.submit(ds[1], lambda d, how, _last, _maybe: settled.append((d.version, how)))
        await asyncio.wait_for(hub.drain(), 5)
    assert got == [(2, "alert.created")]
    assert settled == [(1, "superseded"), (2, "delivered")]
    v1 = [r for r in read_audit(audit.path) if r.version == 1]
    assert [r.status for r in v1] == ["sending", "failed", "superseded"]
    assert v1[1].detail.startswith("error: ReadTimeout: no answer within 0.2 s")


async def test_an_attempt_never_outlives_its_alert(tmp_path) -> None:
    """timeout_s is a minute but the alert expires in 0.2 s: the hung attempt is cut off at
    the expiry and the alert settles as expired."""
    fake = FakeTime(T0)

    async def partner(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    (d,) = navapp_deliveries(alert("create", 1, ttl_s=0.2))
    settled: list[str] = []
    audit = JsonlAudit(tmp_path / "a.jsonl")
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as c:
        hub = fake_hub(c, tmp_path, fake, audit)
        worker = hub.worker("navapp")
        worker.partner = replace(worker.partner, timeout_s=60.0)
        hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
        await asyncio.wait_for(hub.drain(), 5)
    assert settled == ["expired"] and hub.stats()["navapp"].expired == 1
    assert [r.status for r in read_audit(audit.path)] == ["sending", "failed", "expired"]


# ---- a throttled update while an older version is being sent ----------------------------------

async def _throttled_while_sending(first_answer: httpx.Response, *events):  # type: ignore[no-untyped-def]
    """navapp's deliveries of ``events``: the first is sent and held until the rest are
    submitted, then answered ``first_answer``; every later request is accepted. Returns what
    the partner got, (version, type), and how each delivery settled."""
    got: list[tuple[int, str]] = []
    answered = asyncio.Event()
    first = [True]

    async def partner(request: httpx.Request) -> httpx.Response:
        if first[0]:
            first[0] = False
            await answered.wait()
            if first_answer.status_code >= 300:
                return first_answer
        body = json.loads(request.content)
        got.append((body["data"]["version"], body["type"]))
        return httpx.Response(200)

    ds = navapp_deliveries(*events)
    settled: list[tuple[int, str]] = []
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, None, fake)  # audited in memory
        hub.submit(ds[0], lambda d, how, _last, _maybe: settled.append((d.version, how)))
        await asyncio.sleep(0)
        assert ds[0].mailbox in hub.worker("navapp").active  # v1 is under way
        for d in ds[1:]:
            hub.submit(d, lambda d, how, _last, _maybe: settled.append((d.version, how)))
        answered.set()
        await asyncio.wait_for(hub.drain(), 5)
    return ds, got, settled


async def test_a_throttled_update_takes_the_place_of_a_version_being_retried() -> None:
    """The create is refused (503, Retry-After 30) and waits for its retry; the first fix's
    update comes 0.1 s later (throttled): it replaces the create, which is never sent again,
    so the partner's first message is the newer zone, not the older one."""
    ds, got, settled = await _throttled_while_sending(
        httpx.Response(503, headers={"Retry-After": "30"}),
        alert("create", 1, ttl_s=3600),
        alert("update", 2, ttl_s=3600, at=T0 + timedelta(seconds=0.1)),
    )
    assert [(d.version, d.replace_only) for d in ds] == [(1, False), (2, True)]
    assert got == [(2, "alert.created")]
    assert settled == [(1, "superseded"), (2, "delivered")]


async def test_a_throttled_update_costs_no_request_once_the_version_in_flight_is_delivered(
) -> None:
    """Throttled while the create is in flight and then accepted: dropped (the partner has a
    version within the interval). One that took the place of an unthrottled update still goes."""
    ds, got, settled = await _throttled_while_sending(
        httpx.Response(200),
        alert("create", 1, ttl_s=3600),
        alert("update", 2, ttl_s=3600, at=T0 + timedelta(seconds=0.1)),
    )
    assert [d.replace_only for d in ds] == [False, True]
    assert got == [(1, "alert.created")]
    assert sorted(settled) == [(1, "delivered"), (2, "throttled")]

    ds, got, settled = await _throttled_while_sending(
        httpx.Response(200),
        alert("create", 1, ttl_s=3600),
        alert("update", 2, ttl_s=3600, at=T0 + timedelta(seconds=10), started_at=T0),
        alert("update", 3, ttl_s=3600, at=T0 + timedelta(seconds=10.1), started_at=T0),
    )
    assert [d.replace_only for d in ds] == [False, False, True]
    assert got == [(1, "alert.created"), (3, "alert.updated")]
    assert sorted(settled) == [(1, "delivered"), (2, "superseded"), (3, "delivered")]
