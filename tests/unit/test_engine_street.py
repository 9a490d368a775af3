"""The street an alert is about (``AlertEvent.street``), as the engine sets it over whole incidents.

The fixture incidents say which streets each unit drives (``streets`` in incident.toml, from the
generator's route): replayed with the Charlotte Uptown network, the names the events carry must be
those streets, in that order, each once. A dispatch alert's events never carry one (the street at
the start of its route is the station's), and without a road network, or on roads without names,
no event does.
"""

from __future__ import annotations

import json
import tomllib
from functools import cache
from pathlib import Path

import pytest
from msgspec.structs import replace

from broker.geo.roads import RoadNetwork
from broker.model import AlertEvent
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig

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
