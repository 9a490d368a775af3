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

What the zone covers is :mod:`broker.geo.zoning`'s concern (:func:`~broker.geo.zoning.
warning_zone`): the engine decides *when* a zone is due and *which* alert it belongs to.

No clock, no I/O: ``now`` and the message carry the time; every driver (the Faust agent, the
replay, the simulator, the benchmarks) calls these functions through ``broker.drive``.
Derived geometry (routes in metres, walks) comes from a :class:`~broker.geo.memo.GeoMemo` the
caller owns; without one, a throwaway memo is used and the result is the same.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Literal

from msgspec.structs import replace

from broker.geo import zones
from broker.geo.memo import GeoMemo
from broker.geo.projection import frame_for
from broker.geo.zoning import WarningZone, ZoneBatch, ZoneRequest, warning_zone
from broker.gps_sanity import is_jump
from broker.model import (
    AlertEvent,
    AlertKind,
    AlertState,
    CancelReason,
    Position,
    Route,
    VehicleState,
)
from broker.reckoning import (
    OFF_ROUTE_M,
    Placement,
    dead_reckoned,
    dispatch_position,
    dispatch_start,
    due_steps,
    first_step,
    is_emergency,
    quiet_s,
    reckoning,
    stale_at,
    usable_route,
)
from broker.settings import EngineConfig
from broker.update_rules import alert_xy, worth_update

if TYPE_CHECKING:  # the road network is optional; the engine runs without it
    from broker.geo.roads import RoadNetwork

Phase = Literal["idle", "active"]
Trigger = Literal[
    "emergency", "dispatched", "moved", "reckoned", "left_emergency", "stale", "kind_changed",
    "expired",
]
Action = Literal["create", "update", "cancel", "replace"]

# The alert lifecycle as data: the engine looks every transition up here (``_transition``), a
# test walks it, docs/engine.md draws it. "update" is sent only when it matters (see
# ``broker.update_rules``); "replace" cancels the old kind's alert and creates the new kind's.
LIFECYCLE: dict[Phase, dict[Trigger, tuple[Phase, Action]]] = {
    "idle": {"emergency": ("active", "create"), "dispatched": ("active", "create")},
    "active": {
        "moved": ("active", "update"),
        "reckoned": ("active", "update"),  # no fix: moved along the route (broker.reckoning)
        "left_emergency": ("idle", "cancel"),
        "stale": ("idle", "cancel"),
        "kind_changed": ("active", "replace"),
        "expired": ("idle", "cancel"),
    },
}

ZoneOf = Callable[[ZoneRequest], WarningZone]  # builds (or defers) the zone of one fix

# statuses of a unit's fixes that keep its dispatch alert (from the CAD route) alive: it is
# turning out; any other non-emergency status cancels it at once (left_emergency)
DISPATCH_KEEPS = frozenset({"dispatched", "responding", "unknown"})

_SEARCH_BACK_M = 100.0  # snapping window behind the last place along the route
# alert ids whose last version a vehicle remembers (so a re-created alert keeps counting up);
# the oldest are forgotten, so a unit serving incident after incident keeps a bounded state
REMEMBERED_ALERTS = 16


def alert_id_for(vehicle_id: str, incident_id: str | None, kind: AlertKind) -> str:
    """Stable alert id per (vehicle, incident, kind): same inputs, same id, on any worker.

    Each field goes into the hash with its length first, so no two different triples hash the
    same text (``"a|b", "c"`` and ``"a", "b|c"`` would, joined with a separator).

    Examples
    --------
    >>> alert_id_for("E1", "a|b", "approaching") != alert_id_for("E1|a", "b", "approaching")
    True
    """
    h = hashlib.blake2b(digest_size=8)
    for field in (vehicle_id, "" if incident_id is None else incident_id, kind):
        data = field.encode()
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    h.update(b"\x01" if incident_id is not None else b"\x00")  # None is not ""
    return f"ev-{h.hexdigest()}"


def phase_of(state: VehicleState) -> Phase:
    """The lifecycle phase of a vehicle: ``active`` while it has a live alert."""
    return "active" if state.alert is not None else "idle"


def _transition(state: VehicleState, trigger: Trigger) -> Action:
    """The action ``LIFECYCLE`` names for ``trigger`` in the vehicle's phase."""
    phase = phase_of(state)
    step = LIFECYCLE[phase].get(trigger)
    if step is None:
        raise AssertionError(f"lifecycle: no transition from {phase!r} on {trigger!r}")
    return step[1]


def step(
    state: VehicleState | None,
    msg: Position | Route,
    *,
    now: datetime,
    cfg: EngineConfig,
    roads: RoadNetwork | None = None,
    memo: GeoMemo | None = None,
    batch: ZoneBatch | None = None,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Apply one message to a vehicle's state; return the new state and the alert events.

    ``now`` is the caller's time (the fix's event time in replay and in the worker). The
    engine itself works in event time: ``now`` is only used where a message has no time.
    ``memo`` keeps derived geometry between calls (``broker.drive`` owns one per loop).
    ``batch``: zones are deferred to it (their dicts filled by ``batch.build()``, which the
    caller runs before reading any event); without one, each zone is built at once.
    """
    if not isinstance(msg, Position | Route):
        raise TypeError(f"engine.step got {type(msg).__name__}, expected Position or Route")
    if state is None:
        state = VehicleState(vehicle_id=msg.vehicle_id)
    # not ``memo or GeoMemo()``: an empty memo is falsy (it has a length), and the driver's
    # memo would then never be filled: every fix would project its route again
    memo = memo if memo is not None else GeoMemo()
    zone_of = _zone_builder(cfg, roads, memo, batch)
    match msg:
        case Route():
            # Keep it; the next fix re-plans the zone on it (route_key changes -> update). A unit
            # with no live alert is being dispatched: warn the start of its route already (once
            # dispatch_hold_s has passed without a fix of its own: tick, or the next fix).
            state = replace(state, route=msg, dispatch_due=None)
            if state.alert is None:
                if cfg.dispatch_hold_s > 0 and min(cfg.dispatch_cover_m, cfg.dispatch_cover_s) > 0:
                    # held: the unit's own fix may come first (then no dispatch zone at all)
                    due = msg.ts + timedelta(seconds=cfg.dispatch_hold_s)
                    return replace(state, dispatch_due=due), []
                return _dispatched(state, msg, cfg, memo, zone_of)
            return state, []
        case Position():
            return _on_position(state, msg, cfg, memo, zone_of, roads is not None)


def _zone_builder(
    cfg: EngineConfig, roads: RoadNetwork | None, memo: GeoMemo, batch: ZoneBatch | None
) -> ZoneOf:
    """Zones deferred to ``batch``, or built at once."""
    if batch is not None:
        return batch.defer
    return partial(warning_zone, cfg=cfg, roads=roads, memo=memo)


def tick(
    state: VehicleState,
    *,
    now: datetime,
    cfg: EngineConfig,
    roads: RoadNetwork | None = None,
    memo: GeoMemo | None = None,
    batch: ZoneBatch | None = None,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Advance time without a fix: start a held dispatch alert that is due, move the zone of a
    silent moving unit along its route (dead reckoning, bounded), cancel an alert whose unit
    went silent (stale) or whose dispatch zone was never taken over by a fix (expired).

    Every event is stamped at its own instant (a dead-reckoning step: last fix + k x
    ``dead_reckoning_step_s``; the stale cancel: last fix + timeout), not at ``now``, and a fix
    catches up on the steps due before it: drivers that tick at different moments (or not at
    all) produce the same events.
    """
    if not tick_due(state, now=now, cfg=cfg):
        return state, []  # the common case: its fixes are coming (nothing below is due yet)
    alert, last = state.alert, state.last_fix
    memo = memo if memo is not None else GeoMemo()
    if alert is None:
        return _dispatch_due(state, cfg, memo, _zone_builder(cfg, roads, memo, batch))
    if alert.from_dispatch:
        pos = last if last is not None else dispatch_position(state, state.route, alert)
        return _cancel(state, _ended(state, "expired"), at=alert.expires_at, pos=pos)
    assert last is not None  # tick_due: only a unit with a fix goes silent
    state, events = _dead_reckon(state, now, cfg, memo, _zone_builder(cfg, roads, memo, batch))
    alert = state.alert
    assert alert is not None
    silent_at = stale_at(state, cfg, memo)
    if now >= silent_at:
        state, ended = _cancel(state, _ended(state, "stale"), at=silent_at, pos=last)
    elif now >= alert.expires_at:
        state, ended = _cancel(state, _ended(state, "expired"), at=alert.expires_at, pos=last)
    else:
        return state, events
    return state, events + ended


def tick_due(state: VehicleState, *, now: datetime, cfg: EngineConfig) -> bool:
    """Whether :func:`tick` at ``now`` would do anything: a held dispatch alert due, a dispatch
    zone expired, or a unit silent long enough for a dead-reckoning step, its stale cancel or
    its alert's expiry. Cheap, so a driver can ask it before every fix."""
    alert, last = state.alert, state.last_fix
    if alert is None:
        return state.dispatch_due is not None and now >= state.dispatch_due
    if alert.from_dispatch:
        return now >= alert.expires_at
    return last is not None and (
        now >= alert.expires_at or (now - last.ts).total_seconds() >= quiet_s(cfg)
    )


def forget_future_fix(
    state: VehicleState, *, now: datetime, cfg: EngineConfig
) -> tuple[VehicleState, list[AlertEvent]]:
    """Repair a state whose last fix is dated beyond ``now`` (a trusted clock) + the allowed
    skew: such a fix (a device clock years ahead, accepted before the codec judged skew against
    the wall clock) would make every real fix look out of order and silence the unit for good.
    Its live alert is cancelled as stale at ``now`` and the fix is forgotten, so the next real
    fix re-anchors the unit. A state without such a fix comes back unchanged.
    """
    last = state.last_fix
    if last is None or last.ts <= now + timedelta(seconds=cfg.max_future_skew_s):
        return state, []
    events: list[AlertEvent] = []
    if state.alert is not None:
        # at ``now`` itself: the alert's last event is as bogus as the fix that made it
        state, events = _cancel(state, _ended(state, "stale"), at=now, pos=last, after_last=False)
    floor = state.last_event_ts  # the bogus fix's events are no floor for the real ones
    floor = None if floor is None else min(floor, now)
    return replace(state, last_fix=None, rejected_in_a_row=0, last_event_ts=floor), events


def withdraw(state: VehicleState, *, now: datetime) -> tuple[VehicleState, list[AlertEvent]]:
    """Cancel the live alert of a unit whose tick has failed (a bug on its state): the driver
    quarantines the unit, so nothing would move or end its alert any more, and partners would
    show a zone that no longer follows the unit until its ``expires_at``. The cancel is a
    ``stale`` one (the broker's picture of the unit can no longer be kept), stamped at ``now``
    (never before the unit's last event), at the unit's last fix (or its dispatch place). Only
    what any cancel needs is used: no zone, no route geometry. A state without a live alert
    comes back unchanged.
    """
    alert = state.alert
    if alert is None:
        return state, []
    pos = state.last_fix if state.last_fix is not None else dispatch_position(
        state, state.route, alert
    )
    return _cancel(state, _ended(state, "stale"), at=now, pos=pos)


def _floor(state: VehicleState) -> datetime | None:
    """The time before which no event of the unit is stamped: its newest event's (a state
    stored before ``last_event_ts`` existed: its live alert's last event)."""
    floor, alert = state.last_event_ts, state.alert
    if alert is not None and (floor is None or alert.last_update_ts > floor):
        return alert.last_update_ts
    return floor


EndTrigger = Literal["stale", "expired", "left_emergency"]


def _ended(state: VehicleState, trigger: EndTrigger) -> CancelReason:
    """A trigger that ends the live alert: checked against the table, named as the reason."""
    if _transition(state, trigger) != "cancel":
        raise AssertionError(f"lifecycle: {trigger!r} must cancel")
    return trigger


def _on_position(
    state: VehicleState, pos: Position, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf,
    roads: bool,
) -> tuple[VehicleState, list[AlertEvent]]:
    """A fix through the gates (time order, GPS sanity, emergency mode), then the lifecycle."""
    events: list[AlertEvent] = []
    due = state.dispatch_due
    if due is not None and state.alert is None and pos.ts >= due:
        # the dispatch alert a tick would have started by now, whether one ran or not
        state, events = _dispatch_due(state, cfg, memo, zone_of)
    if state.alert is not None and state.last_fix is not None and pos.ts > state.last_fix.ts:
        # the dead-reckoning steps a tick would have sent by now, whether one ran or not
        state, reckoned = _dead_reckon(state, pos.ts, cfg, memo, zone_of)
        events += reckoned
    state, gated, accepted = _time_and_gps_gates(state, pos, cfg, memo)
    events += gated
    if not accepted:
        return state, events
    state = replace(state, last_fix=pos, rejected_in_a_row=0)
    if not is_emergency(pos):
        alert = state.alert
        if alert is not None and not (alert.from_dispatch and pos.status in DISPATCH_KEEPS):
            state, cancelled = _cancel(state, _ended(state, "left_emergency"), at=pos.ts, pos=pos)
            events += cancelled
        return state, events
    state, lived = _lifecycle(state, pos, cfg, memo, zone_of, roads)
    if state.dispatch_due is not None and state.alert is not None:
        state = replace(state, dispatch_due=None)  # its own fix came first: no dispatch zone
    return state, events + lived


def _time_and_gps_gates(
    state: VehicleState, pos: Position, cfg: EngineConfig, memo: GeoMemo
) -> tuple[VehicleState, list[AlertEvent], bool]:
    """Gates 1 and 2: ``(state, events, accepted)``; a stale alert is cancelled on the way."""
    last = state.last_fix
    if last is None:
        return state, [], True
    if pos.ts == last.ts:
        return _count(state, "duplicates"), [], False
    if pos.ts < last.ts:
        return _count(state, "out_of_order"), [], False
    events: list[AlertEvent] = []
    dt = (pos.ts - last.ts).total_seconds()
    alert = state.alert
    if alert is not None and not alert.from_dispatch and dt >= cfg.stale_timeout_s:
        silent_at = stale_at(state, cfg, memo)
        if pos.ts >= silent_at:
            state, events = _cancel(state, _ended(state, "stale"), at=silent_at, pos=last)
    if is_jump(last, pos, dt, cfg.max_implied_speed_mps):
        in_a_row = state.rejected_in_a_row + 1
        if in_a_row < cfg.jump_reanchor_after:
            state = _count(state, "jumps")
            return replace(state, rejected_in_a_row=in_a_row), events, False
    return state, events, True


def _lifecycle(
    state: VehicleState, pos: Position, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf,
    roads: bool,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Gate 4 for a fix in emergency mode: the transition ``LIFECYCLE`` names, carried out."""
    events: list[AlertEvent] = []
    kind: AlertKind = "on_scene" if pos.status == "on_scene" else "approaching"
    alert = state.alert
    trigger: Trigger = "emergency"
    if alert is not None:
        same = alert.kind == kind and alert.incident_id == pos.incident_id
        trigger = "moved" if same else "kind_changed"
    action = _transition(state, trigger)
    if action == "replace":
        state, events = _cancel(state, "kind_changed", at=pos.ts, pos=pos)
        alert = None
    place = _place(state, pos, cfg, memo)
    if alert is None:  # "create", or the create half of "replace"
        state, created = _emit(state, pos, place, kind, cfg, zone_of, prev=None)
        return state, events + created
    if worth_update(alert, pos, place, cfg, roads):  # "update", when it matters
        state, events = _emit(state, pos, place, kind, cfg, zone_of, prev=alert)
    elif alert.fix_along_m != place.along_m:  # where dead reckoning would start from
        state = replace(state, alert=replace(alert, fix_along_m=place.along_m))
    return state, events


def _count(state: VehicleState, field: str) -> VehicleState:
    counters = state.counters
    return replace(state, counters=replace(counters, **{field: getattr(counters, field) + 1}))


def _place(state: VehicleState, pos: Position, cfg: EngineConfig, memo: GeoMemo) -> Placement:
    route = usable_route(state, pos)
    if route is None:
        frame = frame_for(pos.lon, pos.lat)
        x, y = frame.to_xy(pos.lon, pos.lat)
        return Placement(frame, x, y, None, None)
    pr = memo.projected_route(route)
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


def _zone_request(
    state: VehicleState, pos: Position, place: Placement, kind: AlertKind, prev: AlertState | None
) -> ZoneRequest:
    """What ``warning_zone`` needs to know of this fix."""
    pr = place.route
    ahead_end = None
    if pr is not None and prev is not None and prev.route_key == pr.key:
        ahead_end = prev.ahead_end_m  # the far end never moves back while the alert lives
    heading = None
    if kind == "approaching" and (pr is None or place.along_m is None):
        heading = _heading(pos, state, place)
    return ZoneRequest(
        kind=kind, frame=place.frame, x=place.x, y=place.y, speed_mps=pos.speed_mps,
        accuracy_m=pos.accuracy_m, fix_heading_deg=pos.heading_deg, heading_deg=heading,
        route=pr, along_m=place.along_m, ahead_end_m=ahead_end,
    )


def _remember(versions: dict[str, int], alert_id: str, version: int) -> dict[str, int]:
    """``versions`` with ``alert_id``'s newest version, the most recent REMEMBERED_ALERTS kept."""
    out = {k: v for k, v in versions.items() if k != alert_id}
    out[alert_id] = version
    while len(out) > REMEMBERED_ALERTS:
        del out[next(iter(out))]
    return out


def _emit(
    state: VehicleState,
    pos: Position,
    place: Placement,
    kind: AlertKind,
    cfg: EngineConfig,
    zone_of: ZoneOf,
    prev: AlertState | None,
    *,
    req: ZoneRequest | None = None,
    expires: datetime | None = None,
    fix_along_m: float | Literal["place"] | None = "place",
    from_dispatch: bool = False,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Build the zone for this fix and emit a create (no prev) or an update.

    ``req``: the zone to build, when it is not the fix's own (dead reckoning, dispatch);
    ``expires``: when the alert expires (default: in ``alert_ttl_s``); ``fix_along_m``: where
    along the route the unit's last real fix is ("place": this one's)."""
    built = zone_of(req if req is not None else _zone_request(state, pos, place, kind, prev))
    alert_id = (
        prev.alert_id if prev is not None else alert_id_for(pos.vehicle_id, pos.incident_id, kind)
    )
    version = state.versions.get(alert_id, 0) + 1
    # never back before the unit's last event (a fix older than the dispatch create it takes
    # over, a late fix re-creating an alert a tick cancelled as stale): stamped then, and
    # expiring a ttl after that
    floor = _floor(state)
    at = pos.ts if floor is None else max(pos.ts, floor)
    started = prev.started_at if prev is not None else at
    first_version = prev.first_version if prev is not None else version
    if expires is None:
        expires = at + timedelta(seconds=cfg.alert_ttl_s)
    new_alert = AlertState(
        alert_id=alert_id,
        version=version,
        kind=kind,
        started_at=started,
        last_update_ts=at,
        expires_at=expires,
        along_m=place.along_m,
        x_m=place.x,
        y_m=place.y,
        lon=pos.lon,
        lat=pos.lat,
        heading_deg=pos.heading_deg,
        speed_mps=pos.speed_mps,
        accuracy_m=pos.accuracy_m,
        ahead_end_m=built.ahead_end_m,
        route_key=place.route.key if place.route is not None else None,
        incident_id=pos.incident_id,
        zone=built.zone,
        path=built.path,
        fix_along_m=place.along_m if fix_along_m == "place" else fix_along_m,
        from_dispatch=from_dispatch,
        first_version=first_version,
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
        ts=at,
        started_at=started,
        expires_at=expires,
        lat=pos.lat,
        lon=pos.lon,
        speed_mps=pos.speed_mps,
        heading_deg=pos.heading_deg,
        zone=built.zone,
        path=built.path,
        segments=built.segments,
        first_version=first_version,
    )
    versions = _remember(state.versions, alert_id, version)
    return replace(state, alert=new_alert, versions=versions, last_event_ts=at), [event]


def _heading(pos: Position, state: VehicleState, place: Placement) -> float | None:
    """Heading for dead reckoning: the fix's own, else the direction of the last update."""
    if pos.heading_deg is not None and pos.speed_mps >= 1.0:
        return pos.heading_deg
    alert = state.alert
    if alert is not None:
        ax, ay = alert_xy(alert, place.frame)
        if math.hypot(place.x - ax, place.y - ay) > 10.0:
            return zones.heading_between(ax, ay, place.x, place.y)
    return None


def _cancel(
    state: VehicleState, reason: CancelReason, *, at: datetime, pos: Position,
    after_last: bool = True,
) -> tuple[VehicleState, list[AlertEvent]]:
    alert = state.alert
    if alert is None:
        return state, []
    # ``after_last``: never before the unit's last event: a message older than that event (a
    # late fix or status after dead-reckoning steps or a held dispatch create), or a stale time
    # that a new route made earlier than the steps already sent, ends the alert as of the event
    floor = _floor(state)
    if after_last and floor is not None:
        at = max(at, floor)
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
        first_version=alert.first_version,
    )
    versions = _remember(state.versions, alert.alert_id, version)
    return replace(state, alert=None, versions=versions, last_event_ts=at), [event]


# ---- when the fixes stop, and before the first: the CAD route stands in ----------------------


def _dead_reckon(
    state: VehicleState, upto: datetime, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf
) -> tuple[VehicleState, list[AlertEvent]]:
    """The dead-reckoning updates due by ``upto`` (inclusive) that were not sent yet, in order
    (:func:`broker.reckoning.due_steps`; the steps already sent are those stamped up to the
    alert's last update, so ticks at any moments and the fixes' catch-up send the same)."""
    last, alert = state.last_fix, state.alert
    if (
        last is None or alert is None
        # the common case: fixes are coming (no step is due before the unit would go stale)
        or (upto - last.ts).total_seconds() < first_step(cfg) * cfg.dead_reckoning_step_s
    ):
        return state, []
    plan = reckoning(state, cfg, memo)
    if plan is None:
        return state, []
    events: list[AlertEvent] = []
    for k in due_steps(plan, last.ts, alert.last_update_ts, upto, cfg):
        alert = state.alert
        assert alert is not None
        if _transition(state, "reckoned") != "update":
            raise AssertionError("lifecycle: 'reckoned' must update")
        step_ = dead_reckoned(plan, last, alert, k, cfg)
        if step_.pos.ts >= alert.expires_at:
            break  # expired first: the tick cancels it
        state, sent = _emit(state, step_.pos, step_.place, "approaching", cfg, zone_of,
                            prev=alert, req=step_.req, fix_along_m=plan.fix_along_m)
        events += sent
    return state, events


def _dispatch_due(
    state: VehicleState, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf
) -> tuple[VehicleState, list[AlertEvent]]:
    """The held dispatch alert of a unit whose own fix did not come first, at its due time."""
    due, route = state.dispatch_due, state.route
    state = replace(state, dispatch_due=None)
    if due is None or route is None or state.alert is not None:
        return state, []
    return _dispatched(state, route, cfg, memo, zone_of, at=due)


def _dispatched(
    state: VehicleState, route: Route, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf,
    at: datetime | None = None,
) -> tuple[VehicleState, list[AlertEvent]]:
    """A CAD route for a unit with no live alert: the dispatch alert
    (:func:`broker.reckoning.dispatch_start`), or nothing; stamped ``at`` (default: the
    route's time)."""
    start = dispatch_start(state, route, cfg, memo)
    if start is None or _transition(state, "dispatched") != "create":
        return state, []
    floor = _floor(state)
    if floor is not None and floor >= start.expires:
        return state, []  # a late route: its cover ended before the unit's last event
    pos = start.pos if at is None else replace(start.pos, ts=at)
    return _emit(state, pos, start.place, "approaching", cfg, zone_of, prev=None,
                 req=start.req, expires=start.expires, fix_along_m=None, from_dispatch=True)
