"""Time without fixes: what the engine does when a unit's fixes stop, and before the first.

:func:`elapse` is the body of :func:`broker.engine.tick` (the engine's public entry point,
which builds the zones): a held dispatch alert that is due starts, the zone of a silent moving
unit moves along its route (dead reckoning, bounded), an alert whose unit went silent is
cancelled (stale), one whose dispatch zone was never taken over by a fix, or that was not
refreshed, expires. :func:`tick_due` says, cheaply, whether any of it is due. Every message
(fix or route) runs the same :func:`elapse` at its own time on its way in, when it is due
(``broker.engine.step``), so a tick at any moment, or none, sends the same events.

:func:`dispatched` starts the dispatch alert of a CAD route (at once, or held:
``dispatch_hold_s``), and :func:`forget_future_fix` repairs a state whose last fix is dated
beyond a trusted clock. The rules of where a silent unit is are :mod:`broker.reckoning`'s; the
events are made by :mod:`broker.lifecycle`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec.structs import replace

from broker.geo.memo import GeoMemo
from broker.lifecycle import ZoneOf, cancel, emit, ended, floor, transition
from broker.model import AlertEvent, Route, VehicleState
from broker.reckoning import (
    dead_reckoned,
    dispatch_position,
    dispatch_start,
    due_steps,
    first_step,
    quiet_after,
    reckoning,
    stale_at,
)
from broker.settings import EngineConfig


def elapse(
    state: VehicleState, now: datetime, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf
) -> tuple[VehicleState, list[AlertEvent]]:
    """What a tick at ``now`` does to a unit :func:`tick_due` says it is due for.

    Every event is stamped at its own instant (a dead-reckoning step: last fix + k x
    ``dead_reckoning_step_s``; the stale cancel: last fix + timeout), not at ``now``."""
    alert, last = state.alert, state.last_fix
    if alert is None:
        state, started = dispatch_due(state, cfg, memo, zone_of)
        if state.alert is None or not tick_due(state, now=now, cfg=cfg):
            return state, started
        # its cover already ended by ``now`` too: one tick (or one message's catch-up) long
        # after the hold starts it and expires it, as ticks at every moment would have
        state, lapsed = elapse(state, now, cfg, memo, zone_of)
        return state, started + lapsed
    if alert.from_dispatch:
        pos = last if last is not None else dispatch_position(state, state.route, alert)
        return cancel(state, ended(state, "expired"), at=alert.expires_at, pos=pos)
    assert last is not None  # tick_due: only a unit with a fix goes silent
    state, events = dead_reckon(state, now, cfg, memo, zone_of)
    alert = state.alert
    assert alert is not None
    silent_at = stale_at(state, cfg, memo)
    if now >= silent_at:
        state, lapsed = cancel(state, ended(state, "stale"), at=silent_at, pos=last)
    elif now >= alert.expires_at:
        state, lapsed = cancel(state, ended(state, "expired"), at=alert.expires_at, pos=last)
    else:
        return state, events
    return state, events + lapsed


def tick_due(state: VehicleState, *, now: datetime, cfg: EngineConfig) -> bool:
    """Whether a tick at ``now`` would do anything: a held dispatch alert due, a dispatch
    zone expired, or a unit silent long enough for a dead-reckoning step, its stale cancel or
    its alert's expiry. Cheap, so a driver can ask it before every fix."""
    alert, last = state.alert, state.last_fix
    if alert is None:
        return state.dispatch_due is not None and now >= state.dispatch_due
    if alert.from_dispatch:
        return now >= alert.expires_at
    return last is not None and (
        now >= alert.expires_at or now - last.ts >= quiet_after(cfg)
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
        state, events = cancel(state, ended(state, "stale"), at=now, pos=last, after_last=False)
    newest = state.last_event_ts  # the bogus fix's events are no floor for the real ones
    newest = None if newest is None else min(newest, now)
    return replace(state, last_fix=None, rejected_in_a_row=0, last_event_ts=newest), events


def withdraw(state: VehicleState, *, now: datetime) -> tuple[VehicleState, list[AlertEvent]]:
    """Cancel the live alert of a unit whose tick has failed (a bug on its state): the driver
    quarantines the unit, so nothing would move or end its alert any more, and partners would
    show a zone that no longer follows the unit until its ``expires_at``. The cancel is a
    ``stale`` one (the broker's picture of the unit can no longer be kept), stamped at ``now``
    (never before the unit's last event), at the unit's last fix (or its dispatch place). Only
    what any cancel needs is used: no zone, no route geometry. A held dispatch alert not started
    yet (``dispatch_due``) is dropped: its start may be what failed, and it would be tried again
    on the unit's next message (the engine's catch-up, :func:`broker.engine.step`), failing that
    message too. A state with neither comes back unchanged.
    """
    if state.dispatch_due is not None:
        state = replace(state, dispatch_due=None)
    alert = state.alert
    if alert is None:
        return state, []
    pos = state.last_fix if state.last_fix is not None else dispatch_position(
        state, state.route, alert
    )
    return cancel(state, ended(state, "stale"), at=now, pos=pos)


def dead_reckon(
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
        if transition(state, "reckoned") != "update":
            raise AssertionError("lifecycle: 'reckoned' must update")
        step_ = dead_reckoned(plan, last, alert, k, cfg)
        if step_.pos.ts >= alert.expires_at:
            break  # expired first: the tick cancels it
        state, sent = emit(state, step_.pos, step_.place, "approaching", cfg, zone_of,
                           prev=alert, req=step_.req, fix_along_m=plan.fix_along_m)
        events += sent
    return state, events


def dispatch_due(
    state: VehicleState, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf
) -> tuple[VehicleState, list[AlertEvent]]:
    """The held dispatch alert of a unit whose own fix did not come first, at its due time."""
    due, route = state.dispatch_due, state.route
    state = replace(state, dispatch_due=None)
    if due is None or route is None or state.alert is not None:
        return state, []
    return dispatched(state, route, cfg, memo, zone_of, at=due)


def dispatched(
    state: VehicleState, route: Route, cfg: EngineConfig, memo: GeoMemo, zone_of: ZoneOf,
    at: datetime | None = None,
) -> tuple[VehicleState, list[AlertEvent]]:
    """A CAD route for a unit with no live alert: the dispatch alert
    (:func:`broker.reckoning.dispatch_start`), or nothing; stamped ``at`` (default: the
    route's time)."""
    start = dispatch_start(state, route, cfg, memo)
    if start is None or transition(state, "dispatched") != "create":
        return state, []
    newest = floor(state)
    if newest is not None and newest >= start.expires:
        return state, []  # a late route: its cover ended before the unit's last event
    pos = start.pos if at is None else replace(start.pos, ts=at)
    return emit(state, pos, start.place, "approaching", cfg, zone_of, prev=None,
                req=start.req, expires=start.expires, fix_along_m=None, from_dispatch=True)
