"""Every fixture in its three forms - combined, split (AVL + cad.status), Traccar - replays to the
same alerts, byte for byte (broker.ingest_forms, through the one driver loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker import codec
from broker.agencies import Agencies, load_agencies
from broker.drive import CAD_STATUS, POSITIONS, TRACCAR
from broker.geo.roads import RoadNetwork
from broker.ingest_forms import Form, in_form, split_form, traccar_form
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
INCIDENTS = sorted(p.name for p in (FIXTURES / "incidents").iterdir() if p.is_dir())
SMALL = [n for n in INCIDENTS if n != "fleet-200"]
CFG = EngineConfig()


@pytest.fixture(scope="module")
def agencies() -> Agencies:
    return load_agencies(FIXTURES / "agencies.toml")


@pytest.fixture(scope="module")
def roads() -> RoadNetwork:
    return RoadNetwork.load(FIXTURES / "roads" / "charlotte-uptown.geojson")


def alerts(messages: list[tuple[str, bytes]], agencies: Agencies | None,
           roads: RoadNetwork | None = None) -> list[bytes]:
    result = replay_in_process(messages, cfg=CFG, roads=roads, agencies=agencies)
    assert result.rejections == []
    return [codec.encode(e) for e in result.events]


@pytest.mark.parametrize("name", INCIDENTS)
@pytest.mark.parametrize("form", ["split", "traccar"])
def test_each_form_gives_the_alerts_of_the_combined_form(
    name: str, form: Form, agencies: Agencies
) -> None:
    combined = load_messages(FIXTURES / "incidents" / name)
    expected = alerts(combined, None)
    assert expected  # every fixture alerts
    assert alerts(in_form(combined, form, agencies), agencies) == expected


@pytest.mark.parametrize("name", SMALL)
def test_with_roads_too(name: str, agencies: Agencies, roads: RoadNetwork) -> None:
    combined = load_messages(FIXTURES / "incidents" / name)
    expected = alerts(combined, None, roads)
    assert alerts(split_form(combined), None, roads) == expected
    assert alerts(traccar_form(combined, agencies), agencies, roads) == expected


def test_the_split_form_carries_status_only_on_cad_status() -> None:
    combined = load_messages(FIXTURES / "incidents" / "route-downtown")
    split = split_form(combined)
    fixes = [json.loads(raw) for topic, raw in split if topic == POSITIONS]
    statuses = [json.loads(raw) for topic, raw in split if topic == CAD_STATUS]
    assert fixes and not any({"status", "lights_sirens", "incident_id"} & f.keys() for f in fixes)
    # one event per change, not per fix: available, dispatched, responding, on scene, ...
    assert 3 <= len(statuses) <= 10 < len(fixes)
    assert statuses[0]["status"] == "available"


def test_the_traccar_form_has_the_lights_on_the_lightbar_input(agencies: Agencies) -> None:
    combined = load_messages(FIXTURES / "incidents" / "route-downtown")
    messages = traccar_form(combined, agencies)
    positions = [json.loads(raw)["position"] for topic, raw in messages if topic == TRACCAR]
    assert {p["attributes"]["in2"] for p in positions} == {True, False}
    assert all("lights_sirens" not in json.loads(raw) for t, raw in messages if t == CAD_STATUS)


def test_the_committed_samples_replay_to_the_combined_alerts() -> None:
    base = FIXTURES / "ingest"
    expected = alerts(load_messages(FIXTURES / "incidents" / "route-downtown"), None)
    assert alerts(load_messages(base / "route-downtown-split"), None) == expected
    traccar = base / "route-downtown-traccar"
    assert alerts(load_messages(traccar), load_agencies(traccar / "agencies.toml")) == expected


def test_the_traccar_form_needs_an_agency_file() -> None:
    with pytest.raises(ValueError, match="agency file"):
        in_form([], "traccar", None)
