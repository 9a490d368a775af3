"""Delivery: the pure retry decision, the breaker, and the per-partner worker against
``httpx.MockTransport`` with an injected clock and sleep (no waiting, no timing asserts)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from adapters.audit import JsonlAudit, read_audit
from adapters.config import load_partners
from adapters.delivery import (
    Breaker,
    DeadLetter,
    DeliveryHub,
    Disable,
    GiveUp,
    Outcome,
    Retry,
    RetryPolicy,
    next_attempt,
    parse_retry_after,
)
from adapters.fanout import PartnerSet, fan_out
from broker.failure import StopWork
from tests.unit.adapters.factory import T0, alert

SAMPLE = Path(__file__).resolve().parents[3] / "fixtures" / "partners.toml"
CONFIG = load_partners(SAMPLE, env={}, allow_dev_defaults=True)
PARTNERS = PartnerSet.from_config(CONFIG)
EXPIRES = T0 + timedelta(seconds=60)


# ---- next_attempt ---------------------------------------------------------------------------

def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    low = [next_attempt(Outcome(500), a, T0, expires_at=EXPIRES, rand=lambda: 0.0)
           for a in (1, 2, 3)]
    high = [next_attempt(Outcome(500), a, T0, expires_at=EXPIRES, rand=lambda: 1.0)
            for a in (1, 2, 3)]
    assert [(r.at - T0).total_seconds() for r in low] == [0.25, 0.5, 1.0]
    assert [(r.at - T0).total_seconds() for r in high] == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_on_429_and_503(status: int) -> None:
    decision = next_attempt(Outcome(status, retry_after_s=7), 1, T0, expires_at=EXPIRES)
    assert isinstance(decision, Retry) and decision.at == T0 + timedelta(seconds=7)


def test_410_disables_and_3xx_is_a_failure() -> None:
    assert isinstance(next_attempt(Outcome(410), 1, T0, expires_at=EXPIRES), Disable)
    assert isinstance(next_attempt(Outcome(302), 1, T0, expires_at=EXPIRES), Retry)


def test_give_up_when_exhausted_or_when_the_alert_would_expire_first() -> None:
    exhausted = next_attempt(Outcome(500), 3, T0, expires_at=EXPIRES,
                             policy=RetryPolicy(max_attempts=3))
    assert isinstance(exhausted, GiveUp) and not exhausted.expired
    late = next_attempt(Outcome(429, retry_after_s=90), 1, T0, expires_at=EXPIRES)
    assert isinstance(late, GiveUp) and late.expired


def test_success_is_not_a_retry_decision() -> None:
    with pytest.raises(ValueError):
        next_attempt(Outcome(200), 1, T0, expires_at=EXPIRES)


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("5", T0) == 5.0
    date = (T0 + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(date, T0) == pytest.approx(29.88, abs=0.2)
    assert parse_retry_after("soon", T0) is None and parse_retry_after(None, T0) is None


def test_breaker_opens_after_threshold_half_opens_after_cooldown() -> None:
    b = Breaker(threshold=2, cooldown_s=10)
    b = b.record(False, T0)
    assert b.allows(T0)
    b = b.record(False, T0)
    assert not b.allows(T0 + timedelta(seconds=9))
    assert b.allows(T0 + timedelta(seconds=10))  # half-open: one trial
    reopened = b.record(False, T0 + timedelta(seconds=10))
    assert not reopened.allows(T0 + timedelta(seconds=19))
    assert b.record(True, T0 + timedelta(seconds=10)).allows(T0 + timedelta(seconds=10))


# ---- the worker -------------------------------------------------------------------------------

class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)  # yield, as a real sleep does


def navapp_deliveries(*events):
    state: dict = {}
    out = []
    for ev in events:
        state, ds = fan_out(ev, PARTNERS, state, ev.ts)
        out += [d for d in ds if d.partner_id == "navapp"]
    return out


async def run_hub(handler, deliveries, tmp_path: Path, start: datetime = T0, **kw):
    fake = FakeTime(start)
    audit = JsonlAudit(tmp_path / "audit.jsonl")
    letters: list[DeadLetter] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with client:
        hub = DeliveryHub(PARTNERS, client, audit, letters.append, clock=fake.clock,
                          sleep=fake.sleep, rand=lambda: 0.5, **kw)
        async with hub:
            for d in deliveries:
                hub.submit(d)
    return hub, list(read_audit(audit.path)), letters, fake


async def test_failing_twice_then_ok_delivers_once_with_the_same_webhook_id(tmp_path) -> None:
    seen: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500 if len(seen) <= 2 else 200)

    (d,) = navapp_deliveries(alert("create", 1))
    hub, records, letters, _fake = await run_hub(partner, [d], tmp_path)
    assert len(seen) == 3 and letters == []
    assert {r.headers["webhook-id"] for r in seen} == {d.message_id}
    stamps = [int(r.headers["webhook-timestamp"]) for r in seen]  # re-signed per attempt
    expected = [T0, T0 + timedelta(seconds=0.375), T0 + timedelta(seconds=1.125)]
    assert stamps == [int(t.timestamp()) for t in expected]
    assert all(r.content == d.payload.body for r in seen)
    assert [r.status for r in records] == ["failed", "failed", "delivered"]
    assert records[-1].fields == d.view.fields_sent and records[-1].latency_ms is not None
    assert hub.stats()["navapp"].delivered == 1


async def test_429_waits_for_retry_after(tmp_path) -> None:
    calls = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        return httpx.Response(204)

    _, records, _, fake = await run_hub(partner, navapp_deliveries(alert()), tmp_path)
    assert fake.sleeps == [7.0]
    assert [r.status for r in records] == ["failed", "delivered"]


async def test_410_disables_the_partner_and_later_deliveries_go_to_the_dlq(tmp_path) -> None:
    calls = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(410)

    ds = navapp_deliveries(alert("create", 1), alert("update", 2), alert("cancel", 3))
    hub, _records, letters, _ = await run_hub(partner, ds, tmp_path)
    assert len(calls) == 1 and hub.stats()["navapp"].disabled
    assert [ltr.version for ltr in letters] == [1, 2, 3]
    assert "410" in letters[0].reason and "disabled" in letters[1].reason


async def test_exhausted_retries_go_to_the_dead_letter_sink_with_the_reason(tmp_path) -> None:
    def partner(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://127.0.0.1:1/elsewhere"})

    ds = navapp_deliveries(alert(ttl_s=3600))
    _hub, records, letters, _ = await run_hub(partner, ds, tmp_path)
    assert len(letters) == 1 and "exhausted after 6 attempts, last HTTP 302" in letters[0].reason
    assert letters[0].body == ds[0].payload.body
    assert [r.status for r in records].count("failed") == 6


async def test_an_expired_alert_is_counted_not_sent(tmp_path) -> None:
    calls = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    ds = navapp_deliveries(alert())
    hub, records, _letters, _ = await run_hub(partner, ds, tmp_path,
                                             start=T0 + timedelta(minutes=5))
    assert calls == [] and hub.stats()["navapp"].expired == 1
    assert [r.status for r in records] == ["expired"]


async def test_an_open_breaker_holds_deliveries_until_cooldown(tmp_path) -> None:
    calls = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500 if len(calls) <= 2 else 200)

    ds = navapp_deliveries(alert(ttl_s=3600))
    _, records, _, fake = await run_hub(partner, ds, tmp_path,
                                        breaker=Breaker(threshold=2, cooldown_s=20))
    assert 20.0 in [round(s, 6) for s in fake.sleeps] or sum(fake.sleeps) >= 20
    assert records[-1].status == "delivered" and len(calls) == 3


async def test_secrets_and_tokens_never_reach_audit_dlq_stats_or_logs(tmp_path, caplog) -> None:
    secrets = [p.secret.reveal() for p in CONFIG.partners if p.secret]
    secrets += [p.feed_token.reveal() for p in CONFIG.partners if p.feed_token]
    secrets.append(CONFIG.pseudonym_key.reveal())
    signatures: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        signatures.append(request.headers["webhook-signature"].split(",", 1)[1])
        if len(signatures) == 1:  # an error whose text carries a secret must be scrubbed
            raise httpx.ConnectError(f"refused, key={secrets[0]}", request=request)
        return httpx.Response(410)

    caplog.set_level(logging.DEBUG)
    ds = navapp_deliveries(alert("create", 1), alert("update", 2, at=T0 + timedelta(seconds=5)))
    hub, records, letters, _ = await run_hub(partner, ds, tmp_path)
    assert records and letters
    dumped = [(tmp_path / "audit.jsonl").read_text(), caplog.text, repr(hub.stats()),
              repr(letters), repr(CONFIG)]
    for text in dumped:
        for s in secrets + signatures:
            assert s not in text
    assert "***" in (tmp_path / "audit.jsonl").read_text()  # the scrubbed error text


async def test_a_stuck_partner_does_not_hold_up_another(tmp_path) -> None:
    """navapp's worker sleeps on retries while county's is delivered: separate queues."""
    order: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        order.append(request.url.path)
        return httpx.Response(503 if request.url.path.endswith("navapp") else 200,
                              headers={"Retry-After": "1"})

    state: dict = {}
    ds = []
    for ev in (alert("create", 1), alert("cancel", 2, at=T0 + timedelta(seconds=20))):
        state, more = fan_out(ev, PARTNERS, state, ev.ts)
        ds += more
    hub, _records, _, _ = await run_hub(handler, ds, tmp_path)
    assert hub.stats()["county"].delivered == 2
    assert order.index("/hooks/county") < 3


# ---- a delivery that raises goes through the one failure policy ------------------------------

async def test_a_delivery_bug_is_dead_lettered_with_its_reason_and_the_queue_goes_on(
    tmp_path,
) -> None:
    calls: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise ZeroDivisionError("a bug in our code, not the partner's answer")
        return httpx.Response(200)

    ds = navapp_deliveries(alert("create", 1), alert("update", 2))
    settled: list[str] = []
    fake = FakeTime(T0)
    letters: list[DeadLetter] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = DeliveryHub(PARTNERS, client, JsonlAudit(tmp_path / "a.jsonl"), letters.append,
                          clock=fake.clock, sleep=fake.sleep)
        async with hub:
            for d in ds:
                hub.submit(d, lambda d, how: settled.append(how))
    assert settled == ["dead_letter", "delivered"]
    assert len(letters) == 1 and letters[0].version == 1
    assert letters[0].reason.startswith("delivery_error: ZeroDivisionError")
    assert letters[0].body == ds[0].payload.body  # the record can be re-driven


async def test_an_outage_inside_delivery_stops_without_settling(tmp_path) -> None:
    def partner(request: httpx.Request) -> httpx.Response:
        raise PermissionError("the audit disk went read-only")  # an OSError: a part is down

    ds = navapp_deliveries(alert("create", 1), alert("update", 2))
    settled: list[str] = []
    stops: list[StopWork] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        fake = FakeTime(T0)
        hub = DeliveryHub(PARTNERS, client, JsonlAudit(tmp_path / "a.jsonl"), lambda _: None,
                          on_stop=stops.append, clock=fake.clock, sleep=fake.sleep)
        for d in ds:
            hub.submit(d, lambda d, how: settled.append(how))
        with pytest.raises(StopWork, match="delivery failed"):
            await hub.drain()
        await hub.stop()
    assert settled == []  # nothing settled, so nothing acknowledged: a restart sends both
    assert len(stops) == 1 and stops[0].failure.site == "delivery"
