"""Linear referencing on a projected route: locate, stretch, windowed snapping."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from broker.geo.projection import frame_for
from broker.geo.route import ProjectedRoute, cumulative_m, dead_reckoned_path
from tests.unit.shapes import SHAPES

FRAME = frame_for(-80.8431, 35.2271)


def projected(xy: np.ndarray) -> ProjectedRoute:
    coords = FRAME.coords_to_lonlat(xy).tolist()
    return ProjectedRoute.from_lonlat("r", coords, FRAME)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_length_matches_shapely(name):
    route = projected(SHAPES[name])
    assert route.length_m == pytest.approx(shapely.LineString(SHAPES[name]).length, abs=0.05)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_stretch_matches_shapely_substring(name):
    from shapely.ops import substring  # reference only: the engine never calls it

    route = projected(SHAPES[name])
    line = shapely.LineString(route.xy)
    a, b = 0.2 * route.length_m, 0.7 * route.length_m
    ours = shapely.LineString(route.stretch(a, b))
    ref = substring(line, a, b)
    assert ours.length == pytest.approx(ref.length, abs=0.01)
    assert ours.hausdorff_distance(ref) < 0.01


def test_windowed_locate_keeps_the_right_leg_of_a_route_that_crosses_itself():
    route = projected(SHAPES["crosses-itself"])
    # (300, 0) lies on the first leg (along 300) and on the last leg (along 600+300+300+300)
    first, _ = route.locate(300.0, 0.0, lo_m=0.0, hi_m=500.0)
    last, _ = route.locate(300.0, 0.0, lo_m=1_300.0)
    assert first == pytest.approx(300.0, abs=0.5)
    assert last == pytest.approx(1_500.0, abs=0.5)


def test_u_turn_snaps_by_window_not_by_nearest_leg():
    route = projected(SHAPES["u-turn"])
    along, offset = route.locate(250.0, 20.0, lo_m=600.0)  # on the way back
    assert along == pytest.approx(530.0 + 250.0, abs=1.0)
    assert offset == pytest.approx(10.0, abs=0.5)


metres = st.floats(-3_000, 3_000, allow_nan=False, allow_infinity=False)


@given(
    pts=st.lists(st.tuples(metres, metres), min_size=2, max_size=30, unique=True),
    f0=st.floats(0, 1),
    f1=st.floats(0, 1),
)
def test_stretch_is_in_travel_order_and_has_the_asked_length(pts, f0, f1):
    xy = np.array(pts)
    seg = np.hypot(*np.diff(xy, axis=0).T)
    if seg.min() < 0.5:
        return  # near-duplicate vertices are dropped; the property is about real routes
    route = projected(xy)
    a, b = sorted((f0 * route.length_m, f1 * route.length_m))
    part = route.stretch(a, b)
    assert shapely.LineString(part).length == pytest.approx(b - a, abs=0.05)
    # A route may double back over itself, so look for the start only near where it should be
    start_along, offset = route.locate(*part[0], lo_m=a - 1.0, hi_m=a + 1.0)
    assert start_along == pytest.approx(a, abs=0.5)
    assert offset == pytest.approx(0.0, abs=1e-6)


def test_dead_reckoned_path_points_along_the_compass_heading():
    east = dead_reckoned_path(0.0, 0.0, 90.0, 100.0)
    north = dead_reckoned_path(0.0, 0.0, 0.0, 100.0)
    assert east[-1] == pytest.approx([100.0, 0.0], abs=1e-9)
    assert north[-1] == pytest.approx([0.0, 100.0], abs=1e-9)


def test_projection_round_trip_and_metric_scale():
    x, y = FRAME.to_xy(-80.8431, 35.2271)
    lon, lat = FRAME.to_lonlat(x, y)
    assert (lon, lat) == pytest.approx((-80.8431, 35.2271), abs=1e-9)
    x2, _ = FRAME.to_xy(-80.8431 + 0.01, 35.2271)
    assert x2 - x == pytest.approx(909.6, rel=2e-3)  # 0.01 deg lon at 35.23 N


@given(
    pts=st.lists(st.tuples(st.floats(-3_000, 3_000), st.floats(-3_000, 3_000)),
                 min_size=2, max_size=20),
    x=st.floats(-3_500, 3_500), y=st.floats(-3_500, 3_500),
    lo=st.floats(-100, 4_000), span=st.floats(0, 6_000),
)
def test_locate_in_plain_floats_gives_the_numpy_bits(pts, x, y, lo, span) -> None:
    from broker.geo import route as route_module

    xy = np.asarray(pts)
    assume_two = np.any(np.abs(np.diff(xy, axis=0)) > 1e-6)
    if not assume_two:
        return
    r = ProjectedRoute("r", FRAME, xy, cumulative_m(xy), (0.0, 0.0))
    fast = r.locate(x, y, lo_m=lo, hi_m=lo + span)
    saved = route_module._FEW_SEGMENTS
    route_module._FEW_SEGMENTS = -1  # every window through numpy
    try:
        slow = r.locate(x, y, lo_m=lo, hi_m=lo + span)
    finally:
        route_module._FEW_SEGMENTS = saved
    assert fast == slow
