"""The street an alert is about, from the engine to each partner's output.

With a road network the engine names the unit's road (``AlertEvent.street``); a partner whose
policy allows ``street`` gets it as the CIFS item's ``street`` (required there: a placeholder
went out on every item before), CAP's ``areaDesc``, the webhook body's ``street``; one whose
policy does not gets nothing, and no partner gets a street from a dispatch alert's event (the
street at the start of its route is the station's). The events are the engine's own.
"""

from __future__ import annotations

import json
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from msgspec.structs import replace

from adapters.config import PartnersConfig
from adapters.fanout import render_for
from adapters.feeds import serve_feed
from adapters.geojson import feature
from adapters.policy import Policy, view_as_dict, view_for
from adapters.transparency import CATEGORY_TEXT, build_reports, format_text
from adapters.waze_cifs import FALLBACK_STREET
from broker import engine
from broker.model import AlertEvent
from broker.settings import EngineConfig
from tests.conftest import at, east_route, fix, street_grid
from tests.unit.adapters.factory import CONFIG, KEY

DISPATCH = EngineConfig(dispatch_cover_m=500.0, dispatch_cover_s=90.0, dispatch_hold_s=0.0)
ROAD = "r7"  # street_grid's east-west street through the Square, which east_route follows
CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


def engine_events(*, roads: bool = True) -> tuple[AlertEvent, AlertEvent, AlertEvent]:
    """The dispatch create (the CAD route at 0 s), the update the unit's first emergency fix
    makes (20 s, 100 m along), and the on-scene create 500 m along (40 s)."""
    net = street_grid() if roads else None
    state, (create,) = engine.step(None, east_route(), now=at(0.0), cfg=DISPATCH, roads=net)
    state, (update,) = engine.step(state, fix(20.0, 100.0), now=at(20.0), cfg=DISPATCH,
                                   roads=net)  # fmt: skip
    scene = fix(40.0, 500.0, status="on_scene", speed_mps=0.0)
    _, (_, on_scene) = engine.step(state, scene, now=at(40.0), cfg=DISPATCH, roads=net)
    assert (create.action, update.action, on_scene.kind) == ("create", "update", "on_scene")
    return create, update, on_scene


def test_the_engine_names_the_road_but_never_for_a_dispatch_alert() -> None:
    create, update, on_scene = engine_events()
    assert create.before_emergency and create.street is None
    assert update.street == ROAD and on_scene.street == ROAD
    assert all(ev.street is None for ev in engine_events(roads=False))


def feed_body(pid: str, event: AlertEvent, config: PartnersConfig = CONFIG) -> bytes:
    token = config.by_id()[pid].feed_token.reveal()
    resp = serve_feed(config, pid, f"Bearer {token}", [event], event.ts + timedelta(seconds=5))
    assert resp.status == 200
    return resp.body


def test_the_cifs_item_and_the_cap_area_carry_the_street() -> None:
    _, _, on_scene = engine_events()
    (item,) = json.loads(feed_body("waze", on_scene))["incidents"]
    assert item["street"] == ROAD
    cap = feed_body("county", on_scene)
    assert f"<cap:areaDesc>{ROAD}</cap:areaDesc>".encode() in cap


def test_a_webhook_body_carries_the_street_where_the_policy_allows_it() -> None:
    _, update, _ = engine_events()
    navapp = CONFIG.by_id()["navapp"]
    assert "street" in navapp.policy.fields
    view = view_for(update, navapp.policy, key=KEY)
    assert view.street == ROAD and "street" in view.fields_sent
    body = json.loads(render_for(navapp, view, sender="test", delivered=None).body)
    assert body["data"]["street"] == ROAD
    assert feature(view)["properties"]["street"] == ROAD  # navapp's feed (GeoJSON)
    opendata = CONFIG.by_id()["opendata"]
    assert "street" not in opendata.policy.fields
    assert view_for(update, opendata.policy, key=KEY).street is None
    geojson = json.loads(feed_body("opendata", update))
    assert all("street" not in f["properties"] for f in geojson["features"])


@pytest.mark.parametrize("operator", [False, True])
def test_no_partner_gets_a_street_from_a_dispatch_alerts_event(operator: bool) -> None:
    """Even one that carried a street (an engine that named it, an event from elsewhere)."""
    create, _, _ = engine_events()
    named = replace(create, street="Station Rd")
    view = view_for(named, Policy(fields=frozenset({"street"}), dispatch_position=operator),
                    key=KEY)  # fmt: skip
    if operator:  # the operator's console sees where the unit stands anyway
        assert view.street == "Station Rd"
    else:
        assert view.street is None and "street" not in view_as_dict(view)
    if not operator:
        (item,) = json.loads(feed_body("waze", named))["incidents"]
        assert item["street"] == FALLBACK_STREET
        area = ElementTree.fromstring(feed_body("county", named))
        descs = [e.text for e in area.iter("{urn:oasis:names:tc:emergency:cap:1.2}areaDesc")]
        assert descs and "Station Rd" not in descs


def test_the_transparency_report_says_what_the_street_is_and_when_it_is_withheld() -> None:
    text = format_text(build_reports(CONFIG, []))
    assert text.count(CATEGORY_TEXT["street"]) == 3  # navapp, waze, county (not open data)
    assert "never for a vehicle just dispatched" in CATEGORY_TEXT["street"]
