"""The alert lifecycle: its table, and the create, update and cancel events that carry it out.

``LIFECYCLE`` names every transition (``(phase, trigger) -> (phase, action)``); the engine
(:mod:`broker.engine`, a fix) and the ticks (:mod:`broker.ticks`, time without fixes) look every
transition up here and make their events with :func:`emit` (a create or an update) and
:func:`cancel`: one alert id per (vehicle, incident, kind), versions that only go up (also
across a cancel and a re-create), and events never stamped before the unit's last one
(:func:`floor`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from msgspec import UNSET
from msgspec.structs import replace

from broker.geo.zoning import WarningZone, ZoneRequest
from broker.model import (
    AlertAction,
    AlertEvent,
    AlertKind,
    AlertState,
    CancelReason,
    Position,
    VehicleState,
    WarningSegment,
)
from broker.reckoning import Placement
from broker.settings import EngineConfig

Phase = Literal["idle", "active"]
Trigger = Literal[
    "emergency", "dispatched", "moved", "reckoned", "left_emergency", "stale", "kind_changed",
    "expired",
]
Action = Literal["create", "update", "cancel", "replace"]

# The alert lifecycle as data: the engine looks every transition up here (``transition``), a
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


def transition(state: VehicleState, trigger: Trigger) -> Action:
    """The action ``LIFECYCLE`` names for ``trigger`` in the vehicle's phase."""
    phase = phase_of(state)
    step = LIFECYCLE[phase].get(trigger)
    if step is None:
        raise AssertionError(f"lifecycle: no transition from {phase!r} on {trigger!r}")
    return step[1]


EndTrigger = Literal["stale", "expired", "left_emergency"]


def ended(state: VehicleState, trigger: EndTrigger) -> CancelReason:
    """A trigger that ends the live alert: checked against the table, named as the reason."""
    if transition(state, trigger) != "cancel":
        raise AssertionError(f"lifecycle: {trigger!r} must cancel")
    return trigger


def floor(state: VehicleState) -> datetime | None:
    """The time before which no event of the unit is stamped: its newest event's (a state
    stored before ``last_event_ts`` existed: its live alert's last event)."""
    newest, alert = state.last_event_ts, state.alert
    if alert is not None and (newest is None or alert.last_update_ts > newest):
        return alert.last_update_ts
    return newest


def _remember(versions: dict[str, int], alert_id: str, version: int) -> dict[str, int]:
    """``versions`` with ``alert_id``'s newest version, the most recent REMEMBERED_ALERTS kept."""
    out = {k: v for k, v in versions.items() if k != alert_id}
    out[alert_id] = version
    while len(out) > REMEMBERED_ALERTS:
        del out[next(iter(out))]
    return out


def _event(
    action: AlertAction,
    alert: AlertState,
    pos: Position,
    *,
    vehicle_id: str,
    version: int,
    at: datetime,
    expires_at: datetime,
    segments: list[WarningSegment],
    cancel_reason: CancelReason | None = None,
) -> AlertEvent:
    """The event of ``alert`` that :func:`emit` and :func:`cancel` send: the alert's id, kind,
    incident, life (``started_at``, ``first_version``), zone, path and street, and whether it is a
    dispatch alert (``from_dispatch``); the unit's agency, type and motion from ``pos``;
    ``version``, ``at`` and ``expires_at`` the caller's (a cancel's are not the alert's own)."""
    return AlertEvent(
        action=action,
        alert_id=alert.alert_id,
        version=version,
        kind=alert.kind,
        vehicle_id=vehicle_id,
        incident_id=alert.incident_id,
        agency=pos.agency,
        unit_type=pos.unit_type,
        ts=at,
        started_at=alert.started_at,
        expires_at=expires_at,
        lat=pos.lat,
        lon=pos.lon,
        speed_mps=pos.speed_mps,
        heading_deg=pos.heading_deg,
        zone=alert.zone,
        path=alert.path,
        street=alert.street,
        cancel_reason=cancel_reason,
        segments=segments,
        first_version=alert.first_version,
        # a dispatch alert's place is its route's start, its motion no fix's: marked, so no
        # partner gets them (adapters.policy); left out of every other event's JSON
        from_dispatch=True if alert.from_dispatch else UNSET,
    )


def emit(
    state: VehicleState,
    pos: Position,
    place: Placement,
    kind: AlertKind,
    cfg: EngineConfig,
    zone_of: ZoneOf,
    prev: AlertState | None,
    *,
    req: ZoneRequest,
    expires: datetime | None = None,
    fix_along_m: float | Literal["place"] | None = "place",
    from_dispatch: bool = False,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Build the zone ``req`` asks for and emit a create (no prev) or an update.

    ``req``: the zone of this fix (``broker.engine``), of a dead-reckoning step or of a
    dispatch alert (``broker.reckoning``); ``expires``: when the alert expires (default: in
    ``alert_ttl_s``); ``fix_along_m``: where along the route the unit's last real fix is
    ("place": this one's)."""
    built = zone_of(req)
    alert_id = (
        prev.alert_id if prev is not None else alert_id_for(pos.vehicle_id, pos.incident_id, kind)
    )
    version = state.versions.get(alert_id, 0) + 1
    # never back before the unit's last event (a fix older than the dispatch create it takes
    # over, a late fix re-creating an alert a tick cancelled as stale): stamped then, and
    # expiring a ttl after that
    last = floor(state)
    at = pos.ts if last is None else max(pos.ts, last)
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
        # never a dispatch alert's (the zone builder is not asked: ZoneRequest.named)
        street=None if from_dispatch else built.street,
    )
    event = _event(
        "create" if prev is None else "update", new_alert, pos, vehicle_id=pos.vehicle_id,
        version=version, at=at, expires_at=expires, segments=built.segments,
    )
    versions = _remember(state.versions, alert_id, version)
    return replace(state, alert=new_alert, versions=versions, last_event_ts=at), [event]


def cancel(
    state: VehicleState, reason: CancelReason, *, at: datetime, pos: Position,
    after_last: bool = True,
) -> tuple[VehicleState, list[AlertEvent]]:
    """Cancel the live alert (if any) for ``reason``, stamped ``at``."""
    alert = state.alert
    if alert is None:
        return state, []
    # ``after_last``: never before the unit's last event: a message older than that event (a
    # late fix or status after dead-reckoning steps or a held dispatch create), or a stale time
    # that a new route made earlier than the steps already sent, ends the alert as of the event
    last = floor(state)
    if after_last and last is not None:
        at = max(at, last)
    version = state.versions.get(alert.alert_id, alert.version) + 1
    event = _event(
        "cancel", alert, pos, vehicle_id=state.vehicle_id, version=version, at=at, expires_at=at,
        segments=[], cancel_reason=reason,
    )
    versions = _remember(state.versions, alert.alert_id, version)
    return replace(state, alert=None, versions=versions, last_event_ts=at), [event]
