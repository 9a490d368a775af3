"""A dispatch alert (made from the CAD route before the unit's first emergency fix) tells no
partner where the unit stands or how it moves, in any output: webhook, CAP and GeoJSON pushes,
their headers, the CIFS, CAP and GeoJSON pull feeds, and the audit records of each.

design.md: "Positions of units not in emergency mode never leave the broker". The dispatched
unit stands at the start of its route, lights off; the dispatch zone (the first stretch of the
route: the warning) goes out, its position, speed and heading do not. The events are the
engine's own (not hand-built), so these tests fail on a tree whose engine or policy lets them
through. Every partner here is given every position and motion field its format can carry.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import httpx
import msgspec
import pytest
from msgspec import UNSET

from adapters.audit import MemoryAudit
from adapters.config import PartnersConfig
from adapters.fanout import PartnerSet, fan_out, render_for
from adapters.feeds import serve_feed
from adapters.policy import Policy, view_as_dict, view_for
from broker import codec, engine
from broker.console.view import operator_alert, unit_of
from broker.model import AlertEvent
from broker.settings import EngineConfig
from tests.conftest import LAT0, LON0, at, east_route, fix
from tests.unit.adapters.factory import CONFIG, FakeTime, run_hub

DISPATCH = EngineConfig(dispatch_cover_m=500.0, dispatch_cover_s=90.0, dispatch_hold_s=0.0)
UNIT_KEYS = {"lat", "lon", "speed_mps", "heading_deg"}
TELL_ALL = frozenset({"position", "speed", "heading", "path", "segments", "street", "unit_type"})
# every sample partner, allowed every field that says where the unit is and how it moves
OPEN = PartnersConfig(
    partners=tuple(
        replace(p, policy=Policy(fields=TELL_ALL, coordinate_decimals=p.policy.coordinate_decimals))
        for p in CONFIG.partners
    ),
    pseudonym_key=CONFIG.pseudonym_key,
    cap_sender=CONFIG.cap_sender,
)
PARTNERS = OPEN.by_id()


def dispatch_then_takeover() -> tuple[AlertEvent, AlertEvent]:
    """The dispatch create (route at 0 s; the unit turning out at the route's start, lights
    off, at 1 s) and the update its first emergency fix makes (20 s, 100 m along)."""
    state, (create,) = engine.step(None, east_route(), now=at(0.0), cfg=DISPATCH)
    turnout = fix(1.0, 0.0, status="dispatched", lights_sirens=False, speed_mps=0.0)
    state, none = engine.step(state, turnout, now=at(1.0), cfg=DISPATCH)
    assert none == []  # turning out keeps the dispatch alert
    _, (update,) = engine.step(state, fix(20.0, 100.0), now=at(20.0), cfg=DISPATCH)
    assert (create.action, update.action) == ("create", "update")
    return create, update


def expired_dispatch_cancel() -> AlertEvent:
    """The cancel of a dispatch alert whose unit never made an emergency fix."""
    state, _ = engine.step(None, east_route(), now=at(0.0), cfg=DISPATCH)
    turnout = fix(1.0, 0.0, status="dispatched", lights_sirens=False, speed_mps=0.0)
    state, _ = engine.step(state, turnout, now=at(1.0), cfg=DISPATCH)
    _, (cancel,) = engine.tick(state, now=at(100.0), cfg=DISPATCH)
    assert (cancel.action, cancel.cancel_reason) == ("cancel", "expired")
    return cancel


def test_the_engine_marks_a_dispatch_alerts_events_and_not_those_of_its_fixes() -> None:
    create, update = dispatch_then_takeover()
    assert create.from_dispatch is True and create.before_emergency
    assert (create.lat, create.lon) == (LAT0, LON0)  # the route's start, kept for operators
    assert update.from_dispatch is UNSET and not update.before_emergency
    assert expired_dispatch_cancel().before_emergency
    # on the ``alerts`` topic: the marker only where it is set, so every other event is the
    # same bytes as before it existed, and both read back as they were
    assert b'"from_dispatch":true' in codec.encode(create)
    assert b"from_dispatch" not in codec.encode(update)
    for event in (create, update):
        again = codec.decode_alert(codec.encode(event))
        assert again.from_dispatch == event.from_dispatch
        assert codec.encode(again) == codec.encode(event)


def test_no_partner_view_of_a_dispatch_alert_has_the_units_position_speed_or_heading() -> None:
    create, update = dispatch_then_takeover()
    for pid, partner in PARTNERS.items():
        view = view_for(create, partner.policy, key=OPEN.key_for(pid))
        assert (view.lat, view.lon, view.speed_mps, view.heading_deg) == (None,) * 4, pid
        assert not {"position", "speed", "heading"} & set(view.fields_sent), pid  # the audit's
        assert not UNIT_KEYS & set(view_as_dict(view)), pid
        assert view.zone and len(view.path) >= 2  # the warning itself goes out
        taken_over = view_for(update, partner.policy, key=OPEN.key_for(pid))
        assert taken_over.lat is not None and taken_over.speed_mps is not None, pid


def test_the_operator_still_sees_where_a_dispatched_unit_stands() -> None:
    create, _ = dispatch_then_takeover()
    unit = unit_of(operator_alert(create))
    assert unit is not None and (unit["lat"], unit["lon"]) == (LAT0, LON0)


@pytest.mark.parametrize("pid", ["navapp", "county", "geopush"])
def test_no_push_body_of_a_dispatch_alert_carries_the_units_position_or_motion(pid) -> None:
    """webhook, CAP (in its JSON envelope), GeoJSON; the takeover update's does (positive)."""
    create, update = dispatch_then_takeover()
    partner = PARTNERS.get(pid) or replace(PARTNERS["opendata"], id=pid)

    def body(event: AlertEvent) -> bytes:
        view = view_for(event, partner.policy, key=OPEN.key_for(pid))
        return render_for(partner, view, sender=OPEN.cap_sender, delivered=None).body

    if partner.format == "webhook":
        data = json.loads(body(create))["data"]
        assert not UNIT_KEYS & set(data) and data["path"] and data["zone"]
        assert set(json.loads(body(update))["data"]) >= UNIT_KEYS
    elif partner.format == "cap":
        assert b"unitPosition" not in body(create) and b"unitPosition" in body(update)
    else:
        props = json.loads(body(create))["features"][0]["properties"]
        assert not UNIT_KEYS & set(props)
        assert {"lat", "lon"} <= set(json.loads(body(update))["features"][0]["properties"])


