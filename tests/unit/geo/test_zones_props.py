"""Properties every zone must have, drawn in the frame the code works in (metres)."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import assume, given
from hypothesis import strategies as st
from shapely.geometry import shape

from broker.geo import zones
from broker.geo.projection import frame_for
from broker.settings import EngineConfig

CFG = EngineConfig()
FRAME = frame_for(-80.8431, 35.2271)
# Local metres as a projection gives them: within a few km of the frame's centre, and never
# finer than a micrometre. (Unrounded, hypothesis also draws values like 4e-252, which no
# projection of a real fix gives and on which GEOS's robust predicates overflow to NaN.)
metres = st.floats(-5_000, 5_000, allow_nan=False, allow_infinity=False).map(
    lambda v: round(v, 6)
)
routes = st.lists(st.tuples(metres, metres), min_size=2, max_size=40, unique=True)


def approaching(path: np.ndarray, cfg: EngineConfig = CFG) -> shapely.Geometry:
    raw = shapely.union(
        zones.corridor_zone(path, cfg.corridor_half_width_m),
        zones.proximity_zone(path[0][0], path[0][1], cfg.proximity_radius_m),
    )
    return zones.finish(raw, max_vertices=cfg.max_vertices, tolerance_m=cfg.simplify_tolerance_m)


@given(route=routes, frac=st.floats(0, 1))
def test_zone_is_valid_ccw_capped_and_covers_the_vehicle_and_path(route, frac):
    line = shapely.LineString(route)
    assume(line.length > 1.0)
    start = shapely.line_interpolate_point(line, frac * line.length)
    ahead = np.array(shapely.get_coordinates(line))
    rest = ahead[~np.all(np.isclose(ahead, [start.x, start.y]), axis=1)][:5]
    assume(len(rest) >= 1)
    path = np.vstack([[start.x, start.y], rest])
    assume(shapely.LineString(path).length > 1.0)
    zone = approaching(path)
    assert shapely.is_valid(zone)
    assert shapely.get_num_coordinates(zone) <= CFG.max_vertices
    for poly in shapely.get_parts(zone):
        assert poly.exterior.is_ccw and len(poly.interiors) == 0
    # the vehicle is well inside; the path within the corridor, allowing for simplification
    assert zone.covers(start)
    assert shapely.buffer(zone, 2 * CFG.simplify_tolerance_m * 8).covers(shapely.LineString(path))


@given(route=routes)
def test_geojson_output_is_rfc7946(route):
    line = shapely.LineString(route)
    assume(line.length > 1.0)
    zone = approaching(np.asarray(route))
    gj = zones.to_geojson(zone, FRAME)
    assert gj["type"] in {"Polygon", "MultiPolygon"}
    polys = [gj["coordinates"]] if gj["type"] == "Polygon" else gj["coordinates"]
    for rings in polys:
        ring = rings[0]
        assert ring[0] == ring[-1] and len(ring) >= 4
        lons = [p[0] for p in ring]
        lats = [p[1] for p in ring]
        assert all(-81.0 < x < -80.6 for x in lons)  # lon first (RFC 7946), near Charlotte
        assert all(35.1 < y < 35.4 for y in lats)
        assert shapely.LinearRing(ring).is_ccw
    assert shape(gj).is_valid


@given(x=metres, y=metres, heading=st.floats(0, 360), length=st.floats(1, 2_000))
def test_fan_covers_the_straight_path_ahead(x, y, heading, length):
    fan = zones.fan_zone(x, y, heading, length, 35.0)
    rad = np.radians(heading)
    ahead = shapely.Point(x + 0.9 * length * np.sin(rad), y + 0.9 * length * np.cos(rad))
    assert fan.is_valid
    assert shapely.buffer(fan, 1e-6).covers(ahead)


def test_vertex_cap_forces_simplification_of_a_long_winding_path():
    t = np.linspace(0, 20 * np.pi, 800)
    path = np.column_stack([t * 30.0, np.sin(t) * 200.0])
    zone = approaching(path)
    assert shapely.get_num_coordinates(zone) <= CFG.max_vertices
    assert zone.is_valid


def test_two_disjoint_parts_become_a_valid_multipolygon():
    a = zones.proximity_zone(0.0, 0.0, 100.0)
    b = zones.proximity_zone(1_000.0, 0.0, 100.0)
    zone = zones.finish(shapely.union(a, b), max_vertices=64, tolerance_m=4.0)
    gj = zones.to_geojson(zone, FRAME)
    assert gj["type"] == "MultiPolygon" and len(gj["coordinates"]) == 2
    assert shape(gj).is_valid
