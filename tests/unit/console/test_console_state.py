"""The console's pure parts: the operator view, the live state, the feed ring, access."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.audit import AuditRecord
from adapters.fanout import PartnerSet, fan_out
from broker.console.access import Access, dev_token, same_origin
from broker.console.config import ConsoleConfigError, console_from_env
from broker.console.feed import Feed
from broker.console.player import PlayerSource, message_times
from broker.console.state import LiveState
from broker.drive import POSITIONS
from broker.model import LatLon, LineStringGeometry, Route
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig
from tests.unit.adapters.factory import CONFIG, PARTNERS

REPO = Path(__file__).resolve().parents[3]
ROUTE = REPO / "fixtures" / "incidents" / "route-downtown"


@pytest.fixture(scope="module")
def replay():  # type: ignore[no-untyped-def]
    messages = load_messages(ROUTE)
    return messages, replay_in_process(messages, cfg=EngineConfig())


@pytest.fixture(scope="module")
def partners() -> PartnerSet:
    return PARTNERS  # the sample partners (tests/unit/adapters/factory.py)


def test_a_cancel_shows_no_position_and_removes_the_unit(replay) -> None:  # type: ignore[no-untyped-def]
    _, result = replay
    state = LiveState()
    for ev in result.events:
        for name, data in state.apply_alert(ev):
            if name == "alert":
                assert data["unit"]["lat"] == ev.lat
            if name == "remove":
                assert "lat" not in data and "lon" not in data
    assert state.snapshot()["alerts"] == []
    left = [e for e in result.events if e.cancel_reason == "left_emergency"]
    assert left, "the fixture ends with the unit leaving emergency mode"
    # the last cancel's fix (a returning unit) appears nowhere in what the page could get
    text = msgspec.json.encode(state.snapshot()).decode()
    assert str(left[-1].lat) not in text


def test_old_or_repeated_versions_change_nothing(replay) -> None:  # type: ignore[no-untyped-def]
    _, result = replay
    state = LiveState()
    first, second = result.events[0], result.events[1]
    assert state.apply_alert(second)
    assert state.apply_alert(first) == [] and state.apply_alert(second) == []


def test_an_alert_id_back_at_version_1_in_a_new_life_is_shown(replay) -> None:  # type: ignore[no-untyped-def]
    """The engine forgets an idle unit after hours and its next alert under the same id starts
    again at version 1: the console, remembering the earlier life's higher version, hid it."""
    _, result = replay
    state = LiveState()
    for ev in result.events:
        state.apply_alert(ev)
    create = result.events[0]
    later = create.started_at + timedelta(hours=7)
    again = msgspec.structs.replace(create, ts=later, started_at=later,
                                    expires_at=later + (create.expires_at - create.ts))
    assert [name for name, _ in state.apply_alert(again)] == ["alert"]
    assert [a["alert"]["alert_id"] for a in state.snapshot()["alerts"]] == [create.alert_id]
    assert state.apply_alert(result.events[1]) == []  # the earlier life's update: too old


def test_delivery_records_are_counted_per_partner_and_version(replay, partners) -> None:  # type: ignore[no-untyped-def]
    _, result = replay
    state = LiveState(partners=partners)
    ev = result.events[0]
    state.apply_alert(ev)
    _, deliveries = fan_out(ev, partners, {}, now=ev.ts)
    assert deliveries
    d = deliveries[0]
    before = state.deliveries_of(ev.alert_id)[d.partner_id]
    assert before["pending"] == 1 and before["delivered"] == 0  # expected, no record yet
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rec = AuditRecord(at=at, partner=d.partner_id, alert_id=d.view.alert_id, version=ev.version,
                      action="create", status="failed", attempt=1)
    out = state.apply_audit(rec)
    assert out and out[0][1]["deliveries"][d.partner_id]["pending"] == 1
    state.apply_audit(msgspec.structs.replace(rec, status="delivered", latency_ms=12.0))
    state.apply_audit(msgspec.structs.replace(rec, status="delivered", latency_ms=12.0))
    counts = state.deliveries_of(ev.alert_id)[d.partner_id]
    assert counts == {"delivered": 1, "pending": 0, "failed": 0, "expired": 0}
    assert state.delivery_figures()["delivery_p50_ms"] == 12.0


