"""Warning zones, built in local metres and finished as RFC 7946 GeoJSON.

- approaching: a corridor along the stretch ahead (covers both carriageways) joined with a
  proximity circle around the unit; without a route, a fan along the heading instead.
- on_scene: a circle around the unit (with a road network, plus its upstream approaches).
Every zone leaves here valid, with at most ``max_vertices`` vertices, counter-clockwise
exteriors and closed rings, in lon/lat order.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import LocalFrame

# quad_segs for buffers: 4 segments per quarter circle keeps vertex counts low (a circle is
# 16-gon, within 2 % of the true radius); the final simplify trims the rest.
_QUAD_SEGS = 4


# The unit circle as GEOS buffers a point (quad_segs=4: a 16-gon, closed). A circle of radius r
# at (x, y) is this ring scaled and moved: the same floats GEOS computes (checked bit for bit in
# tests/unit/geo/test_zones.py), without a GEOS call.
_UNIT_CIRCLE = shapely.get_coordinates(
    shapely.buffer(shapely.Point(0.0, 0.0), 1.0, quad_segs=_QUAD_SEGS)
)


def _polygon(ring: np.ndarray) -> shapely.Polygon:
    """A Polygon from one closed ring array (``shapely.polygons``, typed as what it gives here)."""
    return cast("shapely.Polygon", shapely.polygons(ring))


def proximity_zone(x: float, y: float, radius_m: float) -> shapely.Polygon:
    """A circle of ``radius_m`` around (x, y) (empty for a radius of 0).

    Examples
    --------
    >>> z = proximity_zone(0.0, 0.0, 100.0)
    >>> round(z.area / (math.pi * 100**2), 2)
    0.97
    """
    if not radius_m > 0.0:
        return shapely.Polygon()
    return _polygon(_UNIT_CIRCLE * radius_m + (x, y))


def corridor_zone(path_xy: np.ndarray, half_width_m: float) -> shapely.Polygon:
    """A band ``half_width_m`` either side of a path (both carriageways of a road).

    Examples
    --------
    >>> z = corridor_zone(np.array([[0.0, 0.0], [100.0, 0.0]]), 10.0)
    >>> z.covers(shapely.Point(50, 9.5)), z.covers(shapely.Point(50, 11))
    (True, False)
    """
    line = cast("shapely.LineString", shapely.linestrings(path_xy))
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


def dead_reckoning_zone(
    x: float,
    y: float,
    heading_deg: float,
    reach_m: float,
    spread_deg: float,
    half_width_m: float,
    radius_m: float,
) -> BaseGeometry:
    """A corridor straight along a compass heading, the fan of :func:`fan_zone`, and a circle.

    The fan and the corridor are built once per shape (reach, spread, half-width) at the origin
    heading north, then turned and moved with one small numpy product (both turn with the
    heading: GEOS lays a buffer's caps out from the segment's direction); the circle, whose
    vertices sit at fixed compass angles, is added where it is. One GEOS union per zone instead
    of three buffers and a three-way union; the same zone to float noise.

    Examples
    --------
    >>> z = dead_reckoning_zone(100.0, 0.0, 90.0, 300.0, 35.0, 40.0, 150.0)
    >>> [z.covers(shapely.Point(x, y)) for x, y in ((390, 0), (100, 149), (-60, 0))]
    [True, True, False]
    """
    ring = fan_and_corridor_ring(reach_m, spread_deg, half_width_m)
    if ring is None:  # not one simple polygon (a degenerate fan): turn the geometry itself
        template = _fan_and_corridor(reach_m, spread_deg, half_width_m)
        ahead = shapely.transform(template, lambda xy: turned(xy, heading_deg, x, y))
    else:
        ahead = _polygon(turned(ring, heading_deg, x, y))
    return shapely.union(ahead, proximity_zone(x, y, radius_m))


def turned(xy: np.ndarray, heading_deg: float | np.ndarray, x: float | np.ndarray,
           y: float | np.ndarray) -> np.ndarray:
    """Metres drawn heading north, turned to a compass heading and moved to (x, y).

    Compass heading h turns north (0, 1) to (sin h, cos h): x' = x cos h + y sin h,
    y' = y cos h - x sin h. Element by element (no matmul, whose summation order may differ
    from row to row), so a zone turned alone and in a batch get the same bits. ``heading_deg``,
    ``x`` and ``y`` may be arrays, one value per row.
    """
    rad = np.radians(heading_deg)
    c, s = np.cos(rad), np.sin(rad)
    px, py = xy[:, 0], xy[:, 1]
    return np.column_stack([px * c + py * s + x, py * c - px * s + y])


@lru_cache(maxsize=1024)
def _fan_and_corridor(reach_m: float, spread_deg: float, half_width_m: float) -> BaseGeometry:
    fan = fan_zone(0.0, 0.0, 0.0, reach_m, spread_deg)
    if not half_width_m > 0.0:
        return fan
    return shapely.union(fan, corridor_zone(np.array([[0.0, 0.0], [0.0, reach_m]]), half_width_m))


@lru_cache(maxsize=1024)
def fan_and_corridor_ring(
    reach_m: float, spread_deg: float, half_width_m: float
) -> np.ndarray | None:
    """The template's one ring (read-only), or None when it is not one polygon without holes."""
    template = _fan_and_corridor(reach_m, spread_deg, half_width_m)
    if not isinstance(template, shapely.Polygon) or template.interiors or template.is_empty:
        return None
    ring = shapely.get_coordinates(template)
    ring.flags.writeable = False
    return ring


