"""Charlotte's network as other tools export it: it loads as it should, or is refused saying why.

Two exports of ``fixtures/roads/charlotte-uptown.geojson``: its classes written with the scheme
in front (``highway.motorway``, as SUMO and some GIS exports write them; refused as "no drivable
roads" before issue 15), and the same with every line end pulled back 3 m from its junction
(lines that stop short of each other, as traffic-model exports draw them; loaded silently as a
few hundred pieces before).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from broker.geo.projection import frame_for
from broker.geo.roads import RoadNetwork, RoadNetworkError
from tests.unit.geo.test_roads_unchanged import CHARLOTTE, CHARLOTTE_GRAPH_SHA256, graph_fingerprint

FRAME = frame_for(-80.84, 35.22)


def export(tmp: Path, *, pull_back_m: float = 0.0) -> Path:
    doc = json.loads(CHARLOTTE.read_text())
    for feature in doc["features"]:
        feature["properties"]["highway"] = "highway." + feature["properties"]["highway"]
        if not pull_back_m:
            continue
        xy = FRAME.coords_to_xy(np.array(feature["geometry"]["coordinates"]))
        for end, nxt in ((0, 1), (-1, -2)):
            step = xy[nxt] - xy[end]
            length = float(np.hypot(*step))
            if length > 3 * pull_back_m:
                xy[end] = xy[end] + step / length * pull_back_m
        feature["geometry"]["coordinates"] = FRAME.coords_to_lonlat(xy).tolist()
    path = tmp / "export.geojson"
    path.write_text(json.dumps(doc))
    return path


def test_prefixed_classes_load_to_the_very_same_graph(tmp_path: Path) -> None:
    net = RoadNetwork.load(export(tmp_path))
    assert graph_fingerprint(net) == CHARLOTTE_GRAPH_SHA256
    assert net.check.usable and not net.check.warnings and not net.check.unknown_classes


def test_lines_stopping_short_are_refused_and_the_snap_joins_them(tmp_path: Path) -> None:
    path = export(tmp_path, pull_back_m=3.0)
    with pytest.raises(RoadNetworkError, match="mostly disconnected") as info:
        RoadNetwork.load(path)
    assert "snap_m = " in str(info.value)
    report = RoadNetwork.load(path, allow_unusable=True).check
    assert report.largest_share < 0.1 and report.components > 200
    # two lines drawn end to end, both pulled back: 6 m apart, so the near-miss radius must
    # cover that before the suggestion does
    wide = RoadNetwork.load(path, allow_unusable=True).check_with(near_miss_m=7.0)
    snap = max(m.gap_m for m in wide.near_misses)
    joined = RoadNetwork.load(path, snap_m=float(np.ceil(snap * 2) / 2)).check
    assert joined.components == 1 and joined.usable
    assert joined.km_total == pytest.approx(report.km_total, rel=1e-3)


def test_upper_case_columns_load_to_the_very_same_graph(tmp_path: Path) -> None:
    """GIS exports often write columns in upper case (``"ONEWAY": "yes"``). The class was
    matched ignoring case, ``oneway``, ``name`` and ``maxspeed`` were not: one-way streets
    loaded as two-way, names and speeds fell back to none and the class default."""
    doc = json.loads(CHARLOTTE.read_text())
    for feature in doc["features"]:
        feature["properties"] = {k.upper(): v for k, v in feature["properties"].items()}
    path = tmp_path / "upper.geojson"
    path.write_text(json.dumps(doc))
    net = RoadNetwork.load(path)
    assert graph_fingerprint(net) == CHARLOTTE_GRAPH_SHA256


def test_any_spelling_of_a_key_is_read_the_lower_case_one_first() -> None:
    from broker.geo.roads.geojson import read_geojson_ways

    line = {"type": "LineString", "coordinates": [[-80.84, 35.22], [-80.83, 35.22]]}
    props = [
        {"highway": "residential", "OneWay": "-1", "Name": "Trade St", "MAXSPEED": "30 mph"},
        # the lower-case key as written wins; a blank one gives way to another spelling
        {"highway": "residential", "oneway": "no", "ONEWAY": "yes", "name": "", "NAME": "Tryon"},
        {"HIGHWAY": "primary", "MAXSPEED_MPS": 12.5, "ACCESS": "no"},  # closed to cars
        {"ROAD_CLASS": "Freeway", "ONEWAY": "yes"},  # a mapped class: the line's own direction
    ]
    ways = list(read_geojson_ways([{"geometry": line, "properties": p} for p in props]))
    assert [(w.name, w.oneway, round(w.speed_mps, 2)) for w in ways] == [
        ("Trade St", -1, 13.41), ("Tryon", 0, 11.11), ("", 1, 30.56),
    ]  # fmt: skip


def test_access_and_area_values_are_read_in_any_case() -> None:
    """A GIS export's ``ACCESS: "No"`` was compared as written and the way kept for cars."""
    from broker.geo.roads.geojson import read_geojson_ways
    from broker.geo.roads.osm import closed_to_cars

    line = {"type": "LineString", "coordinates": [[-80.84, 35.22], [-80.83, 35.22]]}
    props = [{"highway": "primary", "access": "No"}, {"highway": "primary", "area": "Yes"},
             {"highway": "primary", "motor_vehicle": " Agricultural"},
             {"highway": "service", "service": "Parking_Aisle"},
             {"highway": "primary", "access": "Destination"}]  # fmt: skip
    ways = list(read_geojson_ways([{"geometry": line, "properties": p} for p in props]))
    assert len(ways) == 1  # only the last: destination traffic drives there
    assert [closed_to_cars(p) for p in props[:4]] == [
        "no_motor_vehicles", "area", "no_motor_vehicles", "parking_aisle"]
