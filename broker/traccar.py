"""Traccar's forwarded positions -> the broker's fixes.

Traccar (traccar.org, an open-source AVL server for 200+ device protocols) forwards every
decoded position, one message each, as the JSON of its ``PositionData``: ``{"position": {...},
"device": {...}}``, over HTTP (``forward.type`` json) or to Kafka (``forward.type`` kafka,
``forward.topic``; key = Traccar's numeric device id). Its fields (Traccar's ``Position`` model):
``fixTime`` (ISO 8601 with offset, or epoch milliseconds when Jackson writes dates as numbers),
``latitude``/``longitude`` (degrees), ``speed`` (knots), ``course`` (degrees), ``accuracy``
(metres, 0 when unknown), ``valid`` (the device had a GPS fix), ``outdated`` (Traccar re-sent
the last known place), ``attributes`` (device inputs and readings, of mixed types: ``in2``,
``io5``, ``input``, ``ignition`` ...). ``device`` carries ``id``, ``name`` and ``uniqueId``.

The agency file (:mod:`broker.agencies`) maps the device to a unit and names the attribute the
lightbar is wired to. Nothing else of the message (names, addresses, other attributes) goes
further than this module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from broker import codec
from broker.agencies import Agencies
from broker.model import (
    DEFAULT_ACCURACY_M,
    WORLD,
    AccuracyM,
    Area,
    Fix,
    Lat,
    Lon,
    Rejection,
    WireHeadingDeg,
)

KNOT_MPS = 1852.0 / 3600.0  # one knot in metres per second (exactly)
Knots = Annotated[float, msgspec.Meta(ge=0.0, le=150.0 / KNOT_MPS)]
# degrees; below 0 (a device's "no heading", should a protocol decoder pass one on): unknown
Course = WireHeadingDeg
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799_000)]  # up to year 9999


class TraccarPosition(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The fields of Traccar's ``position`` the broker reads (others are ignored)."""

    fix_time: datetime | EpochMs
    latitude: Lat
    longitude: Lon
    speed: Knots = 0.0
    course: Course = 0.0
    accuracy: AccuracyM | None = None
    valid: bool = True
    outdated: bool = False
    attributes: dict[str, Any] = {}


class TraccarDevice(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The fields of Traccar's ``device`` the broker reads."""

    id: int | None = None
    name: str | None = None
    unique_id: str | None = None


class PositionData(msgspec.Struct, frozen=True, kw_only=True):
    """One forwarded message: a position and the device that sent it."""

    position: TraccarPosition
    device: TraccarDevice


_decoder = msgspec.json.Decoder(PositionData)


def fix_time(value: datetime | int) -> datetime | None:
    """Traccar's ``fixTime`` as an aware UTC datetime (None: ISO text without an offset, or a
    time no datetime holds in UTC: year 1 at +01:00 raised OverflowError out of the decoder,
    which the HTTP endpoint answered 503, so Traccar sent it again forever)."""
    try:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo is not None else None
        return datetime.fromtimestamp(value / 1000.0, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def decode_traccar(
    raw: bytes,
    agencies: Agencies | None,
    *,
    received_at: datetime | None = None,
    max_bytes: int = codec.MAX_MESSAGE_BYTES,
    max_future_skew: timedelta = codec.MAX_FUTURE_SKEW,
    area: Area = WORLD,
    noted: codec.Noted | None = None,
) -> Fix | Rejection:
    """One forwarded Traccar position as a broker :class:`Fix`, or why not.

    Knots become m/s (2 decimals), ``course`` the heading (Traccar always sends one: a device
    without a heading sends 0, which reads as north; a course below 0 reads as no heading, told
    to ``noted``, as for the broker's own fixes), an accuracy of 0 or null the broker's
    default; the lightbar comes from the unit's rule. Refused: ``valid: false``
    (invalid_fix), ``outdated: true`` (outdated_fix), a device no agency file names
    (unknown_unit), and whatever the broker's own fixes are refused for.
    """
    checked = codec.as_bytes(raw, max_bytes)
    if isinstance(checked, Rejection):
        return checked
    raw = checked
    try:
        msg = _decoder.decode(raw)
    except msgspec.ValidationError as err:
        return Rejection(reason=codec.reason_for(err), detail=str(err), raw=raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        return codec.malformed(err, raw)
    except RecursionError:  # only with the interpreter's stack nearly full already
        return Rejection(reason="bad_json", detail=codec.deeper(), raw=raw)
    pos, device = msg.position, msg.device
    unit = agencies.device(device.unique_id, device.name) if agencies is not None else None
    if unit is None:
        why = "no agency file is configured" if agencies is None else "the agency file has none"
        detail = f"device uniqueId {device.unique_id!r} / name {device.name!r}: {why}"
        return Rejection(reason="unknown_unit", detail=detail, raw=raw)
    if not pos.valid:
        return Rejection(reason="invalid_fix", detail="position marked valid: false", raw=raw)
    if pos.outdated:
        detail = "position marked outdated: true (the device's last known place)"
        return Rejection(reason="outdated_fix", detail=detail, raw=raw)
    ts = fix_time(pos.fix_time)
    if ts is None:
        detail = "fixTime has no UTC offset, or is no time in UTC - at `$.position.fixTime`"
        return Rejection(reason="bad_timestamp", detail=detail, raw=raw)
    fix = Fix(
        vehicle_id=unit.vehicle_id,
        ts=ts,
        lat=pos.latitude,
        lon=pos.longitude,
        speed_mps=round(pos.speed * KNOT_MPS, 2),
        heading_deg=pos.course,
        accuracy_m=pos.accuracy if pos.accuracy else DEFAULT_ACCURACY_M,
        lights_sirens=unit.lightbar.lights(pos.attributes) if unit.lightbar else None,
        agency=unit.agency,
        unit_type=unit.unit_type,
    )
    return codec.check_fix(fix, raw, received_at=received_at, max_future_skew=max_future_skew,
                           area=area, noted=noted)
