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
dispatched, not yet in emergency mode, and stands at the start of its route; nor its street (the
station's, which would tell the same). Its zone, path and
segments (the first stretch of that route: the warning) go out as for any alert. Only the
operator role (``Policy.dispatch_position``, never a partner) sees where such a unit stands.

Alert ids are pseudonymised with a keyed hash unless the policy allows ``alert_id``: the engine's
ids are derived from vehicle and incident, so passing them on would leak both. A pseudonym is
per life of the alert, and so are the versions it carries: they count from 1 at the life's
create (``AlertView.partner_version``), since the engine's count goes on across lives and would
chain the pseudonyms together. ``AlertView.version`` stays the engine's, for the bookkeeping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from adapters.zone_rounding import (
    COARSE_DECIMALS,
    NotAnEmergencyAlert,
    round_zone,
    scene_anchor,
)
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
# ... and the street: the engine names none for a dispatch alert (the street at its route's
# start is the station's), and a partner gets none from such an event whatever it carries
DISPATCH_WITHHELD: frozenset[str] = UNIT_FIELDS | {"street"}
# a warning segment's line is never finer than this many decimals (~1 m), whatever the policy
SEGMENT_DECIMALS = 5
EMERGENCY_KINDS: frozenset[str] = frozenset({"approaching", "on_scene"})


@dataclass(frozen=True, slots=True)
class Policy:
    """Which optional fields a partner may get, and how precise coordinates are.

    ``coordinate_decimals`` rounds every coordinate (zone, path, position): 5 decimals is
    about 1 m, 3 decimals about 100 m (the open-data view). ``None`` keeps 6 decimals, the
    precision RFC 7946 calls "well within" GPS accuracy. At 4 decimals or fewer the zone is
    not rounded but drawn as grid cells that cover it (``adapters.zone_rounding``).

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
    # whether the partner's versions count from 1 in each life (``partner_version``): a
    # partner whose alert id is a per-life pseudonym. False: it sees the engine's versions,
    # which go on across the lives of an id (a partner given the engine's id, the operator)
    per_life_versions: bool = False

    # ``version`` is the engine's: delivery orders steps and tells lives apart by it. What a
    # partner sees of it (payloads, ``webhook-id``, CAP identifiers) is ``partner_version``.

    def partner_version_of(self, version: int) -> int:
        """The number a partner sees for the engine's ``version`` of this view's life: counted
        from 1 at the life's first version (``first_version``) when ``per_life_versions``,
        else the engine's own.

        The engine keeps counting an id's versions across a cancel and a re-create, so under a
        new pseudonym the engine's count (v5 forty minutes after a life that ended at v4)
        chained the new pseudonym to the old one (docs/privacy.md, item 4).
        """
        return version - self.first_version + 1 if self.per_life_versions else version

    @property
    def partner_version(self) -> int:
        """This step's version as the partner sees it (``partner_version_of``)."""
        return self.partner_version_of(self.version)

    def message_id_of(self, version: int) -> str:
        """The ``webhook-id`` this view's life of the alert gives the engine's ``version``:
        partner-facing alert id + ``-v`` + the partner's number for it."""
        return f"{self.alert_id}-v{self.partner_version_of(version)}"

    @property
    def message_id(self) -> str:
        """Idempotency key of this step: alert id + version as the partner sees it (Standard
        Webhooks ``webhook-id``; ``message_id_of``)."""
        return self.message_id_of(self.version)




# A cancel has no expiry of its own: it stays deliverable (and a CAP cancel's ``expires``
# says it stays in force) this long after it happened.
CANCEL_TTL = timedelta(minutes=5)

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
        allowed -= DISPATCH_WITHHELD  # a dispatched unit, not in emergency mode: where it stands
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
    # given only when one is left at the partner's precision: a line that collapses to a point
    # is left out, and the audit named ``segments`` for a message that carried none
    segments = _segments(event, min(d, SEGMENT_DECIMALS)) if event.segments else ()
    if segments:
        give("segments", segments=segments)
    give("street", street=event.street)
    give("cancel_reason", cancel_reason=event.cancel_reason)
    raw_id = "alert_id" in allowed
    alert_id = event.alert_id if raw_id else public_alert_id(event.alert_id, key, event.started_at)
    return AlertView(
        alert_id=alert_id,
        version=event.version,
        action=event.action,
        kind=event.kind,
        ts=event.ts,
        started_at=event.started_at,
        expires_at=event.expires_at,
        zone=round_zone(event.zone, d, scene_anchor(event) if d <= COARSE_DECIMALS else None),
        fields_sent=tuple(sent),
        first_version=event.first_version,
        # a pseudonym is per life, and so is its count (docs/privacy.md, item 4); the engine's
        # id is the same in every life, and its versions go on so its webhook-ids never repeat
        per_life_versions=not raw_id,
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
        "version": view.partner_version,
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