def test_alerts_expire_when_the_worker_stops_updating_them(replay) -> None:  # type: ignore[no-untyped-def]
    _, result = replay
    state = LiveState()
    ev = result.events[0]
    life = (ev.expires_at - ev.ts).total_seconds()
    state.apply_alert(ev, wall=100.0)
    assert state.expire(ev.ts, wall=100.0 + life - 1) == []
    assert [n for n, _ in state.expire(ev.ts, wall=100.0 + life)] == ["remove"]
    # a recorded incident (or the lookback read at start) whose records all come at once:
    # what expired well before the newest record goes at once too
    state = LiveState()
    state.apply_alert(ev, wall=100.0)
    skew = timedelta(seconds=60)  # broker.codec.MAX_FUTURE_SKEW
    assert state.expire(ev.expires_at + skew - timedelta(seconds=1), wall=100.0) == []
    assert [n for n, _ in state.expire(ev.expires_at + skew, wall=100.0)] == ["remove"]


def test_a_unit_whose_clock_runs_ahead_expires_no_other_alert(replay) -> None:  # type: ignore[no-untyped-def]
    """Found in review: "now" was the newest alert ts seen, carried on by the wall clock, so a
    unit whose clock ran up to 60 s ahead (the codec takes that much) made every other unit's
    alert vanish up to 60 s early. Each alert now runs out its own lifetime on the wall clock
    since its record arrived."""
    _, result = replay
    ev = next(e for e in result.events if e.action == "update")
    life = (ev.expires_at - ev.ts).total_seconds()
    for skew_s in (10.0, 30.0, 55.0, 60.0):
        ahead = timedelta(seconds=skew_s)
        other = msgspec.structs.replace(ev, alert_id="ev-other", vehicle_id="E9",
                                        ts=ev.ts + ahead, started_at=ev.started_at + ahead,
                                        expires_at=ev.expires_at + ahead)
        state = LiveState()
        state.apply_alert(ev, wall=0.0)
        state.apply_alert(other, wall=0.0)
        for since_s in (1.0, 5.0, 30.0, life - 1):
            removed = [d["alert_id"] for n, d in state.expire(state.now(since_s), wall=since_s)
                       if n == "remove"]
            assert removed == [], (skew_s, since_s)
        removed = [d["alert_id"] for n, d in state.expire(state.now(life), wall=life)]
        assert sorted(removed) == sorted([ev.alert_id, "ev-other"])


def test_the_player_never_shows_a_unit_out_of_emergency_mode(replay, partners) -> None:  # type: ignore[no-untyped-def]
    messages, result = replay
    source = PlayerSource(result, [], message_times(messages, POSITIONS), {},
                          partners=partners)
    end = max(e.ts for e in result.events)
    t = result.events[0].ts
    # before its first emergency fix, a dispatched unit (dispatch_cover_m) is where its CAD
    # route starts (the dispatch alert's own place), and nowhere else
    dispatched = {
        (e.vehicle_id, e.lon, e.lat) for e in result.events
        if e.ts < result.emergency_fixes[e.vehicle_id][0][0]
    }
    while t <= end + timedelta(seconds=5):
        frame = source.frame(t)
        for a in frame["alerts"]:
            unit, vid = a["unit"], a["alert"]["vehicle_id"]
            fixes = result.emergency_fixes[vid]
            shown = (unit["lon"], unit["lat"])
            assert shown in {(f[1], f[2]) for f in fixes} or (vid, *shown) in dispatched
        t += timedelta(seconds=7)
    assert source.frame(end + timedelta(seconds=5))["alerts"] == []


def test_the_feed_ring_resumes_or_asks_for_a_snapshot() -> None:
    async def run() -> None:
        feed = Feed(size=3)
        for i in range(5):
            feed.publish("x", {"i": i})
        assert feed.cursor_of(feed.event_id(4)) == 4
        assert [s for s, _, _ in feed.since(3) or []] == [4, 5]
        assert feed.since(1) is None  # fell behind the ring
        assert feed.cursor_of(feed.event_id(1)) is None
        assert feed.cursor_of("another-instance.4") is None
        for junk in ("²", "4.5", "-4", "9" * 5_000, ""):  # a client's header: no exception
            assert feed.cursor_of(f"{feed.instance}.{junk}") is None
        waiter = asyncio.ensure_future(feed.wait(5, 30.0))
        await asyncio.sleep(0)
        feed.publish("x", {"i": 5})
        await asyncio.wait_for(waiter, 5.0)

    asyncio.run(run())


