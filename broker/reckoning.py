"""Where a unit is taken to be when no fix says: its CAD route stands in for its GPS.

Two moments lack fixes, and the CAD route covers both (the engine emits what this module
plans; the rules are here so they can be read, and tested, on their own):

- **The fixes stop** (a tunnel, an urban canyon): a responding unit that was moving on the
  route its alert follows keeps its zone moving along that route at its last speed, one update
  every ``dead_reckoning_step_s``, for at most ``dead_reckoning_max_s`` and
  ``dead_reckoning_max_m``, from the moment it would have gone stale (``stale_timeout_s``:
  until then its zone stays, as before); the zone's far end moves at the full speed, its near
  end and circle at ``DR_SLOWEST`` of it (the unit may have slowed), and its ``accuracy`` widens by
  ``dead_reckoning_widen_mps`` per silent second. Then the stale cancel, as for any silent unit.
  Each step is stamped at last fix + k x step, so every driver (ticks at any moment, or a fix
  catching up on the steps due before it) sends the same events.
- **Before the first fix** (dispatch): the CAD route arrives while the unit is still turning
  out, about half a minute before its first fix with lights. An approaching alert covers the
  first ``dispatch_cover_m`` of the route from then; the unit's first emergency fix takes it
  over, and it expires ``dispatch_cover_s`` after the route if the unit never moves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from msgspec.structs import replace

from broker.durations import reaching
from broker.geo.memo import GeoMemo
from broker.geo.projection import LocalFrame
from broker.geo.route import ProjectedRoute
from broker.geo.zoning import STOPPED_MPS, ZoneRequest, stretch_end
from broker.model import AlertState, Position, Route, VehicleState
from broker.settings import EngineConfig

OFF_ROUTE_M = 60.0  # further than this (plus GPS accuracy) from the route: dead-reckon instead
# dead reckoning: the zone's near end (and circle) moves on at this share of the last speed, its
# far end at the full speed, so a unit that slowed in the tunnel is still inside its zone
DR_SLOWEST = 0.5


def is_emergency(pos: Position) -> bool:
    """Emergency mode: responding with lights and sirens, or on scene."""
    return pos.status == "on_scene" or (pos.status == "responding" and pos.lights_sirens)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a fix puts the unit: metric position, and along its route when it has one."""

    frame: LocalFrame
    x: float
    y: float
    route: ProjectedRoute | None
    along_m: float | None


def usable_route(state: VehicleState, pos: Position) -> Route | None:
    """The unit's CAD route, unless it belongs to another incident than the fix's."""
    route = state.route
    if route is None:
        return None
    if pos.incident_id and route.incident_id and pos.incident_id != route.incident_id:
        return None
    return route


# ---- when the fixes stop --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reckoning:
    """How a silent unit's zone moves on: along ``route`` from ``fix_along_m`` at ``speed_mps``
    for ``until_s`` seconds after its last fix (the time and distance bounds, whichever first)."""

    route: ProjectedRoute
    fix_along_m: float
    speed_mps: float
    until_s: float


@dataclass(frozen=True, slots=True)
class Planned:
    """One update the engine emits without a fix of its own: the position its event carries,
    where the zone is anchored, and the zone to build."""

    pos: Position
    place: Placement
    req: ZoneRequest


def reckoning(state: VehicleState, cfg: EngineConfig, memo: GeoMemo) -> Reckoning | None:
    """The dead reckoning a unit's state allows, or None: only a unit in emergency mode that was
    moving (``dead_reckoning_min_speed_mps``) on the route its approaching alert follows."""
    alert, last = state.alert, state.last_fix
    if (
        cfg.dead_reckoning_max_s <= 0 or cfg.dead_reckoning_max_m <= 0
        or alert is None or last is None or alert.kind != "approaching" or alert.from_dispatch
        or alert.fix_along_m is None or alert.route_key is None or not is_emergency(last)
        or last.speed_mps < max(cfg.dead_reckoning_min_speed_mps, 0.1)
    ):
        return None
    route = usable_route(state, last)
    if route is None:
        return None
    pr = memo.projected_route(route)
    if pr.key != alert.route_key:
        return None
    until_s = min(cfg.dead_reckoning_max_s, cfg.dead_reckoning_max_m / last.speed_mps)
    return Reckoning(pr, alert.fix_along_m, last.speed_mps, until_s)


