"""The alert engine: pure functions from (state, message, now) to (state', alert events).

Theory of operation
-------------------
One ``VehicleState`` per apparatus. Each AVL fix goes through four gates, in order:

1. **Time order.** A fix with the same ``ts`` as the last, saying the same status, lights and
   incident, is a duplicate, an older one is out of order: both are counted and ignored.
2. **GPS sanity.** A fix implying more than ``max_implied_speed_mps`` from the last accepted
   fix is a jump: counted and ignored, unless ``jump_reanchor_after`` arrive in a row (then the
   unit really is there); but a jump that stands the unit down still cancels (its status is
   not the GPS's). Poor ``accuracy_m`` widens the zone instead of dropping the fix.
3. **Emergency mode.** ``responding`` with lights and sirens, or ``on_scene``. Any other
   status cancels a live alert at once (reason ``left_emergency``).
4. **Alert lifecycle** (the table ``LIFECYCLE`` below). The alert id is stable per
   (vehicle, incident, kind); its version only goes up, also across a cancel and a re-create.
   An update is sent when it matters (moved ``min_update_distance_m`` along, turned, route
   changed, or the expiry needs refreshing) and never more often than
   ``min_update_interval_s`` (the expiry's refresh excepted); a cancel is never delayed.

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

Ticks do not change the events: before taking any message (fix or route), ``step`` does what
a tick at the message's time would have done, when :func:`tick_due` says one would do anything
(:func:`broker.ticks.elapse`, the body of :func:`tick`: a held dispatch alert started, the
dead-reckoning steps due, the stale or expired cancel), each event stamped at its own instant.
So a unit's events are the same whether a driver ticks every second, every few seconds, or never
(its messages alone, then ticks past the end); ``tick`` only sends them sooner.

Where things live: this module takes a message (``step``: the gates, the fix's place on its
route and its zone request, the lifecycle of a fix) and is the public entry point for time as
well (``tick``, ``tick_due``, ``forget_future_fix``). What happens between fixes (dead
reckoning, dispatch alerts, stale and expired cancels, the future-fix repair) is
:mod:`broker.ticks`'; the lifecycle table and the events that carry it out (alert ids,
versions, create, update, cancel) are :mod:`broker.lifecycle`'s.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Literal

from msgspec.structs import replace

from broker.geo import zones
from broker.geo.memo import GeoMemo
from broker.geo.projection import frame_for
from broker.geo.zone_batch import ZoneBatch
from broker.geo.zoning import ZoneRequest, warning_zone
from broker.gps_sanity import is_jump
from broker.lifecycle import (
    LIFECYCLE,
    REMEMBERED_ALERTS,
    Action,
    Phase,
    Trigger,
    ZoneOf,
    alert_id_for,
    cancel,
    emit,
    ended,
    phase_of,
    transition,
)
from broker.model import AlertEvent, AlertKind, AlertState, Position, Route, VehicleState
from broker.reckoning import OFF_ROUTE_M, Placement, is_emergency, usable_route
from broker.settings import EngineConfig
from broker.ticks import dispatched, elapse, forget_future_fix, tick_due, withdraw
from broker.update_rules import alert_xy, worth_update

if TYPE_CHECKING:  # the road network is optional; the engine runs without it
    from broker.geo.roads import RoadNetwork

# the public surface (``warning_zone``: looked up here when a zone is built at once, so a
# benchmark can time it in any tree, bench/engine_run.py)
__all__ = [
    "DISPATCH_KEEPS", "LIFECYCLE", "REMEMBERED_ALERTS", "Action", "Phase", "Trigger",
    "alert_id_for", "forget_future_fix", "phase_of", "step", "tick", "tick_due", "warning_zone",
    "withdraw",
]

# statuses of a unit's fixes that keep its dispatch alert (from the CAD route) alive: it is
# turning out; any other non-emergency status cancels it at once (left_emergency)
DISPATCH_KEEPS = frozenset({"dispatched", "responding", "unknown"})

_SEARCH_BACK_M = 100.0  # snapping window behind the last place along the route

# why gates 1 and 2 refused a fix (each is counted: ``duplicates``, ``out_of_order``, ``jumps``)
Refusal = Literal["duplicate", "out_of_order", "gps_jump"]


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

    A tick at the message's time comes first, when one would do anything (:func:`tick_due`):
    its events lead the list, so the caller's ticks (or their absence) change nothing.
    """
    if not isinstance(msg, Position | Route):
        raise TypeError(f"engine.step got {type(msg).__name__}, expected Position or Route")
    if state is None:
        state = VehicleState(vehicle_id=msg.vehicle_id)
    # not ``memo or GeoMemo()``: an empty memo is falsy (it has a length), and the driver's
    # memo would then never be filled: every fix would project its route again
    memo = memo if memo is not None else GeoMemo()
    zone_of = _zone_builder(cfg, roads, memo, batch)
    caught_up: list[AlertEvent] = []
    if tick_due(state, now=msg.ts, cfg=cfg):
        # what a tick would have done by the message's time, whether one ran or not
        state, caught_up = elapse(state, msg.ts, cfg, memo, zone_of)
    state, events = _take(state, msg, cfg, memo, zone_of, roads is not None)
    return state, caught_up + events if caught_up else events


