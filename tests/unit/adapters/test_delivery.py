"""Delivery: the pure retry decision, the breaker, and the per-partner worker against
``httpx.MockTransport`` with an injected clock and sleep (no waiting, no timing asserts)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

import httpx
import pytest

from adapters.audit import JsonlAudit, MemoryAudit
from adapters.dead_letters import DeadLetter
from adapters.fanout import fan_out
from adapters.hub import DeliveryHub
from adapters.retry import (
    Breaker,
    Disable,
    GiveUp,
    Outcome,
    Reject,
    Retry,
    next_attempt,
    parse_retry_after,
)
from broker.failure import StopWork
from tests.unit.adapters.factory import (
    CONFIG,
    KNOWN,
    PARTNERS,
    T0,
    FakeTime,
    alert,
    fake_hub,
    known_steps,
    navapp_deliveries,
    one_at_a_time,
    run_hub,
)

EXPIRES = T0 + timedelta(seconds=60)


# ---- next_attempt ---------------------------------------------------------------------------

def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    low = [next_attempt(Outcome(500), a, T0, expires_at=EXPIRES, rand=lambda: 0.0)
           for a in (1, 2, 3)]
    high = [next_attempt(Outcome(500), a, T0, expires_at=EXPIRES, rand=lambda: 1.0)
            for a in (1, 2, 3)]
    assert [(r.at - T0).total_seconds() for r in low] == [0.25, 0.5, 1.0]
    assert [(r.at - T0).total_seconds() for r in high] == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
def test_retry_after_is_honoured_on_every_retryable_answer(status: int) -> None:
    decision = next_attempt(Outcome(status, retry_after_s=7), 1, T0, expires_at=EXPIRES)
    assert isinstance(decision, Retry) and decision.at == T0 + timedelta(seconds=7)


@pytest.mark.parametrize("status", [None, 408, 425, 429, 500, 502, 503, 504, 599])
def test_network_errors_408_425_429_and_5xx_are_retried(status: int | None) -> None:
    outcome = Outcome(status, error="ConnectError" if status is None else None)
    assert isinstance(next_attempt(outcome, 1, T0, expires_at=EXPIRES), Retry)


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 413, 422])
def test_any_other_answer_refuses_that_message_only(status: int) -> None:
    decision = next_attempt(Outcome(status), 1, T0, expires_at=EXPIRES)
    assert isinstance(decision, Reject) and f"HTTP {status}" in decision.reason


def test_410_disables_the_partner() -> None:
    assert isinstance(next_attempt(Outcome(410), 1, T0, expires_at=EXPIRES), Disable)


def test_a_live_alert_is_never_given_up_only_an_expiring_one() -> None:
    far = T0 + timedelta(hours=1)
    assert isinstance(next_attempt(Outcome(503), 500, T0, expires_at=far), Retry)  # no limit
    late = next_attempt(Outcome(503), 1, T0, expires_at=T0 + timedelta(seconds=0.1))
    assert isinstance(late, GiveUp) and late.expired


def test_success_is_not_a_retry_decision() -> None:
    with pytest.raises(ValueError):
        next_attempt(Outcome(204), 1, T0, expires_at=EXPIRES)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 12 ", 12.0), ("0", 0.0), ("99999999", 86_400.0),  # capped at a day
     ("²", None), ("1e3", None), ("-1", None), ("1.5", None), ("soon", None), ("", None),
     ("Wed, 25 Nov 2026 14:03:35 GMT", 29.88), ("Wed, 25 Nov 2026 13:00:00 GMT", 0.0)],
)
def test_retry_after_is_parsed_strictly_and_bounded(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header, T0) == seconds


def test_the_breaker_opens_after_threshold_and_probes_each_interval() -> None:
    b = Breaker(threshold=2, probe_interval_s=1.0)
    b = b.record(Outcome(503), T0)
    assert b.closed
    b = b.record(Outcome(None, error="refused"), T0)
    assert not b.allows(T0) and b.allows(T0 + timedelta(seconds=1))
    b = b.record(Outcome(503), T0 + timedelta(seconds=1))  # the probe failed: next in 1 s
    assert b.next_probe == T0 + timedelta(seconds=2)
    assert b.record(Outcome(204), T0 + timedelta(seconds=2)).closed


def test_retry_after_opens_the_breaker_until_then_and_a_refused_message_changes_nothing() -> None:
    b = Breaker().record(Outcome(429, retry_after_s=30), T0)
    assert b.next_probe == T0 + timedelta(seconds=30)
    assert Breaker().record(Outcome(400), T0) == Breaker()  # one bad payload is not an outage
    assert Breaker().record(Outcome(429, retry_after_s=10**6), T0).next_probe == (
        T0 + timedelta(seconds=300)  # bounded
    )


def test_a_success_sent_before_the_breaker_opened_leaves_it_open() -> None:
    """An older request answered 200 after another's 429 (Retry-After: 60) closed the breaker,
    and the partner was called again at once: only a request sent while it is open does."""
    limited = Breaker().record(Outcome(429, retry_after_s=60), T0, sent_in=0)
    assert limited.opened == 1
    stale = limited.record(Outcome(200), T0, sent_in=0)
    assert stale == limited and not stale.allows(T0 + timedelta(seconds=59))
    probe = limited.record(Outcome(204), T0 + timedelta(seconds=60), sent_in=limited.opened)
    assert probe.closed and probe.failures == 0
    # closed and opened again: a request of the first opening is stale in the second
    again = probe.record(Outcome(429, retry_after_s=5), T0 + timedelta(seconds=61), sent_in=1)
    assert again.opened == 2 and not again.record(Outcome(200), T0, sent_in=1).closed
    assert Breaker().record(Outcome(200), T0, sent_in=0).closed  # closed: nothing to reopen


def test_no_failure_brings_the_next_probe_nearer_than_a_retry_after() -> None:
    """An older request's 503 after a 429 (Retry-After: 60) moved the probe to 1 s on."""
    limited = Breaker().record(Outcome(429, retry_after_s=60), T0)
    later = limited.record(Outcome(503), T0 + timedelta(seconds=1))
    assert later.next_probe == T0 + timedelta(seconds=60) and later.opened == 1
    shorter = limited.record(Outcome(429, retry_after_s=5), T0)
    assert shorter.next_probe == T0 + timedelta(seconds=60)
    # a failed probe still moves it on
    assert limited.record(Outcome(503), T0 + timedelta(seconds=60)).next_probe == (
        T0 + timedelta(seconds=61))