def stale_at(state: VehicleState, cfg: EngineConfig, memo: GeoMemo) -> datetime:
    """When the live alert of a silent unit is cancelled as stale: ``stale_timeout_s`` after its
    last fix, or once its dead reckoning has run out, whichever is later."""
    last = state.last_fix
    assert last is not None
    wait_s = cfg.stale_timeout_s
    plan = reckoning(state, cfg, memo)
    if plan is not None:
        wait_s = max(wait_s, plan.until_s)
    return last.ts + timedelta(seconds=wait_s)


def due_steps(
    plan: Reckoning, last_fix_ts: datetime, sent_until: datetime, upto: datetime,
    cfg: EngineConfig,
) -> Iterator[int]:
    """The steps k (stamped last fix + k x ``dead_reckoning_step_s``) after ``sent_until`` and up
    to ``upto`` (both inclusive), from ``stale_timeout_s`` on, before the reckoning runs out.

    The zone stays as it is until the moment the unit would have gone stale (so a unit whose
    fixes resume before then changes nothing), and only then moves on: a worker whose partition
    clock runs ahead of a lagging consumer (streams.md, "Time") is no more likely to reckon a
    unit that is in fact reporting than it was to cancel it as stale.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> plan = Reckoning(None, 0.0, 10.0, 22.0)  # type: ignore[arg-type]
    >>> def steps(sent_s, upto_s):
    ...     at = lambda s: t0 + timedelta(seconds=s)
    ...     return list(due_steps(plan, t0, at(sent_s), at(upto_s), EngineConfig()))
    >>> plan = Reckoning(None, 0.0, 10.0, 47.0)  # type: ignore[arg-type]
    >>> steps(0, 60), steps(0, 33), steps(35, 60), steps(45, 60)
    ([6, 7, 8, 9], [6], [8, 9], [])
    """
    step_s = cfg.dead_reckoning_step_s
    done_s = (sent_until - last_fix_ts).total_seconds()
    k = max(math.floor(done_s / step_s) + 1, first_step(cfg))
    while k * step_s < plan.until_s and last_fix_ts + timedelta(seconds=k * step_s) <= upto:
        yield k
        k += 1


def first_step(cfg: EngineConfig) -> int:
    """The first dead-reckoning step: the one due when the unit would have gone stale."""
    return _first_step(cfg.stale_timeout_s, cfg.dead_reckoning_step_s)


def _first_step(stale_timeout_s: float, dead_reckoning_step_s: float) -> int:
    return max(math.ceil(stale_timeout_s / dead_reckoning_step_s), 1)


def quiet_s(cfg: EngineConfig) -> float:
    """How long after its last fix a silent unit needs nothing yet: no dead-reckoning step is
    due before :func:`first_step`, and it goes stale no sooner than ``stale_timeout_s`` (less a
    millisecond, so the timedelta rounding of :func:`stale_at` cannot make this say otherwise).

    Examples
    --------
    >>> quiet_s(EngineConfig())
    29.999
    """
    return _quiet_s(cfg.stale_timeout_s, cfg.dead_reckoning_step_s)


def _quiet_s(stale_timeout_s: float, dead_reckoning_step_s: float) -> float:
    step = _first_step(stale_timeout_s, dead_reckoning_step_s)
    return min(stale_timeout_s, step * dead_reckoning_step_s) - 1e-3


def quiet_after(cfg: EngineConfig) -> timedelta:
    """:func:`quiet_s` as a timedelta (``d >= quiet_after(cfg)`` exactly when
    ``d.total_seconds() >= quiet_s(cfg)``): :func:`broker.ticks.tick_due` asks it of every fix."""
    return _quiet_after(cfg.stale_timeout_s, cfg.dead_reckoning_step_s)


@lru_cache(maxsize=64)
def _quiet_after(stale_timeout_s: float, dead_reckoning_step_s: float) -> timedelta:
    return reaching(_quiet_s(stale_timeout_s, dead_reckoning_step_s))


