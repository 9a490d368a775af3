"""`broker.simulate.diagnose` on hand-made runs: a unit driving east along y = 0 at 10 m/s
(metres, 1 s steps), civilians placed to fall in one class each, no SUMO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer

from broker.simulate import diagnose, scorer
from broker.simulate.network import BuiltNetwork, NetGeo, Scenario
from broker.simulate.options import RunOptions
from broker.simulate.run import RunResult, UnitPlan
from broker.simulate.scorer import MODE_RESPONDING, Traffic, UnitTrack, ZoneSpan

T = 121  # steps 0..120
METHOD = "zones+roads"
HEADING = f"{METHOD}{scorer.HEADING}"


def _geo() -> NetGeo:
    """Net metres around a point in Charlotte (as a synthetic scenario is placed)."""
    crs = CRS.from_proj4("+proj=aeqd +lat_0=35.2271 +lon_0=-80.8431 +ellps=WGS84 +units=m")
    return NetGeo(
        Transformer.from_crs(crs, "EPSG:4326", always_xy=True),
        Transformer.from_crs("EPSG:4326", crs, always_xy=True),
        0.0, 0.0, (-1000.0, -1000.0, 3000.0, 1000.0),
    )  # fmt: skip


def _traffic(tracks: dict[int, tuple[np.ndarray, np.ndarray, float]]) -> Traffic:
    """civ -> (xs, ys, heading_deg) from step 0."""
    rows = sorted(
        (k, civ, x, y, heading)
        for civ, (xs, ys, heading) in tracks.items()
        for k, (x, y) in enumerate(zip(xs, ys, strict=True))
    )
    arr = np.array(rows, dtype=float)
    return Traffic(arr[:, 0].astype(int), arr[:, 1].astype(int), arr[:, 2], arr[:, 3], arr[:, 4])


def _unit(unit_id: str = "E1") -> UnitTrack:
    xs = 10.0 * np.arange(T)
    ys = np.zeros(T)
    return UnitTrack(unit_id, xs, ys, xs.copy(), ys.copy(), np.full(T, MODE_RESPONDING))


def _run(traffic: Traffic, units: list[UnitTrack], spans: list[ZoneSpan]) -> RunResult:
    """A run of ``units`` on the planned route y = 0, x -1000..3000, with ``spans`` as the
    engine's zones (for the polygon and the heading receiver alike)."""
    geo = _geo()
    lon, lat = geo.to_lonlat(np.array([-1000.0, 3000.0]), np.array([0.0, 0.0]))
    route_ll = [(float(a), float(b)) for a, b in zip(lon, lat, strict=True)]
    plans = [UnitPlan(u.unit_id, [], 0.0, 0.0, 0, route_ll, "I1") for u in units]
    built = BuiltNetwork(Scenario("line", "line", "city", {}), Path("."), Path("n"), Path("r"), geo)
    return RunResult(
        options=RunOptions(scenario="line", seed=7), built=built, traffic=traffic,
        units=units, plans=plans, events={}, spans={METHOD: spans},
        encounters=scorer.find_encounters(traffic, units), figures={},
    )  # fmt: skip


def _at(x0: float, y: float, vx: float, heading: float) -> tuple[np.ndarray, np.ndarray, float]:
    return x0 + vx * np.arange(T), np.full(T, y), heading


@pytest.fixture
def bystanders() -> Traffic:
    """Three drivers who never meet the unit, each in its own place."""
    return _traffic({
        0: _at(-100.0, 0.0, 5.0, 90.0),  # on the route, behind the unit, slower, same way
        1: _at(300.0, 30.0, 10.0, 90.0),  # beside the route (30 m), ahead, as fast as the unit
        2: _at(1500.0, 55.0, -10.0, 270.0),  # off the route (55 m), coming the other way
    })  # fmt: skip


def test_bystander_seconds_splits_by_place_side_and_heading(bystanders):
    zone = shapely.box(-500, -60, 3000, 60)  # all three inside from start to end
    result = _run(bystanders, [_unit()], [ZoneSpan("E1", 0, T, zone)])
    assert result.encounters == []  # none of them meets the unit: all are bystanders
    got = diagnose.bystander_seconds(result, METHOD)
    # the oncoming driver is ahead of the unit until they pass, x = 1500 - 10 t = 10 t: t = 75
    assert got == {
        "resp on_route behind with": T,
        "resp beside ahead with": T,
        "resp off ahead against": 76,
        "resp off behind against": T - 76,
    }


