"""Bytes <-> messages. Decoding never raises: bad input becomes a ``Rejection`` value.

JSON nested deeper than ``MAX_NESTING`` is refused (``bad_json``) before msgspec reads it:
msgspec recurses once per level and raised ``RecursionError`` (not a ``DecodeError``) on a
2 KB line of a thousand ``[``, which escaped every decoder, and the worker met the same record
again after each restart. No message of the broker nests deeper than 4 levels.

Decoders and encoders are built once at import (msgspec perf tips). ``NaN``/``Infinity``
literals are not JSON, so msgspec refuses them as bad JSON; ``1e999`` decodes to inf and is
then refused by the range constraints.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

from broker.model import (
    UNKNOWN_SPEED_MPS,
    WORLD,
    AlertEvent,
    Area,
    Fix,
    Rejection,
    RejectReason,
    Route,
    RouteMessage,
    UnitStatus,
    VehicleState,
)

MAX_MESSAGE_BYTES = 64 * 1024
MAX_NESTING = 64  # JSON arrays and objects in one another: deeper is refused (bad_json)
MAX_FUTURE_SKEW = timedelta(seconds=60)
# Told the field of each reading a fix carried as "no reading" (``heading_deg``, ``speed_mps``),
# which the codec read as unknown rather than refuse the fix: the shells count them.
Noted = Callable[[str], object]
# Bounds of any timestamp taken, whatever it is judged against: no GPS receiver reports a time
# before its epoch, and the engine adds hours to a fix's time (a datetime ends in 9999)
EARLIEST_TS = datetime(1980, 1, 6, tzinfo=UTC)
LATEST_TS = datetime(9000, 1, 1, tzinfo=UTC)


_fix_decoder = msgspec.json.Decoder(Fix)
_status_decoder = msgspec.json.Decoder(UnitStatus)
_route_decoder = msgspec.json.Decoder(RouteMessage)  # positions may carry an altitude
_alert_decoder = msgspec.json.Decoder(AlertEvent)
_state_decoder = msgspec.json.Decoder(VehicleState)
_encoder = msgspec.json.Encoder()

_MISSING = re.compile(r"Object missing required field")
_EXPECTED = re.compile(r"^Expected `")
_RANGE = re.compile(r"Expected `(float|int|array|str)` (>=|<=|of length) |Number out of range")
_STATUS = re.compile(r"Invalid enum value")
_TEXT = re.compile(r"matching regex")
_DATETIME = re.compile(r"Invalid RFC3339|datetime")
# a JSON string (brackets in one do not nest); one never closed runs to the end, as a parser
# reads it: matched whole at its first quote, so a line of escaped quotes is one linear pass
# (requiring the closing quote, the match failed after scanning to the end, and was tried
# again at every escaped quote: quadratic, 11 s of CPU for a hostile 64 KiB line)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)  # a lone \ last too
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def reason_for(err: msgspec.ValidationError) -> RejectReason:
    """Map a msgspec validation message to a machine-readable reason."""
    text = str(err)
    if _MISSING.search(text):
        return "missing_field"
    if _STATUS.search(text):
        return "unknown_status"
    if _TEXT.search(text):
        return "bad_text"
    if _RANGE.search(text):
        return "bad_geometry" if "$.route" in text else "out_of_range"
    if _DATETIME.search(text) and ("`$.ts`" in text or "`$.position.fixTime`" in text):
        return "bad_timestamp"
    if _EXPECTED.search(text):
        return "wrong_type"
    return "invalid"


def as_bytes(raw: object, max_bytes: int) -> bytes | Rejection:
    """The message as ``bytes``, or why not (not bytes at all, over the size cap, or nested
    deeper than :data:`MAX_NESTING`)."""
    if type(raw) is bytes and len(raw) <= max_bytes:  # the common case, checked first
        return too_deep(raw) or raw
    if not isinstance(raw, bytes | bytearray | memoryview):
        return Rejection(reason="invalid", detail=f"not bytes: {type(raw).__name__}", raw=b"")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        return Rejection(reason="oversized", detail=f"{len(raw)} bytes > {max_bytes}", raw=raw)
    return too_deep(raw) or raw


def _depth(raw: bytes) -> int:
    """How deep the JSON arrays and objects of ``raw`` go, brackets in strings not counted (of
    invalid JSON, an unterminated string runs to the end: the brackets in it do not count, and
    the parser refuses it all the same).

    >>> _depth(b'{"a": [[1, 2], "[[[\\"]"]}')
    3
    """
    # each bracket as 2 (opens) or 0 (closes): the depth after k of them is their sum - k
    brackets = _JSON_STRING.sub(b"", raw).translate(_OPEN_CLOSE, _NOT_BRACKETS)
    if not brackets:
        return 0
    deepest: int = max(map(operator.sub, itertools.accumulate(brackets), itertools.count(1)))
    return max(0, deepest)


def too_deep(raw: bytes) -> Rejection | None:
    """A ``bad_json`` rejection for JSON nested deeper than :data:`MAX_NESTING`, else None.
    Cheap for nearly every message: one with fewer brackets than the limit nests no deeper."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return None
    depth = _depth(raw)
    if depth <= MAX_NESTING:
        return None
    return Rejection(reason="bad_json", detail=deeper(depth), raw=raw)


