"""A zone at a partner's precision: its coordinates rounded (5 decimals and finer), or, for a
coarse partner (4 decimals and coarser: open data), the grid cells that cover it.

``adapters.policy.view_for`` calls :func:`round_zone` for every partner view; a zone stays a
valid GeoJSON Polygon/MultiPolygon on the partner's grid either way (docs/partners.md, "Coarse
zones"; docs/privacy.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from broker.geo.zones import snap_to_grid
from broker.model import AlertEvent

# the engine writes zones with this many decimals (valid as written): rounding to as many or
# more changes nothing
ENGINE_DECIMALS = 6
# a policy this coarse or coarser (4 decimals: ~10 m; open data needs it) gets each zone as grid
# cells that cover it, an on-scene one drawn from the grid point nearest the unit
# (:func:`_cell_zone`)
COARSE_DECIMALS = 4
# at most this many positions (all rings, closing ones included) in such a zone: cells twice,
# four times... the grid's size where the partner's grid would need more
COARSE_MAX_POSITIONS = 100
# the cells of the zone's bounding box tested at once: finer levels test only the quarters of
# the cells the zone touched (a corridor's box at 4 decimals holds tens of thousands)
_COARSE_START_CELLS = 256


class NotAnEmergencyAlert(ValueError):
    """Raised for anything that is not an alert about a unit in emergency mode (a bug upstream)."""


def _round_coords(value: Any, decimals: int) -> Any:
    """Round every number in nested GeoJSON coordinate lists."""
    if isinstance(value, float | int):
        return round(float(value), decimals)
    return [_round_coords(v, decimals) for v in value]


def _round_ring(ring: Sequence[Any], decimals: int) -> list[Any]:
    """``_round_coords`` of one ring, with a fast path for the engine's ``(lon, lat)`` float
    pairs (the same numbers: ``round(float(v), decimals)`` each): fan-out rounds every zone
    once per partner, and the recursion's type checks per number were most of that cost."""
    out: list[Any] = []
    for pt in ring:
        if type(pt) in (tuple, list) and len(pt) == 2:
            x, y = pt
            if type(x) is float and type(y) is float:
                out.append([round(x, decimals), round(y, decimals)])
                continue
        out.append(_round_coords(pt, decimals))
    return out


def scene_anchor(event: AlertEvent) -> tuple[float, float] | None:
    """Where a coarse partner's on-scene zone is drawn from (:func:`_cell_zone`): the zone's
    own centroid (``[lon, lat]``; without roads the circle's centre, the unit), so every event
    of one zone, its cancel included (made at the fix that ended the alert), gets the same
    cells. None for an approaching zone: moving a corridor off the road it follows would
    tell, to a reader with the street map, where in its cell the unit is (docs/privacy.md)."""
    if event.kind != "on_scene":
        return None
    try:
        centre = shapely.centroid(_geometry(event.zone))
    except (ValueError, KeyError, TypeError, shapely.errors.GEOSException):
        return None  # not a Polygon/MultiPolygon: round_zone says so
    return None if centre.is_empty else (centre.x, centre.y)


def round_zone(
    zone: dict[str, Any], decimals: int, anchor: tuple[float, float] | None = None
) -> dict[str, Any]:
    """A copy of a GeoJSON Polygon/MultiPolygon on the ``decimals`` grid, valid.

    At ``COARSE_DECIMALS`` or fewer (~10 m and coarser: open data) the zone is a union of grid
    cells that covers it, drawn from the cell of ``anchor`` (an on-scene zone's centroid,
    :func:`scene_anchor`; :func:`_cell_zone`).
    Finer, coordinates are rounded and consecutive repeats dropped. A ring that collapses below
    4 positions becomes the smallest box of the rounding grid that holds it: as coarse as the
    rounding, never more precise (a partner that gets 5 decimals must never learn a 6-decimal
    ring).

    Rounding vertex by vertex can also fold a ring over itself: where a corridor and a circle
    meet, or along a thin corridor, two edges end up crossing or retracing each other (at 3
    decimals, about half the engine's zones). Such a polygon is invalid: GIS tools reject or
    mis-fill it, and its winding is undefined, so a "counter-clockwise" exterior can read as
    clockwise (RFC 7946 section 3.1.6). Then the zone is snap-rounded to the grid instead
    (:func:`_snapped_zone`), which keeps every coordinate on the grid and the polygon valid.
    """
    if decimals <= COARSE_DECIMALS:
        return _cell_zone(zone, decimals, anchor)
    rounded = _rounded_zone(zone, decimals)
    if decimals >= ENGINE_DECIMALS or _valid_and_ccw(_geometry(rounded)):
        return rounded  # the engine's zones are valid at its own precision
    geom = shape(zone)
    if not geom.is_valid:
        return rounded  # not an engine zone: no one right repair, so none
    return _snapped_zone(geom, decimals)