async def test_a_delivered_dispatch_alert_has_no_position_in_body_headers_or_audit(
    tmp_path,
) -> None:
    create, _ = dispatch_then_takeover()
    _, deliveries = fan_out(create, PartnerSet.from_config(OPEN), {}, create.ts)
    navapp = [d for d in deliveries if d.partner_id == "navapp"]
    assert len(navapp) == 1
    got: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(200)

    _, records, _, _ = await run_hub(partner, navapp, tmp_path, start=create.ts,
                                     fake=FakeTime(create.ts))
    (request,) = got
    data = json.loads(request.content)["data"]
    assert not UNIT_KEYS & set(data)
    lat = f"{round(LAT0, 5)}"
    assert not any(lat in v for v in request.headers.values())
    fields = {f for r in records if r.partner == "navapp" for f in r.fields}
    assert "path" in fields and not {"position", "speed", "heading"} & fields


@pytest.mark.parametrize("pid", ["waze", "county", "opendata"])
def test_no_pull_feed_of_a_dispatch_alert_carries_the_units_position_or_motion(pid) -> None:
    """CIFS, CAP (Atom), GeoJSON, and each feed response's audit record. CIFS has no field for
    the unit's position (its polyline is the path, the warning): its body is checked so that
    one added later is too; its audit record named ``position`` before."""
    create, _ = dispatch_then_takeover()
    audit = MemoryAudit()
    token = OPEN.by_id()[pid].feed_token.reveal()
    resp = serve_feed(OPEN, pid, f"Bearer {token}", [create], create.ts + timedelta(seconds=5),
                      audit=audit)
    assert resp.status == 200
    if pid == "waze":
        (item,) = json.loads(resp.body)["incidents"]
        assert set(item) == {"id", "type", "subtype", "polyline", "direction", "street",
                             "starttime", "endtime", "updatetime", "description"}
    elif pid == "county":
        assert b"<cap:alert" in resp.body and b"unitPosition" not in resp.body
    else:
        (feature, *_) = json.loads(resp.body)["features"]
        assert not UNIT_KEYS & set(feature["properties"])
    record = audit.records[-1]
    assert record.alerts == 1 and not {"position", "speed", "heading"} & set(record.fields)


def test_an_event_written_before_the_marker_reads_as_not_from_dispatch() -> None:
    _, update = dispatch_then_takeover()
    raw = msgspec.json.decode(codec.encode(update))
    assert "from_dispatch" not in raw
    assert codec.decode_alert(msgspec.json.encode(raw)).from_dispatch is UNSET
