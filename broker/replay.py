"""Replay a recorded incident through the engine, in process (no Kafka).

The same driver loop as the Faust agent (``broker.drive``): decode, ``engine.step``, collect
events, with a tick once per second of event time so silent units get their stale cancel.
Input is read in file order (arrival order): out-of-order fixes stay out of order, as they
would on the topic. CAD routes and status events are merged in by their timestamp, each before
the fixes of its instant (so a status stamped at a fix's time is the one that fix is merged
with, as the split form of a combined incident must be).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import gpxpy
import msgspec

from broker import codec, reckoning
from broker.agencies import Agencies
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, TRACCAR, DictStore, Driver, Handled
from broker.model import AlertEvent, Position, Rejection
from broker.settings import EngineConfig

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork


class ReplayInputError(Exception):
    """The input cannot be replayed; the message says what to fix."""


class _TsOnly(msgspec.Struct):
    ts: datetime


class _TraccarTime(msgspec.Struct, rename="camel"):
    fix_time: datetime | int


class _TraccarTsOnly(msgspec.Struct):
    position: _TraccarTime


_ts_only = msgspec.json.Decoder(_TsOnly)
_traccar_ts_only = msgspec.json.Decoder(_TraccarTsOnly)
_NO_TS = datetime.min.replace(tzinfo=UTC)


def _ts_of(raw: bytes, topic: str = POSITIONS) -> datetime | None:
    """The message's timestamp as an aware datetime, or None when it has none we can read (nor
    of JSON nested too deeply: msgspec raised RecursionError, a traceback out of the replay;
    the driver refuses it as ``bad_json``)."""
    if codec.too_deep(raw) is not None:
        return None
    try:
        if topic == TRACCAR:
            value = _traccar_ts_only.decode(raw).position.fix_time
            ts = value if isinstance(value, datetime) else datetime.fromtimestamp(
                value / 1000.0, UTC
            )
        else:
            ts = _ts_only.decode(raw).ts
    except (msgspec.DecodeError, ValueError, OverflowError, OSError):
        return None
    return ts if ts.tzinfo is not None else None


def _read_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ReplayInputError(f"{path}: no such file") from err
    except IsADirectoryError as err:
        raise ReplayInputError(f"{path}: is a directory, expected a file") from err
    except OSError as err:
        raise ReplayInputError(f"{path}: cannot read it ({err.strerror})") from err
    return [line for line in data.splitlines() if line.strip()]


AVL_FILES = {"positions.ndjson": POSITIONS, "traccar.ndjson": TRACCAR}
CAD_FILES = {"routes.ndjson": ROUTES, "cad_status.ndjson": CAD_STATUS}


def load_messages(
    path: Path, *, max_future_skew_s: float = EngineConfig().max_future_skew_s
) -> list[tuple[str, bytes]]:
    """Messages of an incident as ``(topic, raw bytes)`` in arrival order.

    ``path`` is an incident directory, a positions ``.ndjson`` file in the wire format, or a
    ``.gpx`` track (replayed as one unit responding with lights and sirens). An incident
    directory holds its fixes in ``positions.ndjson`` (the broker's JSON, with or without
    status) or ``traccar.ndjson`` (Traccar's forwarded JSON), and optionally ``routes.ndjson``
    and ``cad_status.ndjson`` (docs/ingest.md), merged in by :func:`merge_by_time` with
    ``max_future_skew_s``: give the one of the config the replay runs with, so the merge
    and the replay judge a fix far ahead alike.
    """
    path = Path(path)
    if not path.exists():
        raise ReplayInputError(f"{path}: no such file or directory")
    if path.is_dir():
        avl = [(name, topic) for name, topic in AVL_FILES.items() if (path / name).exists()]
        if len(avl) != 1:
            found = " and ".join(name for name, _ in avl) or "neither"
            raise ReplayInputError(
                f"{path}: an incident directory needs positions.ndjson or traccar.ndjson "
                f"(one of them; found {found})"
            )
        name, topic = avl[0]
        fixes = [(topic, raw) for raw in _read_lines(path / name)]
        cad = [
            (cad_topic, raw)
            for cad_name, cad_topic in CAD_FILES.items()
            if (path / cad_name).exists()
            for raw in _read_lines(path / cad_name)
        ]
        return merge_by_time(fixes, cad, max_future_skew_s=max_future_skew_s)
    if path.suffix.lower() == ".gpx":
        return [(POSITIONS, raw) for raw in gpx_positions(path)]
    if path.suffix.lower() in {".ndjson", ".jsonl", ".json"}:
        return [(POSITIONS, raw) for raw in _read_lines(path)]
    raise ReplayInputError(
        f"{path}: unknown input; give an incident directory, a .ndjson file or a .gpx track"
    )


def merge_routes(positions: list[bytes], routes: list[bytes]) -> list[tuple[str, bytes]]:
    """Insert each route before the first position at or after its timestamp."""
    return merge_by_time([(POSITIONS, raw) for raw in positions],
                         [(ROUTES, raw) for raw in routes])


def _moves_on(
    ts: datetime, clock: datetime | None, after: datetime | None, skew: timedelta
) -> bool:
    """Whether a message at ``ts`` moves a recording's clock (the newest time so far) on to its
    time: it is not more than ``skew`` ahead of that clock, or the next message (at ``after``)
    agrees with it within the skew, so the stream has moved on (a quiet spell). A message far
    ahead with nothing agreeing after it is a wrong device clock, not the stream's time."""
    if clock is None or ts <= clock + skew:
        return True
    return after is not None and abs(after - ts) <= skew


def merge_by_time(
    fixes: list[tuple[str, bytes]],
    cad: list[tuple[str, bytes]],
    *,
    max_future_skew_s: float = EngineConfig().max_future_skew_s,
) -> list[tuple[str, bytes]]:
    """Insert each CAD message (route, status) before the first fix at or after its timestamp;
    the fixes keep their (arrival) order, the CAD messages go in time order (stable).

    A fix dated far past the stream places no CAD message: more than ``max_future_skew_s``
    ahead of the fixes before it, with no fix after it agreeing (a device clock that is wrong;
    the replay refuses the fix as ``future_timestamp``: :func:`_moves_on`). Taken at its word,
    it would pull every CAD message up to its time in ahead of the fixes they belong with: one
    stray fix a year ahead sent an incident's statuses to the engine at its start. The first fix
    after a quiet spell is no outlier (the fix after it agrees): the CAD messages of the spell
    still go before it.
    """
    out: list[tuple[str, bytes]] = []
    pending = sorted(cad, key=lambda m: _ts_of(m[1], m[0]) or _NO_TS)
    times = [_ts_of(m[1], m[0]) or _NO_TS for m in pending]
    fix_times = [_ts_of(raw, topic) for topic, raw in fixes]
    skew = timedelta(seconds=max_future_skew_s)
    # the time of the next fix with one, after each fix (None: no fix after it has a time)
    next_times: list[datetime | None] = [None] * len(fixes)
    following: datetime | None = None
    for j in range(len(fixes) - 1, -1, -1):
        next_times[j] = following
        following = fix_times[j] if fix_times[j] is not None else following
    newest: datetime | None = None  # the newest time of a fix that placed CAD messages
    i = 0
    for (topic, raw), ts, after in zip(fixes, fix_times, next_times, strict=True):
        if ts is not None and _moves_on(ts, newest, after, skew):
            newest = ts if newest is None or ts > newest else newest
            while i < len(pending) and times[i] <= ts:
                out.append(pending[i])
                i += 1
        out.append((topic, raw))
    out.extend(pending[i:])
    return out


def gpx_positions(path: Path, *, vehicle_id: str | None = None) -> list[bytes]:
    """A GPX track as wire-format positions of one unit responding with lights and sirens."""
    try:
        with path.open(encoding="utf-8") as fh:
            gpx = gpxpy.parse(fh)
    except OSError as err:
        raise ReplayInputError(f"{path}: cannot read it ({err.strerror})") from err
    except (gpxpy.gpx.GPXException, ValueError) as err:
        raise ReplayInputError(f"{path}: not a readable GPX track ({err})") from err
    unit = vehicle_id or (gpx.tracks[0].name if gpx.tracks and gpx.tracks[0].name else path.stem)
    out: list[bytes] = []
    prev = None
    for track in gpx.tracks:
        for seg in track.segments:
            for pt in seg.points:
                if pt.time is None:
                    raise ReplayInputError(f"{path}: track point without <time>; cannot replay")
                ts = pt.time if pt.time.tzinfo else pt.time.replace(tzinfo=UTC)
                speed = pt.speed_between(prev) if prev is not None else 0.0
                heading = prev.course_between(pt) if prev is not None else None
                pos = Position(
                    vehicle_id=unit,
                    ts=ts.astimezone(UTC),
                    lat=pt.latitude,
                    lon=pt.longitude,
                    status="responding",
                    lights_sirens=True,
                    agency="gpx",
                    speed_mps=round(speed or 0.0, 2),
                    heading_deg=round(heading % 360.0, 1) if heading is not None else None,
                    incident_id=f"gpx-{path.stem}",
                )
                out.append(codec.encode(pos))
                prev = pt
    if not out:
        raise ReplayInputError(f"{path}: the GPX file has no track points")
    return out


@dataclass
class ReplayResult:
    """What a replay produced: events in order, rejections, counts, and accepted fixes."""

    events: list[AlertEvent] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    positions_read: int = 0
    routes_read: int = 0
    statuses_read: int = 0
    # readings of fixes taken as unknown (a heading of -1 ...: broker.codec.check_fix), by field
    unknown_readings: Counter[str] = field(default_factory=Counter)
    # accepted fixes of units in emergency mode, per vehicle: (ts, lon, lat); for evaluation
    emergency_fixes: dict[str, list[tuple[datetime, float, float]]] = field(default_factory=dict)
    states: DictStore = field(default_factory=DictStore)

    def count(self, topic: str) -> None:
        """One message read from ``topic``."""
        if topic == ROUTES:
            self.routes_read += 1
        elif topic == CAD_STATUS:
            self.statuses_read += 1
        else:
            self.positions_read += 1

    def note_unknown(self, name: str) -> None:
        """A fix taken with its reading ``name`` unknown (its device's "no reading")."""
        self.unknown_readings[name] += 1

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Rejections counted by reason."""
        return dict(sorted(Counter(r.reason for r in self.rejections).items()))

    @property
    def alerts_by_action(self) -> dict[str, int]:
        """Alert events counted by action."""
        counts: Counter[str] = Counter(e.action for e in self.events)
        return {a: counts.get(a, 0) for a in ("create", "update", "cancel")}

    @property
    def ignored_fixes(self) -> dict[str, int]:
        """Fixes the engine ignored, by kind, over all vehicles."""
        totals: Counter[str] = Counter()
        for st in self.states.values():
            totals.update(msgspec.structs.asdict(st.counters))
        return {k: totals.get(k, 0) for k in ("duplicates", "out_of_order", "jumps")}


def _note_emergency_fix(result: ReplayResult, handled: Handled) -> None:
    """Keep an accepted fix in emergency mode (not a duplicate or a jump) for the evaluation."""
    msg, st = handled.msg, handled.state
    if isinstance(msg, Position) and st is not None and st.last_fix is msg \
            and reckoning.is_emergency(msg):
        result.emergency_fixes.setdefault(msg.vehicle_id, []).append((msg.ts, msg.lon, msg.lat))


def received_times(
    messages: Iterable[tuple[str, bytes]], *, max_future_skew_s: float
) -> Iterator[tuple[str, bytes, datetime | None]]:
    """Each message with the time a replay takes it as received: the recording's clock, the
    newest time so far of the messages that moved it on (:func:`_moves_on`); None before any.

    A recording has no receive times, and judging each message against the newest event time
    before it refused the first message after a quiet spell longer than the skew (five minutes
    without a fix from a unit at its station, then its CAD route: the route was lost, and with
    it the dispatch zone and the route the zone follows), which the worker, judging against
    when a message came, takes. With the message after it in hand, the replay takes it too
    when that next message agrees with it; a lone message far ahead is still refused.
    """
    skew = timedelta(seconds=max_future_skew_s)
    clock: datetime | None = None
    held: tuple[str, bytes, datetime] | None = None  # waits for the next message with a time
    behind: list[tuple[str, bytes]] = []  # messages after it without a readable time
    for topic, raw in messages:
        ts = _ts_of(raw, topic)
        if ts is None:
            if held is None:
                yield topic, raw, clock
            else:
                behind.append((topic, raw))
            continue
        if held is not None:
            clock = yield from _release(held, behind, clock, ts, skew)
            behind = []
        held = (topic, raw, ts)
    if held is not None:
        yield from _release(held, behind, clock, None, skew)


def _release(
    held: tuple[str, bytes, datetime], behind: list[tuple[str, bytes]],
    clock: datetime | None, after: datetime | None, skew: timedelta,
) -> Generator[tuple[str, bytes, datetime | None], None, datetime | None]:
    """:func:`received_times` for a held message (and the ones without a time behind it), now
    that the time of the next message is known (``after``); returns the clock after them."""
    topic, raw, ts = held
    if _moves_on(ts, clock, after, skew) and (clock is None or ts > clock):
        clock = ts
    yield topic, raw, clock
    for late in behind:
        yield (*late, clock)
    return clock


def _runs(
    messages: Iterable[tuple[str, bytes]], result: ReplayResult,
    on_message: Callable[[], None] | None, cfg: EngineConfig,
) -> Iterator[tuple[list[tuple[str, bytes]], list[datetime | None]]]:
    """The messages in runs of ``BATCH`` with their receive times (:func:`received_times`),
    counted (and reported) as they are read."""
    run: list[tuple[str, bytes]] = []
    times: list[datetime | None] = []
    for topic, raw, received_at in received_times(
        messages, max_future_skew_s=cfg.max_future_skew_s
    ):
        if on_message is not None:
            on_message()
        result.count(topic)
        run.append((topic, raw))
        times.append(received_at)
        if len(run) >= BATCH:
            yield run, times
            run, times = [], []
    if run:
        yield run, times


# messages handled as one run (their zones built together: the same events, fewer calls); an
# on_event callback therefore hears a run's events once the run is done
BATCH = 1024


def replay_in_process(
    messages: Iterable[tuple[str, bytes]],
    *,
    cfg: EngineConfig,
    roads: RoadNetwork | None = None,
    on_event: Callable[[AlertEvent], None] | None = None,
    on_message: Callable[[], None] | None = None,
    drain: bool = True,
    agencies: Agencies | None = None,
) -> ReplayResult:
    """Run messages through the engine in arrival order; ticks once per second of event time.

    With ``drain``, time is advanced past the stale timeout at the end, so every alert ends
    with a cancel, as it would in a live worker once the fixes stop.
    """
    result = ReplayResult()
    # no repair (Driver.repair): every state is this replay's own, and no message it takes is
    # dated past its receive time (the recording's clock moves on to it, or it is refused as
    # more than the skew ahead), a clock that never goes back; a restatement is stamped a
    # millisecond past the last fix at most (join.restated)
    driver = Driver(cfg, roads=roads, store=result.states, tick_every_s=1.0, agencies=agencies,
                    noted=result.note_unknown, repairs=False)

    def emit(events: list[AlertEvent]) -> None:
        for ev in events:
            result.events.append(ev)
            if on_event is not None:
                on_event(ev)

    def take(handled: Handled) -> None:
        emit(handled.events)  # a refused message's too: what the ticks before it made
        if handled.rejection is not None:
            result.rejections.append(handled.rejection)
            return
        _note_emergency_fix(result, handled)

    for run, received in _runs(messages, result, on_message, cfg):
        # a run's zones are built together
        for handled in driver.handle_many(run, received_at=received):
            take(handled)
    if drain:
        emit(driver.drain())
    return result


def write_alerts(events: Iterable[AlertEvent], path: Path) -> None:
    """Alert events as NDJSON, one per line, byte-stable for the same input."""
    with path.open("wb") as fh:
        for ev in events:
            fh.write(codec.encode(ev))
            fh.write(b"\n")
