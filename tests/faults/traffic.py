"""Live synthetic traffic for the fault suite: units with CAD routes and a lifecycle, paced.

Each unit sends a fix about once a second, stamped with the wall clock when it goes out
(event time = now), and lives through cycles of

    available -> dispatched: a CAD route on ``cad.routes``, then ``responding`` with lights
    and sirens along it -> ``on_scene`` at the route's end -> available there

so every cycle gives two alerts (approaching, then on scene), each with a create, updates (the
unit moves ~14 m/s, the engine updates every 50 m; on scene the expiry refresh after 30 s) and
a cancel. Units start at random points of their first idle period, so several alerts are live
at once, and no unit is dispatched unless its scene ends before the run does: every alert
produced during a run is also cancelled during it.

The plan (which unit says what, at which second of the run) is a pure function of the seed;
only the timestamps come from the clock. :class:`TrafficSource` sends a plan into Kafka from a
thread with kafka-python (idempotent producer: order per unit kept through retries, and sends
are buffered while the Kafka broker is away).

:func:`hostile_lines` builds the hostile burst: future-dated, far-past and malformed fixes on
the live units' keys.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.streams.runtime import partition_for

POSITIONS = "avl.positions"
ROUTES = "cad.routes"
ORIGIN_LAT, ORIGIN_LON = 35.2271, -80.8431  # Charlotte Uptown: inside every sample coverage
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(ORIGIN_LAT))
EMERGENCY = ("responding", "on_scene")


@dataclass(frozen=True, slots=True)
class Planned:
    """One message of the plan: when (seconds into the run), where, and what (no ts yet)."""

    offset_s: float
    topic: str  # POSITIONS or ROUTES
    unit: str
    fields: tuple[tuple[str, Any], ...]

    def render(self, now: datetime) -> bytes:
        """The message's bytes with ``ts`` = ``now`` (UTC, milliseconds, ``Z``)."""
        body = {"vehicle_id": self.unit, "ts": iso(now), **dict(self.fields)}
        return json.dumps(body, separators=(",", ":")).encode()


def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_lonlat(x_m: float, y_m: float) -> tuple[float, float]:
    """Local metres east/north of the origin -> (lon, lat), rounded to ~1 cm."""
    return round(ORIGIN_LON + x_m / M_PER_DEG_LON, 7), round(ORIGIN_LAT + y_m / M_PER_DEG_LAT, 7)


def unit_ids(count: int, partitions: int = 8) -> list[str]:
    """``count`` unit ids spread evenly over the partitions (murmur2, as producers key them)."""
    per = math.ceil(count / partitions)
    taken: dict[int, int] = {}
    out: list[str] = []
    i = 0
    while len(out) < count:
        vid = f"FLT-U{i:03d}"
        p = partition_for(vid.encode(), partitions)
        if taken.get(p, 0) < per:
            taken[p] = taken.get(p, 0) + 1
            out.append(vid)
        i += 1
    return out


# ---- routes -----------------------------------------------------------------------------------

HEADINGS = ((0.0, 1.0), (1.0, 0.0), (0.0, -1.0), (-1.0, 0.0))  # N, E, S, W on a street grid


def grid_route(
    rng: random.Random, start: tuple[float, float], length_m: float
) -> list[tuple[float, float]]:
    """A street-grid walk of ``length_m`` metres from ``start`` (local metres): straight blocks
    of 120-300 m, turning left or right at random, heading back toward the origin when more
    than 1.5 km out (units stay in town)."""
    pts = [start]
    x, y = start
    d = rng.randrange(4)
    left = length_m
    while left > 0:
        if math.hypot(x, y) > 1500:
            d = min(range(4), key=lambda k: HEADINGS[k][0] * x + HEADINGS[k][1] * y)
        block = min(left, rng.uniform(120, 300))
        x, y = x + HEADINGS[d][0] * block, y + HEADINGS[d][1] * block
        pts.append((x, y))
        left -= block
        d = (d + rng.choice((1, 3))) % 4
    return pts


def along(pts: list[tuple[float, float]], dist_m: float) -> tuple[float, float, float]:
    """(x, y, heading_deg) at ``dist_m`` along a polyline (clamped to its ends)."""
    heading = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        seg = math.hypot(x1 - x0, y1 - y0)
        heading = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        if dist_m <= seg:
            f = 0.0 if seg == 0 else max(0.0, dist_m / seg)
            return x0 + f * (x1 - x0), y0 + f * (y1 - y0), heading
        dist_m -= seg
    return pts[-1][0], pts[-1][1], heading


# ---- the plan ---------------------------------------------------------------------------------

