"""Warning zones, built in local metres and finished as RFC 7946 GeoJSON.

- approaching: a corridor along the stretch ahead (covers both carriageways) joined with a
  proximity circle around the unit; without a route, a fan along the heading instead.
- on_scene: a circle around the unit (with a road network, plus its upstream approaches).
Every zone leaves here valid, with at most ``max_vertices`` vertices, counter-clockwise
exteriors and closed rings, in lon/lat order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import LocalFrame

# quad_segs for buffers: 4 segments per quarter circle keeps vertex counts low (a circle is
# 16-gon, within 2 % of the true radius); the final simplify trims the rest.
_QUAD_SEGS = 4


def proximity_zone(x: float, y: float, radius_m: float) -> shapely.Polygon:
    """A circle of ``radius_m`` around (x, y).

    Examples
    --------
    >>> z = proximity_zone(0.0, 0.0, 100.0)
    >>> round(z.area / (math.pi * 100**2), 2)
    0.97
    """
    return shapely.buffer(shapely.Point(x, y), radius_m, quad_segs=_QUAD_SEGS)


def corridor_zone(path_xy: np.ndarray, half_width_m: float) -> shapely.Polygon:
    """A band ``half_width_m`` either side of a path (both carriageways of a road).

    Examples
    --------
    >>> z = corridor_zone(np.array([[0.0, 0.0], [100.0, 0.0]]), 10.0)
    >>> z.covers(shapely.Point(50, 9.5)), z.covers(shapely.Point(50, 11))
    (True, False)
    """
    line = shapely.LineString(path_xy)
    return shapely.buffer(line, half_width_m, quad_segs=_QUAD_SEGS)


def fan_zone(
    x: float, y: float, heading_deg: float, length_m: float, spread_deg: float
) -> shapely.Polygon:
    """A circular sector from (x, y) along a compass heading, +/- ``spread_deg``.

    Used without a route: the unit may turn, so the zone widens with distance ahead.

    Examples
    --------
    >>> z = fan_zone(0.0, 0.0, 90.0, 100.0, 30.0)
    >>> z.covers(shapely.Point(90, 0)), z.covers(shapely.Point(-10, 0))
    (True, False)
    """
    angles = np.radians(
        heading_deg + np.linspace(-spread_deg, spread_deg, max(3, int(spread_deg // 10) + 2))
    )
    arc = np.column_stack([x + length_m * np.sin(angles), y + length_m * np.cos(angles)])
    ring = np.vstack([[x, y], arc, [x, y]])
    return shapely.Polygon(ring)


def _vertex_count(geom: BaseGeometry) -> int:
    return int(shapely.get_num_coordinates(geom))


def finish(geom: BaseGeometry, *, max_vertices: int, tolerance_m: float) -> BaseGeometry:
    """Make a zone valid, simplify until it has at most ``max_vertices`` vertices, orient CCW.

    Holes are dropped (a warning zone with a hole would tell drivers inside it nothing).
    The vertex count counts every ring's closing vertex.
    """
    geom = _polygonal(shapely.make_valid(geom))
    tol = tolerance_m
    out = geom
    for _ in range(12):
        if _vertex_count(out) <= max_vertices:
            break
        out = _polygonal(shapely.make_valid(shapely.simplify(geom, tol, preserve_topology=True)))
        tol *= 2.0
    if _vertex_count(out) > max_vertices:
        out = _polygonal(shapely.convex_hull(geom))
        out = shapely.simplify(out, tol, preserve_topology=True)
    return shapely.orient_polygons(out, exterior_cw=False)


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Keep only polygon parts, without holes; a single part stays a Polygon."""
    parts = [
        shapely.Polygon(p.exterior)
        for p in shapely.get_parts(geom)
        if isinstance(p, shapely.Polygon) and not p.is_empty and p.area > 0
    ]
    if not parts:
        parts = [
            shapely.Polygon(q.exterior)
            for g in shapely.get_parts(geom)
            if isinstance(g, shapely.MultiPolygon | shapely.GeometryCollection)
            for q in shapely.get_parts(g)
            if isinstance(q, shapely.Polygon)
        ]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return shapely.Polygon()
    merged = shapely.union_all(parts)
    return merged


def to_geojson(geom_m: BaseGeometry, frame: LocalFrame) -> dict[str, Any]:
    """A finished metric zone as a GeoJSON Polygon/MultiPolygon dict, lon/lat, 6 decimals.

    6 decimals is ~0.1 m (RFC 7946 section 11.2); rings stay closed and CCW because the
    AEQD frame keeps orientation (x east, y north) and rounding moves vertices by < 0.1 m.
    """
    ll = frame.geom_to_lonlat(geom_m)
    # Snap to the 6-decimal grid *with* a validity-preserving operation: plain rounding can
    # fold a thin spike onto itself and leave a self-touching ring.
    ll = _polygonal(shapely.set_precision(ll, grid_size=1e-6))
    ll = shapely.orient_polygons(ll, exterior_cw=False)
    if isinstance(ll, shapely.Polygon):
        return {"type": "Polygon", "coordinates": _rings(ll)}
    return {
        "type": "MultiPolygon",
        "coordinates": [_rings(p) for p in shapely.get_parts(ll)],
    }


def _rings(poly: shapely.Polygon) -> list[list[list[float]]]:
    rings = [poly.exterior, *poly.interiors]
    return [np.round(np.asarray(r.coords), 6).tolist() for r in rings]


def path_to_lonlat(path_xy: np.ndarray, frame: LocalFrame) -> list[tuple[float, float]]:
    """A metric path as ``(lon, lat)`` pairs rounded to 6 decimals, travel order kept."""
    if len(path_xy) == 0:
        return []
    ll = np.round(frame.coords_to_lonlat(path_xy), 6)
    return [(float(a), float(b)) for a, b in ll]


def heading_between(x0: float, y0: float, x1: float, y1: float) -> float:
    """Compass heading in degrees (0 = north, clockwise) from one metric point to another."""
    return math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