def circles(xy: np.ndarray, radii: np.ndarray) -> npt.NDArray[np.object_]:
    """:func:`proximity_zone` around each row of ``xy`` (radii > 0), in one go."""
    n = len(xy)
    coords = (_UNIT_CIRCLE[None] * radii[:, None, None] + xy[:, None, :]).reshape(-1, 2)
    rings = shapely.linearrings(coords, indices=np.repeat(np.arange(n), len(_UNIT_CIRCLE)))
    return cast("npt.NDArray[np.object_]", shapely.polygons(rings))


def corridors(paths: list[np.ndarray], half_widths_m: np.ndarray) -> npt.NDArray[np.object_]:
    """:func:`corridor_zone` of each path (each at least 2 vertices), in one go."""
    sizes = [len(p) for p in paths]
    lines = shapely.linestrings(
        np.concatenate(paths), indices=np.repeat(np.arange(len(paths)), sizes)
    )
    return shapely.buffer(lines, half_widths_m, quad_segs=_QUAD_SEGS)


def polygons_from_rings(rings: list[np.ndarray]) -> npt.NDArray[np.object_]:
    """One polygon per closed ring array, in one go."""
    sizes = [len(r) for r in rings]
    made = shapely.linearrings(
        np.concatenate(rings), indices=np.repeat(np.arange(len(rings)), sizes)
    )
    return cast("npt.NDArray[np.object_]", shapely.polygons(made))


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
    if (
        isinstance(geom, shapely.Polygon)  # the usual case, answered without a loop
        and shapely.get_num_interior_rings(geom) == 0
        and shapely.area(geom) > 0
    ):
        return geom
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

    6 decimals is ~0.1 m (RFC 7946 section 11.2); see :func:`to_lonlat`.
    """
    return to_lonlat(geom_m, np.empty((0, 2)), frame)[0]


def path_to_lonlat(path_xy: np.ndarray, frame: LocalFrame) -> list[tuple[float, float]]:
    """A metric path as ``(lon, lat)`` pairs rounded to 6 decimals, travel order kept."""
    if len(path_xy) == 0:
        return []
    return _pairs(np.round(frame.coords_to_lonlat(path_xy), 6))


def to_lonlat(
    geom_m: BaseGeometry, path_xy: np.ndarray, frame: LocalFrame
) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """A finished metric zone as GeoJSON and a metric path as ``(lon, lat)`` pairs, 6 decimals.

    One coordinate transform for the zone's rings and the path together; the GeoJSON is built
    from the rounded arrays. Exteriors come out counter-clockwise and holes clockwise (the AEQD
    frame keeps orientation: x east, y north), consecutive vertices that round to the same
    point are merged, and the result is checked: rounding moves a vertex by < 0.1 m, which can
    fold a thin spike onto itself, so a zone that rounding made invalid is snapped to the grid
    instead with a validity-preserving operation (``set_precision``), as every zone once was.
    """
    if isinstance(geom_m, shapely.Polygon) and shapely.get_num_interior_rings(geom_m) == 0:
        return _one_ring_to_lonlat(geom_m, path_xy, frame)  # the usual zone: fewer calls
    parts = [geom_m] if isinstance(geom_m, shapely.Polygon) else list(shapely.get_parts(geom_m))
    rings_m = [
        [shapely.get_coordinates(p.exterior)]
        + [shapely.get_coordinates(r) for r in p.interiors]
        for p in parts
        if isinstance(p, shapely.Polygon) and not p.is_empty
    ]
    flat = [r for poly in rings_m for r in poly]
    sizes = [len(r) for r in flat]
    ll = np.round(frame.coords_to_lonlat(np.concatenate([*flat, path_xy])), 6)
    path = _pairs(ll[sum(sizes):])
    if _crosses_antimeridian(ll[: sum(sizes), 0]):
        return _antimeridian_geojson(geom_m, frame), path
    polys = _rounded_polygons(ll, rings_m, sizes)
    if polys is None:
        return _snapped_geojson(geom_m, frame), path
    if len(polys) == 1:
        return {"type": "Polygon", "coordinates": polys[0]}, path
    return {"type": "MultiPolygon", "coordinates": polys}, path


def _one_ring_to_lonlat(
    poly_m: shapely.Polygon, path_xy: np.ndarray, frame: LocalFrame
) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """:func:`to_lonlat` of a polygon without holes."""
    ring = shapely.get_coordinates(poly_m)
    n = len(ring)
    xy = np.concatenate([ring, path_xy]) if len(path_xy) else ring
    ll = np.round(frame.coords_to_lonlat(xy), 6)
    path = _pairs(ll[n:])
    if _crosses_antimeridian(ll[:n, 0]):
        return _antimeridian_geojson(poly_m, frame), path
    shell = _clean_ring(ll[:n], exterior=True)
    if shell is None or not shapely.is_valid(_polygon(shell)):
        return _snapped_geojson(poly_m, frame), path
    return {"type": "Polygon", "coordinates": [_pairs(shell)]}, path


def to_lonlat_many(
    polys: npt.NDArray[np.object_], paths: list[np.ndarray], frame: LocalFrame
) -> list[tuple[dict[str, Any], list[tuple[float, float]]] | None]:
    """:func:`to_lonlat` of many finished polygons without holes, one transform for all.

    Gives what :func:`to_lonlat` gives for each, bit for bit, or None for one whose rounded
    ring is no longer valid (the caller snaps that one with :func:`to_lonlat`).
    """
    counts = shapely.get_num_coordinates(polys)
    coords = shapely.get_coordinates(polys)
    n_ring = len(coords)
    ll = np.round(frame.coords_to_lonlat(np.concatenate([coords, *paths])), 6)
    ring_ll = ll[:n_ring]
    ends = np.cumsum(counts)
    starts = ends - counts
    x, y = ring_ll[:, 0], ring_ll[:, 1]
    same = (ring_ll[1:] == ring_ll[:-1]).all(axis=1)
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]  # twice the signed area, term by term
    same[ends[:-1] - 1] = False  # pairs across two rings are no pairs
    cross[ends[:-1] - 1] = 0.0
    repeats = np.add.reduceat(same, starts)
    area2 = np.add.reduceat(cross, starts)
    # degrees of longitude each ring spans: more than 180 is a ring cut by the antimeridian
    span = np.maximum.reduceat(x, starts) - np.minimum.reduceat(x, starts)
    rings = shapely.linearrings(ring_ll, indices=np.repeat(np.arange(len(counts)), counts))
    valid = np.asarray(shapely.is_valid(shapely.polygons(rings)), dtype=bool)
    out: list[tuple[dict[str, Any], list[tuple[float, float]]] | None] = []
    at = n_ring
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        k = len(paths[i])
        path = _pairs(ll[at : at + k])
        at += k
        ring: np.ndarray | None
        if span[i] > 180.0:  # across the antimeridian: the caller cuts it (to_lonlat)
            ok, ring = False, None
        elif repeats[i]:  # two vertices rounded onto one point: cleaned and checked alone
            ring = _clean_ring(ring_ll[a:b], exterior=True)
            ok = ring is not None and bool(shapely.is_valid(_polygon(ring)))
        else:
            ok = bool(valid[i]) and b - a >= 4
            ring = ring_ll[a:b] if area2[i] > 0 else ring_ll[a:b][::-1]
        out.append(({"type": "Polygon", "coordinates": [_pairs(ring)]}, path)
                   if ok and ring is not None else None)
    return out


def _crosses_antimeridian(lon: np.ndarray) -> bool:
    """Do these longitudes (degrees, in [-180, 180], of one zone) jump across 180 degrees?

    A zone is a few kilometres across, so its longitudes spanning more than half the world
    means its rings run from just west of the antimeridian to just east of it.
    """
    return lon.size > 0 and float(lon.max() - lon.min()) > 180.0


# [west, east, shift] degrees: the three lon ranges a zone unwrapped around its frame's centre
# can fall in (the centre is within 180.25 of 0), and how far each piece moves back to [-180, 180]
_WORLD_COPIES = ((-540.0, -180.0, 360.0), (-180.0, 180.0, 0.0), (180.0, 540.0, -360.0))


def _moved_east(ll: np.ndarray, by_deg: float) -> np.ndarray:
    """(lon, lat) degrees with ``by_deg`` added to every longitude."""
    out: np.ndarray = ll + np.array([by_deg, 0.0])
    return out


def _antimeridian_geojson(geom_m: BaseGeometry, frame: LocalFrame) -> dict[str, Any]:
    """A zone that crosses the antimeridian, cut there (RFC 7946 section 3.1.9).

    PROJ gives every longitude in [-180, 180], so a ring around a unit near 180 degrees ran
    from 179.999 to -179.999 and back: read as GeoJSON (planar lon/lat, as partners, CAP and
    the coverage index read it) a band around the whole world at the unit's latitude, warning
    every partner on that parallel. Here the longitudes are first made continuous around the
    frame's centre (``lon0`` +/- 180, so a zone at 180 reads 179.99 .. 180.01), the zone is
    cut at the meridian it then crosses, and the far piece is moved back by 360 degrees: a
    MultiPolygon of pieces that meet at +/-180. Snapped to the 6-decimal grid like
    :func:`_snapped_geojson`; the cut adds up to five vertices to the ``max_vertices`` of
    :func:`finish` (two where each edge crosses, a closing one for the new ring).
    """
    lon0 = frame.lon0

    def unwrapped(xy: np.ndarray) -> np.ndarray:
        ll = frame.coords_to_lonlat(xy)  # (lon, lat) degrees, lon in [-180, 180]
        ll[:, 0] = lon0 + (ll[:, 0] - lon0 + 180.0) % 360.0 - 180.0
        return ll

    whole = shapely.transform(geom_m, unwrapped)
    pieces: list[shapely.Polygon] = []
    for west, east, shift in _WORLD_COPIES:
        cut = shapely.intersection(whole, shapely.box(west, -90.0, east, 90.0))
        if shift:
            cut = shapely.transform(cut, partial(_moved_east, by_deg=shift))
        pieces += [p for p in shapely.get_parts(cut) if isinstance(p, shapely.Polygon)
                   and not p.is_empty and p.area > 0]
    snapped = snap_to_grid(shapely.MultiPolygon(pieces), 1e-6)
    parts = shapely.orient_polygons(_polygonal(snapped), exterior_cw=False)
    if isinstance(parts, shapely.Polygon):
        return {"type": "Polygon", "coordinates": _rings(parts)}
    return {"type": "MultiPolygon", "coordinates": [_rings(p) for p in shapely.get_parts(parts)]}


def _pairs(ll: np.ndarray) -> list[tuple[float, float]]:
    """``(lon, lat)`` tuples of an ``(n, 2)`` array. Tuples of floats, not lists: the collector
    stops tracking such a tuple once it has seen it, so a zone kept in a live alert costs a full
    collection a few objects instead of one list per vertex (10,000 live alerts: ~350,000)."""
    lon, lat = ll.T.tolist()  # one conversion of both columns
    return list(zip(lon, lat, strict=True))


def _clean_ring(ring: np.ndarray, *, exterior: bool) -> np.ndarray | None:
    """A rounded ring without consecutive repeats, exterior CCW / hole CW; None if it collapsed."""
    same = (ring[1:] == ring[:-1]).all(axis=1)
    if same.any():
        ring = ring[np.concatenate([[True], ~same])]
    if len(ring) < 4:
        return None
    if (_signed_area(ring) > 0) != exterior:
        ring = ring[::-1]
    return ring


def _rounded_polygons(
    ll: np.ndarray, rings_m: list[list[np.ndarray]], sizes: list[int]
) -> list[list[list[tuple[float, float]]]] | None:
    """Rings of rounded lon/lat, oriented, as lists of pairs; None when rounding broke them."""
    out: list[list[list[tuple[float, float]]]] = []
    shells: list[np.ndarray] = []
    holes: list[list[np.ndarray]] = []
    at = 0
    k = 0
    for poly in rings_m:
        rings: list[np.ndarray] = []
        for i in range(len(poly)):
            ring = _clean_ring(ll[at : at + sizes[k]], exterior=i == 0)
            at += sizes[k]
            k += 1
            if ring is None:
                return None
            rings.append(ring)
        shells.append(rings[0])
        holes.append(rings[1:])
        out.append([_pairs(r) for r in rings])
    if not out:
        return None
    whole: BaseGeometry
    if len(shells) == 1 and not holes[0]:  # the usual case: one ring, one vectorised call
        whole = _polygon(shells[0])
    else:
        check = [shapely.Polygon(s, h) for s, h in zip(shells, holes, strict=True)]
        whole = check[0] if len(check) == 1 else shapely.MultiPolygon(check)
    if not shapely.is_valid(whole):
        return None
    return out


def _signed_area(ring: np.ndarray) -> float:
    """Twice the signed area of a closed ring (positive: counter-clockwise)."""
    x, y = ring[:, 0], ring[:, 1]
    return float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def snap_to_grid(geom: BaseGeometry, grid: float) -> BaseGeometry:
    """``geom`` snap-rounded to a grid of ``grid`` (its units) by GEOS's validity-preserving
    precision reduction. That can give up on a near-degenerate ring ("side location
    conflict"): then each point is rounded and make_valid mends what rounding broke."""
    try:
        return shapely.set_precision(geom, grid_size=grid)
    except shapely.errors.GEOSException:
        return shapely.make_valid(shapely.set_precision(geom, grid, mode="pointwise"))


def _snapped_geojson(geom_m: BaseGeometry, frame: LocalFrame) -> dict[str, Any]:
    """The zone snapped to the 6-decimal grid with a validity-preserving operation."""
    ll = _polygonal(snap_to_grid(frame.geom_to_lonlat(geom_m), 1e-6))
    ll = shapely.orient_polygons(ll, exterior_cw=False)
    if isinstance(ll, shapely.Polygon):
        return {"type": "Polygon", "coordinates": _rings(ll)}
    return {
        "type": "MultiPolygon",
        "coordinates": [_rings(p) for p in shapely.get_parts(ll)],
    }


def _rings(poly: shapely.Polygon) -> list[list[tuple[float, float]]]:
    rings = [poly.exterior, *poly.interiors]
    return [_pairs(np.round(np.asarray(r.coords), 6)) for r in rings]


def heading_between(x0: float, y0: float, x1: float, y1: float) -> float:
    """Compass heading in degrees (0 = north, clockwise) from one metric point to another."""
    return math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
