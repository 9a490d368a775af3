"""The incident fixtures: reproducible, on the wire format, 1 Hz, on real-looking Charlotte streets.

The generator runs twice into temporary directories (with different hash seeds, so set or dict
ordering cannot leak in) and must write the same bytes both times, equal to the committed files.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import gpxpy
import pytest

from broker.codec import decode_position, decode_route
from broker.model import Fix, Route

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
INCIDENTS = FIXTURES / "incidents"
GENERATED_DIRS = ("incidents", "roads", "tracks", "bad_messages", "ingest", "traccar")
GENERATED_FILES = ("agencies.toml",)
SINGLE = ["route-downtown", "dead-reckoning", "on-scene", "noisy-gps", "highway-on-scene"]
ALL = [*SINGLE, "fleet-200"]
WIRE_KEYS = [
    "vehicle_id",
    "agency",
    "ts",
    "lat",
    "lon",
    "speed_mps",
    "heading_deg",
    "status",
    "lights_sirens",
    "incident_id",
    "unit_type",
    "accuracy_m",
]
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
M_PER_DEG_LAT, M_PER_DEG_LON = 110_945.0, 91_029.0  # at 35.23 N; enough for sanity checks


def metres(a: dict[str, Any], b: dict[str, Any]) -> float:
    return math.hypot((a["lat"] - b["lat"]) * M_PER_DEG_LAT, (a["lon"] - b["lon"]) * M_PER_DEG_LON)


def when(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def files_under(root: Path) -> dict[str, bytes]:
    out = {}
    for d in GENERATED_DIRS:
        for p in sorted((root / d).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    for name in GENERATED_FILES:
        if (root / name).is_file():
            out[name] = (root / name).read_bytes()
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, bytes]]:
    runs = []
    for seed in ("1", "2"):
        out = tmp_path_factory.mktemp(f"gen{seed}")
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, str(FIXTURES / "generate.py"), "--out", str(out)],
            check=True,
            env=env,
            capture_output=True,
        )
        runs.append(files_under(out))
    return runs


@pytest.fixture(scope="module")
def roads() -> dict[str, Any]:
    return json.loads((FIXTURES / "roads" / "charlotte-uptown.geojson").read_text())


@pytest.fixture(scope="module")
def meta() -> dict[str, dict[str, Any]]:
    return {n: tomllib.loads((INCIDENTS / n / "incident.toml").read_text()) for n in ALL}


@pytest.fixture(scope="module")
def positions() -> dict[str, list[dict[str, Any]]]:
    return {n: ndjson(INCIDENTS / n / "positions.ndjson") for n in ALL}


# --- reproducible ---
def test_the_generator_is_deterministic(generated: list[dict[str, bytes]]) -> None:
    first, second = generated
    assert sorted(first) == sorted(second)
    different = [k for k in first if first[k] != second[k]]
    assert not different


def test_the_committed_fixtures_are_what_the_generator_writes(
    generated: list[dict[str, bytes]],
) -> None:
    committed = files_under(FIXTURES)
    fresh = generated[0]
    assert sorted(committed) == sorted(fresh), "stale or missing files: rerun fixtures/generate.py"
    stale = [k for k in fresh if committed[k] != fresh[k]]
    assert not stale, f"rerun fixtures/generate.py; differs: {stale[:5]}"


# --- wire format ---
@pytest.mark.parametrize("name", ALL)
def test_every_position_line_is_a_wire_position(name: str) -> None:
    lines = (INCIDENTS / name / "positions.ndjson").read_bytes().splitlines()
    assert len(lines) > 100
    for raw in lines:
        pos = decode_position(raw)
        assert isinstance(pos, Fix), (raw, pos)
    for msg in ndjson(INCIDENTS / name / "positions.ndjson")[:2000]:
        assert list(msg) == WIRE_KEYS
        assert TS_RE.match(msg["ts"]), msg["ts"]
        assert 3.0 <= msg["accuracy_m"] <= 30.0


@pytest.mark.parametrize("name", [n for n in ALL if n != "dead-reckoning"])
def test_routes_decode_and_are_published_at_dispatch(
    name: str, positions: dict[str, list[dict[str, Any]]]
) -> None:
    raw_lines = (INCIDENTS / name / "routes.ndjson").read_bytes().splitlines()
    by_vehicle = defaultdict(list)
    for p in positions[name]:
        by_vehicle[p["vehicle_id"]].append(p)
    for raw in raw_lines:
        route = decode_route(raw)
        assert isinstance(route, Route), route
        fixes = by_vehicle[route.vehicle_id]
        dispatched = next(p for p in fixes if p["status"] == "dispatched")
        moving = next(p for p in fixes if p["status"] == "responding" and p["speed_mps"] > 1.0)
        assert when(dispatched["ts"]) == route.ts < when(moving["ts"])
        assert dispatched["incident_id"] == route.incident_id
        end_lon, end_lat = route.route.coordinates[-1]
        assert (route.destination.lon, route.destination.lat) == (end_lon, end_lat)


def test_dead_reckoning_has_no_routes(meta: dict[str, dict[str, Any]]) -> None:
    assert not (INCIDENTS / "dead-reckoning" / "routes.ndjson").exists()
    assert meta["dead-reckoning"]["has_routes"] is False
    assert len(meta["dead-reckoning"]["truth"]["path"]) >= 5  # the path driven is documented


# --- cadence ---
@pytest.mark.parametrize("name", [n for n in ALL if n != "noisy-gps"])
def test_fixes_are_1_hz_per_vehicle(name: str, positions: dict[str, list[dict[str, Any]]]) -> None:
    last: dict[str, datetime] = {}
    for p in positions[name]:
        t = when(p["ts"])
        if p["vehicle_id"] in last:
            assert t - last[p["vehicle_id"]] == timedelta(seconds=1), p
        last[p["vehicle_id"]] = t


def test_noisy_gps_faults_are_exactly_where_documented(
    meta: dict[str, dict[str, Any]], positions: dict[str, list[dict[str, Any]]]
) -> None:
    faults = meta["noisy-gps"]["faults"]
    fixes = positions["noisy-gps"]
    seen: defaultdict[str, list[int]] = defaultdict(list)  # 1-based line numbers
    newest = when(fixes[0]["ts"])
    for i, (a, b) in enumerate(itertools.pairwise(fixes), start=2):
        step = when(b["ts"]) - when(a["ts"])
        if step == timedelta(0):
            seen["duplicate"].append(i)
            assert a == b
        elif when(b["ts"]) < newest:
            seen["out_of_order"].append(i)
        elif step != timedelta(seconds=1) and when(a["ts"]) == newest:
            seen["gap"].append(i)
        newest = max(newest, when(b["ts"]))
    assert seen["duplicate"] == [d["lines"][1] for d in faults["duplicates"]]
    assert seen["out_of_order"] == [d["line"] for d in faults["out_of_order"]]
    # after a swapped pair the next fix is 2 s after the older one; only the dropout is longer
    long_gaps = [
        i
        for i in seen["gap"]
        if when(fixes[i - 1]["ts"]) - when(fixes[i - 2]["ts"]) > timedelta(seconds=2)
    ]
    assert len(long_gaps) == 1
    after = fixes[long_gaps[0] - 1]
    assert after["ts"] == faults["dropout"]["first_fix_after"]
    gap = when(after["ts"]) - when(faults["dropout"]["last_fix_before"])
    assert gap == timedelta(seconds=faults["dropout"]["gap_s"]) == timedelta(seconds=46)
    expected = meta["noisy-gps"]["expected"]["ignored_fixes"]
    assert expected == {"duplicates": 3, "out_of_order": 3, "jumps": 1}


def test_noisy_gps_has_one_300_m_jump_then_back(
    meta: dict[str, dict[str, Any]], positions: dict[str, list[dict[str, Any]]]
) -> None:
    truth = {t["ts"]: t for t in ndjson(INCIDENTS / "noisy-gps" / "truth.ndjson")}
    (jump,) = meta["noisy-gps"]["faults"]["jumps"]
    fixes = positions["noisy-gps"]
    off = {i: metres(p, truth[p["ts"]]) for i, p in enumerate(fixes, start=1)}
    assert 260.0 < off[jump["line"]] < 340.0
    assert max(d for i, d in off.items() if i != jump["line"]) < 60.0


# --- physics and geography ---
@pytest.mark.parametrize("name", SINGLE)
def test_units_drive_like_fire_apparatus(
    name: str, positions: dict[str, list[dict[str, Any]]]
) -> None:
    truth = ndjson(INCIDENTS / name / "truth.ndjson")
    speeds = [t["speed_mps"] for t in truth]
    assert max(speeds) <= 26.0
    changes = [b - a for a, b in itertools.pairwise(speeds)]
    assert min(changes) >= -3.05 and max(changes) <= 2.05  # brake ~3, accelerate ~2 m/s^2
    if name != "noisy-gps":
        errors = sorted(metres(p, t) for p, t in zip(positions[name], truth, strict=True))
        assert 1.5 < errors[len(errors) // 2] < 6.0  # median GPS error of a few metres
        assert errors[-1] < 25.0


@pytest.mark.parametrize("name", SINGLE)
def test_statuses_run_dispatch_to_clear(
    name: str, positions: dict[str, list[dict[str, Any]]]
) -> None:
    order = []
    for p in positions[name]:
        if not order or order[-1][0] != p["status"]:
            order.append((p["status"], p["lights_sirens"]))
    statuses = [s for s, _ in order]
    assert statuses[:4] == ["available", "dispatched", "responding", "on_scene"]
    assert statuses[4] == "returning"
    assert dict(order)["dispatched"] is False and dict(order)["responding"] is True


def test_on_scene_lasts_ten_minutes(positions: dict[str, list[dict[str, Any]]]) -> None:
    on_scene = [p for p in positions["on-scene"] if p["status"] == "on_scene"]
    assert when(on_scene[-1]["ts"]) - when(on_scene[0]["ts"]) == timedelta(seconds=599)
    assert max(p["speed_mps"] for p in on_scene) < 1.0


def test_routes_run_along_the_road_centrelines_vertex_for_vertex(roads: dict[str, Any]) -> None:
    steps: set[tuple[tuple[float, float], tuple[float, float]]] = set()
    for f in roads["features"]:
        c = [tuple(x) for x in f["geometry"]["coordinates"]]
        steps |= set(itertools.pairwise(c))
        if not f["properties"]["oneway"]:
            steps |= set(zip(c[1:], c, strict=False))
    for name in ALL:
        if name == "dead-reckoning":
            continue
        for r in ndjson(INCIDENTS / name / "routes.ndjson"):
            c = [tuple(x) for x in r["route"]["coordinates"]]
            missing = [s for s in itertools.pairwise(c) if s not in steps]
            assert not missing, (name, r["vehicle_id"], missing[:3])


def test_the_road_network_is_charlotte_uptown(roads: dict[str, Any]) -> None:
    assert roads["type"] == "FeatureCollection"
    names = {f["properties"]["name"] for f in roads["features"]}
    for street in [
        "N Tryon St",
        "S Tryon St",
        "W Trade St",
        "E Trade St",
        "N College St",
        "S Church St",
        "E 4th St",
        "W 5th St",
        "E 6th St",
        "W 7th St",
        "S Brevard St",
        "N Graham St",
        "E Stonewall St",
        "W Morehead St",
        "Independence Blvd",
        "Central Ave",
        "South Blvd",
        "I-277 Inner Loop",
        "I-77 N",
    ]:
        assert street in names, street
    for f in roads["features"]:
        props = f["properties"]
        assert isinstance(props["oneway"], bool) and props["maxspeed_mps"] > 5.0
        assert props["highway"] in {
            "motorway",
            "motorway_link",
            "trunk",
            "primary",
            "secondary",
            "tertiary",
        }
        for lon, lat in f["geometry"]["coordinates"]:  # RFC 7946: lon first
            assert -80.90 < lon < -80.78 and 35.18 < lat < 35.27
    # the Square, Trade & Tryon, is a junction of all four arms
    square = (-80.8431, 35.2271)
    arms = {
        f["properties"]["name"]
        for f in roads["features"]
        if square
        in {tuple(f["geometry"]["coordinates"][0]), tuple(f["geometry"]["coordinates"][-1])}
    }
    assert arms == {"N Tryon St", "S Tryon St", "E Trade St", "W Trade St"}
    # Tryon runs ~40 degrees east of north
    tryon = next(f for f in roads["features"] if f["properties"]["name"] == "N Tryon St")
    (lon0, lat0), (lon1, lat1) = tryon["geometry"]["coordinates"][:2]
    bearing = math.degrees(math.atan2((lon1 - lon0) * M_PER_DEG_LON, (lat1 - lat0) * M_PER_DEG_LAT))
    assert 35.0 < bearing < 45.0


# --- incident descriptions, fleet, GPX ---
@pytest.mark.parametrize("name", ALL)
def test_each_incident_says_what_an_operator_should_see(
    name: str, meta: dict[str, dict[str, Any]]
) -> None:
    m = meta[name]
    assert m["name"] == name and len(m["description"]) > 80
    assert len(m["expected"]["summary"]) > 40
    assert m["has_routes"] == (INCIDENTS / name / "routes.ndjson").exists()


def test_fleet_200_is_a_realistic_mix(
    meta: dict[str, dict[str, Any]], positions: dict[str, list[dict[str, Any]]]
) -> None:
    fixes = positions["fleet-200"]
    vehicles = {p["vehicle_id"] for p in fixes}
    with_lights = {p["vehicle_id"] for p in fixes if p["lights_sirens"]}
    assert len(vehicles) == 200 and len(fixes) == 200 * 600
    assert 60 <= len(with_lights) <= 75  # about a third
    routed = {r["vehicle_id"] for r in ndjson(INCIDENTS / "fleet-200" / "routes.ndjson")}
    assert routed == with_lights
    assert {p["status"] for p in fixes} >= {"available", "responding", "on_scene", "returning"}
    assert [p["ts"] for p in fixes] == sorted(p["ts"] for p in fixes)
    size = sum(p.stat().st_size for p in (INCIDENTS / "fleet-200").iterdir())
    assert size < 32 * 1024 * 1024


def test_the_gpx_track_is_the_route_downtown_trace(
    positions: dict[str, list[dict[str, Any]]],
) -> None:
    with (FIXTURES / "tracks" / "route-downtown.gpx").open() as fh:
        gpx = gpxpy.parse(fh)
    assert gpx.version == "1.1"
    (track,) = gpx.tracks
    points = [pt for seg in track.segments for pt in seg.points]
    fixes = positions["route-downtown"]
    assert track.name == fixes[0]["vehicle_id"]
    assert len(points) == len(fixes)
    for pt, p in zip(points, fixes, strict=True):
        assert (pt.latitude, pt.longitude) == (p["lat"], p["lon"])
        assert pt.time == when(p["ts"])