def dead_reckoned(
    plan: Reckoning, last: Position, alert: AlertState, k: int, cfg: EngineConfig
) -> Planned:
    """Step ``k`` of a silent unit's reckoning: its event's position (the full-speed point, GPS
    accuracy widened), and the zone from the slowest point to the far end at full speed (never
    short of the far end the alert already reached)."""
    pr = plan.route
    dt = k * cfg.dead_reckoning_step_s
    near = min(plan.fix_along_m + DR_SLOWEST * plan.speed_mps * dt, pr.length_m)
    far = min(plan.fix_along_m + plan.speed_mps * dt, pr.length_m)
    x, y = pr.point_at(near)
    lon, lat = pr.frame.to_lonlat(*pr.point_at(far))
    pos = replace(last, ts=last.ts + timedelta(seconds=dt), lon=lon, lat=lat,
                  accuracy_m=last.accuracy_m + cfg.dead_reckoning_widen_mps * dt)
    req = ZoneRequest(
        kind="approaching", frame=pr.frame, x=x, y=y, speed_mps=plan.speed_mps,
        accuracy_m=pos.accuracy_m, fix_heading_deg=last.heading_deg, route=pr, along_m=near,
        ahead_end_m=stretch_end(plan.speed_mps, far, pr.length_m, alert.ahead_end_m, cfg),
    )  # no ``street`` (the last name): along a route the name is the route's (street_of)
    return Planned(pos, Placement(pr.frame, x, y, pr, near), req)


# ---- before the first fix -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchStart:
    """The alert a CAD route starts: its event's position, its zone, when it expires."""

    pos: Position
    place: Placement
    req: ZoneRequest
    expires: datetime


def dispatch_start(
    state: VehicleState, route: Route, cfg: EngineConfig, memo: GeoMemo
) -> DispatchStart | None:
    """The dispatch alert of a unit with no live alert whose CAD route just came: the first
    ``dispatch_cover_m`` of the route, from its start (the unit stands there), as a unit
    leaving at walking pace gets it (no road behind it: a station is not in the traffic);
    expiring ``dispatch_cover_s`` after the route. None when off (either is 0), or when the
    unit's recent fix is not where the route starts (that route would warn the wrong street),
    or when the unit's newest fix is past the cover's end (a route that came late, e.g. on a
    backlog after the incident: the fixes already tell what the unit did)."""
    if cfg.dispatch_cover_m <= 0 or cfg.dispatch_cover_s <= 0:
        return None
    expires = route.ts + timedelta(seconds=cfg.dispatch_cover_s)
    last = state.last_fix
    if last is not None and last.ts >= expires:
        return None
    pr = memo.projected_route(route)
    x, y = pr.point_at(0.0)
    if last is not None and (route.ts - last.ts).total_seconds() < cfg.stale_timeout_s:
        lx, ly = pr.frame.to_xy(last.lon, last.lat)
        if math.hypot(lx - x, ly - y) > OFF_ROUTE_M + last.accuracy_m:
            return None
    req = ZoneRequest(
        kind="approaching", frame=pr.frame, x=x, y=y, speed_mps=STOPPED_MPS, accuracy_m=0.0,
        route=pr, along_m=0.0, ahead_end_m=min(cfg.dispatch_cover_m, pr.length_m),
        named=False,  # the street at the route's start is the station's: never for partners
    )
    return DispatchStart(
        dispatch_position(state, route, None), Placement(pr.frame, x, y, pr, 0.0), req, expires
    )


def dispatch_position(
    state: VehicleState, route: Route | None, alert: AlertState | None
) -> Position:
    """Where a dispatched unit stands, as the position its dispatch events carry: the start of
    its route (or the alert's place), with what the last fix or CAD said of the unit."""
    if alert is not None and alert.lon is not None and alert.lat is not None:
        lon, lat, ts, incident = alert.lon, alert.lat, alert.last_update_ts, alert.incident_id
    else:
        assert route is not None
        (lon, lat), ts, incident = route.route.coordinates[0], route.ts, route.incident_id
    last, cad = state.last_fix, state.cad
    agency = last.agency if last is not None else (cad.agency if cad and cad.agency else "")
    unit_type = (
        last.unit_type if last is not None
        else (cad.unit_type if cad and cad.unit_type else "unknown")
    )
    return Position(vehicle_id=state.vehicle_id, ts=ts, lat=lat, lon=lon, status="dispatched",
                    agency=agency, unit_type=unit_type, incident_id=incident)
