"""The alert engine: pure functions from (state, message, now) to (state', alert events).

Theory of operation
-------------------
One ``VehicleState`` per apparatus. Each AVL fix goes through four gates, in order:

1. **Time order.** A fix with the same ``ts`` as the last is a duplicate, an older one is out
   of order: both are counted and ignored. If the gap since the last fix is at least
   ``stale_timeout_s`` and an alert is live, it is cancelled as *stale* first, stamped at the
   moment it went stale (last fix + timeout), so the output does not depend on when a
   driver happens to call ``tick``.
2. **GPS sanity.** A fix implying more than ``max_implied_speed_mps`` from the last accepted
   fix is a jump: counted and ignored, unless ``jump_reanchor_after`` arrive in a row (then the
   unit really is there). Poor ``accuracy_m`` widens the zone instead of dropping the fix.
3. **Emergency mode.** ``responding`` with lights and sirens, or ``on_scene``. Any other
   status cancels a live alert at once (reason ``left_emergency``).
4. **Alert lifecycle** (the table ``LIFECYCLE`` below). The alert id is stable per
   (vehicle, incident, kind); its version only goes up, also across a cancel and a re-create.
   An update is sent when it matters (moved ``min_update_distance_m`` along, turned, route
   changed, or the expiry needs refreshing) and never more often than
   ``min_update_interval_s``; a cancel is never delayed.

Zones: with a CAD route, the unit is snapped to it (linear referencing in a window around
the last place, so a route that crosses itself does not snap to the wrong leg) and the
stretch ahead is ``max(floor, speed x lookahead)`` long. The far end of that stretch never
moves back while the alert lives: a unit braking for a junction does not un-warn the drivers
it already warned. Without a route (or off it), a fan along the heading stands in.

No clock, no I/O: ``now`` and the message carry the time; the Faust agent and the replay
driver call exactly these functions.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import numpy as np
import shapely
from msgspec.structs import replace

from broker.geo import zones
from broker.geo.projection import LocalFrame, frame_for
from broker.geo.route import ProjectedRoute, dead_reckoned_path
from broker.model import (
    AlertEvent,
    AlertKind,
    AlertState,
    CancelReason,
    Position,
    Route,
    VehicleState,
)
from broker.settings import EngineConfig

if TYPE_CHECKING:  # the road network is optional; the engine runs without it
    from broker.geo.roads import RoadNetwork

Phase = Literal["idle", "active"]
Trigger = Literal["emergency", "moved", "left_emergency", "stale", "kind_changed", "expired"]

# The alert lifecycle as data: a test walks it, docs/engine.md draws it.
LIFECYCLE: dict[Phase, dict[Trigger, Phase]] = {
    "idle": {"emergency": "active"},
    "active": {
        "moved": "active",
        "left_emergency": "idle",
        "stale": "idle",
        "kind_changed": "active",  # cancel the old kind's alert, create the new kind's
        "expired": "idle",
    },
}

OFF_ROUTE_M = 60.0  # further than this (plus GPS accuracy) from the route: dead-reckon instead
_SEARCH_BACK_M = 100.0  # snapping window behind the last place along the route


def is_emergency(pos: Position) -> bool:
    """Emergency mode: responding with lights and sirens, or on scene."""
    return pos.status == "on_scene" or (pos.status == "responding" and pos.lights_sirens)


def alert_id_for(vehicle_id: str, incident_id: str | None, kind: AlertKind) -> str:
    """Stable alert id per (vehicle, incident, kind): same inputs, same id, on any worker."""
    digest = hashlib.blake2b(
        f"{vehicle_id}|{incident_id or '-'}|{kind}".encode(), digest_size=8
    ).hexdigest()
    return f"ev-{digest}"


def route_key(route: Route) -> str:
    """A name for one CAD route version: vehicle, incident, publish time, and its shape.

    The shape part (vertex count, first, middle and last vertex) is O(1) to compute, yet keeps
    two different routes published under the same (vehicle, incident, ts) apart in the cache.
    """
    c = route.route.coordinates
    shape = f"{len(c)}:{c[0]}:{c[len(c) // 2]}:{c[-1]}"
    return f"{route.vehicle_id}|{route.incident_id}|{route.ts.isoformat()}|{shape}"


# Projected routes are derived data: a small memo keyed by route version keeps the
# projection (and the road-network walk) out of the per-fix path. Deterministic, so purity
# holds: the same inputs give the same outputs with or without the cache.
_ROUTES: OrderedDict[str, ProjectedRoute] = OrderedDict()
_ROUTES_MAX = 4096


def projected_route(route: Route) -> ProjectedRoute:
    """The route in local metres (cached per route version)."""
    key = route_key(route)
    hit = _ROUTES.get(key)
    if hit is not None:
        _ROUTES.move_to_end(key)
        return hit
    coords = route.route.coordinates
    frame = frame_for(coords[0][0], coords[0][1])
    pr = ProjectedRoute.from_lonlat(key, list(coords), frame)
    _ROUTES[key] = pr
    if len(_ROUTES) > _ROUTES_MAX:
        _ROUTES.popitem(last=False)
    return pr


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a fix puts the unit: metric position, and along its route when it has one."""

    frame: LocalFrame
    x: float
    y: float
    route: ProjectedRoute | None
    along_m: float | None