def _geometry(zone: dict[str, Any]) -> BaseGeometry:
    """A rounded zone (closed rings of ``[lon, lat]``) as a shapely geometry, the same as
    ``shape(zone)`` but ring by ring from arrays (``shape`` walks every vertex in Python)."""

    def polygon(rings: list[Any]) -> shapely.Polygon:
        if not rings:  # an empty part, as ``shape`` has it
            return shapely.Polygon()
        shell, *holes = (shapely.linearrings(r) for r in rings)
        made: shapely.Polygon = shapely.polygons(shell, holes or None)
        return made

    if zone["type"] == "Polygon":
        return polygon(zone["coordinates"])
    return shapely.MultiPolygon([polygon(p) for p in zone["coordinates"]])


def _valid_and_ccw(geom: BaseGeometry) -> bool:
    """Valid, every exterior still counter-clockwise: rounding a thin ring can leave a valid
    polygon wound the other way, a different shape from the zone's (it is snapped instead)."""
    return bool(shapely.is_valid(geom)) and all(
        p.exterior.is_ccw for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon)
    )


def _rounded_zone(zone: dict[str, Any], decimals: int) -> dict[str, Any]:
    """The zone with every vertex rounded to ``decimals`` (see :func:`round_zone`)."""

    def ring(r: list[Any]) -> list[Any]:
        out: list[Any] = []
        for pt in _round_ring(r, decimals):
            if not out or out[-1] != pt:
                out.append(pt)
        return out if len(out) >= 4 and out[0] == out[-1] else _grid_box(r, decimals)

    if zone.get("type") == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in zone["coordinates"]]}
    if zone.get("type") == "MultiPolygon":
        polys = [[ring(r) for r in poly] for poly in zone["coordinates"]]
        return {"type": "MultiPolygon", "coordinates": polys}
    raise NotAnEmergencyAlert(f"zone must be a Polygon or MultiPolygon, not {zone.get('type')!r}")


def _snapped_zone(geom: BaseGeometry, decimals: int) -> dict[str, Any]:
    """A valid zone snap-rounded to the ``decimals`` grid (GEOS precision reduction): valid,
    every coordinate on the grid, exteriors counter-clockwise. Parts thinner than a grid cell
    vanish, as they do when rounded; if nothing is left, the grid box around the whole zone."""
    snapped = snap_to_grid(geom, 10.0 ** -decimals)
    parts = [p for p in shapely.get_parts(snapped)
             if isinstance(p, shapely.Polygon) and not p.is_empty]
    if not parts:
        outline = shapely.get_coordinates(geom).tolist()
        return {"type": "Polygon", "coordinates": [_grid_box(outline, decimals)]}
    whole = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    out = mapping(shapely.orient_polygons(whole, exterior_cw=False))
    return {"type": out["type"], "coordinates": _round_coords(out["coordinates"], decimals)}