_BOM = b"\xef\xbb\xbf"


def malformed(err: Exception, raw: bytes) -> Rejection:
    """The ``bad_json`` rejection of ``raw``, which msgspec could not read (``err``); one that
    starts with a UTF-8 byte order mark says so (msgspec said "invalid character (byte 0)"):
    a .NET ``StreamWriter`` with ``Encoding.UTF8`` writes one before every message, and a
    networked JSON text must not begin with one (RFC 8259 section 8.1)."""
    if raw.startswith(_BOM):
        detail = ("starts with a UTF-8 byte order mark (EF BB BF): JSON sent over a network must "
                  f"not (RFC 8259 8.1); write UTF-8 without one ({err})")
        return Rejection(reason="bad_json", detail=detail, raw=raw)
    return Rejection(reason="bad_json", detail=str(err), raw=raw)


def deeper(depth: int | None = None) -> str:
    """The detail of a rejection for JSON nested too deeply."""
    found = "" if depth is None else f" ({depth} levels)"
    return f"JSON nested too deeply{found}: at most {MAX_NESTING} levels of arrays and objects"


def _time_rejection(
    ts: datetime, received_at: datetime | None, skew: timedelta, raw: bytes
) -> Rejection | None:
    """A ``future_timestamp`` rejection if ``ts`` is more than ``skew`` ahead of the receive
    time, or past any clock (checked also without a receive time: the first message of a
    replay); a ``bad_timestamp`` one before the GPS epoch. Naive times were refused before."""
    if ts < EARLIEST_TS:
        detail = f"ts {ts.isoformat()} is before {EARLIEST_TS.date()}, the GPS epoch"
        return Rejection(reason="bad_timestamp", detail=detail, raw=raw)
    if ts >= LATEST_TS:
        detail = f"ts {ts.isoformat()} is past any clock (year {LATEST_TS.year} or later)"
        return Rejection(reason="future_timestamp", detail=detail, raw=raw)
    if received_at is None or ts - received_at <= skew:
        return None
    detail = f"ts {ts.isoformat()} is more than {skew} ahead of now"
    return Rejection(reason="future_timestamp", detail=detail, raw=raw)


def _outside(lon_min: float, lat_min: float, lon_max: float, lat_max: float, area: Area) -> bool:
    west, south, east, north = area
    return lon_min < west or lon_max > east or lat_min < south or lat_max > north