def test_bystander_seconds_counts_only_the_time_inside(bystanders):
    zone = shapely.box(-500, -20, 3000, 40)  # leaves out the driver 55 m off the route
    result = _run(bystanders, [_unit()], [ZoneSpan("E1", 0, 50, zone)])
    got = diagnose.bystander_seconds(result, METHOD)
    assert got == {"resp on_route behind with": 50, "resp beside ahead with": 50}


def test_a_driver_inside_two_units_zones_counts_once(bystanders):
    zone = shapely.box(-500, -60, 3000, 60)
    units = [_unit("E1"), _unit("E2")]
    spans = [ZoneSpan("E1", 0, T, zone), ZoneSpan("E2", 0, T, zone)]
    got = diagnose.bystander_seconds(_run(bystanders, units, spans), METHOD)
    assert sum(got.values()) == 3 * T  # three drivers, not six


def test_the_heading_receiver_leaves_out_drivers_off_its_segments(bystanders):
    zone = shapely.box(-500, -60, 3000, 60)
    eastward = scorer.Segment(shapely.LineString([(-500, 0), (3000, 0)]), both=False, until=None)
    result = _run(bystanders, [_unit()], [ZoneSpan("E1", 0, T, zone, [eastward])])
    got = diagnose.bystander_seconds(result, HEADING)
    assert got == {"resp on_route behind with": T}  # on the segment, going its way


def _met() -> Traffic:
    """A driver ahead the unit catches up with (50 m apart at step 90) and one met head on."""
    return _traffic({
        0: _at(500.0, 0.0, 5.0, 90.0),
        1: _at(1500.0, 1.5, -10.0, 270.0),  # closes at 20 m/s: met at step 73
    })  # fmt: skip


def test_misses_name_why_a_driver_got_under_15_s():
    traffic = _met()
    # a zone over the road behind the unit only: both drivers are ahead of it and outside
    behind = shapely.box(-500, -15, 100, 15)
    result = _run(traffic, [_unit()], [ZoneSpan("E1", 0, T, behind)])
    assert {e.civ for e in result.encounters} == {0, 1}
    got = {m.civ: m for m in diagnose.misses(result, METHOD)}
    assert set(got) == {0, 1}
    same = got[0]
    assert (same.kind, same.cause, same.lead_s) == ("same", "beyond_end", 0.0)
    assert same.limit_lead_s >= 15
    assert same.scenario == "line" and same.seed == 7
    # 15 s before the encounter (step 75): the driver at x = 875, the unit at 750
    assert same.ahead_m == 125.0 and same.route_gap_m == 0.0
    assert same.zone_gap_m == 775.0  # from the zone's east edge at x = 100
    assert same.unit_mps == 10.0


def test_misses_tell_a_dropped_warning_from_no_zone():
    traffic = _met()
    ahead = shapely.box(-500, -15, 600, 15)  # holds the same-way driver until x = 600 (t = 20)
    spans = [ZoneSpan("E1", 0, 50, ahead)]  # and nothing from step 50 (the head-on: 73 - 15)
    got = {m.civ: m.cause for m in diagnose.misses(_run(traffic, [_unit()], spans), METHOD)}
    assert got == {0: "dropped", 1: "no_zone"}


def test_a_driver_warned_15_s_is_no_miss():
    everything = shapely.box(-1e4, -1e4, 1e4, 1e4)
    result = _run(_met(), [_unit()], [ZoneSpan("E1", 0, T, everything)])
    assert len(result.encounters) == 2
    assert diagnose.misses(result, METHOD) == []


def test_misses_of_the_heading_receiver_read_its_segments():
    """``diagnose misses --method 'zones+roads heading'`` died with a KeyError (the run keeps
    spans per engine); it scores the engine's spans by their segments, as the figures do."""
    everything = shapely.box(-1e4, -1e4, 1e4, 1e4)
    east = scorer.Segment(shapely.LineString([(-1000, 0), (3000, 0)]), both=False, until=None)
    result = _run(_met(), [_unit()], [ZoneSpan("E1", 0, T, everything, segments=[east])])
    assert diagnose.misses(result, METHOD) == []  # the polygon holds both drivers
    # the segment runs east: the same-way driver is on it, the head-on one is not
    got = {m.civ: (m.kind, m.lead_s, m.limit_lead_s) for m in diagnose.misses(result, HEADING)}
    assert got == {1: ("oncoming", 0.0, 73.0)}
