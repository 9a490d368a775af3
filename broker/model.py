"""Typed messages of the broker: what comes in (positions, routes), what goes out (alerts).

Wire messages are frozen msgspec Structs, validated once when decoded (broker.codec).
Coordinates on the wire follow each format's own order: positions carry named ``lat``/``lon``
fields; GeoJSON geometry is always ``[lon, lat]`` (RFC 7946).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

Lat = Annotated[float, Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, Meta(ge=-180.0, le=180.0)]
SpeedMps = Annotated[float, Meta(ge=0.0, le=150.0)]
HeadingDeg = Annotated[float, Meta(ge=0.0, le=360.0)]
AccuracyM = Annotated[float, Meta(ge=0.0, le=10_000.0)]
# What a fix may carry on the wire where AVL devices and vendor feeds say "no reading": a heading
# below 0 (-1 on many devices, iOS's course) and a speed of exactly -1 (iOS's speed). The codec
# reads them as unknown (broker.codec.check_fix: a null heading, an absent speed) and counts
# them; the engine never sees them. A heading over 360 and any other negative speed are refused
# (the latter by check_fix, so its message says what is taken).
WireHeadingDeg = Annotated[float, Meta(le=360.0)]
WireSpeedMps = Annotated[float, Meta(le=150.0)]
UNKNOWN_SPEED_MPS = -1.0
# Text from producers ends up in partner payloads (CAP XML, CIFS JSON) and operators' screens:
# printable only (no C0/C1 control characters, no line or paragraph separators) and short.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
Identifier = Annotated[str, Meta(min_length=1, max_length=128, pattern=PRINTABLE)]
ShortText = Annotated[str, Meta(max_length=64, pattern=PRINTABLE)]

# [west, south, east, north] in degrees: where fixes and routes are accepted. The default is the
# whole world but the polar caps, where the broker's local frames are not built to work;
# a deployment narrows it to its county (EngineConfig.service_area, BROKER_ENGINE_SERVICE_AREA).
Area = tuple[float, float, float, float]
WORLD: Area = (-180.0, -85.0, 180.0, 85.0)
DEFAULT_ACCURACY_M = 5.0  # a fix that does not say how accurate it is

# A unit's status as CAD knows it (on a fix of the combined form, or on ``cad.status``)
CadStatus = Literal[
    "available", "dispatched", "responding", "on_scene", "returning", "out_of_service"
]
# ...and in the merged position the engine sees: "unknown" when no status is known at all
# (a fix without one, of a unit CAD has said nothing about yet; broker.join)
Status = Literal[
    "available", "dispatched", "responding", "on_scene", "returning", "out_of_service",
    "unknown",
]
AlertKind = Literal["approaching", "on_scene"]
AlertAction = Literal["create", "update", "cancel"]
CancelReason = Literal["left_emergency", "stale", "kind_changed", "expired"]

RejectReason = Literal[
    "bad_json",  # not JSON at all, or NaN/Infinity literals
    "missing_field",  # a required field is absent
    "wrong_type",  # a field has the wrong JSON type
    "out_of_range",  # lat/lon/speed/heading/accuracy outside its range (incl. 1e999)
    "unknown_status",  # status not one of Status
    "bad_timestamp",  # ts not RFC 3339 with an offset
    "future_timestamp",  # ts more than the allowed skew ahead of the receive time
    "late",  # a fix stale_timeout_s or more behind its stream's clock (a device clock behind)
    "oversized",  # message larger than the size cap
    "bad_geometry",  # a route that is not a usable LineString
    "bad_text",  # a text field with control characters (a line break, a NUL ...)
    "out_of_area",  # a position or route outside the configured service area
    "unknown_unit",  # a unit (or Traccar device) the agency file does not name
    "stale_status",  # a CAD status event older than the unit's latest one
    "invalid_fix",  # a Traccar position its device marked invalid (no GPS fix)
    "outdated_fix",  # a Traccar position Traccar marked outdated (the device's last known)
    "misrouted",  # on an input partition that is not its vehicle id's (not keyed by the id)
    "invalid",  # anything else the decoder refused
]


class LatLon(Struct, frozen=True, kw_only=True, gc=False):
    """A point with named coordinates (CAD destination)."""

    lat: Lat
    lon: Lon


class Fix(Struct, frozen=True, kw_only=True, gc=False):
    """One AVL fix as it arrives on ``avl.positions`` (key = vehicle_id).

    Where the unit is, and what the vehicle itself knows (its lightbar, if wired). What the unit
    is doing (status, incident) comes either with the fix (the *combined* form: ``status`` set)
    or from ``cad.status`` (the *split* form); :mod:`broker.join` merges the two into the
    :class:`Position` the engine sees. ``None``: this fix does not say.
    """

    vehicle_id: Identifier
    ts: datetime
    lat: Lat
    lon: Lon
    status: CadStatus | None = None
    agency: ShortText | None = None
    speed_mps: WireSpeedMps = 0.0  # absent: 0 (so is -1, "no reading": broker.codec.check_fix)
    heading_deg: WireHeadingDeg | None = None  # None, or below 0 on the wire: unknown
    lights_sirens: bool | None = None
    incident_id: ShortText | None = None
    unit_type: ShortText | None = None
    accuracy_m: AccuracyM = DEFAULT_ACCURACY_M


class UnitStatus(Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A unit's status as CAD changes it (topic ``cad.status``, key = vehicle_id).

    ``lights_sirens``: what CAD knows of the response mode (code 3), for agencies whose
    vehicles do not report their lightbar; None: CAD does not say. ``destination`` is where the
    unit is sent (informational: zones follow ``cad.routes``).
    """

    vehicle_id: Identifier
    ts: datetime
    status: CadStatus
    incident_id: ShortText | None = None
    lights_sirens: bool | None = None
    agency: ShortText | None = None
    unit_type: ShortText | None = None
    destination: LatLon | None = None