def decode_position(
    raw: bytes,
    *,
    received_at: datetime | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
    area: Area = WORLD,
    noted: Noted | None = None,
) -> Fix | Rejection:
    """Decode one ``avl.positions`` message (a fix, with or without its unit's status), or
    say why not.

    ``received_at`` is the caller's notion of now (wall clock in a worker, the fixture's own
    time in a replay); without it the future-timestamp check is skipped. ``noted`` hears of
    each reading taken as unknown (:func:`check_fix`).
    """
    checked = as_bytes(raw, max_bytes)
    if isinstance(checked, Rejection):
        return checked
    raw = checked
    try:
        fix = _fix_decoder.decode(raw)
    except msgspec.ValidationError as err:  # a subclass of DecodeError: catch it first
        return Rejection(reason=reason_for(err), detail=str(err), raw=raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:  # invalid UTF-8 in a string
        return malformed(err, raw)
    except RecursionError:  # only with the interpreter's stack nearly full already
        return Rejection(reason="bad_json", detail=deeper(), raw=raw)
    return check_fix(
        fix, raw, received_at=received_at, max_future_skew=max_future_skew, area=area,
        noted=noted,
    )


def check_fix(
    fix: Fix,
    raw: bytes,
    *,
    received_at: datetime | None,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
    area: Area = WORLD,
    noted: Noted | None = None,
) -> Fix | Rejection:
    """What a decoded fix must also be, whatever form it came in: timed with an offset,
    finite, in the service area, not from the future; and the fix in the broker's own terms.

    What AVL devices send for "no reading" is read as unknown, not refused (a unit whose
    device always sends it was never warned about): a heading below 0 (-1 on many devices)
    as no heading (``None``), a speed of -1 as an absent one (0); ``noted`` is told the field
    of each. A heading of -inf, and a speed below 0 other than -1, are refused
    (``out_of_range``), as a heading over 360 and a speed over 150 are by the decoder.
    """
    refused = _reading_out_of_range(fix, raw)
    if refused is not None:
        return refused
    if fix.ts.tzinfo is None:
        return Rejection(reason="bad_timestamp", detail="ts has no UTC offset - at `$.ts`", raw=raw)
    if not (math.isfinite(fix.lat) and math.isfinite(fix.lon)):
        return Rejection(reason="out_of_range", detail="non-finite coordinate", raw=raw)
    if _outside(fix.lon, fix.lat, fix.lon, fix.lat, area):
        detail = f"({fix.lat}, {fix.lon}) is outside the service area {list(area)} [w, s, e, n]"
        return Rejection(reason="out_of_area", detail=detail, raw=raw)
    return _time_rejection(fix.ts, received_at, max_future_skew, raw) or _known(fix, noted)


def _reading_out_of_range(fix: Fix, raw: bytes) -> Rejection | None:
    """A speed below 0 but the "no reading" -1, or a heading of -inf (1e999), refused as the
    decoder refuses a reading out of its range (it lets those through for :func:`_known`)."""
    speed, heading = fix.speed_mps, fix.heading_deg
    if speed < 0.0 and speed != UNKNOWN_SPEED_MPS:
        detail = (f"Expected `float` >= 0.0 (or {UNKNOWN_SPEED_MPS:g}: no reading), "
                  f"got {speed} - at `$.speed_mps`")
        return Rejection(reason="out_of_range", detail=detail, raw=raw)
    if heading is not None and not math.isfinite(heading):
        detail = f"Expected a finite `float`, got {heading} - at `$.heading_deg`"
        return Rejection(reason="out_of_range", detail=detail, raw=raw)
    return None


def _known(fix: Fix, noted: Noted | None) -> Fix:
    """``fix`` with its "no reading" values as the broker says unknown: a heading below 0 as
    ``None``, a speed of -1 as 0 (an absent speed); ``noted`` told the field of each."""
    speed, heading = fix.speed_mps, fix.heading_deg
    if speed >= 0.0 and (heading is None or heading >= 0.0):
        return fix  # nearly every fix
    unknown = []
    if speed < 0.0:
        speed = 0.0
        unknown.append("speed_mps")
    if heading is not None and heading < 0.0:
        heading = None
        unknown.append("heading_deg")
    if noted is not None:
        for name in unknown:
            noted(name)
    return msgspec.structs.replace(fix, speed_mps=speed, heading_deg=heading)


def decode_status(
    raw: bytes,
    *,
    received_at: datetime | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
) -> UnitStatus | Rejection:
    """Decode one ``cad.status`` message (a unit's status change), or say why not."""
    checked = as_bytes(raw, max_bytes)
    if isinstance(checked, Rejection):
        return checked
    raw = checked
    try:
        status = _status_decoder.decode(raw)
    except msgspec.ValidationError as err:
        return Rejection(reason=reason_for(err), detail=str(err), raw=raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        return malformed(err, raw)
    except RecursionError:  # only with the interpreter's stack nearly full already
        return Rejection(reason="bad_json", detail=deeper(), raw=raw)
    if status.ts.tzinfo is None:
        return Rejection(reason="bad_timestamp", detail="ts has no UTC offset - at `$.ts`", raw=raw)
    return _time_rejection(status.ts, received_at, max_future_skew, raw) or status


def decode_route(
    raw: bytes,
    *,
    received_at: datetime | None = None,
    max_bytes: int = 4 * MAX_MESSAGE_BYTES,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
    area: Area = WORLD,
) -> Route | Rejection:
    """Decode one ``cad.routes`` message (a GeoJSON LineString in lon/lat order, a position
    possibly with an altitude, which is dropped), or say why not."""
    checked = as_bytes(raw, max_bytes)
    if isinstance(checked, Rejection):
        return checked
    raw = checked
    try:
        route = _route_decoder.decode(raw).to_route()
    except msgspec.ValidationError as err:
        text = str(err)
        reason: RejectReason = "bad_geometry" if "$.route" in text else reason_for(err)
        return Rejection(reason=reason, detail=text, raw=raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:  # invalid UTF-8 in a string
        return malformed(err, raw)
    except RecursionError:  # only with the interpreter's stack nearly full already
        return Rejection(reason="bad_json", detail=deeper(), raw=raw)
    if route.ts.tzinfo is None:
        return Rejection(reason="bad_timestamp", detail="ts has no UTC offset - at `$.ts`", raw=raw)
    coords = route.route.coordinates
    length_m = sum(_rough_distance_m(a, b) for a, b in itertools.pairwise(coords))
    if length_m < MIN_ROUTE_M:  # also: one point repeated
        detail = (f"route is {length_m:.3g} m long: want at least {MIN_ROUTE_M:g} m "
                  "(2 points or more, not all in one place)")
        return Rejection(reason="bad_geometry", detail=detail, raw=raw)
    gap_m = _rough_distance_m(coords[-1], (route.destination.lon, route.destination.lat))
    if gap_m > ROUTE_END_TOLERANCE_M:
        detail = (
            f"route ends {gap_m / 1000:.1f} km from its destination: "
            "coordinates must be [lon, lat] (GeoJSON order) and end at the destination"
        )
        return Rejection(reason="bad_geometry", detail=detail, raw=raw)
    lons = [c[0] for c in coords]
    lats = [c[1] for c in coords]
    if _outside(min(lons), min(lats), max(lons), max(lats), area):
        detail = f"the route leaves the service area {list(area)} [w, s, e, n]"
        return Rejection(reason="out_of_area", detail=detail, raw=raw)
    return _time_rejection(route.ts, received_at, max_future_skew, raw) or route


ROUTE_END_TOLERANCE_M = 2_000.0  # a CAD route ends at (or near) its destination
# a shorter route gives no direction to follow; points a hair apart (1e-9 m) once passed the
# distinct-points test and then failed the engine's projection (broker.geo.route), which drops
# vertices under a micrometre apart
MIN_ROUTE_M = 1.0


def _rough_distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance between two (lon, lat) points; good to ~1 % at these ranges.

    The longitude difference is taken the short way round (in [-180, 180) degrees): two points
    either side of the antimeridian are metres apart, not 40,000 km (a route ending across it
    from its destination was refused as if its coordinates were swapped).
    """
    mean_lat = math.radians((a[1] + b[1]) / 2)
    dlon = (b[0] - a[0] + 180.0) % 360.0 - 180.0  # degrees, the short way round
    dx = math.radians(dlon) * math.cos(mean_lat)
    dy = math.radians(b[1] - a[1])
    return 6_371_000.0 * math.hypot(dx, dy)


def encode(obj: msgspec.Struct) -> bytes:
    """Encode any message Struct as compact JSON bytes."""
    return _encoder.encode(obj)


def decode_alert(raw: bytes) -> AlertEvent:
    """Decode an alert event we produced ourselves (raises on corruption: that is a bug)."""
    return _alert_decoder.decode(raw)


def dump_state(state: VehicleState) -> bytes:
    """Vehicle state as bytes for a table changelog."""
    return _encoder.encode(state)


def load_state(raw: bytes | None) -> VehicleState | None:
    """Vehicle state back from a table value (``None`` when the vehicle is new)."""
    if raw is None:
        return None
    return _state_decoder.decode(raw)