def _cell_zone(
    zone: dict[str, Any], decimals: int, anchor: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The zone as grid cells of the ``decimals`` grid, a valid GeoJSON Polygon/MultiPolygon:
    counter-clockwise exteriors, clockwise holes, collinear vertices dropped, the largest part
    first (Waze CIFS draws the first part).

    Without ``anchor``, the cells the zone touches (its interior meets theirs). With an
    ``anchor`` (``[lon, lat]``: an on-scene zone's centroid, :func:`scene_anchor`), the zone is
    first moved as if the anchor stood at its nearest grid point (at most half a cell each
    way: the point its position rounds to), and the cells taken are those within half a cell
    of the moved zone: together they still cover the real zone, and an on-scene circle, drawn
    around the unit, gives the same cells wherever the unit is among the positions that round
    to that point.

    Rounding vertex by vertex (and snap-rounding, where that folded a ring) moved the zone by
    up to a cell, and, with a corridor narrower than a cell, cut most of it away: at 3 decimals
    the open-data zones missed up to two thirds of the area the engine warns. The cells cover
    the whole zone, so no one who should be warned is left out. Cells alone would still place
    the unit: the rows of a ~200 m circle cross the grid lines at many places, and the centroid
    of the cells it touches found the unit within ~9 m (median) where the grid is ~100 m.

    Where the outline would need more than ``COARSE_MAX_POSITIONS`` positions (a long diagonal
    corridor at 4 decimals), the cells are 2, 4, ... times the grid's size, aligned to multiples
    of it, so every vertex stays on the partner's grid.
    """
    kind = zone.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        raise NotAnEmergencyAlert(f"zone must be a Polygon or MultiPolygon, not {kind!r}")
    try:
        geom = _geometry(zone)
    except (ValueError, shapely.errors.GEOSException):
        return _rounded_zone(zone, decimals)  # a ring of < 4 positions: not an engine zone
    if not shapely.is_valid(geom):  # not an engine zone either: cover what it outlines
        geom = shapely.union_all([p for p in shapely.get_parts(shapely.make_valid(geom))
                                  if isinstance(p, shapely.Polygon | shapely.MultiPolygon)])
    if shapely.area(geom) == 0:  # an empty zone stays empty; a flat one is a box of cells
        points = shapely.get_coordinates(_geometry(zone)).tolist()
        return (_rounded_zone(zone, decimals) if not points
                else {"type": "Polygon", "coordinates": [_grid_box(points, decimals)]})
    outline = _Cells(geom, decimals, anchor).outline()
    parts = sorted(shapely.get_parts(shapely.orient_polygons(outline, exterior_cw=False)),
                   key=shapely.area, reverse=True)
    rings = [[_round_ring(_from_west(r), decimals) for r in (p.exterior, *p.interiors)]
             for p in parts]
    if len(rings) == 1:
        return {"type": "Polygon", "coordinates": rings[0]}
    return {"type": "MultiPolygon", "coordinates": rings}


def _from_west(ring: shapely.LinearRing) -> list[tuple[float, float]]:
    """A closed ring of cell edges from its westmost (then southmost) vertex on, closed again,
    without the points where it runs straight on (``simplify`` keeps a ring's first point even
    there): the same cells always give the same positions."""
    xy = shapely.get_coordinates(ring)[:-1]
    before, after = np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0)
    straight = ((before[:, 0] == xy[:, 0]) & (xy[:, 0] == after[:, 0])) \
        | ((before[:, 1] == xy[:, 1]) & (xy[:, 1] == after[:, 1]))
    xy = xy[~straight]
    first = int(np.lexsort((xy[:, 1], xy[:, 0]))[0])
    xy = np.roll(xy, -first, axis=0)
    return [(x, y) for x, y in (*xy.tolist(), xy[0].tolist())]


class _Cells:
    """The grid cells a valid polygonal zone needs, at one cell size after another.

    Coordinates here are in grid steps (``10**-decimals`` degrees). A cell of size ``k`` is
    ``[i*k, (i+1)*k] x [j*k, (j+1)*k]``; its corners in degrees are ``i*k / 10**decimals``, the
    double nearest the decimal (what ``round(x, decimals)`` gives), so cells that share an edge
    share its coordinates exactly and their union is a coverage union. A cell is needed when
    its box, widened by ``margin`` steps each way, meets the (moved) zone's interior.
    """

    def __init__(
        self, geom: BaseGeometry, decimals: int, anchor: tuple[float, float] | None
    ) -> None:
        self.scale = float(10**decimals)
        self.margin = 0.0
        if anchor is not None:
            # the grid point nearest the unit, less the unit: at most half a step each way.
            # The nearest point, as ``round(lat, decimals)`` is: a partner also given the
            # position learns from the zone no more than from it (from the cell's centre, the
            # two together placed the unit in a quarter of a cell), but for the anchor being
            # the zone's centroid at 6 decimals: within ~1e-7 degrees (1 cm) of a rounding
            # line the two may round apart
            shift = np.array([round(v, decimals) - v for v in anchor])
            geom = shapely.transform(geom, lambda c: c + shift)
            self.margin = 0.5
        self.geom = geom
        shapely.prepare(geom)

    def boxes(self, k: int, i: np.ndarray, j: np.ndarray, margin: float = 0.0) -> np.ndarray:
        s = self.scale
        return shapely.box((i * k - margin) / s, (j * k - margin) / s,
                           ((i + 1) * k + margin) / s, ((j + 1) * k + margin) / s)

    def needed(self, k: int, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Of the size-``k`` cells ``(i, j)``, those the zone needs (interiors meet)."""
        boxes = self.boxes(k, i, j, self.margin)
        hit = np.flatnonzero(shapely.intersects(self.geom, boxes))
        hit = hit[~shapely.touches(self.geom, boxes[hit])]  # only the boundaries meet: not needed
        return i[hit], j[hit]

    def in_bounds(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The size-``k`` cells the zone needs, tested over its bounding box."""
        w, s, e, n = (float(v) * self.scale for v in shapely.bounds(self.geom))
        w, s, e, n = (w - self.margin) / k, (s - self.margin) / k, \
            (e + self.margin) / k, (n + self.margin) / k
        i, j = np.meshgrid(np.arange(math.floor(w), max(math.ceil(e), math.floor(w) + 1)),
                           np.arange(math.floor(s), max(math.ceil(n), math.floor(s) + 1)))
        return self.needed(k, i.ravel(), j.ravel())

    def union(self, k: int, i: np.ndarray, j: np.ndarray) -> BaseGeometry:
        """The outline of the size-``k`` cells ``(i, j)``: each row's runs of cells as one box,
        the boxes unioned, collinear points (where boxes met along a line) dropped."""
        order = np.lexsort((i, j))
        i, j = i[order], j[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(i) != 1) | (np.diff(j) != 0)])
        ends = np.r_[starts[1:], len(i)] - 1
        s = self.scale
        runs = shapely.box(i[starts] * k / s, j[starts] * k / s,
                           (i[ends] + 1) * k / s, (j[starts] + 1) * k / s)
        return shapely.simplify(shapely.union_all(runs), 0)

    def outline(self) -> BaseGeometry:
        """The outline of the finest cells (1, 2, 4, ... steps) with at most
        ``COARSE_MAX_POSITIONS`` positions: from the size whose bounding box holds at most
        ``_COARSE_START_CELLS`` cells, refined through the quarters of the needed cells while
        the outline stays within the bound, else coarsened until it does."""
        w, s, e, n = (float(v) * self.scale for v in shapely.bounds(self.geom))
        k = 1
        while (e - w + 2 * self.margin) * (n - s + 2 * self.margin) / (k * k) \
                > _COARSE_START_CELLS:
            k *= 2
        i, j = self.in_bounds(k)
        outline = self.union(k, i, j)
        while shapely.get_num_coordinates(outline) > COARSE_MAX_POSITIONS:
            k *= 2
            i, j = self.in_bounds(k)
            outline = self.union(k, i, j)
        while k > 1:
            qi = np.concatenate([2 * i, 2 * i + 1, 2 * i, 2 * i + 1])
            qj = np.concatenate([2 * j, 2 * j, 2 * j + 1, 2 * j + 1])
            fi, fj = self.needed(k // 2, qi, qj)
            finer = self.union(k // 2, fi, fj)
            if shapely.get_num_coordinates(finer) > COARSE_MAX_POSITIONS:
                break
            k, i, j, outline = k // 2, fi, fj, finer
        return outline


def _grid_box(ring: list[Any], decimals: int) -> list[list[float]]:
    """The ring's bounding box, widened outward to the ``decimals`` grid (at least one cell a
    side), as a closed counter-clockwise ring of grid points."""
    step = 10.0 ** -decimals
    lons = [float(p[0]) for p in ring]
    lats = [float(p[1]) for p in ring]

    def snap(value: float, up: bool) -> float:
        cells = math.ceil(value / step - 1e-9) if up else math.floor(value / step + 1e-9)
        return round(cells * step, decimals)

    west, south = snap(min(lons), False), snap(min(lats), False)
    east = max(snap(max(lons), True), round(west + step, decimals))
    north = max(snap(max(lats), True), round(south + step, decimals))
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]