class Position(Struct, frozen=True, kw_only=True, gc=False):
    """One fix of an apparatus with what it is doing: what the engine sees (broker.join)."""

    vehicle_id: Identifier
    ts: datetime
    lat: Lat
    lon: Lon
    status: Status
    agency: ShortText = ""
    speed_mps: SpeedMps = 0.0
    heading_deg: HeadingDeg | None = None
    lights_sirens: bool = False
    incident_id: ShortText | None = None
    unit_type: ShortText = "unknown"
    accuracy_m: AccuracyM = DEFAULT_ACCURACY_M


class LineStringGeometry(Struct, frozen=True, tag_field="type", tag="LineString", gc=False):
    """GeoJSON LineString; coordinates are ``[lon, lat]`` pairs (RFC 7946)."""

    coordinates: Annotated[list[tuple[Lon, Lat]], Meta(min_length=2, max_length=20_000)]


class Route(Struct, frozen=True, kw_only=True, gc=False):
    """Planned route of a responding unit (topic ``cad.routes``, key = vehicle_id)."""

    vehicle_id: Identifier
    incident_id: ShortText
    ts: datetime
    destination: LatLon
    route: LineStringGeometry


class GeoJSONPosition(Struct, frozen=True, array_like=True, gc=False):
    """One GeoJSON position as it may come: ``[lon, lat]`` or ``[lon, lat, altitude]``.

    RFC 7946 section 3.1.1 allows an altitude as a third element (routing engines add it when
    asked for elevations); the broker has no use for it, and keeps ``[lon, lat]``.
    """

    lon: Lon
    lat: Lat
    altitude: float | None = None


class LineStringMessage(Struct, frozen=True, tag_field="type", tag="LineString", gc=False):
    """A route's GeoJSON LineString as it comes on ``cad.routes``: positions of 2 or 3 numbers."""

    coordinates: Annotated[list[GeoJSONPosition], Meta(min_length=2, max_length=20_000)]


class RouteMessage(Struct, frozen=True, kw_only=True, gc=False):
    """A ``cad.routes`` message as it comes (:class:`Route`, its positions with altitudes)."""

    vehicle_id: Identifier
    incident_id: ShortText
    ts: datetime
    destination: LatLon
    route: LineStringMessage

    def to_route(self) -> Route:
        """The :class:`Route` the engine keeps: ``(lon, lat)`` pairs, altitudes dropped."""
        coords = [(p.lon, p.lat) for p in self.route.coordinates]
        return Route(vehicle_id=self.vehicle_id, incident_id=self.incident_id, ts=self.ts,
                     destination=self.destination, route=LineStringGeometry(coordinates=coords))


