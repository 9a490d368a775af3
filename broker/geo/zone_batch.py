"""Zones asked for by a run of fixes, built together (:class:`ZoneBatch`): the same zones as
:func:`broker.geo.zoning.warning_zone` builds one at a time, with vectorised shapely calls and
one coordinate transform per frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import shapely

from broker.geo import segments, zones
from broker.geo.memo import GeoMemo
from broker.geo.route import dead_reckoned_path
from broker.geo.zoning import (
    WarningZone,
    ZoneRequest,
    _ahead_end,
    _zone_alone,
    lookahead_m,
    street_of,
)
from broker.model import WarningSegment
from broker.settings import EngineConfig

if TYPE_CHECKING:  # the road network is optional; zones are built without it too
    from broker.geo.roads import RoadNetwork


class ZoneBatch:
    """Zones asked for by a run of fixes, built together: the same zones, fewer calls.

    A driver that handles messages in runs (the replay, the benchmarks) passes one batch to
    every ``engine.step`` of a run; the engine asks :meth:`defer` instead of
    :func:`warning_zone` and gets a :class:`WarningZone` whose ``zone`` dict and ``path`` list
    are still empty (``ahead_end_m``, which the next fix of the unit may need, is already
    known). :meth:`build` then builds every deferred zone with vectorised shapely calls and one
    coordinate transform per frame, and fills those dicts and lists *in place*, so the alert
    states and events that hold them (also a cancel that copied an alert's zone) are complete
    without being touched. Nothing may read a deferred zone before :meth:`build`: the driver
    calls it before it hands any event out.

    Zones with a road network, and any zone whose shape needs more care (more vertices than the
    cap, several parts, a ring that rounding would spoil), go through :func:`warning_zone` one
    by one. The result is the same, bit for bit, as building each zone alone
    (tests/unit/geo/test_zoning.py, tests/unit/drive/test_driver.py).
    """

    def __init__(self, cfg: EngineConfig, roads: RoadNetwork | None, memo: GeoMemo) -> None:
        self.cfg, self.roads, self.memo = cfg, roads, memo
        self._pending: list[tuple[ZoneRequest, WarningZone]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def defer(self, req: ZoneRequest) -> WarningZone:
        """A zone to be built by :meth:`build` (empty until then)."""
        ahead_end = None
        if req.kind == "approaching" and req.route is not None and req.along_m is not None:
            ahead_end = _ahead_end(req, req.route, req.along_m, self.cfg)
        # the street too: the event that carries it is made before build() (None without roads)
        street = street_of(req, ahead_end, self.cfg, self.roads)
        out = WarningZone(zone={}, path=[], ahead_end_m=ahead_end, segments=[], street=street)
        self._pending.append((req, out))
        return out

    def build(self) -> int:
        """Build every deferred zone (filling it in place); returns how many."""
        pending, self._pending = self._pending, []
        by_frame: dict[str, list[tuple[ZoneRequest, WarningZone]]] = {}
        for req, out in pending:
            if self.roads is not None:
                self._alone(req, out)
            else:
                by_frame.setdefault(req.frame.key, []).append((req, out))
        for items in by_frame.values():
            self._together(items)
        return len(pending)

    def _alone(self, req: ZoneRequest, out: WarningZone) -> None:
        built = _zone_alone(req, self.cfg, self.roads, self.memo)  # out.street: named in defer
        out.zone.update(built.zone)
        out.path.extend(built.path)
        out.segments.extend(built.segments)

    def _together(self, items: list[tuple[ZoneRequest, WarningZone]]) -> None:
        """Zones without a road network, all in one frame: circle, band + circle, fan + circle."""
        cfg = self.cfg
        take: list[tuple[ZoneRequest, WarningZone]] = []
        plans: list[_Shape] = []
        for req, out in items:
            shape = _shape_of(req, cfg)
            if shape is None:
                self._alone(req, out)
            else:
                take.append((req, out))
                plans.append(shape)
        if not take:
            return
        centres = np.array([[req.x, req.y] for req, _ in take])
        geoms = zones.circles(centres, np.array([p.radius_m for p in plans]))
        band = [k for k, p in enumerate(plans) if p.kind == "band"]
        if band:
            ahead = zones.corridors(
                [plans[k].path for k in band], np.array([plans[k].half_width_m for k in band])
            )
            geoms[band] = shapely.union(ahead, geoms[band])
        fan = [k for k, p in enumerate(plans) if p.kind == "fan"]
        if fan:
            rings = [plans[k].ring for k in fan]
            sizes = [len(r) for r in rings]
            headings = [take[k][0].heading_deg or 0.0 for k in fan]  # a fan has a heading
            turned = zones.turned(
                np.concatenate(rings), np.repeat(headings, sizes),
                np.repeat(centres[fan, 0], sizes), np.repeat(centres[fan, 1], sizes),
            )
            ahead = zones.polygons_from_rings(np.split(turned, np.cumsum(sizes)[:-1]))
            geoms[fan] = shapely.union(ahead, geoms[fan])
        simple = (
            (shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON)
            & (shapely.get_num_interior_rings(geoms) == 0)
            & (shapely.get_num_coordinates(geoms) <= cfg.max_vertices)
            & (shapely.area(geoms) > 0)
        )
        fast = np.flatnonzero(simple).tolist()
        for k in np.flatnonzero(~simple).tolist():
            self._alone(*take[k])
        if not fast:
            return
        done = zones.to_lonlat_many(
            geoms[fast], [plans[k].path for k in fast], take[fast[0]][0].frame
        )
        for k, result in zip(fast, done, strict=True):
            req, out = take[k]
            if result is None:  # rounding would break it: snapped as warning_zone does
                finished = shapely.orient_polygons(geoms[k], exterior_cw=False)
                result = zones.to_lonlat(finished, plans[k].path, req.frame)
            out.zone.update(result[0])
            out.path.extend(result[1])
            out.segments.extend(self._corridor_segments(req, plans[k]))

    def _corridor_segments(self, req: ZoneRequest, plan: _Shape) -> list[WarningSegment]:
        """A band's warning segments, as :func:`warning_zone` makes them (a fan has none)."""
        if plan.kind != "band" or not self.cfg.warning_segments:
            return []
        pieces = segments.corridor_pieces(plan.path, req.speed_mps, self.cfg)
        return segments.to_lonlat(pieces, req.frame)


_NO_RING = np.empty((0, 2))


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a zone without roads is made of: a circle, and a band or a turned fan before it."""

    kind: Literal["circle", "band", "fan"]
    radius_m: float
    path: np.ndarray
    half_width_m: float = 0.0
    ring: np.ndarray = field(default_factory=lambda: _NO_RING)  # the fan's ring (kind "fan")


def _shape_of(req: ZoneRequest, cfg: EngineConfig) -> _Shape | None:
    """The parts of ``req``'s zone as :func:`warning_zone` makes them without roads; None
    when it must be built alone (a circle of no radius, a degenerate fan, a short path)."""
    widen = min(req.accuracy_m, cfg.accuracy_widen_cap_m)
    none = np.empty((0, 2))
    if req.kind == "on_scene":
        shape = _Shape("circle", cfg.on_scene_radius_m + widen, none)
    elif req.route is not None and req.along_m is not None:
        path = req.route.stretch(req.along_m, _ahead_end(req, req.route, req.along_m, cfg))
        if len(path) < 2:
            return None
        shape = _Shape("band", cfg.proximity_radius_m + widen, path,
                       half_width_m=cfg.corridor_half_width_m + widen)
    elif req.heading_deg is None:
        shape = _Shape("circle", cfg.proximity_radius_m + widen, none)
    else:
        reach = lookahead_m(req.speed_mps, cfg)
        ring = zones.fan_and_corridor_ring(
            reach, cfg.dead_reckoning_spread_deg, cfg.corridor_half_width_m + widen
        )
        if ring is None:
            return None
        shape = _Shape("fan", cfg.proximity_radius_m + widen,
                       dead_reckoned_path(req.x, req.y, req.heading_deg, reach), ring=ring)
    return shape if shape.radius_m > 0.0 else None
