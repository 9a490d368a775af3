"""Counted demand weighs roads by class: arterials carry more per lane than side streets;
recorded demand replays a calibrated model's trips."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.simulate.demand import CLASS_WEIGHT, recorded_trips, road_class_weight
from broker.simulate.network import BuiltNetwork, Scenario, ScenarioError, TrafficRecipe

ORDER = ["motorway", "primary", "secondary", "tertiary", "unclassified", "residential", "service"]


def test_osm_classes_rank_arterials_above_side_streets() -> None:
    weights = [road_class_weight(f"highway.{c}", 13.9, 1) for c in ORDER]
    assert weights == sorted(weights, reverse=True)
    assert len(set(weights)) == len(weights)
    # a combined SUMO type (road + tram) still reads the road's class
    assert road_class_weight("railway.tram|highway.primary", 5.0, 1) == CLASS_WEIGHT["primary"]


@given(st.floats(0.0, 40.0), st.floats(0.0, 40.0), st.integers(1, 4))
def test_without_a_class_a_faster_road_never_weighs_less(a: float, b: float, lanes: int) -> None:
    lo, hi = sorted((a, b))
    assert road_class_weight("", lo, lanes) <= road_class_weight("", hi, lanes)
    assert 0.0 < road_class_weight("", lo, lanes) <= 1.0


# --- recorded demand: a calibrated model's trips, shifted and sampled ---------------------------

TRIPS = """<?xml version="1.0" encoding="UTF-8"?>
<routes>
    <vType id="car" vClass="passenger"/>
    <trip id="b" type="car" depart="57610.00" from="e1" to="e2"/>
    <trip id="a" type="car" depart="57600.00" from="e1" to="e3"/>
{more}    <trip id="late" type="car" depart="61000.00" from="e2" to="e3"/>
</routes>
"""


def _built(tmp_path: Path, text: str, **traffic: Any) -> BuiltNetwork:
    """A built network whose recipe replays ``text`` (a trip file) from 57,600 s (16:00)."""
    (tmp_path / "trips.xml").write_text(text)
    recipe = TrafficRecipe(**{"demand": "recorded", "trips": str(tmp_path / "trips.xml"),
                              "trips_begin_s": 57600.0, **traffic})  # fmt: skip
    scenario = Scenario("rec", "rec", "city", {}, traffic=recipe)
    return BuiltNetwork(scenario, tmp_path, tmp_path / "n", tmp_path / "r", None)  # type: ignore[arg-type]


def _trips(text: str) -> list[dict[str, str]]:
    return [dict(el.attrib) for el in ET.fromstring(text) if el.tag == "trip"]


def test_recorded_trips_start_at_zero_in_order_with_civilian_ids(tmp_path: Path) -> None:
    text = recorded_trips(_built(tmp_path, TRIPS.format(more="")), 1.0, seed=1, end_s=1500.0)
    trips = _trips(text)
    assert [(t["id"], t["depart"]) for t in trips] == [("civa", "0.00"), ("civb", "10.00")]
    assert trips[0]["from"] == "e1" and trips[0]["to"] == "e3" and trips[0]["type"] == "car"
    assert trips[0]["departLane"] == "best" and trips[0]["departSpeed"] == "max"
    assert "<vType" in text  # the model's vehicle types come along
    # the late trip (3,400 s into the hour) is past the run's end
    assert "civlate" in recorded_trips(_built(tmp_path, TRIPS.format(more="")), 1.0, 1, 3600.0)


def test_a_share_of_the_trips_is_a_seeded_sample(tmp_path: Path) -> None:
    more = "".join(
        f'    <trip id="m{i}" type="car" depart="{57620 + i}.00" from="e1" to="e2"/>\n'
        for i in range(400)
    )
    built = _built(tmp_path, TRIPS.format(more=more))
    half = {t["id"] for t in _trips(recorded_trips(built, 0.5, seed=1, end_s=1500.0))}
    assert 160 < len(half) < 241  # about half of 402
    assert half == {t["id"] for t in _trips(recorded_trips(built, 0.5, seed=1, end_s=1500.0))}
    other = {t["id"] for t in _trips(recorded_trips(built, 0.5, seed=2, end_s=1500.0))}
    assert other != half
    # a shorter run keeps the same sample of what it still holds
    short = {t["id"] for t in _trips(recorded_trips(built, 0.5, seed=1, end_s=100.0))}
    assert short == {i for i in half if i in {"civa", "civb"} | {f"civm{n}" for n in range(80)}}


def test_recorded_demand_without_trips_or_within_the_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"needs \[traffic\] trips"):
        recorded_trips(_built(tmp_path, TRIPS.format(more=""), trips=""), 1.0, 1, 1500.0)
    bad = _built(tmp_path, "<routes><trip")
    with pytest.raises(ScenarioError, match="not a readable SUMO trip file"):
        recorded_trips(bad, 1.0, 1, 1500.0)
    early = _built(tmp_path, TRIPS.format(more=""), trips_begin_s=0.0)  # 57,600 s in: none
    with pytest.raises(ScenarioError, match="no trips depart within"):
        recorded_trips(early, 1.0, 1, 1500.0)
