"""Data minimisation: the view of an alert that one partner may receive.

Every partner format renders from an ``AlertView``, never from the ``AlertEvent`` itself, so a
field the partner's policy does not allow cannot reach its payload by accident.

What every partner gets (the "alert core", needed to act on the alert at all): a partner-facing
alert id, version, action (create/update/cancel), kind (approaching/on_scene), the event time,
start and expiry times, and the warning zone. Everything else is opt-in per partner:

- ``vehicle_id``, ``incident_id``: identify a unit or an incident (never for navigation apps or
  open data: ``adapters.partners_file`` refuses such a config).
- ``agency``, ``unit_type``: who responds, in general terms ("engine").
- ``position``: where the unit is (lat/lon), ``speed``, ``heading``: how it moves.
- ``path``: the stretch ahead in travel order (needed by Waze CIFS polylines).
- ``segments``: the warning segments (the road pieces the zone covers, each in travel
  direction with the direction(s) that must yield and the unit's ETA there), so a navigation
  app warns only the drivers moving toward the unit; off by default (docs/privacy.md).
- ``street``, ``cancel_reason``.

A cancel never carries the unit's position, speed, heading, path or segments: the fix that
caused it is, for a ``left_emergency`` cancel, the position of a unit no longer in emergency
mode, and such positions never leave the broker (design.md, "Privacy and trust").

Nor does an event of a dispatch alert (``AlertEvent.from_dispatch``: made from the CAD route
before the unit's first emergency fix) carry its position, speed or heading: the unit is
dispatched, not yet in emergency mode, and stands at the start of its route. Its zone, path and
segments (the first stretch of that route: the warning) go out as for any alert. Only the
operator role (``Policy.dispatch_position``, never a partner) sees where such a unit stands.

Alert ids are pseudonymised with a keyed hash unless the policy allows ``alert_id``: the engine's
ids are derived from vehicle and incident, so passing them on would leak both.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from broker.geo.zones import snap_to_grid
from broker.model import SEGMENTS_VERSION, AlertEvent

# Optional fields a policy may allow (names as written in partners.toml).
OptionalField = Literal[
    "alert_id",
    "vehicle_id",
    "incident_id",
    "agency",
    "unit_type",
    "position",
    "speed",
    "heading",
    "path",
    "segments",
    "street",
    "cancel_reason",
]
OPTIONAL_FIELDS: frozenset[str] = frozenset(OptionalField.__args__)  # type: ignore[attr-defined]
CORE_FIELDS: tuple[str, ...] = (
    "alert_id",
    "version",
    "action",
    "kind",
    "ts",
    "started_at",
    "expires_at",
    "zone",
)
# Fields that identify a unit or an incident: never for navigation apps or open data.
IDENTIFYING_FIELDS: frozenset[str] = frozenset({"vehicle_id", "incident_id", "alert_id"})
# Fields that describe the unit's own movement: dropped on every cancel.
MOVEMENT_FIELDS: frozenset[str] = frozenset({"position", "speed", "heading", "path", "segments"})
# Fields that are the unit's own reading: dropped on a dispatch alert's events, which no fix in
# emergency mode made (the zone, path and segments, the warning, stay)
UNIT_FIELDS: frozenset[str] = frozenset({"position", "speed", "heading"})
# a warning segment's line is never finer than this many decimals (~1 m), whatever the policy
SEGMENT_DECIMALS = 5
# the engine writes zones with this many decimals (valid as written): rounding to as many or
# more changes nothing
ENGINE_DECIMALS = 6
EMERGENCY_KINDS: frozenset[str] = frozenset({"approaching", "on_scene"})
# a policy this coarse or coarser (4 decimals: ~10 m; open data needs it) gets each zone as grid
# cells that cover it, drawn from the unit's cell (:func:`_cell_zone`)
COARSE_DECIMALS = 4
# at most this many positions (all rings, closing ones included) in such a zone: cells twice,
# four times... the grid's size where the partner's grid would need more
COARSE_MAX_POSITIONS = 100
# the cells of the zone's bounding box tested at once: finer levels test only the quarters of
# the cells the zone touched (a corridor's box at 4 decimals holds tens of thousands)
_COARSE_START_CELLS = 256


@dataclass(frozen=True, slots=True)
class Policy:
    """Which optional fields a partner may get, and how precise coordinates are.

    ``coordinate_decimals`` rounds every coordinate (zone, path, position): 5 decimals is
    about 1 m, 3 decimals about 100 m (the open-data view). ``None`` keeps 6 decimals, the
    precision RFC 7946 calls "well within" GPS accuracy. At 4 decimals or fewer the zone is
    not rounded but drawn as grid cells that cover it (:func:`_cell_zone`).

    ``dispatch_position``: the operator role only (``broker.console.view``; the partners file
    cannot set it): also the position (the route's start) of a dispatch alert's events, which
    every partner view leaves out.
    """

    fields: frozenset[str] = frozenset()
    coordinate_decimals: int | None = None
    dispatch_position: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.fields) - OPTIONAL_FIELDS
        if unknown:
            raise ValueError(f"unknown policy fields {sorted(unknown)}")
        if self.coordinate_decimals is not None and not 0 <= self.coordinate_decimals <= 7:
            raise ValueError("coordinate_decimals must be between 0 and 7")

    @property
    def decimals(self) -> int:
        return 6 if self.coordinate_decimals is None else self.coordinate_decimals


@dataclass(frozen=True, slots=True)
class SegmentView:
    """One warning segment as a partner gets it: line in travel direction (``[lon, lat]``),
    ``"forward"`` or ``"both"``, and the time by which the unit has passed (None: none)."""

    line: tuple[tuple[float, float], ...]
    directions: str
    eta: datetime | None


@dataclass(frozen=True, slots=True)
class AlertView:
    """What one partner may know about one step of an alert. ``None`` = not allowed/absent.

    Coordinates: ``zone`` is GeoJSON (``[lon, lat]``), ``path`` is ``[lon, lat]`` pairs in
    travel order, ``lat``/``lon`` are named. ``segments``: the warning segments, each a line of
    ``[lon, lat]`` pairs in travel direction, its directions and its ETA (an absolute time;
    None: while the alert lives).
    """

    alert_id: str  # partner-facing: pseudonymised unless the policy allows "alert_id"
    version: int
    action: str
    kind: str
    ts: datetime
    started_at: datetime
    expires_at: datetime
    zone: dict[str, Any]
    vehicle_id: str | None = None
    incident_id: str | None = None
    agency: str | None = None
    unit_type: str | None = None
    lat: float | None = None
    lon: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    path: tuple[tuple[float, float], ...] = ()
    segments: tuple[SegmentView, ...] = ()
    street: str | None = None
    cancel_reason: str | None = None
    fields_sent: tuple[str, ...] = ()  # names of every field present (for the audit log)
    # the version of this life's first message (its create, sent at ``started_at``): what a
    # CAP feed's ``references`` name. Not a payload field: it only makes an identifier.
    first_version: int = 1

    @property
    def message_id(self) -> str:
        """Idempotency key of this step: alert id + version (Standard Webhooks ``webhook-id``)."""
        return f"{self.alert_id}-v{self.version}"


class NotAnEmergencyAlert(ValueError):
    """Raised for anything that is not an alert about a unit in emergency mode (a bug upstream)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def public_alert_id(alert_id: str, key: bytes, started_at: datetime) -> str:
    """A stable, non-reversible alert id for partners: ``ev`` + 16 hex digits of a keyed BLAKE2b
    of the engine's id and the alert's start.

    Stable for the alert's whole life (Waze CIFS needs that), alphanumeric (CIFS, CAP
    identifiers), and without the key it cannot be matched to a vehicle or incident. The start
    makes each life of an engine id a new partner id: a unit with no CAD incident has the same
    engine id on every run, and one the engine forgot (idle for hours) starts again at version 1,
    which under one id repeated a ``webhook-id`` a de-duplicating partner had seen and dropped.
    """
    life = (started_at - _EPOCH) // timedelta(microseconds=1)  # exact, whatever the offset
    digest = hashlib.blake2b(
        f"{alert_id}@{life}".encode(), key=key[:64], digest_size=8
    ).hexdigest()
    return f"ev{digest}"


def life_stamp(started_at: datetime) -> str:
    """A life's start in an identifier (CAP; the CIFS id of an engine alert id): UTC, compact,
    to the microsecond.

    >>> life_stamp(datetime(2026, 11, 25, 14, 3, 5, 120_000, tzinfo=UTC))
    '20261125T140305.120000Z'
    """
    return started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


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


def _scene_anchor(event: AlertEvent) -> tuple[float, float] | None:
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
        return None  # not a Polygon/MultiPolygon: _round_zone says so
    return None if centre.is_empty else (centre.x, centre.y)


def _round_zone(
    zone: dict[str, Any], decimals: int, anchor: tuple[float, float] | None = None
) -> dict[str, Any]:
    """A copy of a GeoJSON Polygon/MultiPolygon on the ``decimals`` grid, valid.

    At ``COARSE_DECIMALS`` or fewer (~10 m and coarser: open data) the zone is a union of grid
    cells that covers it, drawn from the cell of ``anchor`` (an on-scene zone's centroid,
    :func:`_scene_anchor`; :func:`_cell_zone`).
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
    """The zone with every vertex rounded to ``decimals`` (see :func:`_round_zone`)."""

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
    ``anchor`` (``[lon, lat]``: an on-scene zone's centroid, :func:`_scene_anchor`), the zone is
    first moved as if the anchor stood at the centre of its cell (at most half a cell each
    way), and the cells taken are those within half a cell of the moved zone: together they
    still cover the real zone, and an on-scene circle, drawn around the unit, gives the same
    cells wherever in its cell the unit is.

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
            # the centre of the unit's cell, less the unit: at most half a step each way
            shift = np.array([(math.floor(v * self.scale) + 0.5) / self.scale - v
                              for v in anchor])
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


def view_for(event: AlertEvent, policy: Policy, *, key: bytes) -> AlertView:
    """Build the view of ``event`` a partner with ``policy`` may receive.

    Raises ``NotAnEmergencyAlert`` for anything but an ``AlertEvent`` of an emergency kind:
    the fan-out must never pass on a position of a unit that is not in emergency mode. For the
    same reason a cancel has no movement fields, and a dispatch alert's event
    (``from_dispatch``) no position, speed or heading, whatever the policy allows.
    """
    if not isinstance(event, AlertEvent) or event.kind not in EMERGENCY_KINDS:
        raise NotAnEmergencyAlert(f"refusing to render {type(event).__name__}")
    allowed = set(policy.fields)
    if event.action == "cancel":
        allowed -= MOVEMENT_FIELDS
    if event.before_emergency and not policy.dispatch_position:
        allowed -= UNIT_FIELDS  # a dispatched unit, not in emergency mode: where it stands
    d = policy.decimals
    sent = list(CORE_FIELDS)
    extra: dict[str, Any] = {}

    def give(name: str, **values: Any) -> None:
        if name in allowed and all(v is not None for v in values.values()):
            extra.update(values)
            sent.append(name)

    give("vehicle_id", vehicle_id=event.vehicle_id)
    give("incident_id", incident_id=event.incident_id)
    give("agency", agency=event.agency or None)
    give("unit_type", unit_type=event.unit_type or None)
    give("position", lat=round(event.lat, d), lon=round(event.lon, d))
    give("speed", speed_mps=round(event.speed_mps, 1))
    give("heading", heading_deg=None if event.heading_deg is None else round(event.heading_deg))
    if event.path:
        give("path", path=_rounded_line(event.path, d))
    if event.segments:
        give("segments", segments=_segments(event, min(d, SEGMENT_DECIMALS)))
    give("street", street=event.street)
    give("cancel_reason", cancel_reason=event.cancel_reason)
    alert_id = (
        event.alert_id if "alert_id" in allowed
        else public_alert_id(event.alert_id, key, event.started_at)
    )
    return AlertView(
        alert_id=alert_id,
        version=event.version,
        action=event.action,
        kind=event.kind,
        ts=event.ts,
        started_at=event.started_at,
        expires_at=event.expires_at,
        zone=_round_zone(event.zone, d, _scene_anchor(event) if d <= COARSE_DECIMALS else None),
        fields_sent=tuple(sent),
        first_version=event.first_version,
        **extra,
    )


def _rounded_line(
    line: Sequence[tuple[float, float]], decimals: int
) -> tuple[tuple[float, float], ...]:
    """A ``[lon, lat]`` line at ``decimals``, points that round together merged.

    Rounded point by point, a path kept every point: two fixes closer than the grid became a
    zero-length leg, written as a repeated pair in a CIFS polyline and in a webhook's ``path``
    (a receiver taking the bearing of each leg gets none for it).
    """
    out: list[tuple[float, float]] = []
    for lon, lat in line:
        pt = (round(lon, decimals), round(lat, decimals))
        if not out or out[-1] != pt:
            out.append(pt)
    return tuple(out)


def _segments(event: AlertEvent, decimals: int) -> tuple[SegmentView, ...]:
    """The event's warning segments at the policy's precision (points that round together
    merged; a line that collapses to one point is left out: it names no direction)."""
    out: list[SegmentView] = []
    for seg in event.segments:
        line = _rounded_line(seg.line, decimals)
        if len(line) < 2:
            continue
        eta = None if seg.eta_s is None else event.ts + timedelta(seconds=seg.eta_s)
        out.append(SegmentView(line=line, directions=seg.directions, eta=eta))
    return tuple(out)


def segments_geojson(view: AlertView) -> list[dict[str, Any]]:
    """The view's warning segments as GeoJSON LineString Features (RFC 7946), in travel
    direction, properties ``directions`` and ``eta`` (RFC 3339, or null: while the alert
    lives)."""
    return [
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [list(p) for p in seg.line]},
            "properties": {
                "directions": seg.directions,
                "eta": None if seg.eta is None else _rfc3339(seg.eta),
            },
        }
        for seg in view.segments
    ]


def view_as_dict(view: AlertView) -> dict[str, Any]:
    """The view as plain JSON-ready data: only present fields, times in RFC 3339 (UTC, ``Z``)."""
    out: dict[str, Any] = {
        "alert_id": view.alert_id,
        "version": view.version,
        "action": view.action,
        "kind": view.kind,
        "ts": _rfc3339(view.ts),
        "started_at": _rfc3339(view.started_at),
        "expires_at": _rfc3339(view.expires_at),
    }
    for name in ("vehicle_id", "incident_id", "agency", "unit_type", "lat", "lon", "speed_mps",
                 "heading_deg", "street", "cancel_reason"):
        value = getattr(view, name)
        if value is not None:
            out[name] = value
    if view.path:
        out["path"] = [list(p) for p in view.path]  # [lon, lat] pairs, travel order
    out["zone"] = view.zone
    if view.segments:
        out["segments_version"] = SEGMENTS_VERSION
        out["segments"] = segments_geojson(view)
    return out


def _rfc3339(ts: datetime) -> str:
    """UTC, to the millisecond, with ``Z`` (JSON payloads; CAP and CIFS have their own forms)."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
