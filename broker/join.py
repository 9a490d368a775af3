"""The join of AVL and CAD per unit: a fix and the unit's latest status -> the engine's Position.

Agencies have positions and status in two systems: AVL (the vehicle's modem, often with its
lightbar wired to an input) and CAD (dispatch: the unit's status and incident). The broker
keeps each unit's latest status in its state (``VehicleState.cad``) and merges it into every
fix, so the engine sees exactly the :class:`~broker.model.Position` it always has.

Rules (docs/ingest.md):

- A fix that carries its own ``status`` (the combined form) is taken as it is: its status,
  incident and lights (absent: off). CAD fills in only what it leaves out (agency, unit type).
- Otherwise (the split form) the status and incident are CAD's; lights are the vehicle's own
  lightbar when its AVL reports one, else what CAD says, else off.
- No status known at all: ``unknown`` (not an emergency), unless the lightbar is on and
  ``EngineConfig.lights_without_cad`` says to warn (then ``responding``).
- Agency and unit type: the fix's, else CAD's, else the agency file's.

A status change alone acts without waiting for the next fix (:func:`restated`): the unit's
last fix is stated again under the new status, at the status's time, when that changes what
the engine sees. It waits ``status_grace_s`` (3 s) for a fix of its own instant, which is then
merged with it as the combined form would have it; after that it acts, by the driver's tick or
just before the unit's next fix or status, whichever comes first: both give the same events, so
a worker that reads the same log again after a crash makes the same alerts (the stale cancel's
trick), in time order with what time alone does to the unit (``broker.drive.statuses``).
Emergency mode itself is the engine's rule (``engine.is_emergency``): responding with lights
and sirens, or on scene.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec.structs import replace

from broker.agencies import Unit
from broker.engine import DISPATCH_KEEPS
from broker.model import Fix, Position, Status, UnitStatus, VehicleState
from broker.reckoning import dispatch_position, is_emergency
from broker.settings import EngineConfig

# a status stamped at or before the unit's last fix re-states it this long after that fix
# (the engine takes one fix per instant)
JUST_AFTER = timedelta(milliseconds=1)


def merge(
    fix: Fix, cad: UnitStatus | None, unit: Unit | None, *, lights_without_cad: bool = False
) -> Position:
    """The position the engine sees for ``fix``, given the unit's latest CAD status."""
    agency = fix.agency or (cad.agency if cad else None) or (unit.agency if unit else "")
    unit_type = (
        fix.unit_type or (cad.unit_type if cad else None) or (unit.unit_type if unit else None)
        or "unknown"
    )
    status: Status
    if fix.status is not None:  # the combined form: the fix says it all
        status, incident = fix.status, fix.incident_id
        lights = bool(fix.lights_sirens)
    else:
        lights = fix.lights_sirens if fix.lights_sirens is not None else bool(
            cad is not None and cad.lights_sirens
        )
        if cad is not None:  # CAD's incident; the fix's only where CAD names none
            status, incident = cad.status, cad.incident_id or fix.incident_id
        else:
            status = "responding" if lights and lights_without_cad else "unknown"
            incident = fix.incident_id
    return Position(
        vehicle_id=fix.vehicle_id,
        ts=fix.ts,
        lat=fix.lat,
        lon=fix.lon,
        status=status,
        agency=agency,
        speed_mps=fix.speed_mps,
        heading_deg=fix.heading_deg,
        lights_sirens=lights,
        incident_id=incident,
        unit_type=unit_type,
        accuracy_m=fix.accuracy_m,
    )


def remember_fix(state: VehicleState, fix: Fix) -> VehicleState:
    """Keep what the join needs of the fix besides the merged position: the lightbar, the
    incident it named itself, and whether it carried its own status (which a status event
    must not override). A unit without a CAD status keeps nothing (the combined form's states
    stay as they were); an unchanged state comes back as it is."""
    if fix.status is not None:
        if state.cad is None or state.fix_status:
            return state
        return replace(state, lightbar=None, fix_status=True, fix_incident=None)
    if (state.lightbar is fix.lights_sirens and not state.fix_status
            and state.fix_incident == fix.incident_id):
        return state
    return replace(state, lightbar=fix.lights_sirens, fix_status=False,
                   fix_incident=fix.incident_id)