def step(
    state: VehicleState | None,
    msg: Position | Route,
    *,
    now: datetime,
    cfg: EngineConfig,
    roads: RoadNetwork | None = None,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Apply one message to a vehicle's state; return the new state and the alert events.

    ``now`` is the caller's time (the fix's event time in replay and in the worker). The
    engine itself works in event time: ``now`` is only used where a message has no time.
    """
    if not isinstance(msg, Position | Route):
        raise TypeError(f"engine.step got {type(msg).__name__}, expected Position or Route")
    if state is None:
        state = VehicleState(vehicle_id=msg.vehicle_id)
    match msg:
        case Route():
            # Keep it; the next fix re-plans the zone on it (route_key changes -> update).
            return replace(state, route=msg), []
        case Position():
            return _on_position(state, msg, cfg, roads)


def tick(
    state: VehicleState, *, now: datetime, cfg: EngineConfig
) -> tuple[VehicleState, list[AlertEvent]]:
    """Advance time without a fix: cancel an alert whose unit went silent (stale).

    The cancel is stamped when the alert went stale (last fix + timeout), not at ``now``,
    so drivers that tick at different moments produce the same events.
    """
    alert, last = state.alert, state.last_fix
    if alert is None or last is None:
        return state, []
    stale_at = last.ts + timedelta(seconds=cfg.stale_timeout_s)
    if now >= stale_at:
        return _cancel(state, "stale", at=stale_at, pos=last)
    if now >= alert.expires_at:
        return _cancel(state, "expired", at=alert.expires_at, pos=last)
    return state, []


def _on_position(
    state: VehicleState, pos: Position, cfg: EngineConfig, roads: RoadNetwork | None
) -> tuple[VehicleState, list[AlertEvent]]:
    events: list[AlertEvent] = []
    last = state.last_fix
    if last is not None:
        if pos.ts == last.ts:
            return _count(state, "duplicates"), []
        if pos.ts < last.ts:
            return _count(state, "out_of_order"), []
        dt = (pos.ts - last.ts).total_seconds()
        if state.alert is not None and dt >= cfg.stale_timeout_s:
            state, cancelled = _cancel(
                state, "stale", at=last.ts + timedelta(seconds=cfg.stale_timeout_s), pos=last
            )
            events += cancelled
        if _implied_speed(last, pos, dt) > cfg.max_implied_speed_mps:
            in_a_row = state.rejected_in_a_row + 1
            if in_a_row < cfg.jump_reanchor_after:
                state = _count(state, "jumps")
                return replace(state, rejected_in_a_row=in_a_row), events
    state = replace(state, last_fix=pos, rejected_in_a_row=0)

    if not is_emergency(pos):
        if state.alert is not None:
            state, cancelled = _cancel(state, "left_emergency", at=pos.ts, pos=pos)
            events += cancelled
        return state, events

    kind: AlertKind = "on_scene" if pos.status == "on_scene" else "approaching"
    alert = state.alert
    if alert is not None and (alert.kind != kind or alert.incident_id != pos.incident_id):
        state, cancelled = _cancel(state, "kind_changed", at=pos.ts, pos=pos)
        events += cancelled
        alert = None

    place = _place(state, pos, cfg)
    if alert is None:
        state, created = _emit(state, pos, place, kind, cfg, roads, prev=None)
        return state, events + created
    if _worth_update(alert, pos, place, state, cfg):
        state, updated = _emit(state, pos, place, kind, cfg, roads, prev=alert)
        events += updated
    return state, events


def _count(state: VehicleState, field: str) -> VehicleState:
    counters = state.counters
    return replace(state, counters=replace(counters, **{field: getattr(counters, field) + 1}))


def _implied_speed(a: Position, b: Position, dt_s: float) -> float:
    frame = frame_for(a.lon, a.lat)
    ax, ay = frame.to_xy(a.lon, a.lat)
    bx, by = frame.to_xy(b.lon, b.lat)
    # Allow for GPS error at both ends before calling it a jump.
    dist = max(math.hypot(bx - ax, by - ay) - a.accuracy_m - b.accuracy_m, 0.0)
    return dist / max(dt_s, 1e-3)


def _usable_route(state: VehicleState, pos: Position) -> Route | None:
    route = state.route
    if route is None:
        return None
    if pos.incident_id and route.incident_id and pos.incident_id != route.incident_id:
        return None
    return route


def _place(state: VehicleState, pos: Position, cfg: EngineConfig) -> Placement:
    route = _usable_route(state, pos)
    if route is None:
        frame = frame_for(pos.lon, pos.lat)
        x, y = frame.to_xy(pos.lon, pos.lat)
        return Placement(frame, x, y, None, None)
    pr = projected_route(route)
    x, y = pr.frame.to_xy(pos.lon, pos.lat)
    lo, hi = 0.0, float("inf")
    prev = state.alert
    if prev is not None and prev.route_key == pr.key and prev.along_m is not None:
        elapsed = max((pos.ts - prev.last_update_ts).total_seconds(), 1.0)
        lo = prev.along_m - _SEARCH_BACK_M
        hi = prev.along_m + elapsed * cfg.max_implied_speed_mps + _SEARCH_BACK_M
    along, offset = pr.locate(x, y, lo_m=lo, hi_m=hi)
    if offset > OFF_ROUTE_M + pos.accuracy_m:
        # The window may have lost the unit (long dropout): try the whole route once.
        along, offset = pr.locate(x, y)
    if offset > OFF_ROUTE_M + pos.accuracy_m:
        return Placement(pr.frame, x, y, None, None)  # off its route: dead-reckon
    return Placement(pr.frame, x, y, pr, along)


def _worth_update(
    alert: AlertState, pos: Position, place: Placement, state: VehicleState, cfg: EngineConfig
) -> bool:
    if (pos.ts - alert.last_update_ts).total_seconds() < cfg.min_update_interval_s:
        return False
    if pos.ts >= alert.expires_at - timedelta(seconds=cfg.alert_ttl_s / 2):
        return True  # refresh the expiry before partners drop the alert
    if alert.kind == "on_scene":
        ax, ay = _alert_xy(alert, place.frame)
        return math.hypot(place.x - ax, place.y - ay) >= cfg.min_update_distance_m
    new_key = place.route.key if place.route is not None else None
    if new_key != alert.route_key:
        return True
    if place.along_m is not None and alert.along_m is not None:
        return place.along_m - alert.along_m >= cfg.min_update_distance_m
    ax, ay = _alert_xy(alert, place.frame)
    if math.hypot(place.x - ax, place.y - ay) >= cfg.min_update_distance_m:
        return True
    if pos.heading_deg is not None and alert.heading_deg is not None and pos.speed_mps > 2.0:
        turn = abs((pos.heading_deg - alert.heading_deg + 180.0) % 360.0 - 180.0)
        return turn >= cfg.min_update_heading_deg
    return False


def _emit(
    state: VehicleState,
    pos: Position,
    place: Placement,
    kind: AlertKind,
    cfg: EngineConfig,
    roads: RoadNetwork | None,
    prev: AlertState | None,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Build the zone for this fix and emit a create (no prev) or an update."""
    widen = min(pos.accuracy_m, cfg.accuracy_widen_cap_m)
    ahead_end: float | None = None
    if kind == "on_scene":
        # With roads the walk below covers the drivers who will pass the unit; the circle only
        # its immediate surroundings, so it is the road circle (as for an approaching unit).
        radius = cfg.on_scene_radius_m if roads is None else cfg.road_proximity_radius_m
        geom = zones.proximity_zone(place.x, place.y, radius + widen)
        if roads is not None:
            rx, ry = _to_frame(np.array([[place.x, place.y]]), place.frame, roads.frame)[0]
            upstream = roads.upstream_of(
                rx, ry, pos.heading_deg, cfg.on_scene_upstream_s, cfg.on_scene_branch_s
            )
            upstream = _lines_to_frame(upstream, roads.frame, place.frame)
            band = _with_roads(shapely.Polygon(), upstream, cfg.road_half_width_m)
            if place.route is not None:  # not beyond the median of the road it arrived on
                end = place.route.length_m
                reach = cfg.on_scene_upstream_s * roads.max_speed_mps
                band = shapely.difference(
                    band, _beyond_median(roads, place.route, end - reach, end, cfg)
                )
            geom = shapely.union(geom, band)
        path = np.empty((0, 2))
    else:
        reach = max(cfg.lookahead_floor_m, pos.speed_mps * cfg.lookahead_s)
        radius = cfg.proximity_radius_m if roads is None else cfg.road_proximity_radius_m
        circle = zones.proximity_zone(place.x, place.y, radius + widen)
        if place.route is not None and place.along_m is not None:
            pr = place.route
            ahead_end = min(place.along_m + reach, pr.length_m)
            if prev is not None and prev.route_key == pr.key and prev.ahead_end_m is not None:
                ahead_end = max(ahead_end, prev.ahead_end_m)
            path = pr.stretch(place.along_m, ahead_end)
            # With roads the route is one of the known roads (its oncoming lanes and the feeders
            # come from the network), so it gets the road band, not the blind corridor.
            half = cfg.corridor_half_width_m if roads is None else cfg.road_half_width_m
            band = zones.corridor_zone(path, half + widen)
            if roads is None:
                geom = shapely.union(band, circle)
            else:
                feeders = _route_feeders(roads, pr, place.along_m, ahead_end, pos.speed_mps, cfg)
                cut_from = place.along_m
                if ahead_end >= pr.length_m - 1.0:
                    # The scene is within reach: the drivers who will pass the unit there
                    # are upstream of it now; warn them as the on-scene zone will.
                    band = _with_roads(
                        band, _arrival_upstream(roads, pr, cfg), cfg.road_half_width_m
                    )
                    cut_from = min(
                        cut_from, pr.length_m - cfg.on_scene_upstream_s * roads.max_speed_mps
                    )
                if pos.speed_mps < _STOPPED_MPS:
                    # Stopped while responding (a queue, a junction it cannot enter): the
                    # traffic coming up behind it on its road will have to pass it, as a unit
                    # on scene; walk its road upstream for on_scene_branch_s.
                    rx, ry = _to_frame(np.array([[place.x, place.y]]), place.frame, roads.frame)[0]
                    behind = roads.upstream_of(
                        rx, ry, pos.heading_deg, cfg.on_scene_branch_s, cfg.on_scene_branch_s
                    )
                    behind = _lines_to_frame(behind, roads.frame, place.frame)
                    band = _with_roads(band, behind, cfg.road_half_width_m)
                # The bands along the unit's own road stop at a divided road's median; the
                # feeders (cross streets, median openings) and the circle are kept whole.
                band = shapely.difference(band, _beyond_median(roads, pr, cut_from, ahead_end, cfg))
                geom = _with_roads(shapely.union(band, circle), feeders, cfg.road_half_width_m)
        else:
            heading = _heading(pos, state, place)
            if heading is None:
                path = np.empty((0, 2))
                geom = circle
            else:
                path = dead_reckoned_path(place.x, place.y, heading, reach)
                fan = zones.fan_zone(
                    place.x, place.y, heading, reach, cfg.dead_reckoning_spread_deg
                )
                corridor = zones.corridor_zone(path, cfg.corridor_half_width_m + widen)
                geom = shapely.union_all([corridor, fan, circle])
    finished = zones.finish(
        geom, max_vertices=cfg.max_vertices, tolerance_m=cfg.simplify_tolerance_m
    )
    zone = zones.to_geojson(finished, place.frame)
    path_ll = zones.path_to_lonlat(path, place.frame)

    alert_id = (
        prev.alert_id if prev is not None else alert_id_for(pos.vehicle_id, pos.incident_id, kind)
    )
    version = state.versions.get(alert_id, 0) + 1
    started = prev.started_at if prev is not None else pos.ts
    expires = pos.ts + timedelta(seconds=cfg.alert_ttl_s)
    new_alert = AlertState(
        alert_id=alert_id,
        version=version,
        kind=kind,
        started_at=started,
        last_update_ts=pos.ts,
        expires_at=expires,
        along_m=place.along_m,
        x_m=place.x,
        y_m=place.y,
        lon=pos.lon,
        lat=pos.lat,
        heading_deg=pos.heading_deg,
        ahead_end_m=ahead_end,
        route_key=place.route.key if place.route is not None else None,
        incident_id=pos.incident_id,
        zone=zone,
        path=path_ll,
    )
    event = AlertEvent(
        action="create" if prev is None else "update",
        alert_id=alert_id,
        version=version,
        kind=kind,
        vehicle_id=pos.vehicle_id,
        incident_id=pos.incident_id,
        agency=pos.agency,
        unit_type=pos.unit_type,
        ts=pos.ts,
        started_at=started,
        expires_at=expires,
        lat=pos.lat,
        lon=pos.lon,
        speed_mps=pos.speed_mps,
        heading_deg=pos.heading_deg,
        zone=zone,
        path=path_ll,
    )
    versions = {**state.versions, alert_id: version}
    return replace(state, alert=new_alert, versions=versions), [event]


