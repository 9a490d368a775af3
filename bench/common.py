"""Shared pieces of the benchmarks: machine facts, percentiles, RSS, fixture rewriting.

Benchmarks are not tests: they measure and report, they never assert a time. Everything here
talks only to 127.0.0.1 and every loop is bounded.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "incidents"
FLEET = FIXTURES / "fleet-200"


def machine() -> dict[str, object]:
    """CPU count, CPU model, RAM and load: the context every figure needs."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gb": mem_gb,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


VERSIONED = (
    "ev-alert-broker", "msgspec", "shapely", "pyproj", "numpy", "faust-streaming", "aiokafka",
    "kafka-python", "httpx", "standardwebhooks", "hdrhistogram", "pyinstrument",
)


def versions() -> dict[str, str]:
    """Versions of the packages on the measured path, plus the git commit and Kafka's."""
    out: dict[str, str] = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        out["git_commit"] = "unknown"
    pom = ROOT / "scripts" / "pom.xml"
    if pom.exists():
        m = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text())
        out["kafka"] = m.group(1) if m else "unknown"
    return out


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values_us: Iterable[float], qs: Iterable[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Percentiles (numpy linear interpolation) rounded for humans; keys like ``p99``."""
    arr = np.asarray(list(values_us), dtype=float)
    if arr.size == 0:
        return {}
    out = {f"p{q:g}": round(float(np.percentile(arr, q)), 1) for q in qs}
    out["max"] = round(float(arr.max()), 1)
    out["mean"] = round(float(arr.mean()), 1)
    out["n"] = int(arr.size)
    return out


def log(msg: str) -> None:
    """Progress on stderr (stdout stays for results)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- rewriting fixture lines: more vehicles, shifted time ------------------------------------

_VID = re.compile(rb'"vehicle_id":"([^"]*)"')
_TS = re.compile(rb'"ts":"([^"]*)"')


@dataclass(frozen=True, slots=True)
class Line:
    """One fixture message with the two fields a rewrite needs, parsed once."""

    topic: str
    raw: bytes
    ts: datetime
    vehicle_id: str


def parse_lines(messages: Iterable[tuple[str, bytes]]) -> list[Line]:
    """Fixture messages (``replay.load_messages``) with their ts and vehicle id."""
    out = []
    for topic, raw in messages:
        ts_m, vid_m = _TS.search(raw), _VID.search(raw)
        if ts_m is None or vid_m is None:
            continue
        ts = datetime.fromisoformat(ts_m.group(1).decode().replace("Z", "+00:00"))
        out.append(Line(topic, raw, ts, vid_m.group(1).decode()))
    return out


def rewrite(raw: bytes, *, suffix: str, ts: datetime | None = None) -> bytes:
    """The same message for vehicle ``<id><suffix>``, optionally stamped with another ts."""
    if suffix:
        raw = _VID.sub(lambda m: b'"vehicle_id":"' + m.group(1) + suffix.encode() + b'"', raw, 1)
    if ts is not None:
        stamp = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
        raw = _TS.sub(lambda _m: b'"ts":"' + stamp + b'"', raw, 1)
    return raw


def window(lines: list[Line], start_s: float, length_s: float) -> tuple[list[Line], list[Line]]:
    """Messages in ``[t0 + start_s, t0 + start_s + length_s)`` and, before them, the latest
    route of each vehicle published earlier (so units already responding keep their route)."""
    t0 = lines[0].ts
    inside: list[Line] = []
    routes: dict[str, Line] = {}
    for ln in lines:
        off = (ln.ts - t0).total_seconds()
        if off < start_s:
            if ln.topic == "cad.routes":
                routes[ln.vehicle_id] = ln
        elif off < start_s + length_s:
            inside.append(ln)
    return list(routes.values()), inside


def chunks(seq: list[Line], n: int) -> Iterator[list[Line]]:
    """``seq`` in pieces of ``n``."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
