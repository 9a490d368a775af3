"""A generated fleet for the engine benchmark: N units, deterministic, streamed to a file.

``make bench`` drives the engine over fleet-200 (the fixture) *and* over fleets of 200, 2,000
and 10,000 generated units, so a speed-up that only holds for one kind of traffic shows. Each
unit is a pure function of ``(seed, index)`` (its own ``random.Random``), so unit 7 is the same
unit in every fleet size. Every size runs over the same window (60 s; `make bench` quick mode:
30 s): per unit the same mix of creates, updates and cancels, so only the number of units
differs.

Who the units are, by index modulo 3:

- 0: responding with lights along a **CAD route** (published at dispatch), then on scene;
- 1: responding with lights **without a route** (the engine dead-reckons along the heading),
  then on scene;
- 2: not in emergency mode (patrolling with traffic, or parked): the engine only gates them.

Streets are a grid of 200 m blocks around Charlotte (one local frame cell); a path is a few
grid legs with turns; speed slows for each turn; fixes carry 3 m of GPS noise and a noisy
heading, at 1 Hz on the unit's own millisecond. Each emergency unit's dispatch falls at a
seeded moment so the window catches units at every stage (about to respond, responding, on
scene, returning).

The output is ``topic<TAB>json`` per line in arrival order (routes before the first fix at or
after their time), written once per (seed, units, seconds) under ``.cache/bench/`` and read
back line by line: the benchmark never holds the input in memory.

Run alone: ``.venv/bin/python -m bench.fleetgen 2000 60`` prints the file's path.
"""

from __future__ import annotations

import argparse
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
VERSION = 1  # bump when the generator's output changes (the cache is keyed by it)

LON0, LAT0 = -80.8431, 35.2271  # Charlotte Uptown; the grid stays inside one 0.5 degree cell
M_PER_DEG_LAT = 111_132.954
M_PER_DEG_LON = 111_319.49 * math.cos(math.radians(LAT0))
BLOCK_M = 200.0
GRID_HALF = 45  # blocks either side of the centre: a 18 km square
START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
# units, seconds: one window for every size, so only the number of units differs
SIZES = ((200, 60.0), (2_000, 60.0), (10_000, 60.0))

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit's whole story: its path, speed over time, and when its phases change."""

    vehicle_id: str
    kind: int  # 0 route, 1 dead reckoning, 2 not in emergency mode
    offset_ms: int  # its fixes come on this millisecond of each second
    xy: np.ndarray  # (n, 2) metres, the path it drives
    cum: np.ndarray  # (n,) distance along the path to each vertex
    along: np.ndarray  # metres along the path at each whole second from dispatch
    speed: np.ndarray  # m/s at each whole second from dispatch
    dispatch_s: float  # seconds from the window's start (may be negative)
    arrive_s: float  # seconds from the window's start
    on_scene_s: float  # how long it stays on scene
    incident_id: str


def _grid_path(rng: random.Random, legs: int) -> np.ndarray:
    """A path along the street grid: ``legs`` straight legs of 2-8 blocks, turning each time."""
    lo, hi = -GRID_HALF + 10, GRID_HALF - 10
    i, j = rng.randint(lo, hi), rng.randint(lo, hi)
    pts = [(i, j)]
    horizontal = rng.random() < 0.5
    for _ in range(legs):
        n = rng.randint(2, 8) * rng.choice((-1, 1))
        if horizontal:
            i = max(-GRID_HALF, min(GRID_HALF, i + n))
        else:
            j = max(-GRID_HALF, min(GRID_HALF, j + n))
        if (i, j) != pts[-1]:
            pts.append((i, j))
        horizontal = not horizontal
    if len(pts) < 2:
        pts.append((i + 3, j))
    return np.array(pts, dtype=float) * BLOCK_M


def _speed_profile(
    xy: np.ndarray, cruise: float, rng: random.Random
) -> tuple[np.ndarray, np.ndarray]:
    """Metres along the path and speed at each second: cruise, slowing to ~6 m/s for turns,
    stopping at the end (2.5 m/s^2 either way)."""
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    turns = cum[1:-1]
    total = float(cum[-1])
    s, v = 0.0, 0.0
    along, speed = [0.0], [0.0]
    while s < total - 0.5 and len(along) < 3600:
        ahead = [t - s for t in turns if t > s] + [total - s]
        limit = cruise * (0.9 + 0.2 * rng.random())
        for k, d in enumerate(ahead):
            slow = 0.0 if k == len(ahead) - 1 else 6.0
            limit = min(limit, math.sqrt(slow * slow + 2 * 2.5 * max(d - 5.0, 0.0)))
        v = min(limit, v + 2.5) if limit > v else max(limit, v - 2.5)
        v = max(v, 0.5)
        s = min(s + v, total)
        along.append(s)
        speed.append(v)
    return np.array(along), np.array(speed)


def make_unit(seed: int, index: int, seconds: float) -> Unit:
    """Unit ``index`` of the generated fleet (the same whatever the fleet's size)."""
    rng = random.Random(f"fleetgen-{seed}-{index}")
    kind = index % 3
    prefix = ("CFD-R", "CFD-D", "CMPD-P")[kind]
    xy = _grid_path(rng, rng.randint(2, 5) if kind < 2 else 6)
    cruise = rng.uniform(12.0, 19.0) if kind < 2 else rng.uniform(7.0, 12.0)
    along, speed = _speed_profile(xy, cruise, rng)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    drive_s = float(len(along) - 1)
    on_scene = rng.uniform(120.0, 400.0)
    # dispatch anywhere from "already on scene for a while" to "just before the window ends"
    dispatch = rng.uniform(-(drive_s + on_scene * 0.5), max(seconds - 5.0, 1.0))
    if kind == 2:
        dispatch = rng.uniform(-drive_s, seconds)  # a patrol: moving or parked
    return Unit(
        vehicle_id=f"{prefix}{index:05d}",
        kind=kind,
        offset_ms=rng.randrange(1000),
        xy=xy,
        cum=cum,
        along=along,
        speed=speed,
        dispatch_s=dispatch,
        arrive_s=dispatch + drive_s,
        on_scene_s=on_scene,
        incident_id=f"G{seed:02d}-{index:05d}",
    )