def test_sessions_are_signed_expire_and_die_with_the_token() -> None:
    now = [1000.0]
    access = Access("a-real-token-of-some-length", clock=lambda: now[0], session_s=60)
    cookie = access.new_session()
    assert access.session_ok(cookie)
    assert not Access("another-token-of-some-length").session_ok(cookie)
    assert not access.session_ok(cookie[:-1] + ("0" if cookie[-1] != "0" else "1"))
    now[0] += 61
    assert not access.session_ok(cookie)
    assert access.token_ok("a-real-token-of-some-length") and not access.token_ok("nope")
    # any text a client sends is a wrong token or cookie, not a 500 (str.encode() raised on a
    # lone surrogate, compare_digest on non-ASCII text)
    assert not access.token_ok("\ud800") and not access.token_ok("é")
    assert not access.session_ok("1.2.é") and not access.session_ok("1.2.\udcff")
    assert "a-real-token" not in repr(access)
    with pytest.raises(ValueError):
        Access("short")


def test_same_origin_and_the_dev_token_only_on_loopback() -> None:
    assert same_origin({}, "127.0.0.1:1")
    assert same_origin({"Origin": "http://127.0.0.1:1"}, "127.0.0.1:1")
    assert not same_origin({"Origin": "http://evil.example"}, "127.0.0.1:1")
    assert not same_origin({"Sec-Fetch-Site": "cross-site"}, "127.0.0.1:1")
    dev = console_from_env({}, host="127.0.0.1", allow_dev=True)
    assert dev is not None and dev.access.token_ok(dev_token())
    assert console_from_env({}, host="0.0.0.0", allow_dev=True) is None
    assert console_from_env({}, host="127.0.0.1", allow_dev=False) is None
    real = console_from_env({"BROKER_CONSOLE_TOKEN": "x" * 24}, host="0.0.0.0", allow_dev=False)
    assert real is not None and not real.access.token_ok(dev_token())
    with pytest.raises(ConsoleConfigError, match="BROKER_CONSOLE_TILES"):
        console_from_env({"BROKER_CONSOLE_TOKEN": "x" * 24, "BROKER_CONSOLE_TILES": "ftp://x"},
                         host="127.0.0.1", allow_dev=False)


def test_the_session_key_is_derived_once_with_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: the key was SHA-256 of the token, so a leaked cookie let one core test
    ~260,000 guesses of the token a second; a 16-character one fell at once. Now at least 24
    characters, and the key costs a scrypt (derived once per Access, not per request)."""
    with pytest.raises(ValueError, match="24"):
        Access("operator-console-1-abcd")  # 23
    calls: list[bytes] = []
    real_scrypt = hashlib.scrypt

    def counted(password: bytes, **kwargs: Any) -> bytes:
        calls.append(password)
        return real_scrypt(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    token = "operator-console-1-abcde"  # 24
    access = Access(token)
    cookies = [access.new_session() for _ in range(20)]
    assert all(access.session_ok(c) for c in cookies)
    assert calls == [token.encode()]
    body, _, sig = cookies[0].rpartition(".")
    sha_key = hashlib.sha256(b"ev-console-session\x00" + token.encode()).digest()
    assert sig != hmac.new(sha_key, body.encode(), hashlib.sha256).hexdigest()
    key = real_scrypt(token.encode(), salt=b"ev-console-session", n=2**14, r=8, p=1, dklen=32)
    assert sig == hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def test_a_superseded_version_is_no_longer_pending(replay, partners) -> None:  # type: ignore[no-untyped-def]
    """Found in review: a version that failed (or met an open circuit) and was then superseded
    by a newer one (delivery_loop writes a ``superseded`` record) stayed "pending" for good, so
    the pending count grew through a partner's outage and never came down."""
    _, result = replay
    state = LiveState(partners=partners)
    first, second = result.events[0], result.events[1]
    state.apply_alert(first)
    _, deliveries = fan_out(first, partners, {}, now=first.ts)
    d = deliveries[0]
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def rec(version: int, status: str, **kw: Any) -> AuditRecord:
        return AuditRecord(at=at, partner=d.partner_id, alert_id=d.view.alert_id,
                           version=version, action="update", status=status, attempt=1, **kw)

    state.apply_audit(rec(first.version, "circuit_open"))
    state.apply_alert(second)
    state.apply_audit(rec(first.version, "superseded", detail="a newer version came meanwhile"))
    state.apply_audit(rec(first.version, "failed"))  # a late retry record changes nothing
    state.apply_audit(rec(second.version, "delivered", latency_ms=5.0))
    counts = state.deliveries_of(first.alert_id)[d.partner_id]
    assert counts == {"delivered": 1, "pending": 0, "failed": 0, "expired": 0}