def _to_frame(xy: np.ndarray, src: LocalFrame, dst: LocalFrame) -> np.ndarray:
    """Metric coordinates from one local frame to another (through lon/lat when they differ)."""
    if src.key == dst.key:
        return xy
    return dst.coords_to_xy(src.coords_to_lonlat(xy))


def _lines_to_frame(lines: shapely.Geometry, src: LocalFrame, dst: LocalFrame) -> shapely.Geometry:
    if src.key == dst.key or lines.is_empty:
        return lines
    return shapely.transform(lines, lambda xy: _to_frame(xy, src, dst))


# m/s; a responding unit slower than this is stopped (its zone also covers the road behind it)
_STOPPED_MPS = 1.0

# s; a junction's walk is its ETA less this: the drivers who reach it that much before the unit
# have mostly gone on (and are bystanders), the ones behind them still meet it
_ETA_MARGIN_S = 5.0


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
) -> shapely.Geometry:
    """Side streets and oncoming lanes feeding the stretch ahead (matched once per route).

    Each junction is walked upstream for its ETA (metres ahead / the unit's speed, less
    ``_ETA_MARGIN_S``), at least ``approach_s`` and at most ``approach_far_s``: a driver that
    far out still reaches the junction with the unit and is warned longer than ``approach_s``
    alone would give. A crawling unit (queue, jam) gets ``approach_s`` everywhere.
    """
    line = shapely.LineString(_to_frame(pr.xy, pr.frame, roads.frame))
    prepared = roads.route_approaches(line, _approach_max_s(cfg))
    # m/s; below the speed the stretch's floor assumes (lookahead_floor_m / lookahead_s) the
    # unit is crawling (a queue, a jam): its speed says little about when it will get there
    crawl_mps = cfg.lookahead_floor_m / max(cfg.lookahead_s, 1.0)

    def eta_s(at_m: float) -> float:
        if speed_mps < crawl_mps:
            return 0.0
        return (at_m - along_m) / speed_mps - _ETA_MARGIN_S

    lines = prepared.stretch(along_m, ahead_end_m, cfg.approach_s, eta_s)
    return _lines_to_frame(lines, roads.frame, pr.frame)


