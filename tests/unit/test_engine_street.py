"""The street an alert is about (``AlertEvent.street``), as the engine sets it over whole incidents.

The fixture incidents say which streets each unit drives (``streets`` in incident.toml, from the
generator's route): replayed with the Charlotte Uptown network, the names the events carry must be
those streets, in that order, each once. A dispatch alert's events never carry one (the street at
the start of its route is the station's), and without a road network, or on roads without names,
no event does.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from functools import cache
from pathlib import Path

import pytest
from msgspec.structs import replace

from broker import engine
from broker.geo.memo import GeoMemo
from broker.geo.roads import RoadNetwork
from broker.geo.zoning import WarningZone, ZoneRequest, warning_zone
from broker.model import AlertEvent, VehicleState
from broker.reckoning import dispatch_start
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig
from broker.ticks import dispatched
from tests.conftest import LAT0, LON0, M_PER_DEG_LON, at, east_route, fix, street_grid

ROOT = Path(__file__).resolve().parents[2]
INCIDENTS = ROOT / "fixtures" / "incidents"
CHARLOTTE = ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson"
SMALL = ["route-downtown", "on-scene", "highway-on-scene", "dead-reckoning", "noisy-gps"]


@cache
def charlotte() -> RoadNetwork:
    return RoadNetwork.load(CHARLOTTE)


def replay(name: str, roads: RoadNetwork | None) -> list[AlertEvent]:
    cfg = EngineConfig()
    return replay_in_process(load_messages(INCIDENTS / name), cfg=cfg, roads=roads).events


def streets_in_order(events: list[AlertEvent]) -> list[str]:
    """The names the events carry, each run of one name counted once."""
    out: list[str] = []
    for ev in events:
        if ev.street is not None and (not out or out[-1] != ev.street):
            out.append(ev.street)
    return out


@pytest.mark.parametrize("name", SMALL)
def test_the_events_name_the_streets_each_unit_drives(name: str) -> None:
    events = replay(name, charlotte())
    incident = tomllib.loads((INCIDENTS / name / "incident.toml").read_text())
    for vehicle in incident["vehicles"]:
        mine = [ev for ev in events if ev.vehicle_id == vehicle["vehicle_id"]]
        assert streets_in_order(mine) == vehicle["streets"]
    for ev in events:
        if ev.before_emergency:
            assert ev.street is None  # the station's street: never
        else:
            assert ev.street  # every road of these incidents has a name
    # a cancel repeats the last name its alert gave (a CIFS item kept after it keeps its street)
    last: dict[str, str | None] = {}
    for ev in events:
        if ev.action == "cancel":
            assert ev.street == last[ev.alert_id]
        last[ev.alert_id] = ev.street


def test_no_street_without_a_road_network() -> None:
    events = replay("route-downtown", None)
    assert events and all(ev.street is None for ev in events)


def test_no_street_on_roads_without_names() -> None:
    doc = json.loads(CHARLOTTE.read_text())
    for feature in doc["features"]:
        feature["properties"].pop("name", None)
    unnamed = RoadNetwork.from_features(doc["features"], frame=charlotte().frame)
    events = replay("on-scene", unnamed)
    assert events and all(ev.street is None for ev in events)
    # the zones are the named network's: only the names are gone
    named = replay("on-scene", charlotte())
    assert [replace(ev, street=None) for ev in named] == events


# ---- each guard on its own -----------------------------------------------------------------
# A dispatch alert's street is withheld twice: its zone request asks for no name
# (``reckoning.dispatch_start``: ``named=False``), and ``lifecycle.emit`` drops any name its zone
# came with (``from_dispatch``). Each is tested here with the other out of the way.

DISPATCH = EngineConfig(dispatch_cover_m=500.0, dispatch_cover_s=90.0, dispatch_hold_s=0.0)


def test_a_dispatch_alerts_zone_request_asks_for_no_name() -> None:
    """The zone builder alone, given the dispatch alert's request, names no street: the route
    starts on a named road (r7), which any other request there gets."""
    net, memo = street_grid(), GeoMemo()
    start = dispatch_start(VehicleState(vehicle_id="CFD-E7"), east_route(), DISPATCH, memo)
    assert start is not None and not start.req.named
    assert warning_zone(start.req, DISPATCH, net, memo).street is None
    named = dataclasses.replace(start.req, named=True)
    assert warning_zone(named, DISPATCH, net, memo).street == "r7"


def test_a_dispatch_alert_drops_a_name_its_zone_came_with() -> None:
    """``emit`` alone: a zone builder that named the station's street anyway (one that does not
    honour ``named``) gives the dispatch alert's event and state no street."""
    net, memo = street_grid(), GeoMemo()

    def naming(req: ZoneRequest) -> WarningZone:
        return dataclasses.replace(warning_zone(req, DISPATCH, net, memo), street="Station Rd")

    state, (create,) = dispatched(VehicleState(vehicle_id="CFD-E7"), east_route(), DISPATCH,
                                  memo, naming)  # fmt: skip
    assert create.before_emergency and create.street is None
    assert state.alert is not None and state.alert.street is None
    # the same builder on the unit's first emergency fix: the name goes through
    state, (update,) = engine.step(state, fix(20.0, 100.0), now=at(20.0), cfg=DISPATCH, roads=net)
    assert update.street == "r7"


def test_the_engine_keeps_the_last_name_at_a_corner() -> None:
    """On scene without a heading: the unit moves 51 m (an update) to 2 m from the cross street
    r22 and 14 m from its own r7; the name given (r7) stays, through the engine (the state's
    last name reaches the zone request); 64 m up r22 it changes."""
    net, cfg = street_grid(), EngineConfig()
    state, names = None, []
    for t, (east, north) in enumerate([(-48.0, 2.0), (2.0, 14.0), (4.0, 64.0)]):
        scene = fix(t * 10.0, east, north_m=north, status="on_scene", speed_mps=0.0,
                    heading_deg=None)  # fmt: skip
        state, events = engine.step(state, scene, now=at(t * 10.0), cfg=cfg, roads=net)
        (event,) = events
        names.append(event.street)
    assert names == ["r7", "r7", "r22"]
    x, y = net.frame.to_xy(LON0 + 2.0 / M_PER_DEG_LON, LAT0 + 14.0 / 110_950.0)
    assert net.street_at(x, y, None, within_m=55.0) == "r22"  # without the last name
