"""Which warning zone a fix gets, and building it: one function, :func:`warning_zone`.

The engine decides *when* a zone is due (the alert lifecycle); this module decides *what* it
covers, from where the unit is (:class:`ZoneRequest`) and the engine's thresholds:

- **on scene**: a circle around the unit; with a road network, plus the roads whose traffic will
  pass it (its own road upstream for ``on_scene_upstream_s``, side roads for
  ``on_scene_branch_s``), never beyond the median of the road it arrived on.
- **approaching with a route**: a band along the stretch ahead (``max(floor, speed x lookahead)``
  long; its far end never moves back while the alert lives) joined with a proximity circle.
  With a road network: road bands instead of the blind corridor, plus the side streets and
  oncoming lanes that feed the stretch (each junction walked for its ETA), the roads upstream of
  the scene once it is within reach, and the road behind a unit that has stopped.
- **approaching without a route** (or off it): a fan along the heading, a corridor and a circle;
  with no usable heading, the circle alone.

Everything is built in the request's local frame (metres) and leaves through
:func:`broker.geo.zones.finish` and :func:`broker.geo.zones.to_geojson`: valid, at most
``max_vertices`` vertices, counter-clockwise, lon/lat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from broker.geo import segments, zones
from broker.geo.memo import GeoMemo
from broker.geo.projection import LocalFrame
from broker.geo.route import ProjectedRoute, dead_reckoned_path
from broker.geo.segments import Piece
from broker.model import WarningSegment
from broker.settings import EngineConfig

if TYPE_CHECKING:  # the road network is optional; zones are built without it too
    from broker.geo.roads import RoadNetwork

# m/s; a responding unit slower than this is stopped (its zone also covers the road behind it)
STOPPED_MPS = 1.0

# s; a junction's walk is its ETA less this: the drivers who reach it that much before the unit
# have mostly gone on (and are bystanders), the ones behind them still meet it
ETA_MARGIN_S = 5.0

# m; a stopped unit's warning segments name the side roads joining its route this far behind
# it (plus its GPS accuracy): it may stand in the junction, whose cross traffic is about to
# enter where it stands (its own road behind it is not named: segment_stopped_behind)
STOPPED_JUNCTION_M = 20.0


@dataclass(frozen=True, slots=True)
class ZoneRequest:
    """Where the unit is and how it moves, in one local frame (metres, x east, y north).

    ``route``/``along_m``: the CAD route the unit is snapped to and where along it (both None
    when it has none or is off it). ``ahead_end_m``: the furthest point along *this* route an
    earlier zone of the alert reached (None: none yet). ``heading_deg``: the direction to
    dead-reckon along when there is no route (None: no usable heading, circle only);
    ``fix_heading_deg``: the fix's own heading (picks the carriageway a stopped unit is on).
    """

    kind: Literal["approaching", "on_scene"]
    frame: LocalFrame
    x: float
    y: float
    speed_mps: float
    accuracy_m: float
    fix_heading_deg: float | None = None
    heading_deg: float | None = None
    route: ProjectedRoute | None = None
    along_m: float | None = None
    ahead_end_m: float | None = None
    # name the road (``WarningZone.street``)? Never for a dispatch alert: the street at the
    # start of its route is the station's, and no partner may learn where a unit stands before
    # its first fix in emergency mode (design.md, "Privacy and trust")
    named: bool = True
    street: str | None = None  # the name the alert's last event gave (see :func:`street_of`)


@dataclass(frozen=True, slots=True)
class WarningZone:
    """A finished zone: GeoJSON (lon/lat), the path ahead in travel order, how far it reaches,
    and its warning segments (:mod:`broker.geo.segments`)."""

    zone: dict[str, Any]
    path: list[tuple[float, float]]
    ahead_end_m: float | None  # furthest point along the route covered (None: no route)
    segments: list[WarningSegment] = field(default_factory=list)
    street: str | None = None  # the road the warning is about (:func:`street_of`)


def warning_zone(
    req: ZoneRequest, cfg: EngineConfig, roads: RoadNetwork | None, memo: GeoMemo
) -> WarningZone:
    """The warning zone for one fix (see the module docstring for what it covers), and the
    street it is about (:func:`street_of`)."""
    built = _zone_alone(req, cfg, roads, memo)
    street = street_of(req, built.ahead_end_m, cfg, roads)
    return built if street is None else replace(built, street=street)


def _zone_alone(
    req: ZoneRequest, cfg: EngineConfig, roads: RoadNetwork | None, memo: GeoMemo
) -> WarningZone:
    """:func:`warning_zone` without the street (a batch names it when the zone is deferred)."""
    widen = min(req.accuracy_m, cfg.accuracy_widen_cap_m)
    if roads is not None and not _within_reach(req, roads, cfg):
        roads = None  # where the network does not reach: the blind zone, not a narrow one
    ahead_end: float | None = None
    pieces: list[Piece] = []
    if req.kind == "on_scene":
        geom, pieces = _on_scene(req, cfg, roads, widen)
        path = np.empty((0, 2))
    elif req.route is not None and req.along_m is not None:
        geom, path, ahead_end, pieces = _along_route(
            req, req.route, req.along_m, cfg, roads, memo, widen
        )
    else:
        geom, path = _dead_reckoned(req, cfg, roads, widen)
    finished = zones.finish(
        geom, max_vertices=cfg.max_vertices, tolerance_m=cfg.simplify_tolerance_m
    )
    zone, path_ll = zones.to_lonlat(finished, path, req.frame)
    return WarningZone(
        zone=zone, path=path_ll, ahead_end_m=ahead_end,
        segments=segments.to_lonlat(pieces, req.frame),
    )


def street_of(
    req: ZoneRequest, ahead_end_m: float | None, cfg: EngineConfig, roads: RoadNetwork | None
) -> str | None:
    """The name of the road a zone is about, for the event (``AlertEvent.street``), or None:
    no road network, a dispatch alert (``req.named`` off), no named road there.

    - approaching along its route: the road the route runs along where the unit is, else the
      first named road of the stretch ahead (up to ``ahead_end_m``), from the route's match
      (memoised per route: no new matching). It changes when the unit turns onto another road.
    - on scene: the road the on-scene walk starts from (with the fix's heading, its
      carriageway), within the walk's snapping radius (``RoadNetwork.snap_radius_m``, 50 m);
      approaching off its route (or without one): the road under the unit within the network's
      ``match_tol_m``, going its way. Both widened by the GPS accuracy (capped). The name the
      alert's last event gave (``req.street``) stays while a road of that name is that near:
      GPS scatter at a corner does not make the name flip between two streets from one update
      to the next.
    """
    if roads is None or not req.named:
        return None
    widen = min(req.accuracy_m, cfg.accuracy_widen_cap_m)
    if req.kind == "approaching" and req.route is not None and req.along_m is not None:
        pr = req.route
        line = shapely.LineString(_to_frame(pr.xy, pr.frame, roads.frame))
        prepared = roads.route_approaches(line, _approach_max_s(cfg))
        end = req.along_m if ahead_end_m is None else ahead_end_m
        return prepared.street(req.along_m, end)
    if req.kind == "on_scene":
        within, heading = roads.snap_radius_m, req.fix_heading_deg
    else:
        within = roads.match_tol_m
        heading = req.heading_deg if req.heading_deg is not None else req.fix_heading_deg
    rx, ry = _to_frame(np.array([[req.x, req.y]]), req.frame, roads.frame)[0]
    return roads.street_at(
        float(rx), float(ry), heading, within_m=within + widen, keep=req.street
    )


def _ahead_end(req: ZoneRequest, pr: ProjectedRoute, along_m: float, cfg: EngineConfig) -> float:
    return stretch_end(req.speed_mps, along_m, pr.length_m, req.ahead_end_m, cfg)


def lookahead_m(speed_mps: float, cfg: EngineConfig) -> float:
    """How far ahead of the unit a zone reaches: ``lookahead_s`` at its speed, at least
    ``lookahead_floor_m``. A reported speed past ``max_implied_speed_mps`` is a glitch (the
    same bound refuses a jump between fixes): it counts as that speed, not as 150 m/s for a
    6.75 km stretch.

    Examples
    --------
    >>> cfg = EngineConfig()
    >>> lookahead_m(0.0, cfg), lookahead_m(20.0, cfg), lookahead_m(150.0, cfg)
    (300.0, 900.0, 3150.0)
    """
    return max(cfg.lookahead_floor_m, min(speed_mps, cfg.max_implied_speed_mps) * cfg.lookahead_s)


def stretch_end(
    speed_mps: float, along_m: float, length_m: float, earlier_end_m: float | None,
    cfg: EngineConfig,
) -> float:
    """How far along the route the stretch ahead reaches: ``max(floor, speed x lookahead)``
    from the unit, capped at the route's end, and never back from an earlier zone's end.

    Examples
    --------
    >>> cfg = EngineConfig()
    >>> stretch_end(20.0, 100.0, 5_000.0, None, cfg), stretch_end(5.0, 100.0, 5_000.0, 1_000.0, cfg)
    (1000.0, 1000.0)
    """
    ahead_end = min(along_m + lookahead_m(speed_mps, cfg), length_m)
    return ahead_end if earlier_end_m is None else max(ahead_end, earlier_end_m)


def grows_only_behind(
    *, speed_mps: float, accuracy_m: float, along_m: float, length_m: float,
    sent_end_m: float, sent_speed_mps: float, sent_accuracy_m: float, cfg: EngineConfig,
    roads: bool,
) -> bool:
    """Would a zone along the route at ``along_m`` add nothing ahead of the one last sent
    (which reached ``sent_end_m``), beyond moving the circle with the unit?

    True when the stretch reaches less than ``cfg.min_update_reach_m`` further, the scene
    does not come within reach now (its walk would join the zone), the band is no wider
    (accuracy), and, with a road network, the junction walks do not lengthen: the unit is
    not stopped (the walk behind it) and not slower than when the zone was sent (each
    junction's walk follows its ETA), unless it crawls (every walk is then the shortest).
    The update would only trim the part behind the unit.
    """
    end = stretch_end(speed_mps, along_m, length_m, sent_end_m, cfg)
    if end - sent_end_m >= cfg.min_update_reach_m:
        return False
    if end >= length_m - 1.0 > sent_end_m:
        return False
    cap = cfg.accuracy_widen_cap_m
    if min(accuracy_m, cap) > min(sent_accuracy_m, cap):
        return False
    if not roads:
        return True
    crawl_mps = cfg.lookahead_floor_m / max(cfg.lookahead_s, 1.0)
    if speed_mps < STOPPED_MPS:
        return False
    return speed_mps < crawl_mps or (speed_mps >= sent_speed_mps and sent_speed_mps >= crawl_mps)


def _circle(req: ZoneRequest, radius_m: float, widen: float) -> BaseGeometry:
    return zones.proximity_zone(req.x, req.y, radius_m + widen)


def _on_scene(
    req: ZoneRequest, cfg: EngineConfig, roads: RoadNetwork | None, widen: float
) -> tuple[BaseGeometry, list[Piece]]:
    """A circle; with roads, plus the roads whose traffic will pass the unit (and those roads,
    directed, as warning segments without an end: the unit stays there)."""
    # With roads the walk covers the drivers who will pass the unit; the circle only its
    # immediate surroundings, so it is the road circle (as for an approaching unit).
    if roads is None:
        return _circle(req, cfg.on_scene_radius_m, widen), []
    geom = _circle(req, cfg.road_proximity_radius_m, widen)
    rx, ry = _to_frame(np.array([[req.x, req.y]]), req.frame, roads.frame)[0]
    upstream = _lines_to_frame(
        roads.upstream_of(
            rx, ry, req.fix_heading_deg, cfg.on_scene_upstream_s, cfg.on_scene_branch_s,
            turn_offs=cfg.on_scene_turn_offs,
        ),
        roads.frame,
        req.frame,
    )
    pieces = segments.standing_pieces(
        _lines_to_frame(
            roads.upstream_of(
                rx, ry, req.fix_heading_deg, _segment_scene_s(cfg), cfg.on_scene_branch_s,
                directed=True, turn_offs=cfg.on_scene_turn_offs,
            ),
            roads.frame,
            req.frame,
        ),
        cfg,
    ) if cfg.warning_segments else []
    band = _with_roads(shapely.Polygon(), upstream, cfg.road_half_width_m)
    if req.route is not None:  # not beyond the median of the road it arrived on
        end = req.route.length_m
        reach = cfg.on_scene_upstream_s * roads.max_speed_mps
        cut = _beyond_median(roads, req.route, end - reach, end, cfg)
        band = shapely.difference(band, cut)
        if cfg.road_circle_median_cut:
            geom = shapely.difference(geom, cut)
    return shapely.union(geom, band), pieces


def _along_route(
    req: ZoneRequest,
    pr: ProjectedRoute,
    along_m: float,
    cfg: EngineConfig,
    roads: RoadNetwork | None,
    memo: GeoMemo,
    widen: float,
) -> tuple[BaseGeometry, np.ndarray, float, list[Piece]]:
    """The band along the stretch ahead and the circle; with roads, what feeds the stretch.

    Also the warning segments: the stretch ahead (forward with roads: its oncoming lanes come
    from the walks; both ways without) and every walked road, directed."""
    radius = cfg.proximity_radius_m if roads is None else cfg.road_proximity_radius_m
    circle = _circle(req, radius, widen)
    ahead_end = _ahead_end(req, pr, along_m, cfg)
    path = pr.stretch(along_m, ahead_end)
    # With roads the route is one of the known roads (its oncoming lanes and the feeders come
    # from the network), so it gets the road band, not the blind corridor.
    half = cfg.corridor_half_width_m if roads is None else cfg.road_half_width_m
    band: BaseGeometry = zones.corridor_zone(path, half + widen)
    wanted = cfg.warning_segments
    if roads is None:
        return shapely.union(band, circle), path, ahead_end, segments.corridor_pieces(
            path, req.speed_mps, cfg
        ) if wanted else []
    stopped = req.speed_mps < STOPPED_MPS
    # a stopped unit's road behind it is not named, but the cross streets of a junction it
    # stands in (or may: GPS) are, as they were before it reached the junction
    directed_from_m = along_m
    if stopped and not cfg.segment_stopped_behind:
        directed_from_m = max(0.0, along_m - widen - STOPPED_JUNCTION_M)
    feeders, directed = _route_feeders(
        roads, pr, along_m, ahead_end, req.speed_mps, cfg, directed_from_m=directed_from_m
    )
    pieces: list[Piece] = []
    two_way = _two_way(roads, pr, along_m, cfg) if wanted else None
    if two_way is not None:
        pieces = segments.stretch_pieces(
            path, req.speed_mps, two_way, cfg
        ) + segments.feeder_pieces(directed, pr.xy, along_m, req.speed_mps, cfg)
    cut_from = along_m
    if ahead_end >= pr.length_m - 1.0:
        # The scene is within reach: the drivers who will pass the unit there are upstream of
        # it now; warn them as the on-scene zone will.
        band = _with_roads(band, _arrival_upstream(roads, pr, cfg, memo), cfg.road_half_width_m)
        if wanted:
            pieces += segments.standing_pieces(
                _arrival_upstream(roads, pr, cfg, memo, directed=True), cfg
            )
        cut_from = min(cut_from, pr.length_m - cfg.on_scene_upstream_s * roads.max_speed_mps)
    if stopped:
        # Stopped while responding (a queue, a junction it cannot enter): the traffic coming
        # up behind it on its road will have to pass it, as a unit on scene; walk its road
        # upstream for stopped_walk_s.
        rx, ry = _to_frame(np.array([[req.x, req.y]]), req.frame, roads.frame)[0]
        behind = _lines_to_frame(
            roads.upstream_of(
                rx, ry, req.fix_heading_deg, cfg.stopped_walk_s, cfg.stopped_walk_s,
                turn_offs=cfg.on_scene_turn_offs,
            ),
            roads.frame,
            req.frame,
        )
        band = _with_roads(band, behind, cfg.road_half_width_m)
        if wanted and cfg.segment_stopped_behind:  # off by default: a polygon's walk only
            behind_directed = roads.upstream_of(
                rx, ry, req.fix_heading_deg, cfg.stopped_walk_s, cfg.stopped_walk_s,
                directed=True, turn_offs=cfg.on_scene_turn_offs,
            )
            pieces += segments.standing_pieces(
                _lines_to_frame(behind_directed, roads.frame, req.frame), cfg
            )
        elif two_way is not None and not _oncoming_at(*two_way):
            # Its walk found the other direction drawn as its own line close by (one road),
            # the route's match a divided road (the route lies off to the far side): the stretch
            # ahead is named one way only, so the walk names the oncoming lanes ahead.
            opposite = roads.upstream_of(
                rx, ry, req.fix_heading_deg, cfg.stopped_walk_s, cfg.stopped_walk_s,
                directed=True, turn_offs=cfg.on_scene_turn_offs, opposite_only=True,
            )
            pieces += segments.standing_pieces(
                _lines_to_frame(opposite, roads.frame, req.frame), cfg
            )
    # The bands along the unit's own road stop at a divided road's median; the feeders (cross
    # streets, median openings) and the circle are kept whole.
    band = shapely.difference(band, _beyond_median(roads, pr, cut_from, ahead_end, cfg))
    if cfg.road_circle_median_cut:  # the circle's part beyond the median, behind and ahead
        lo_m = max(0.0, along_m - radius - widen)
        hi_m = min(along_m + radius + widen, pr.length_m)
        circle = shapely.difference(circle, _beyond_median(roads, pr, lo_m, hi_m, cfg))
    zone = _with_roads(shapely.union(band, circle), feeders, cfg.road_half_width_m)
    return zone, path, ahead_end, pieces


def _dead_reckoned(
    req: ZoneRequest, cfg: EngineConfig, roads: RoadNetwork | None, widen: float
) -> tuple[BaseGeometry, np.ndarray]:
    """No route: a fan and a corridor along the heading, and the circle (circle alone without
    a usable heading)."""
    radius = cfg.proximity_radius_m if roads is None else cfg.road_proximity_radius_m
    if req.heading_deg is None:
        return _circle(req, radius, widen), np.empty((0, 2))
    reach = lookahead_m(req.speed_mps, cfg)
    path = dead_reckoned_path(req.x, req.y, req.heading_deg, reach)
    zone = zones.dead_reckoning_zone(
        req.x, req.y, req.heading_deg, reach, cfg.dead_reckoning_spread_deg,
        cfg.corridor_half_width_m + widen, radius + widen,
    )
    return zone, path


def _within_reach(req: ZoneRequest, roads: RoadNetwork, cfg: EngineConfig) -> bool:
    """Whether the network describes where the unit is: a road of it within ``roads_reach_m``.
    Beyond, its zone with roads is the narrow road band and the 100 m circle with nothing to
    walk: smaller than the zone without roads (an extract that stops short of the service
    area, a network of the wrong place: the fixture's units with a network far away had 45 %
    of the area-time without one, and fewer points warned >= 45 s)."""
    if cfg.roads_reach_m is None:
        return True
    rx, ry = _to_frame(np.array([[req.x, req.y]]), req.frame, roads.frame)[0]
    return roads.reaches(float(rx), float(ry), cfg.roads_reach_m)


def _to_frame(xy: np.ndarray, src: LocalFrame, dst: LocalFrame) -> np.ndarray:
    """Metric coordinates from one local frame to another (through lon/lat when they differ)."""
    if src.key == dst.key:
        return xy
    return dst.coords_to_xy(src.coords_to_lonlat(xy))


def _lines_to_frame(lines: BaseGeometry, src: LocalFrame, dst: LocalFrame) -> BaseGeometry:
    if src.key == dst.key or lines.is_empty:
        return lines
    return shapely.transform(lines, lambda xy: _to_frame(xy, src, dst))


def _approach_max_s(cfg: EngineConfig) -> float:
    """The longest walk upstream of a junction ahead (the memoised trees go this far)."""
    return max(cfg.approach_s, cfg.approach_far_s)


def _route_feeders(
    roads: RoadNetwork,
    pr: ProjectedRoute,
    along_m: float,
    ahead_end_m: float,
    speed_mps: float,
    cfg: EngineConfig,
    *,
    directed_from_m: float | None = None,
) -> tuple[BaseGeometry, BaseGeometry]:
    """Side streets and oncoming lanes feeding the stretch ahead (matched once per route): the
    roads merged (the zone) and one line per directed edge (the warning segments).

    Each junction is walked upstream for its ETA (metres ahead / the unit's speed, less
    ``ETA_MARGIN_S``), at least ``approach_s`` and at most ``approach_far_s``: a driver that
    far out still reaches the junction with the unit and is warned longer than ``approach_s``
    alone would give. A crawling unit (queue, jam) gets ``approach_s`` everywhere.
    ``directed_from_m`` (default ``along_m``): where the directed lines' junctions start (a
    stopped unit's reach back over a junction it may stand in); the zone's start at ``along_m``.
    """
    line = shapely.LineString(_to_frame(pr.xy, pr.frame, roads.frame))
    prepared = roads.route_approaches(line, _approach_max_s(cfg))
    # m/s; below the speed the stretch's floor assumes (lookahead_floor_m / lookahead_s) the
    # unit is crawling (a queue, a jam): its speed says little about when it will get there
    crawl_mps = cfg.lookahead_floor_m / max(cfg.lookahead_s, 1.0)

    def eta_s(at_m: float) -> float:
        if speed_mps < crawl_mps:
            return 0.0
        return (at_m - along_m) / speed_mps - ETA_MARGIN_S

    far_side_s = cfg.approach_far_side_s
    lines = prepared.stretch(along_m, ahead_end_m, cfg.approach_s, eta_s, far_side_s=far_side_s)
    directed = prepared.stretch(
        along_m if directed_from_m is None else directed_from_m, ahead_end_m, cfg.approach_s,
        eta_s, directed=True, far_side_s=far_side_s,
    )
    return (
        _lines_to_frame(lines, roads.frame, pr.frame),
        _lines_to_frame(directed, roads.frame, pr.frame),
    )


def _two_way(
    roads: RoadNetwork, pr: ProjectedRoute, along_m: float, cfg: EngineConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Where the route has oncoming lanes beside it (its match, memoised for the feeders):
    distances from ``along_m`` and a bool per match sample."""
    line = shapely.LineString(_to_frame(pr.xy, pr.frame, roads.frame))
    m = roads.route_approaches(line, _approach_max_s(cfg)).match
    return m.sample_along_m - along_m, m.sample_oncoming >= 0


def _oncoming_at(gap: np.ndarray, oncoming: np.ndarray) -> bool:
    """Does the route's match have oncoming lanes beside it where the unit is (its nearest
    sample; ``gap``, ``oncoming``: :func:`_two_way`'s)? False off the network."""
    return bool(len(gap)) and bool(oncoming[int(np.argmin(np.abs(gap)))])


def _beyond_median(
    roads: RoadNetwork, pr: ProjectedRoute, along_a_m: float, along_b_m: float, cfg: EngineConfig
) -> BaseGeometry:
    """The far side of a divided road beside the route in ``[a, b]`` (route frame; see roads).

    Uses the route's match memoised for the feeders (same key), so it costs no new matching.
    """
    line = shapely.LineString(_to_frame(pr.xy, pr.frame, roads.frame))
    prepared = roads.route_approaches(line, _approach_max_s(cfg))
    cut = prepared.beyond_median(line, along_a_m, along_b_m)
    return _lines_to_frame(cut, roads.frame, pr.frame)


def _arrival_upstream(
    roads: RoadNetwork, pr: ProjectedRoute, cfg: EngineConfig, memo: GeoMemo,
    *, directed: bool = False,
) -> BaseGeometry:
    """Roads upstream of the route's end (the scene), once per route: by
    ``on_scene_upstream_s`` for the zone, by :func:`_segment_scene_s` when ``directed`` (the
    warning segments).

    The same walk the on-scene zone makes, from the destination along the route's last
    heading; in the route's frame.
    """

    up_s = _segment_scene_s(cfg) if directed else cfg.on_scene_upstream_s

    def walk() -> BaseGeometry:
        xy = _to_frame(pr.xy, pr.frame, roads.frame)
        (x0, y0), (x1, y1) = xy[-2], xy[-1]
        heading = zones.heading_between(x0, y0, x1, y1)
        lines = roads.upstream_of(
            x1, y1, heading, up_s, cfg.on_scene_branch_s, directed=directed,
            turn_offs=cfg.on_scene_turn_offs,
        )
        return _lines_to_frame(lines, roads.frame, pr.frame)

    return memo.arrival_walk(
        roads, pr, up_s, cfg.on_scene_branch_s, walk, directed=directed,
        turn_offs=cfg.on_scene_turn_offs,
    )


def _segment_scene_s(cfg: EngineConfig) -> float:
    """How far the scene's road is walked upstream for the warning segments (seconds): never
    past the zone's own walk, so the segments stay on roads the zone covers (an operator who
    lowers ``on_scene_upstream_s`` below ``segment_scene_upstream_s`` gets the zone's)."""
    s = cfg.segment_scene_upstream_s
    return cfg.on_scene_upstream_s if s is None else min(s, cfg.on_scene_upstream_s)


def _with_roads(
    geom: BaseGeometry, lines: BaseGeometry, half_width_m: float
) -> BaseGeometry:
    if lines is None or shapely.is_empty(lines):
        return geom
    return shapely.union(geom, shapely.buffer(lines, half_width_m, quad_segs=2))
