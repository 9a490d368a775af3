"""Walked roads banded on the lanes that flow toward the path (``walk_band_away_m``).

A side street's drivers who will meet the unit drive toward the path, on their side of the
street; the ones on its other lanes have just left the path and never meet the unit. The same
holds for the roads upstream of a unit on scene: the lanes leaving the scene carry drivers
who have passed it.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from broker import engine
from broker.geo.roads import RoadNetwork
from broker.geo.roads.walks import assemble_directed, assemble_sided
from broker.settings import EngineConfig
from tests.conftest import LAT0, LON0, M_PER_DEG_LAT, M_PER_DEG_LON, east_route, fix


def ll(east_m: float, north_m: float = 0.0) -> list[float]:
    return [LON0 + east_m / M_PER_DEG_LON, LAT0 + north_m / M_PER_DEG_LAT]


def point(east_m: float, north_m: float) -> shapely.Point:
    return shapely.Point(*ll(east_m, north_m))


def two_way_side_street() -> RoadNetwork:
    """Main (two-way, along the route east) and Side, a two-way street joining it at 600 m
    east from 400 m north; both 15 m/s and 12 m/s."""

    def line(*pts: list[float]) -> dict:
        return {"type": "LineString", "coordinates": list(pts)}

    return RoadNetwork.from_features(
        [
            {"properties": {"name": "Main", "maxspeed_mps": 15},
             "geometry": line(ll(-200), ll(600), ll(3_000))},
            {"properties": {"name": "Side", "maxspeed_mps": 12},
             "geometry": line(ll(600, 400), ll(600))},
        ]
    )  # fmt: skip


def first_zone(msgs: list, cfg: EngineConfig, roads: RoadNetwork) -> shapely.Geometry:
    state, events = None, []
    for m in msgs:
        state, evs = engine.step(state, m, now=m.ts, cfg=cfg, roads=roads)
        events += evs
    zone = shape(events[0].zone)
    assert zone.is_valid
    return zone


def config(away_m: float | None, *, left_hand: bool = False) -> EngineConfig:
    return EngineConfig(dispatch_cover_m=0.0, walk_band_away_m=away_m, left_hand_traffic=left_hand)


@pytest.mark.parametrize(
    ("away_m", "left_hand", "want"),
    [
        (None, False, (True, True)),  # the whole band, both sides
        (0.0, False, (True, False)),  # southbound toward Main: the west half (right-hand)
        (0.0, True, (False, True)),  # driving on the left: the east half
        (8.0, False, (True, True)),  # 8 m past the centreline reaches the point 6 m east
    ],
)
def test_a_two_way_side_street_is_banded_on_its_lanes_toward_the_path(
    away_m: float | None, left_hand: bool, want: tuple[bool, bool]
) -> None:
    roads = two_way_side_street()
    zone = first_zone([east_route(), fix(1.0, 0.0, speed_mps=15.0)],
                      config(away_m, left_hand=left_hand), roads)  # fmt: skip
    west, east = point(594.0, 150.0), point(606.0, 150.0)  # 6 m either side of Side
    assert (zone.covers(west), zone.covers(east)) == want


def test_a_unit_on_scene_is_banded_on_the_lanes_that_come_to_it() -> None:
    """Behind the unit (west) the eastbound lanes (south) come to it, ahead of it the
    westbound ones (north); the others carry drivers who have passed it."""
    roads = two_way_side_street()
    scene = fix(1.0, 1_500.0, status="on_scene", speed_mps=0.0, heading_deg=90.0)
    for away_m, want in ((None, (True, True, True, True)), (0.0, (True, False, True, False))):
        zone = first_zone([scene], config(away_m), roads)
        got = (
            zone.covers(point(1_150.0, -6.0)),  # behind, eastbound: comes to the unit
            zone.covers(point(1_150.0, 6.0)),  # behind, westbound: has passed it
            zone.covers(point(1_850.0, 6.0)),  # ahead, westbound: comes to the unit
            zone.covers(point(1_850.0, -6.0)),  # ahead, eastbound: has passed it
        )
        assert got == want, away_m


def test_assemble_sided_turns_one_way_lines_round_and_keeps_two_way_ones_directed() -> None:
    """One line per walked direction of a two-way road; a one-way road's line both ways, so
    a band on one side of each line covers it whole."""

    def line(*pts: list[float]) -> dict:
        return {"type": "LineString", "coordinates": list(pts)}

    roads = RoadNetwork.from_features(
        [
            {"properties": {"name": "Two", "maxspeed_mps": 10}, "geometry": line(ll(0), ll(100))},
            {"properties": {"name": "One", "oneway": True, "maxspeed_mps": 10},
             "geometry": line(ll(100), ll(100, 100))},
        ]
    )  # fmt: skip
    graph = roads.graph
    two_seg = int(np.flatnonzero(graph.seg_edge_bwd >= 0)[0])  # the one two-way segment
    walked = [e for e in range(graph.n_edges) if e != int(graph.seg_edge_bwd[two_seg])]
    pieces = [(e, float(graph.plain.len_m[e]), 0.0) for e in walked]
    directed = shapely.get_parts(assemble_directed(graph, pieces, 60.0))
    sided = shapely.get_parts(assemble_sided(graph, pieces, 60.0))
    assert len(directed) == 2 and len(sided) == 3

    def ends(xy: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(np.round(xy[0]).tolist()), tuple(np.round(xy[-1]).tolist())

    got = {ends(shapely.get_coordinates(g)) for g in sided}
    a, b = ends(graph.seg_xy[two_seg])  # the two-way road, walked in its drawing direction
    assert (a, b) in got and (b, a) not in got
    rest = got - {(a, b)}  # the one-way road, both ways
    assert len(rest) == 2 and all((end, start) in rest for start, end in rest)