class Rejection(Struct, frozen=True, kw_only=True, gc=False):
    """A message the broker refused: why, and the original bytes (for ``avl.dlq``)."""

    reason: RejectReason
    detail: str
    raw: bytes
    vehicle_id: str | None = None  # when it was read (``misrouted``: the key it should have had)


SegmentDirections = Literal["forward", "both"]
SEGMENTS_VERSION = 1  # the shape of ``WarningSegment``; partners read it as ``segments_version``


class WarningSegment(Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    """A road piece a zone covers, with who on it must yield and until when.

    ``line``: ``[lon, lat]`` pairs (5 decimals, ~1 m) *in travel direction*: a driver on it
    moving that way must yield. ``directions``: ``"forward"`` (only that way: a side street
    feeding the unit's path, its own lane ahead) or ``"both"`` (either way: a corridor without
    a road network, where the lanes are not known). ``eta_s``: seconds after the event's ``ts``
    by which the unit will have passed the place where drivers on this piece meet it (a warning
    is useless after it); ``None``: no end while the alert lives (a unit on scene, or the roads
    upstream of the scene it is about to reach). Encoded as a JSON array ``[line, directions,
    eta_s]`` on the ``alerts`` topic (compact: an alert carries up to ``MAX_SEGMENTS``).
    """

    line: list[tuple[float, float]]
    directions: SegmentDirections = "forward"
    eta_s: float | None = None


class AlertEvent(Struct, frozen=True, kw_only=True, gc=False):
    """One step of an alert's life, as produced to topic ``alerts`` (key = alert_id).

    ``zone`` is a GeoJSON Polygon or MultiPolygon (lon/lat, CCW exteriors, closed rings),
    also on a cancel (the last zone), so partners can address the cancel to an area.
    ``path`` is the stretch ahead in travel order as ``[lon, lat]`` pairs (for feeds that
    carry a polyline rather than a polygon, e.g. Waze CIFS); empty when there is none.
    ``segments``: the zone's warning segments (:class:`WarningSegment`), versioned with the
    event like the zone; empty for a zone without roads to name (a circle, a fan).
    ``lat``/``lon``/``speed_mps``/``heading_deg``: the unit at ``ts``, from its fix in emergency
    mode (or dead-reckoned on from one); except on a cancel (the fix that ended it, which may be
    out of emergency mode) and on a dispatch alert's events (``from_dispatch``: the route's
    start and no reading at all, or a cancel's last fix). Partners get neither
    (``adapters.policy.view_for``).
    """

    action: AlertAction
    alert_id: str
    version: int
    kind: AlertKind
    vehicle_id: str
    incident_id: str | None
    agency: str
    unit_type: str
    ts: datetime  # event time: the fix (or tick) that caused this event
    started_at: datetime  # when this alert was created
    expires_at: datetime
    lat: float  # unit position at ``ts``
    lon: float
    speed_mps: float
    heading_deg: float | None
    zone: dict[str, Any]
    path: list[tuple[float, float]] = []
    # the name of the road the warning is about (a road network's ``name``, else ``ref``): the
    # unit's road (or its route's first named road ahead), on scene the road at the scene; a
    # cancel repeats its alert's last. None without a road network, where the road has no name,
    # and always on a dispatch alert's events (the station's street: ``from_dispatch``)
    street: str | None = None
    cancel_reason: CancelReason | None = None
    segments: list[WarningSegment] = []
    # the version of this life's create, its first message (sent at ``started_at``): a
    # re-created alert continues its id's version count, so a life need not begin at 1 (CAP
    # ``references`` of a pull feed name it). 1 in events written before this field.
    first_version: int = 1
    # True on the events of a dispatch alert (made from the CAD route before the unit's first
    # emergency fix, ``AlertState.from_dispatch``): its lat/lon are the start of the route, where
    # the unit is taken to stand (its cancel's: the unit's last fix, if any), not a fix in
    # emergency mode, and its speed and heading are no fix's. No partner gets them
    # (``adapters.policy``; design.md: "Positions of units not in emergency mode never leave
    # the broker"). Left out of the JSON otherwise (UNSET), so every
    # other event is encoded as before and events written before this field read as not.
    from_dispatch: bool | UnsetType = UNSET

    @property
    def before_emergency(self) -> bool:
        """Whether this event's unit position and motion are not a fix in emergency mode (a
        dispatch alert's, ``from_dispatch``): never for partners."""
        return self.from_dispatch is True


class AlertState(Struct, frozen=True, kw_only=True, gc=False):
    """The engine's memory of one live alert of a vehicle."""

    alert_id: str
    version: int
    kind: AlertKind
    started_at: datetime
    last_update_ts: datetime  # the ts of its last event: none after it is stamped earlier
    expires_at: datetime
    along_m: float | None  # position along the route at the last update (None: no route)
    x_m: float  # unit position at the last update, local metres
    y_m: float
    heading_deg: float | None
    ahead_end_m: float | None  # furthest point along the route the zone has reached
    route_key: str | None
    incident_id: str | None
    zone: dict[str, Any]
    path: list[tuple[float, float]] = []
    # unit position at the last update in degrees, so a later fix projected in another grid
    # cell's frame can still measure from it (None in states written before this field)
    lon: float | None = None
    lat: float | None = None
    # speed and GPS accuracy of the fix the zone was built for (0: states written before these
    # fields, which makes the update rule send rather than skip: see update_rules.only_trims_behind)
    speed_mps: float = 0.0
    accuracy_m: float = 0.0
    # where along the route the unit's last fix put it (None: off route or no route): dead
    # reckoning starts there when the fixes stop (ticks.dead_reckon)
    fix_along_m: float | None = None
    # created from a CAD route at dispatch, before the unit's first emergency fix: the first
    # such fix always updates it, and it ends by expiring if the unit never moves
    from_dispatch: bool = False
    # the version of this alert's create (its events carry it: ``AlertEvent.first_version``);
    # 1 in states written before this field
    first_version: int = 1
    # the name of the road its last event gave (``AlertEvent.street``; its cancel gives it
    # again); None: no name known, a dispatch alert, or a state written before this field
    street: str | None = None


class Counters(Struct, frozen=True, kw_only=True, gc=False):
    """Per-vehicle counts of fixes the engine did not use (for metrics and replay summary)."""

    duplicates: int = 0
    out_of_order: int = 0
    jumps: int = 0


class VehicleState(Struct, frozen=True, kw_only=True, gc=False):
    """Everything the engine keeps per vehicle between fixes (a Faust table value).

    Plain data only, so it round-trips through the table's changelog with msgspec.
    """

    vehicle_id: str
    last_fix: Position | None = None
    rejected_in_a_row: int = 0  # consecutive fixes refused as jumps (re-anchor after a few)
    route: Route | None = None
    alert: AlertState | None = None
    # alert ids already used, with their last version, so a re-created alert keeps counting up
    versions: dict[str, int] = {}
    counters: Counters = Counters()
    # the join (broker.join): the unit's latest CAD status; what its own lightbar said at the
    # last fix (None: the AVL does not report it); whether that fix carried its own status
    # (the combined form, which a status event does not override); the incident that fix named
    # itself (split form: CAD's incident wins, this one fills in where CAD names none)
    cad: UnitStatus | None = None
    # the statuses taken before ``cad`` with its very ``ts`` (CAD stamps whole seconds: cleared
    # from one incident and sent to the next in one second), oldest first: one of them again
    # is a repeat (the forwarder appends its input at least once), not a change back
    cad_same_ts: tuple[UnitStatus, ...] = ()
    lightbar: bool | None = None
    fix_status: bool = False
    fix_incident: str | None = None
    # when the dispatch zone of ``route`` starts, unless a fix of the unit's own does first
    # (engine: dispatch_hold_s); None: none waiting
    dispatch_due: datetime | None = None
    # the ts of the unit's newest alert event: none of its later events is stamped before it
    # (a re-created alert is not dated before its own cancel); None: no event yet
    last_event_ts: datetime | None = None