def restated(state: VehicleState, cfg: EngineConfig) -> Position | None:
    """The fix a status change alone makes: the last fix under the unit's latest status.

    With no fix yet, only a unit stood down while its dispatch alert lives has one (a stand-in
    at the alert's place: :func:`_stood_down`). None when there is nothing to state again: no
    fix or no status yet; the last fix carried
    its own status (the combined form wins); the status changes nothing the engine looks at
    (status, lights, incident); or it would start an alert from a fix older than the stale
    timeout (the next fix will). Stamped at the status's time, or just after the last fix when
    the status is older than it.
    """
    last, cad = state.last_fix, state.cad
    if cad is None or state.fix_status or _before_the_dispatch(state, cad):
        return None
    if last is None:
        return _stood_down(state, cad)
    lights = state.lightbar if state.lightbar is not None else bool(cad.lights_sirens)
    # as merge: CAD's incident, else the one the last fix named itself (the next fix's merge
    # gives the same, so a fix naming an incident beside a CAD status restates nothing)
    incident = cad.incident_id or state.fix_incident
    if (cad.status, lights, incident) == (last.status, last.lights_sirens, last.incident_id):
        return None
    at = max(cad.ts, last.ts + JUST_AFTER)
    pos = replace(last, ts=at, status=cad.status, lights_sirens=lights, incident_id=incident)
    if state.alert is None:
        fresh = (at - last.ts).total_seconds() < cfg.stale_timeout_s
        if not (is_emergency(pos) and fresh):
            return None
    return pos


def _before_the_dispatch(state: VehicleState, cad: UnitStatus) -> bool:
    """Whether the unit's live alert is a dispatch alert whose CAD route came after ``cad``:
    the route supersedes what CAD said before it, so that status is not stated again against
    the dispatch zone. (A unit whose AVL went quiet at the station as ``returning`` and that CAD
    made ``available`` since had its dispatch zone cancelled as soon as it lived, the cancel
    dated at the old status, minutes before the create.)"""
    alert, route = state.alert, state.route
    return alert is not None and alert.from_dispatch and (route is None or cad.ts < route.ts)


def _stood_down(state: VehicleState, cad: UnitStatus) -> Position | None:
    """The stand-in fix of a unit CAD stood down before its first fix: it has a dispatch alert
    (from its CAD route) and a status, no older than the route, that ends one (``available``,
    ``returning`` ...: not one of ``engine.DISPATCH_KEEPS``, not an emergency). Without it the
    alert stayed until it expired (``dispatch_cover_s``, 90 s), warning of a unit that was not
    coming, for want of a fix to state again. Placed where the dispatch alert stands, stamped
    at the status's time (just after the alert's, if older); the driver keeps no fix of it
    (``Driver._restate``)."""
    alert = state.alert
    if alert is None or not alert.from_dispatch or cad.status in DISPATCH_KEEPS:
        return None
    place = dispatch_position(state, state.route, alert)
    at = max(cad.ts, alert.last_update_ts + JUST_AFTER)
    pos = replace(place, ts=at, status=cad.status, lights_sirens=bool(cad.lights_sirens),
                  incident_id=cad.incident_id or alert.incident_id)
    return None if is_emergency(pos) else pos


def newer_status(state: VehicleState | None, status: UnitStatus) -> bool:
    """Whether ``status`` may replace the unit's stored one (not older than it)."""
    return state is None or state.cad is None or status.ts >= state.cad.ts


# statuses of one instant remembered (``VehicleState.cad_same_ts``): more in one second is no
# CAD's, and the oldest are forgotten
SAME_TS_KEPT = 8


def repeated_status(state: VehicleState | None, status: UnitStatus) -> bool:
    """Whether ``status`` is one taken already *before* the stored one, of the same instant:
    its input appended again after a restart (the forwarder's at-least-once), not CAD changing
    its mind. Taken, it changed the unit back for a moment: a responding unit cleared from one
    incident and sent to the next in one second got a false cancel and a re-create. (A real
    change back within the same second reads the same, and is refused too: rarer by far.)"""
    cad = None if state is None else state.cad
    return (state is not None and cad is not None and status.ts == cad.ts
            and status != cad and status in state.cad_same_ts)


def same_ts_before(state: VehicleState, status: UnitStatus) -> tuple[UnitStatus, ...]:
    """``VehicleState.cad_same_ts`` once ``status`` is taken: the stored status joins those of
    its instant when ``status`` is of the same one (and differs); a later instant starts
    afresh."""
    cad = state.cad
    if cad is None or status.ts != cad.ts:
        return ()
    if status == cad:
        return state.cad_same_ts
    return (*state.cad_same_ts, cad)[-SAME_TS_KEPT:]


def due(state: VehicleState, now: datetime, cfg: EngineConfig) -> bool:
    """Whether a pending status has waited long enough for a fix of its own instant (by
    ``now``, a tick's time or the next fix's): ``status_grace_s`` past its stamp."""
    cad = state.cad
    return cad is not None and now > cad.ts + timedelta(seconds=cfg.status_grace_s)