def test_delivery_records_keep_counts_not_every_version(replay, partners) -> None:  # type: ignore[no-untyped-def]
    """Found in review: per (partner, alert) the state kept a set of version numbers per
    outcome, without limit: 50,000 pairs of 70 versions held 276 MB. It keeps counts and the
    versions still being retried, and drops an alert's pairs when the alert goes."""
    import tracemalloc

    at = datetime(2026, 1, 1, tzinfo=UTC)
    state = LiveState()
    tracemalloc.start()
    try:
        for k in range(2_000):
            for v in range(1000, 1070):
                state.apply_audit(AuditRecord(at=at, partner=f"p{k % 10}", alert_id=f"a{k}",
                                              version=v, action="update", status="delivered",
                                              latency_ms=1.0))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / 2_000 < 1_000, f"{held / 2_000:.0f} bytes a pair"
    pa = state.deliveries[("p3", "a3")]
    assert pa.counts() == {"delivered": 70, "pending": 0, "failed": 0, "expired": 0}
    # retries, a late redelivery, and a version far behind the window
    rec = AuditRecord(at=at, partner="p", alert_id="x", version=5, action="update",
                      status="failed", attempt=1)
    for version, status in ((5, "failed"), (7, "circuit_open"), (3, "failed"),
                            (5, "delivered"), (5, "delivered"), (7, "failed")):
        state.apply_audit(msgspec.structs.replace(rec, version=version, status=status))
    assert state.deliveries[("p", "x")].counts() == {
        "delivered": 1, "pending": 2, "failed": 0, "expired": 0}
    state.apply_audit(msgspec.structs.replace(rec, version=5 + 10_000, status="expired"))
    state.apply_audit(msgspec.structs.replace(rec, version=5, status="dead_letter"))  # too old
    assert state.deliveries[("p", "x")].counts() == {
        "delivered": 1, "pending": 0, "failed": 0, "expired": 1}
    # an alert's pairs go with it
    _, result = replay
    live = LiveState(partners=partners)
    ev = result.events[0]
    live.apply_alert(ev)
    _, deliveries = fan_out(ev, partners, {}, now=ev.ts)
    key = (deliveries[0].partner_id, deliveries[0].view.alert_id)
    live.apply_audit(msgspec.structs.replace(rec, partner=key[0], alert_id=key[1],
                                             version=ev.version, status="delivered"))
    assert key in live.deliveries
    cancel = next(e for e in result.events if e.action == "cancel"
                  and e.alert_id == ev.alert_id and e.started_at == ev.started_at)
    live.apply_alert(cancel)
    assert key not in live.deliveries


def test_an_alert_delta_carries_its_deliveries(replay, partners) -> None:  # type: ignore[no-untyped-def]
    """Found in review: the `alert` delta had no deliveries, and the page fills them only from
    the snapshot or `delivery` deltas: an open page said "No deliveries" for a new alert whose
    deliveries were pending (a reload showed them)."""
    _, result = replay
    state = LiveState(partners=partners)
    ev = result.events[0]
    (name, data), *_ = state.apply_alert(ev)
    assert name == "alert"
    assert data["deliveries"] == state.snapshot()["deliveries"][ev.alert_id]
    assert data["deliveries"] and all(d["pending"] == 1 for d in data["deliveries"].values())


def _route(vehicle: str, incident: str, ts: datetime, n: int = 2) -> Route:
    coords = [(-80.84 + i * 1e-5, 35.22 + i * 1e-5) for i in range(n)]
    return Route(vehicle_id=vehicle, incident_id=incident, ts=ts,
                 destination=LatLon(lat=coords[-1][1], lon=coords[-1][0]),
                 route=LineStringGeometry(coordinates=coords))