def _beyond_median(
    roads: RoadNetwork, pr: ProjectedRoute, along_a_m: float, along_b_m: float, cfg: EngineConfig
) -> shapely.Geometry:
    """The far side of a divided road beside the route in ``[a, b]`` (route frame; see roads).

    Uses the route's match memoised for the feeders (same key), so it costs no new matching.
    """
    line = shapely.LineString(_to_frame(pr.xy, pr.frame, roads.frame))
    prepared = roads.route_approaches(line, _approach_max_s(cfg))
    cut = prepared.beyond_median(line, along_a_m, along_b_m)
    return _lines_to_frame(cut, roads.frame, pr.frame)


# Arrival walks (roads upstream of a route's end), memoised per route version and network.
_ARRIVALS: OrderedDict[tuple[str, int, float, float], tuple[RoadNetwork, shapely.Geometry]] = (
    OrderedDict()
)


def _arrival_upstream(
    roads: RoadNetwork, pr: ProjectedRoute, cfg: EngineConfig
) -> shapely.Geometry:
    """Roads upstream of the route's end (the scene) by ``on_scene_upstream_s``, once per route.

    The same walk the on-scene zone makes, from the destination along the route's last
    heading; in the route's frame.
    """
    key = (pr.key, id(roads), cfg.on_scene_upstream_s, cfg.on_scene_branch_s)
    hit = _ARRIVALS.get(key)
    if hit is not None and hit[0] is roads:
        _ARRIVALS.move_to_end(key)
        return hit[1]
    xy = _to_frame(pr.xy, pr.frame, roads.frame)
    (x0, y0), (x1, y1) = xy[-2], xy[-1]
    heading = zones.heading_between(x0, y0, x1, y1)
    lines = roads.upstream_of(x1, y1, heading, cfg.on_scene_upstream_s, cfg.on_scene_branch_s)
    lines = _lines_to_frame(lines, roads.frame, pr.frame)
    _ARRIVALS[key] = (roads, lines)
    if len(_ARRIVALS) > _ROUTES_MAX:
        _ARRIVALS.popitem(last=False)
    return lines