def _lonlat(x: float, y: float) -> tuple[float, float]:
    return round(LON0 + x / M_PER_DEG_LON, 6), round(LAT0 + y / M_PER_DEG_LAT, 6)


def _ts(t_s: float) -> str:
    stamp = START + timedelta(milliseconds=round(t_s * 1000))
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def route_message(u: Unit, t_s: float) -> bytes:
    """The unit's CAD route, published at ``t_s``."""
    coords = [list(_lonlat(float(x), float(y))) for x, y in u.xy]
    lon, lat = coords[-1]
    return _encode({
        "vehicle_id": u.vehicle_id, "incident_id": u.incident_id, "ts": _ts(t_s),
        "destination": {"lat": lat, "lon": lon},
        "route": {"type": "LineString", "coordinates": coords},
    })  # fmt: skip


def fix_message(u: Unit, t_s: float, rng: random.Random) -> bytes:
    """The unit's AVL fix at ``t_s`` (seconds from the window's start)."""
    k = t_s - u.dispatch_s
    if k < 0:  # not yet dispatched: at the start of its path
        s, v = 0.0, 0.0
        status, lights = "available", False
    elif t_s < u.arrive_s:
        i = min(int(k), len(u.along) - 2)
        f = k - i
        s = float(u.along[i] + f * (u.along[i + 1] - u.along[i]))
        v = float(u.speed[i + 1])
        status, lights = ("responding", True) if u.kind < 2 else ("available", False)
    else:
        s, v = float(u.cum[-1]), 0.0
        on_scene = t_s < u.arrive_s + u.on_scene_s
        status, lights = ("on_scene", True) if on_scene and u.kind < 2 else ("returning", False)
        if u.kind == 2:
            status = "available"
    seg = min(int(np.searchsorted(u.cum, s, side="right")) - 1, len(u.cum) - 2)
    (x0, y0), (x1, y1) = u.xy[seg].tolist(), u.xy[seg + 1].tolist()
    c0, c1 = float(u.cum[seg]), float(u.cum[seg + 1])
    f = (s - c0) / max(c1 - c0, 1e-9)
    x = x0 + f * (x1 - x0) + rng.gauss(0.0, 3.0)
    y = y0 + f * (y1 - y0) + rng.gauss(0.0, 3.0)
    lon, lat = _lonlat(x, y)
    heading = (math.degrees(math.atan2(x1 - x0, y1 - y0)) + rng.gauss(0.0, 3.0)) % 360.0
    emergency = status in ("responding", "on_scene")
    return _encode({
        "vehicle_id": u.vehicle_id, "agency": "cmpd" if u.kind == 2 else "charlotte-fd",
        "ts": _ts(t_s), "lat": lat, "lon": lon,
        "speed_mps": round(max(v + rng.gauss(0.0, 0.3), 0.0), 1) if v > 0 else 0.0,
        "heading_deg": round(heading, 1), "status": status, "lights_sirens": lights,
        "incident_id": u.incident_id if emergency or status == "returning" else None,
        "unit_type": "patrol" if u.kind == 2 else "engine", "accuracy_m": 5.0,
    })  # fmt: skip


def messages(units: int, seconds: float, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """``(topic, raw)`` in arrival order: every unit at 1 Hz on its own millisecond, each route
    just before the unit's first fix at or after its publication."""
    fleet = [make_unit(seed, i, seconds) for i in range(units)]
    noise = [random.Random(f"fleetgen-noise-{seed}-{i}") for i in range(units)]
    order = sorted(range(units), key=lambda i: fleet[i].offset_ms)
    routed: set[int] = set()
    for sec in range(int(seconds)):
        for i in order:
            u = fleet[i]
            t_s = sec + u.offset_ms / 1000
            if u.kind == 0 and i not in routed and t_s >= u.dispatch_s:
                routed.add(i)
                yield "cad.routes", route_message(u, max(u.dispatch_s, t_s - 0.001))
            yield "avl.positions", fix_message(u, t_s, noise[i])


def fleet_file(units: int, seconds: float, seed: int = 1) -> Path:
    """The generated fleet as ``topic<TAB>json`` lines, written once and cached."""
    path = CACHE / f"fleetgen-v{VERSION}-s{seed}-{units}u-{seconds:g}s.tsv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        for topic, raw in messages(units, seconds, seed):
            fh.write(topic.encode() + b"\t" + raw + b"\n")
    tmp.replace(path)
    return path


def fixture_file(incident: Path) -> Path:
    """A fixture incident (e.g. fleet-200) in the same ``topic<TAB>json`` form, cached."""
    from broker.replay import load_messages  # the same merge the replay does

    path = CACHE / f"fixture-{incident.name}.tsv"
    src = [incident / "positions.ndjson", incident / "routes.ndjson"]
    newest = max(p.stat().st_mtime for p in src if p.exists())
    if path.exists() and path.stat().st_mtime >= newest:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        for topic, raw in load_messages(incident):
            fh.write(topic.encode() + b"\t" + raw + b"\n")
    tmp.replace(path)
    return path


def _merge_check(path: Path) -> int:
    """Number of lines (a cheap sanity check for ``main``)."""
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("units", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    path = fleet_file(args.units, args.seconds, args.seed)
    print(path, _merge_check(path))


if __name__ == "__main__":
    main()