def test_routes_the_engine_keeps_and_uses_and_no_more(replay) -> None:  # type: ignore[no-untyped-def]
    """Found in review: the newest route *received* was kept even if older by ts (the engine
    keeps the newer), a route of another incident than the alert's was drawn (the engine
    does not use it), and 10,000 routes of up to 20,000 coordinates could hold ~11 GB."""
    _, result = replay
    create = next(e for e in result.events if e.action == "create" and e.incident_id)
    vid = create.vehicle_id
    state = LiveState()
    # another incident's route, older: kept (it is all there is), never drawn
    other = _route(vid, "OTHER-INCIDENT", create.ts - timedelta(hours=3))
    state.apply_route(other)
    assert [n for n, _ in state.apply_alert(create)] == ["alert"]
    assert state.snapshot()["routes"] == []
    # the alert's own, then a late older one: the newer stays
    own = _route(vid, create.incident_id, create.ts)
    assert [d["incident_id"] for _, d in state.apply_route(own)] == [create.incident_id]
    assert state.apply_route(msgspec.structs.replace(own, ts=own.ts - timedelta(minutes=5),
                                                     incident_id="LATE")) == []
    assert [r["incident_id"] for r in state.snapshot()["routes"]] == [create.incident_id]
    # a newer route of another incident: kept (the engine keeps it), and the page drops the
    # one it drew
    newer = msgspec.structs.replace(other, ts=create.ts + timedelta(seconds=1))
    assert state.apply_route(newer) == [("route", {"vehicle_id": vid,
                                                   "incident_id": "OTHER-INCIDENT",
                                                   "coordinates": None})]
    assert state.routes[vid] is newer and state.snapshot()["routes"] == []
    # bounded by coordinates in all, oldest first out; one route alone is always kept
    small = LiveState(max_route_coords=100)
    for k in range(5):
        small.apply_route(_route(f"V{k}", "I", create.ts, n=30))
    assert list(small.routes) == ["V2", "V3", "V4"] and small.route_coords == 90
    small.apply_route(_route("BIG", "I", create.ts, n=500))
    assert list(small.routes) == ["BIG"] and small.route_coords == 500


def _raw_id_partners() -> PartnerSet:
    """The sample partners, the first given the engine's alert id as it is ("alert_id")."""
    first = CONFIG.partners[0]
    policy = dataclasses.replace(first.policy, fields=first.policy.fields | {"alert_id"})
    raw = dataclasses.replace(first, policy=policy)
    config = dataclasses.replace(CONFIG, partners=(raw, *CONFIG.partners[1:]))
    return PartnerSet.from_config(config)


def test_a_re_created_alert_starts_its_deliveries_afresh(replay) -> None:  # type: ignore[no-untyped-def]
    """Found in review: a partner given the engine's id as it is keys every life of a
    re-created alert the same (partner, id) pair. The records of the earlier life's cancel,
    which come after the console removed the alert, made a pair the new life picked up: its
    alert showed delivered 1 / pending 0 before anything of it was sent; and a new life back
    at version 1 after a pair at version 5,000 was out of the version window: counts frozen."""
    _, result = replay
    partners = _raw_id_partners()
    pid = CONFIG.partners[0].id
    create = result.events[0]
    cancel = next(e for e in result.events if e.action == "cancel"
                  and e.alert_id == create.alert_id and e.started_at == create.started_at)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    later = cancel.ts + timedelta(minutes=5)
    again = msgspec.structs.replace(create, ts=later, started_at=later, action="create",
                                    version=cancel.version + 1,
                                    expires_at=later + (create.expires_at - create.ts))
    pending = {"delivered": 0, "pending": 1, "failed": 0, "expired": 0}
    for old_version, new_version in ((cancel.version, again.version), (5_000, 1)):
        state = LiveState(partners=partners)
        rec = AuditRecord(at=at, partner=pid, alert_id=create.alert_id,
                          version=create.version, action="create", status="delivered",
                          started_at=create.started_at)
        state.apply_alert(create)
        state.apply_audit(rec)
        state.apply_alert(msgspec.structs.replace(cancel, version=old_version))
        # the cancel's delivery record, after the console removed the alert
        state.apply_audit(msgspec.structs.replace(rec, version=old_version, action="cancel"))
        out = state.apply_alert(msgspec.structs.replace(again, version=new_version))
        assert out[0][1]["deliveries"][pid] == pending, old_version
        new = msgspec.structs.replace(rec, version=new_version, started_at=later)
        state.apply_audit(msgspec.structs.replace(new, status="failed", attempt=1))
        (_, data), = state.apply_audit(new)
        assert data["deliveries"][pid] == {"delivered": 1, "pending": 0, "failed": 0,
                                           "expired": 0}, old_version
        # a late record of the earlier life changes nothing; a schema-1 one (no life) counts
        state.apply_audit(msgspec.structs.replace(rec, version=new_version + 1))
        state.apply_audit(msgspec.structs.replace(rec, version=new_version + 2,
                                                  started_at=None))
        assert state.deliveries_of(create.alert_id)[pid]["delivered"] == 2