def _with_roads(
    geom: shapely.Geometry, lines: shapely.Geometry, half_width_m: float
) -> shapely.Geometry:
    if lines is None or shapely.is_empty(lines):
        return geom
    return shapely.union(geom, shapely.buffer(lines, half_width_m, quad_segs=2))


def _alert_xy(alert: AlertState, frame: LocalFrame) -> tuple[float, float]:
    """Where the unit was at the alert's last update, in ``frame`` (which may differ from the
    frame the update was computed in, when the unit has crossed into another grid cell)."""
    if alert.lon is None or alert.lat is None:
        return alert.x_m, alert.y_m
    return frame.to_xy(alert.lon, alert.lat)


def _heading(pos: Position, state: VehicleState, place: Placement) -> float | None:
    """Heading for dead reckoning: the fix's own, else the direction of the last update."""
    if pos.heading_deg is not None and pos.speed_mps >= 1.0:
        return pos.heading_deg
    alert = state.alert
    if alert is not None:
        ax, ay = _alert_xy(alert, place.frame)
        if math.hypot(place.x - ax, place.y - ay) > 10.0:
            return zones.heading_between(ax, ay, place.x, place.y)
    return None


def _cancel(
    state: VehicleState, reason: CancelReason, *, at: datetime, pos: Position
) -> tuple[VehicleState, list[AlertEvent]]:
    alert = state.alert
    if alert is None:
        return state, []
    version = state.versions.get(alert.alert_id, alert.version) + 1
    event = AlertEvent(
        action="cancel",
        alert_id=alert.alert_id,
        version=version,
        kind=alert.kind,
        vehicle_id=state.vehicle_id,
        incident_id=alert.incident_id,
        agency=pos.agency,
        unit_type=pos.unit_type,
        ts=at,
        started_at=alert.started_at,
        expires_at=at,
        lat=pos.lat,
        lon=pos.lon,
        speed_mps=pos.speed_mps,
        heading_deg=pos.heading_deg,
        zone=alert.zone,
        path=alert.path,
        cancel_reason=reason,
    )
    versions = {**state.versions, alert.alert_id: version}
    return replace(state, alert=None, versions=versions), [event]