@dataclass
class _UnitPlanner:
    """Plans one unit's cycles (see the module docstring)."""

    unit: str
    rng: random.Random
    station: tuple[float, float]
    phase_s: float  # fraction of a second: units do not all send in the same instant
    out: list[Planned] = field(default_factory=list)

    def fix(self, t: float, xy: tuple[float, float], *, status: str, speed: float = 0.0,
            heading: float | None = None, incident: str | None = None) -> None:
        nx, ny = xy[0] + self.rng.gauss(0, 1.5), xy[1] + self.rng.gauss(0, 1.5)
        lon, lat = to_lonlat(nx, ny)
        fields: dict[str, Any] = {
            "agency": "faults-fd", "lat": lat, "lon": lon, "speed_mps": round(speed, 1),
            "heading_deg": None if heading is None else round(heading, 1), "status": status,
            "lights_sirens": status == "responding", "incident_id": incident,
            "unit_type": "engine", "accuracy_m": 5.0,
        }
        self.out.append(Planned(round(t + self.phase_s, 3), POSITIONS, self.unit,
                                tuple(fields.items())))

    def route(self, t: float, pts: list[tuple[float, float]], incident: str) -> None:
        coords = [list(to_lonlat(x, y)) for x, y in pts]
        lon, lat = coords[-1]
        fields = {"incident_id": incident, "destination": {"lat": lat, "lon": lon},
                  "route": {"type": "LineString", "coordinates": coords}}
        self.out.append(Planned(round(t + self.phase_s - 0.001, 3), ROUTES, self.unit,
                                tuple(fields.items())))

    def idle(self, t: int, until: int) -> int:
        for s in range(t, until):
            self.fix(s, self.station, status="available")
        return max(t, until)

    def cycle(self, t: int, incident: str, respond_s: int, scene_s: int) -> int:
        """One dispatch from second ``t``; returns the second the unit is available again."""
        speed = self.rng.uniform(11.0, 16.0)
        pts = grid_route(self.rng, self.station, speed * respond_s)
        self.route(t, pts, incident)
        for k in range(respond_s):
            x, y, heading = along(pts, speed * k)
            self.fix(t + k, (x, y), status="responding", speed=speed, heading=heading,
                     incident=incident)
        t += respond_s
        end = pts[-1]
        for k in range(scene_s):
            self.fix(t + k, end, status="on_scene", incident=incident)
        self.station = end  # back in service where it is: the next run starts from here
        return t + scene_s