def test_a_delivery_reported_after_its_version_was_superseded_counts() -> None:
    """Found in review: a ``superseded`` record before the same version's ``delivered`` lost
    the delivery (the other order counted it). It happens when a worker whose lease lapsed
    gets its HTTP answer after the new worker wrote ``superseded``: the partner has it."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rec = AuditRecord(at=at, partner="p", alert_id="a", version=5, action="update",
                      status="superseded")
    delivered = {"delivered": 1, "pending": 0, "failed": 0, "expired": 0}
    for order in (("superseded", "delivered"), ("delivered", "superseded"),
                  ("failed", "superseded", "failed", "delivered", "delivered")):
        state = LiveState()
        for status in order:
            state.apply_audit(msgspec.structs.replace(rec, status=status))
        assert state.deliveries[("p", "a")].counts() == delivered, order
    state = LiveState()  # replaced, no outcome: in no column, not pending
    for status in ("circuit_open", "superseded", "failed"):
        state.apply_audit(msgspec.structs.replace(rec, status=status))
    assert state.deliveries[("p", "a")].counts() == {
        "delivered": 0, "pending": 0, "failed": 0, "expired": 0}


@pytest.mark.parametrize("late", ["dead_letter", "disabled", "expired", "failed"])
def test_a_replaced_versions_late_failure_or_expiry_does_not_count(late) -> None:
    """Review 2026-12-08 (fc2, item 3): once a newer version replaced a version
    (``superseded``), a late ``dead_letter``, ``disabled`` or ``expired`` of it (a worker whose
    lease lapsed) counted as *failed* or *expired*, though the partner got the newer version.
    Only a late ``delivered`` of it counts; the newer version's records count as ever."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rec = AuditRecord(at=at, partner="p", alert_id="a", version=5, action="update",
                      status="superseded")
    state = LiveState()
    for status in ("failed", "superseded", late):
        state.apply_audit(msgspec.structs.replace(rec, status=status))
    nothing = {"delivered": 0, "pending": 0, "failed": 0, "expired": 0}
    assert state.deliveries[("p", "a")].counts() == nothing
    state.apply_audit(msgspec.structs.replace(rec, status="delivered"))  # still counts after
    state.apply_audit(msgspec.structs.replace(rec, version=6, status="delivered"))
    assert state.deliveries[("p", "a")].counts() == {**nothing, "delivered": 2}


def test_route_eviction_takes_routes_not_shown_first_and_says_so(replay) -> None:  # type: ignore[no-untyped-def]
    """Found in review: past the bounds the oldest route received went, shown or not (routes
    of units with no live alert are removed by nothing else), and with no delta: the page
    kept drawing a route a reload dropped, while the engine still used it."""
    _, result = replay
    create = next(e for e in result.events if e.action == "create" and e.incident_id)
    vid = create.vehicle_id
    state = LiveState(max_route_coords=1000)
    state.apply_route(_route(vid, create.incident_id, create.ts, n=300))
    state.apply_alert(create)
    out: list[Any] = []
    for k in range(3):  # three other units dispatched, no alert yet
        out += state.apply_route(_route(f"OTHER{k}", "I9", create.ts, n=300))
    assert out == []
    assert list(state.routes) == [vid, "OTHER1", "OTHER2"] and state.route_coords == 900
    assert [r["vehicle_id"] for r in state.snapshot()["routes"]] == [vid]
    # only shown ones left to take: the shown one goes, and the page is told
    out = state.apply_route(_route("BIG", "I9", create.ts, n=900))
    assert out == [("route", {"vehicle_id": vid, "incident_id": create.incident_id,
                              "coordinates": None})]
    assert list(state.routes) == ["BIG"] and state.snapshot()["routes"] == []