def _take(
    state: VehicleState, msg: Position | Route, cfg: EngineConfig, memo: GeoMemo,
    zone_of: ZoneOf, roads: bool,
) -> tuple[VehicleState, list[AlertEvent]]:
    match msg:
        case Route():
            if state.route is not None and msg.ts < state.route.ts:
                # a route stamped before the one kept (out of order; one of the same stamp, a
                # correction, is taken): kept, it
                # planned the zone on the superseded route and made a status CAD gave between
                # the two look newer than the dispatch (hypothesis found it)
                return _count(state, "out_of_order"), []
            # Keep it; the next fix re-plans the zone on it (route_key changes -> update). A unit
            # with no live alert is being dispatched: warn the start of its route already (once
            # dispatch_hold_s has passed without a fix of its own: tick, or the next fix).
            state = replace(state, route=msg, dispatch_due=None)
            if state.alert is None:
                if cfg.dispatch_hold_s > 0 and min(cfg.dispatch_cover_m, cfg.dispatch_cover_s) > 0:
                    # held: the unit's own fix may come first (then no dispatch zone at all)
                    due = msg.ts + timedelta(seconds=cfg.dispatch_hold_s)
                    return replace(state, dispatch_due=due), []
                return dispatched(state, msg, cfg, memo, zone_of)
            return state, []
        case Position():
            return _on_position(state, msg, cfg, memo, zone_of, roads)


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
    went silent (stale) or whose dispatch zone was never taken over by a fix (expired)
    (:func:`broker.ticks.elapse`).

    Every event is stamped at its own instant (a dead-reckoning step: last fix + k x
    ``dead_reckoning_step_s``; the stale cancel: last fix + timeout; the expiry: ``expires_at``),
    not at ``now``, and :func:`step` does the same work at a message's time before taking it:
    drivers that tick at different moments (or not at all) produce the same events.
    """
    if not tick_due(state, now=now, cfg=cfg):
        return state, []  # the common case: its fixes are coming (nothing below is due yet)
    memo = memo if memo is not None else GeoMemo()
    return elapse(state, now, cfg, memo, _zone_builder(cfg, roads, memo, batch))


def _on_position(
    state: VehicleState, pos: Position, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf,
    roads: bool,
) -> tuple[VehicleState, list[AlertEvent]]:
    """A fix through the gates (time order, GPS sanity, emergency mode), then the lifecycle."""
    events: list[AlertEvent] = []
    state, refused = _time_and_gps_gates(state, pos, cfg)
    if refused == "gps_jump":
        return _stood_down_off_track(state, pos)
    if refused is not None:
        return state, []  # a duplicate or an older fix: counted, nothing more
    state = replace(state, last_fix=pos, rejected_in_a_row=0)
    if not is_emergency(pos):
        if _stands_down(state.alert, pos):
            state, cancelled = cancel(state, ended(state, "left_emergency"), at=pos.ts, pos=pos)
            events += cancelled
        return state, events
    state, lived = _lifecycle(state, pos, cfg, memo, zone_of, roads)
    if state.dispatch_due is not None and state.alert is not None:
        state = replace(state, dispatch_due=None)  # its own fix came first: no dispatch zone
    return state, events + lived


def _stood_down_off_track(
    state: VehicleState, pos: Position
) -> tuple[VehicleState, list[AlertEvent]]:
    """A fix refused as a GPS jump still stands the unit down: its place is not believed, its
    status is (it is not the GPS's). Refused whole, a stand-down was lost, and a unit quiet after
    it had its zone dead-reckoned on for a minute, then cancelled as stale. The cancel is placed
    at the last fix believed; that fix stays the last (the jump gate measures from it). A fix
    that says what the last did still acts when it is newer: a dispatch alert made by a CAD
    route since that fix is stood down by it, as by the same fix accepted. (A duplicate or an
    older fix never comes here: the gates refuse it for what it is, and it changes nothing.)"""
    last = state.last_fix
    assert last is not None  # the jump was measured from it
    if not _stands_down(state.alert, pos):
        return state, []  # it stands nothing down
    at_last = replace(last, ts=pos.ts, status=pos.status, lights_sirens=pos.lights_sirens,
                      incident_id=pos.incident_id)
    return cancel(state, ended(state, "left_emergency"), at=pos.ts, pos=at_last)


def _stands_down(alert: AlertState | None, pos: Position) -> bool:
    """Whether a fix ends the live alert: it is no emergency, and the alert is no dispatch
    alert the unit's turn-out statuses (``DISPATCH_KEEPS``) leave standing."""
    return alert is not None and not is_emergency(pos) and not (
        alert.from_dispatch and pos.status in DISPATCH_KEEPS
    )


def _time_and_gps_gates(
    state: VehicleState, pos: Position, cfg: EngineConfig
) -> tuple[VehicleState, Refusal | None]:
    """Gates 1 and 2: ``(state, refused)``, ``refused`` None for a fix taken, else why it was
    not (the refusal counted in ``state``)."""
    last = state.last_fix
    if last is None:
        return state, None
    if pos.ts == last.ts and _says_the_same(pos, last):
        # a fix of the same instant that changes the status is no duplicate: an AVL stamping to
        # the second sends a status change in a message of its own, at the periodic fix's ts
        return _count(state, "duplicates"), "duplicate"
    if pos.ts < last.ts:
        return _count(state, "out_of_order"), "out_of_order"
    # a status change in the same instant: stamped to the second, the two fixes may be up to a
    # second apart, and a moving unit some metres on (at 0 s every metre past their accuracy
    # was a jump, and the change waited for the next fix)
    dt = (pos.ts - last.ts).total_seconds() or 1.0
    if is_jump(last, pos, dt, cfg.max_implied_speed_mps):
        in_a_row = state.rejected_in_a_row + 1
        if in_a_row < cfg.jump_reanchor_after:
            state = _count(state, "jumps")
            return replace(state, rejected_in_a_row=in_a_row), "gps_jump"
    return state, None


def _says_the_same(pos: Position, last: Position) -> bool:
    """Whether a fix says what the last did about the unit's emergency mode and incident."""
    return (pos.status, pos.lights_sirens, pos.incident_id) == (
        last.status, last.lights_sirens, last.incident_id
    )


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
    action = transition(state, trigger)
    if action == "replace":
        state, events = cancel(state, "kind_changed", at=pos.ts, pos=pos)
        alert = None
    place = _place(state, pos, cfg, memo)
    if alert is None:  # "create", or the create half of "replace"
        req = _zone_request(state, pos, place, kind, None)
        state, created = emit(state, pos, place, kind, cfg, zone_of, prev=None, req=req)
        return state, events + created
    if worth_update(alert, pos, place, cfg, roads):  # "update", when it matters
        req = _zone_request(state, pos, place, kind, alert)
        state, events = emit(state, pos, place, kind, cfg, zone_of, prev=alert, req=req)
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
        street=prev.street if prev is not None else None,
    )


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