def plan(seed: int, units: int, duration_s: float) -> list[Planned]:
    """Every message of a run of ``duration_s`` seconds, sorted by offset. Deterministic.

    Units are dispatched until 15 s before the end; in the last 15 s they are called off one
    after the other (unit i of n at ``end - 15 + 14 i / n``): from then on a unit is available
    where it stands, so every alert of a run is cancelled in it.
    """
    end = int(duration_s)
    out: list[Planned] = []
    for i, unit in enumerate(unit_ids(units)):
        rng = random.Random(f"{seed}:{unit}")
        angle, radius = rng.uniform(0, 2 * math.pi), rng.uniform(200, 1200)
        station = (radius * math.cos(angle), radius * math.sin(angle))
        p = _UnitPlanner(unit, rng, station, phase_s=round(i / units, 3))
        t = p.idle(0, rng.randint(2, max(3, min(60, end // 3))))  # staggered starts
        n = 0
        while t < end - 15:
            t = p.cycle(t, f"F{seed}-{unit}-{n}", rng.randint(30, 50), rng.randint(32, 42))
            t = p.idle(t, t + rng.randint(5, 20))
            n += 1
        p.idle(t, end)
        out.extend(_called_off(p.out, at_s=end - 15 + 14 * i / units, end_s=end))
    out.sort(key=lambda m: (m.offset_s, m.topic != ROUTES))
    return out


def _called_off(messages: list[Planned], at_s: float, end_s: float) -> list[Planned]:
    """A unit's messages with every fix from ``at_s`` on turned into "available where it is"."""
    before = [m for m in messages if m.offset_s < at_s]
    last = dict(before[-1].fields) if before else {}
    idle = {**last, "status": "available", "lights_sirens": False, "incident_id": None,
            "speed_mps": 0.0}
    after = [Planned(m.offset_s, POSITIONS, m.unit, tuple(idle.items())) for m in messages
             if at_s <= m.offset_s < end_s and m.topic == POSITIONS]
    return before + after


def emergency_units(messages: list[Planned], at_s: float) -> list[str]:
    """Units whose latest fix at ``at_s`` seconds is in emergency mode (their alert is live)."""
    last: dict[str, str] = {}
    for m in messages:
        if m.offset_s > at_s:
            break
        if m.topic == POSITIONS:
            last[m.unit] = dict(m.fields)["status"]
    return sorted(u for u, s in last.items() if s in EMERGENCY)


# ---- hostile input --------------------------------------------------------------------------

def _fix(unit: str, ts: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "vehicle_id": unit, "agency": "faults-fd", "ts": ts, "lat": ORIGIN_LAT,
        "lon": ORIGIN_LON, "speed_mps": 12.0, "heading_deg": 90.0, "status": "responding",
        "lights_sirens": True, "incident_id": "F-HOSTILE", "unit_type": "engine",
        "accuracy_m": 5.0,
    }
    body.update(over)
    return body


def _timing_attacks(unit: str, now: datetime) -> list[dict[str, Any]]:
    """Fixes of a real unit dated in the future or far in the past."""
    return [
        _fix(unit, iso(now + timedelta(minutes=10))),
        _fix(unit, iso(now + timedelta(days=1))),
        _fix(unit, "9000-01-01T00:00:00.000Z"),
        _fix(unit, "1970-01-01T00:00:00.000Z"),
        _fix(unit, iso(now - timedelta(hours=1))),
        _fix(unit, iso(now - timedelta(days=365 * 20))),
    ]


def _junk(unit: str, now: datetime, k: int) -> bytes:
    """One malformed line on ``unit``'s key, the ``k``-th kind of a cycle of kinds."""
    ts = iso(now)
    kinds: list[Any] = [
        b'{"vehicle_id": "%s", "lat": "north"' % unit.encode(),  # not JSON
        {"vehicle_id": unit, "ts": ts},  # missing fields
        _fix(unit, ts, lat=91.5),  # out of range
        _fix(unit, ts, lat=89.9, lon=0.0),  # polar: outside the service area
        _fix(unit, ts, status="lost_in_space"),  # unknown status
        _fix(unit, ts, agency="fd\r\n<script>\x00"),  # control characters
        _fix(unit, "yesterday at noon"),  # bad timestamp
        _fix(unit, ts, speed_mps="fast"),  # wrong type
        b'{"vehicle_id": "%s", "ts": "%s", "lat": NaN, "lon": 1}' % (unit.encode(), ts.encode()),
        _fix(unit, ts, incident_id="x" * 5000),  # far too long
    ]
    item = kinds[k % len(kinds)]
    return item if isinstance(item, bytes) else json.dumps(item).encode()


def hostile_lines(units: list[str], count: int, now: datetime) -> Iterator[tuple[str, bytes]]:
    """``count`` hostile lines for ``avl.positions``, keyed by the given units: first each
    unit's timing attacks, then malformed lines of every kind, round robin over the units.
    Yields (key, value)."""
    n = 0
    for unit in units:
        for body in _timing_attacks(unit, now):
            if n >= count:
                return
            yield unit, json.dumps(body).encode()
            n += 1
    k = 0
    while n < count:
        unit = units[k % len(units)]
        yield unit, _junk(unit, now, k // len(units))
        n += 1
        k += 1


# ---- sending ----------------------------------------------------------------------------------

def make_producer(bootstrap: str) -> Any:
    """A kafka-python producer that rides out a Kafka restart: idempotent (order per key kept
    through retries), buffers while the broker is away, reconnects within a second."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=[s.strip() for s in bootstrap.split(",")],
        acks="all", enable_idempotence=True, linger_ms=5,
        reconnect_backoff_ms=100, reconnect_backoff_max_ms=1000,
        delivery_timeout_ms=180_000, request_timeout_ms=10_000, max_block_ms=5_000,
    )


@dataclass
class SourceStats:
    """What the source did."""

    planned: int = 0
    sent: int = 0
    failed: int = 0  # sends Kafka never acknowledged (counted, not retried by us)
    worst_lag_s: float = 0.0  # how far behind its plan the pacing loop fell at worst


class TrafficSource:
    """Sends a plan into Kafka from a thread, each message at ``t0 + offset`` (monotonic)."""

    def __init__(self, messages: list[Planned], bootstrap: str, prefix: str) -> None:
        self.messages = messages
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.stats = SourceStats(planned=len(messages))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, t0: float) -> None:
        """Start sending; offsets count from ``t0`` (``time.monotonic()``)."""
        self._thread = threading.Thread(target=self._run, args=(t0,), daemon=True,
                                        name="faults-traffic")
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.join(30)

    def _failed(self, _err: Exception) -> None:
        with self._lock:
            self.stats.failed += 1

    def _run(self, t0: float) -> None:
        producer = make_producer(self.bootstrap)
        try:
            for m in self.messages:
                wait = t0 + m.offset_s - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                self.stats.worst_lag_s = max(self.stats.worst_lag_s, -wait)
                try:
                    fut = producer.send(self.prefix + m.topic, key=m.unit.encode(),
                                        value=m.render(datetime.now(UTC)))
                    fut.add_errback(self._failed)
                    self.stats.sent += 1
                except Exception as err:  # buffer full or metadata gone for long: counted
                    self._failed(err)
            producer.flush(timeout=180)
        except Exception as err:  # Kafka gone for good: what was not acknowledged is counted
            self._failed(err)
        finally:
            with contextlib.suppress(Exception):
                producer.close(timeout=10)