def test_a_live_alerts_delivery_pair_outlives_pairs_of_gone_alerts(replay, partners) -> None:  # type: ignore[no-untyped-def]
    """Found in review: delivery pairs went by creation order and were never moved on
    update; the records of cancels (after the alert went) make new pairs, which pushed out
    the pairs of the longest-running live alerts: one delivered 30 times showed pending 1."""
    _, result = replay
    ev = result.events[0]
    state = LiveState(partners=partners, max_delivery_keys=100)
    state.apply_alert(ev)
    _, deliveries = fan_out(ev, partners, {}, now=ev.ts)
    d = deliveries[0]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rec = AuditRecord(at=at, partner=d.partner_id, alert_id=d.view.alert_id,
                      version=ev.version, action="create", status="delivered")
    for v in range(ev.version, ev.version + 30):
        state.apply_audit(msgspec.structs.replace(rec, version=v))
    delivered = {"delivered": 30, "pending": 0, "failed": 0, "expired": 0}
    assert state.deliveries_of(ev.alert_id)[d.partner_id] == delivered
    for k in range(300):  # gone alerts' cancels, delivered after the console removed them
        state.apply_audit(AuditRecord(at=at, partner="navapp", alert_id=f"gone{k}", version=9,
                                      action="cancel", status="delivered"))
    assert state.deliveries_of(ev.alert_id)[d.partner_id] == delivered
    assert len(state.deliveries) == 100
    # with no pair of a gone alert left, the least recently recorded goes first
    lru = LiveState(max_delivery_keys=3)
    for k in (0, 1, 2, 0, 3):
        lru.apply_audit(msgspec.structs.replace(rec, alert_id=f"a{k}", version=k + 1))
    assert [a for _, a in lru.deliveries] == ["a2", "a0", "a3"]


def test_a_unit_whose_clock_runs_behind_stays_on_the_map(replay) -> None:  # type: ignore[no-untyped-def]
    """Found in review: the event-time rule (``expires_at`` + 60 s <= the newest alert's ts,
    carried on) removed the alert of a unit whose clock ran more than ~120 s behind the
    newest at the next tick; it came back with each update. The rule now allows for how far
    the alert was behind when it arrived."""
    _, result = replay
    ev = next(e for e in result.events if e.action == "update")
    life = (ev.expires_at - ev.ts).total_seconds()
    for lag_s in (100.0, 200.0, 3600.0):
        lag = timedelta(seconds=lag_s)
        late = msgspec.structs.replace(ev, alert_id="ev-late", vehicle_id="E9", ts=ev.ts - lag,
                                       started_at=ev.started_at - lag,
                                       expires_at=ev.expires_at - lag)
        state = LiveState()
        state.apply_alert(ev, wall=0.0)
        state.apply_alert(late, wall=0.5)
        for since_s in (1.0, 30.0, life - 1):
            assert state.expire(state.now(since_s), wall=since_s) == [], (lag_s, since_s)
        removed = [d["alert_id"] for _, d in state.expire(state.now(life + 1), wall=life + 1)]
        assert sorted(removed) == sorted([ev.alert_id, "ev-late"]), lag_s
    # the lookback read at start: an alert followed by records of much later goes at once
    state = LiveState()
    state.apply_alert(ev, wall=0.0)
    later = ev.ts + timedelta(hours=1)
    state.apply_alert(msgspec.structs.replace(ev, alert_id="ev-new", vehicle_id="E9", ts=later,
                                              started_at=later,
                                              expires_at=later + (ev.expires_at - ev.ts)),
                      wall=0.1)
    assert [d["alert_id"] for _, d in state.expire(state.now(0.5), wall=0.5)] == [ev.alert_id]


def test_removing_the_alert_a_route_was_shown_for_drops_the_route(replay) -> None:  # type: ignore[no-untyped-def]
    """Found in review: on `remove` the page kept the unit's route if the unit had any other
    live alert, even of another incident (a reload dropped it). The state now sends the
    route-gone delta when the route was shown before the removal and is not after."""
    _, result = replay
    create = next(e for e in result.events if e.action == "create" and e.incident_id)
    vid = create.vehicle_id
    route = _route(vid, create.incident_id, create.ts)
    gone = ("route", {"vehicle_id": vid, "incident_id": create.incident_id,
                      "coordinates": None})
    for other_incident, dropped in (("OTHER-INCIDENT", True), (create.incident_id, False)):
        state = LiveState()
        state.apply_route(route)
        state.apply_alert(create)
        other = msgspec.structs.replace(create, alert_id="ev-other", incident_id=other_incident)
        state.apply_alert(other)
        cancel = msgspec.structs.replace(create, action="cancel", version=create.version + 1,
                                         cancel_reason="cancelled")
        out = state.apply_alert(cancel)
        assert [n for n, _ in out] == (["remove", "route"] if dropped else ["remove"])
        assert (out[-1] == gone) == dropped
        assert bool(state.snapshot()["routes"]) != dropped
    state = LiveState()  # the unit's last alert: the page drops the route by itself, told too
    state.apply_route(route)
    state.apply_alert(create)
    assert state.expire(None, wall=10_000.0)[-1] == gone