# ---- the worker -------------------------------------------------------------------------------

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
    assert len({r.content for r in seen}) == 1  # the same body bytes on every retry
    # each attempt's record is written before it goes, its outcome's after
    assert [(r.status, r.attempt) for r in records] == [
        ("sending", 1), ("failed", 1), ("sending", 2), ("failed", 2), ("sending", 3),
        ("delivered", 3)]
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
    assert sum(fake.sleeps) == pytest.approx(7.0)  # the next attempt went at Retry-After
    assert [r.status for r in records] == ["sending", "failed", "sending", "delivered"]


async def test_410_disables_the_partner_and_later_deliveries_go_to_the_dlq(tmp_path) -> None:
    calls = []
    disabled: list[tuple[str, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(410)

    ds = navapp_deliveries(alert("create", 1), alert("update", 2), alert("cancel", 3))
    hub, _records, letters, _ = await run_hub(
        partner, ds, tmp_path, on_disable=lambda pid, why: disabled.append((pid, why)),
        sequential=True,
    )
    assert len(calls) == 1 and hub.stats()["navapp"].disabled
    assert [ltr.version for ltr in letters] == [1, 2, 3]
    assert "410" in letters[0].reason and "disabled" in letters[1].reason
    assert disabled == [("navapp", "410 Gone: the partner asked us to stop")]


async def test_a_partner_disabled_before_a_restart_stays_disabled(tmp_path) -> None:
    calls = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    _hub, _, letters, _ = await run_hub(partner, navapp_deliveries(alert()), tmp_path,
                                        disabled=lambda pid: pid == "navapp")
    assert calls == [] and [ltr.reason for ltr in letters] == [
        "partner disabled (410 Gone earlier)"
    ]


async def test_a_refused_message_is_dead_lettered_alone_and_the_partner_goes_on(tmp_path) -> None:
    """A 400 to one alert: its message goes to the DLQ, the next alert is delivered, no retry,
    and the breaker stays closed (one payload a partner dislikes is not an outage)."""
    answers = iter([400, 200])
    calls: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(next(answers))

    other = alert("create", 1, alert_id="CFD-L2:F1:approaching", vehicle_id="CFD-L2")
    hub, _records, letters, _ = await run_hub(
        partner, navapp_deliveries(alert("create", 1)) + navapp_deliveries(other), tmp_path,
        sequential=True,
    )
    assert len(calls) == 2 and hub.stats()["navapp"].delivered == 1
    assert len(letters) == 1 and "HTTP 400" in letters[0].reason
    assert hub.workers["navapp"].breaker.closed


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


async def test_a_cancel_reaches_a_partner_that_got_the_alert_however_long_it_was_down(
    tmp_path,
) -> None:
    """The create goes; the partner is then down (503) for 10 minutes, far past the alert's
    expiry: its cancel is retried until the partner is back and accepts it, never dropped."""
    fake = FakeTime(T0)
    got: list[tuple[int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if got and fake.now < T0 + timedelta(minutes=10):
            return httpx.Response(503)
        got.append((body["data"]["version"], body["type"]))
        return httpx.Response(200)

    ds = navapp_deliveries(alert("create", 1, ttl_s=60),
                           alert("cancel", 2, ttl_s=60, at=T0 + timedelta(seconds=5)))
    hub, records, letters, _ = await run_hub(partner, ds, tmp_path, fake=fake, sequential=True)
    assert got == [(1, "alert.created"), (2, "alert.cancelled")]
    assert fake.now >= T0 + timedelta(minutes=10)
    assert hub.stats()["navapp"].expired == 0 and letters == []
    assert [r.status for r in records if r.version == 2][-1] == "delivered"


async def test_a_cancel_of_an_alert_the_partner_never_got_ends_with_the_alert(tmp_path) -> None:
    """Down from the start: the create never went, so the cancel is dropped at its own
    expiry (nothing at the partner to cancel), counted and audited as expired."""
    fake = FakeTime(T0)

    def partner(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    ds = navapp_deliveries(alert("create", 1, ttl_s=60),
                           alert("cancel", 2, ttl_s=60, at=T0 + timedelta(seconds=5)))
    hub, records, _, _ = await run_hub(partner, ds, tmp_path, fake=fake)
    assert hub.stats()["navapp"].delivered == 0 and hub.stats()["navapp"].expired == 1
    assert fake.now < ds[-1].expires_at + timedelta(seconds=10)  # given up at its expiry
    assert [r.status for r in records if r.version == 2][-1] == "expired"


async def test_while_the_partner_is_down_one_probe_goes_per_interval(tmp_path) -> None:
    """Ten live alerts, the partner down for the first 20 s: after the breaker opens only one
    probe per second goes out (not one per alert); once it answers, every alert goes."""
    times: list[datetime] = []
    fake = FakeTime(T0)

    def partner(request: httpx.Request) -> httpx.Response:
        times.append(fake.now)
        return httpx.Response(503 if fake.now < T0 + timedelta(seconds=20) else 200)

    alerts = [alert("create", 1, alert_id=f"U{i}:F1:approaching", vehicle_id=f"U{i}",
                    ttl_s=3600) for i in range(10)]
    ds = [d for a in alerts for d in navapp_deliveries(a)]
    hub, records, _, _ = await run_hub(partner, ds, tmp_path, fake=fake,
                                       breaker=Breaker(threshold=3, probe_interval_s=1.0))
    down = [t for t in times if t < T0 + timedelta(seconds=20)]
    assert len(down) <= 4 + 20  # the in-flight first attempts, then ~1 probe a second
    assert hub.stats()["navapp"].delivered == 10
    back = [r.at for r in records if r.status == "delivered"]
    assert max(back) - T0 <= timedelta(seconds=21.5)  # all current within a probe of recovery


async def test_the_latest_version_wins_and_goes_first_as_a_create(tmp_path) -> None:
    """v1..v5 of one alert queue while the partner is down: only v5 is sent when it is back,
    as the partner's first message of the alert (a create), the rest settle as superseded."""
    fake = FakeTime(T0)
    got: list[dict] = []

    def partner(request: httpx.Request) -> httpx.Response:
        if fake.now < T0 + timedelta(seconds=5):
            return httpx.Response(503)
        got.append(json.loads(request.content))
        return httpx.Response(204)

    ds = navapp_deliveries(alert("create", 1, ttl_s=3600), *[
        alert("update", v, ttl_s=3600, at=T0 + timedelta(seconds=v)) for v in range(2, 6)
    ])
    settled: list[tuple[int, str]] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        hub.submit(ds[0], lambda d, how, _last, _maybe: settled.append((d.version, how)))
        for _ in range(10):  # v1 is tried and refused (503) a few times: it is retrying
            await asyncio.sleep(0)
        assert fake.now < T0 + timedelta(seconds=5)
        for d in ds[1:]:
            hub.submit(d, lambda d, how, _last, _maybe: settled.append((d.version, how)))
        await hub.drain()
    last = ds[-1].version  # navapp's minimum update interval thins the updates at fan-out
    assert len(ds) >= 3 and [d.version for d in ds] == sorted(d.version for d in ds)
    assert [(g["data"]["version"], g["type"]) for g in got] == [(last, "alert.created")]
    assert sorted(settled) == [(d.version, "superseded") for d in ds[:-1]] + [
        (last, "delivered")
    ]
    assert hub.stats()["navapp"].superseded == len(ds) - 1


async def test_versions_of_one_alert_never_arrive_out_of_order(tmp_path) -> None:
    """Several alerts in flight at once (max_in_flight), each alert's versions in order."""
    fake = FakeTime(T0)
    seen: list[tuple[str, int]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)["data"]
        seen.append((body["alert_id"], body["version"]))
        return httpx.Response(503 if len(seen) % 3 == 0 else 200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        state: dict = {}
        for v in range(1, 6):
            for i in range(6):
                ev = alert("create" if v == 1 else "update", v, ttl_s=3600,
                           alert_id=f"U{i}:F1:approaching", vehicle_id=f"U{i}",
                           at=T0 + timedelta(seconds=3 * v), started_at=T0)
                state, ds = fan_out(ev, PARTNERS, state, ev.ts)
                for d in ds:
                    if d.partner_id == "navapp":
                        hub.submit(d)
            await asyncio.sleep(0)
        await hub.drain()
    last: dict[str, int] = {}
    for aid, version in seen:
        assert version >= last.get(aid, 0), f"{aid}: v{version} after v{last[aid]}"
        last[aid] = version
    assert len(last) == 6 and set(last.values()) == {5}


async def test_revoked_alerts_are_dropped_without_settling(tmp_path) -> None:
    fake = FakeTime(T0)

    def partner(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)  # never delivered: the deliveries wait in retries

    settled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        for d in navapp_deliveries(alert(ttl_s=3600)):
            hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
        for _ in range(20):
            await asyncio.sleep(0)
        await hub.revoke(lambda aid: True)
        await asyncio.wait_for(hub.drain(), 5)
        assert not hub.workers["navapp"].active and not hub.workers["navapp"].waiting
    assert settled == []  # the new owner sends it from the durable record


async def test_a_revoke_forgets_an_alert_the_partner_may_hold() -> None:
    """The create was answered 504 (the partner may have stored it): its key is in ``_live``
    alone, nothing confirmed. A revoke dropped only keys in ``delivered``: it stayed, and should
    the partition come back this worker owed the cancel whatever its new owner did."""
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(504))
                                 ) as client:
        hub = fake_hub(client, None, fake, MemoryAudit())
        w = hub.worker("navapp")
        d, = navapp_deliveries(alert("create", 1, ttl_s=60))
        w.submit(d)
        for _ in range(200):
            if w.stats.failed_attempts:
                break
            await asyncio.sleep(0)
        assert d.mailbox in w._live and d.mailbox not in w.delivered
        await w.revoke(lambda aid: True)
        assert not w._live and not w._forget_at and not w._forget_heap
        await w.stop()


async def test_revoking_and_resubmitting_an_alert_keeps_one_forget_entry() -> None:
    """Each rebalance that took an alert's partition away and back left one more entry of it in
    the forget heap (revoke dropped the key's forget time, not its entry; the resubmit pushed
    another), for as long as the alert lived or its cancel was owed."""
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))
                                 ) as client:
        hub = fake_hub(client, None, fake, MemoryAudit())
        w = hub.worker("navapp")
        events = [alert("create", 1, ttl_s=600)]
        for v in range(2, 6):
            *_, d = navapp_deliveries(*events)
            w.submit(d)
            await w.join()
            assert [aid for _, aid in w._forget_heap] == [d.mailbox]
            await w.revoke(lambda aid: True)
            events.append(alert("update", v, ttl_s=600))
        await w.stop()


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
    for i in range(2):
        ev = alert("create", 1, alert_id=f"U{i}:F1:approaching", vehicle_id=f"U{i}")
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

    ds = navapp_deliveries(
        alert("create", 1), alert("create", 1, alert_id="CFD-L2:F1:approaching", vehicle_id="L2")
    )
    settled: list[str] = []
    fake = FakeTime(T0)
    letters: list[DeadLetter] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = DeliveryHub(PARTNERS, client, JsonlAudit(tmp_path / "a.jsonl"), letters.append,
                          clock=fake.clock, sleep=fake.sleep)
        async with hub:
            for d in ds:
                hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
    assert settled == ["dead_letter", "delivered"]
    assert len(letters) == 1 and letters[0].version == 1
    assert letters[0].reason.startswith("delivery_error: ZeroDivisionError")
    assert json.loads(letters[0].body)["data"]["version"] == 1  # the record can be re-driven


async def test_an_outage_inside_delivery_stops_without_settling(tmp_path) -> None:
    def partner(request: httpx.Request) -> httpx.Response:
        raise PermissionError("the audit disk went read-only")  # an OSError: a part is down

    ds = navapp_deliveries(
        alert("create", 1), alert("create", 1, alert_id="CFD-L2:F1:approaching", vehicle_id="L2")
    )
    settled: list[str] = []
    stops: list[StopWork] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        fake = FakeTime(T0)
        hub = DeliveryHub(PARTNERS, client, JsonlAudit(tmp_path / "a.jsonl"), lambda _: None,
                          on_stop=stops.append, clock=fake.clock, sleep=fake.sleep)
        for d in ds:
            hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
        with pytest.raises(StopWork, match="delivery failed"):
            await hub.drain()
        await hub.stop()
    assert settled == []  # nothing settled, so nothing acknowledged: a restart sends both
    assert len(stops) == 1 and stops[0].failure.site == "delivery"


async def test_a_hub_left_with_a_failed_drain_still_stops_its_partners(tmp_path) -> None:
    """``async with hub`` whose drain raises (a partner's worker stopped): the hub's exit still
    stops every partner (none sends after it), and the error still raises."""
    def partner(request: httpx.Request) -> httpx.Response:
        raise PermissionError("the audit disk went read-only")

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        fake = FakeTime(T0)
        hub = DeliveryHub(PARTNERS, client, JsonlAudit(tmp_path / "a.jsonl"), lambda _: None,
                          clock=fake.clock, sleep=fake.sleep)
        with pytest.raises(StopWork, match="delivery failed"):
            async with hub:
                for d in navapp_deliveries(alert("create", 1)):
                    hub.submit(d, lambda d, how, _last, _maybe: None)
    assert all(w._closed for w in hub.workers.values())


async def test_while_the_hub_holds_the_mailbox_collapses_to_the_latest_version(tmp_path) -> None:
    """A shell catching up a backlog holds the hub: v1..v3 of one alert queue meanwhile and
    only v3 goes once it releases (as the partner's first message: a create)."""
    got: list[tuple[int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        got.append((body["data"]["version"], body["type"]))
        return httpx.Response(200)

    ds = navapp_deliveries(alert("create", 1, ttl_s=3600), *[
        alert("update", v, ttl_s=3600, at=T0 + timedelta(seconds=10 * v)) for v in (2, 3)
    ])
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        hub.hold()
        for d in ds:
            hub.submit(d)
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        assert got == []  # nothing starts while held
        hub.release()
        await hub.drain()
    assert len(ds) == 3 and got == [(3, "alert.created")]
    assert hub.stats()["navapp"].superseded == 2


async def test_a_throttled_update_takes_the_place_of_an_unsent_create_and_is_dropped_else(
    tmp_path,
) -> None:
    """A dispatch create and the first fix's update 0.1 s later: within navapp's interval, so
    the update is throttled; while the create still waits it takes its place (the partner's
    first message is the newer version, as a create); once the create is sent, the next
    throttled update is dropped: no request of its own."""
    got: list[tuple[int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        got.append((body["data"]["version"], body["type"]))
        return httpx.Response(200)

    ds = navapp_deliveries(
        alert("create", 1, ttl_s=3600),
        alert("update", 2, ttl_s=3600, at=T0 + timedelta(seconds=0.1)),
        alert("update", 3, ttl_s=3600, at=T0 + timedelta(seconds=0.2)),
    )
    assert [(d.version, d.replace_only) for d in ds] == [(1, False), (2, True), (3, True)]
    settled: list[tuple[int, str]] = []
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        hub.hold()  # the create waits (as behind a busy partner's requests in flight)
        hub.submit(ds[0], lambda d, how, _last, _maybe: settled.append((d.version, how)))
        hub.submit(ds[1], lambda d, how, _last, _maybe: settled.append((d.version, how)))
        hub.release()
        await hub.drain()
        hub.submit(ds[2], lambda d, how, _last, _maybe: settled.append((d.version, how)))
        await hub.drain()
    assert got == [(2, "alert.created")]
    assert settled == [(1, "superseded"), (2, "delivered"), (3, "throttled")]


async def test_a_new_alert_goes_before_updates_of_alerts_the_partner_has(tmp_path) -> None:
    """One request at a time: four alerts the partner already has get updates queued, then a
    new alert's create arrives; it goes next, not after the four updates."""
    new = navapp_deliveries(alert("create", 1, alert_id="NEW:F1:approaching",
                                  vehicle_id="NEW", ttl_s=3600))
    order = await one_at_a_time(tmp_path, known_steps("create", 1),
                                [*known_steps("update", 2), *new])
    assert order[4:] == ["NEW:alert.created"] + [f"{v}:alert.updated" for v in KNOWN]


async def test_the_audit_records_the_action_the_partner_got(tmp_path) -> None:
    """The create went out before the zone reached navapp's area: its first message of the
    alert is v2, sent as a create (alert.created). The audit said "update"."""
    got: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(json.loads(request.content)["type"])
        return httpx.Response(204)

    far = alert("create", 1, lon=-100.0, lat=40.0)
    ds = navapp_deliveries(far, alert("update", 2), alert("update", 3, ttl_s=3600, started_at=T0,
                                                           at=T0 + timedelta(seconds=30)))
    _, records, _, _ = await run_hub(partner, ds, tmp_path, sequential=True)
    assert got == ["alert.created", "alert.updated"]
    assert [(r.version, r.action, r.status) for r in records] == [
        (2, "create", "sending"), (2, "create", "delivered"),
        (3, "update", "sending"), (3, "update", "delivered"),
    ]