class _CountingDict(dict):  # type: ignore[type-arg]
    """A dict that counts the entries its iterations yield (the work of scanning it)."""

    yielded = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for key in super().__iter__():
            _CountingDict.yielded += 1
            yield key

    def values(self):  # type: ignore[no-untyped-def]
        return [self[k] for k in self]  # type: ignore[misc]

    def items(self):  # type: ignore[no-untyped-def]
        return [(k, self[k]) for k in self]  # type: ignore[misc]


def test_removing_alerts_looks_only_at_their_units_alerts(replay) -> None:  # type: ignore[no-untyped-def]
    """Review 2026-12-08 (fc2, item 2): removing an alert asked whether its unit's route is
    still shown by scanning every live alert, so a mass expiry was O(alerts^2) on the event
    loop (10,000 alerts with routes: 3.0 s) and each alert past ``max_alerts`` paid O(alerts)
    for the one it evicted. The state keeps vehicle -> live alerts (``by_vehicle``); counted
    here as the alerts scanned, not timed."""
    _, result = replay
    create = next(e for e in result.events if e.action == "create" and e.incident_id)
    n = 300
    state = LiveState(max_alerts=100)
    for k in range(n):  # each past max_alerts evicts the oldest, whose unit has a route
        state.apply_route(_route(f"V{k}", create.incident_id, create.ts))
        if k == 150:
            state.events = _CountingDict(state.events)
            _CountingDict.yielded = 0
        state.apply_alert(msgspec.structs.replace(create, alert_id=f"a{k}",
                                                  vehicle_id=f"V{k}"), wall=0.0)
    assert len(state.events) == 100
    assert _CountingDict.yielded == 0  # 149 evictions scanned no alert (was 100 each)
    _CountingDict.yielded = 0
    out = state.expire(None, wall=10_000.0)
    removed = [d["alert_id"] for name, d in out if name == "remove"]
    assert removed == [f"a{k}" for k in range(200, n)]
    assert sum(name == "route" for name, _ in out) == 100  # each unit's route dropped, told
    assert _CountingDict.yielded <= 100  # expire's own pass (was ~100 * 100 / 2 more)
    assert state.events == {} and state.snapshot()["routes"] == []


def test_the_vehicle_index_follows_the_live_alerts(replay) -> None:  # type: ignore[no-untyped-def]
    """``by_vehicle`` is the live alerts grouped by unit after every kind of change: a unit
    with two alerts, an update, a cancel, an eviction, an expiry; the route shows while one
    alert of its incident is live."""
    _, result = replay
    create = next(e for e in result.events if e.action == "create" and e.incident_id)
    vid = create.vehicle_id
    state = LiveState(max_alerts=3)

    def grouped() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for aid, ev in state.events.items():
            out.setdefault(ev.vehicle_id, set()).add(aid)
        return out

    def check() -> None:
        assert {v: set(a) for v, a in state.by_vehicle.items()} == grouped()

    state.apply_route(_route(vid, create.incident_id, create.ts))
    state.apply_alert(create)
    other = msgspec.structs.replace(create, alert_id="ev-other", incident_id="OTHER")
    state.apply_alert(other)
    check()
    assert state.by_vehicle[vid].keys() == {create.alert_id, "ev-other"}
    state.apply_alert(msgspec.structs.replace(create, action="update",
                                              version=create.version + 1))
    check()
    out = state.apply_alert(msgspec.structs.replace(create, action="cancel",
                                                    version=create.version + 2,
                                                    cancel_reason="cancelled"))
    check()
    assert [n for n, _ in out] == ["remove", "route"]  # the other alert is another incident's
    for k in range(3):  # evicts ev-other
        state.apply_alert(msgspec.structs.replace(create, alert_id=f"x{k}", vehicle_id=f"W{k}"))
        check()
    assert vid not in state.by_vehicle
    state.expire(None, wall=10_000.0)
    check()
    assert state.by_vehicle == {}
