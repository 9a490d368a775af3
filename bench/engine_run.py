"""One engine run over one input file, in a fresh interpreter, for any revision of the broker.

    PYTHONPATH=<tree> python <this file> INPUT.tsv [--no-zones]

``bench.fleets`` runs this *file* (not the module) with ``PYTHONPATH`` pointing at the tree to
measure, so the same measuring code drives today's commit and the new one: it imports only what
both share (``broker.drive.Driver``, ``broker.settings.EngineConfig``, ``broker.engine``) and the
standard library. Prints one JSON object.

The loop is the replay's (``Driver.handle``: decode, step, a tick per second of event time; in
runs of 256 messages through ``Driver.handle_many`` where the tree has it, as ``broker replay``
does), reading the input line by line (``topic<TAB>json``, see ``bench.fleetgen``), so the
input is never held in memory and the RSS growth is the states' (and the memo's).

Zone builds are timed in this process only, in CPU time: ``broker.engine.warning_zone`` (one
zone at a time), and where the tree builds a run's zones together, ``ZoneBatch.build``, whose
time is shared out evenly over the zones it built (one sample per zone: what a zone cost).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

RUN = 1024  # messages per handle_many, as broker.replay.BATCH


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile, linear interpolation (numpy's default), without numpy."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def lines(path: Path, limit: int | None = None) -> Any:
    """``(topic, raw)`` per line, streamed."""
    with path.open("rb") as fh:
        for n, line in enumerate(fh):
            if limit is not None and n >= limit:
                return
            topic, _, raw = line.rstrip(b"\n").partition(b"\t")
            yield topic.decode(), raw


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``INPUT.tsv [--warmup WARMUP.tsv] [--no-zones]`` (as
    ``bench.fleets.run_one`` passes it)."""
    parser = argparse.ArgumentParser(
        prog="engine_run.py",
        description=(
            "One engine run over one input file, in a fresh interpreter, for any revision of "
            "the broker: run this file with PYTHONPATH at the tree to measure (bench/fleets.py "
            "does). Replays the input through broker.drive.Driver, a tick per second of event "
            "time, and prints one JSON object: positions/s and events/s in CPU and wall time, "
            "the events by action, RSS growth, and the CPU time of each zone build."
        ),
        epilog="An input: `python -m bench.fleetgen 2000 60` writes one and prints its path.",
    )
    parser.add_argument(
        "input", type=Path, metavar="INPUT.tsv",
        help="messages to replay, one per line: topic<TAB>json (as bench/fleetgen.py writes)",
    )
    parser.add_argument(
        "--warmup", type=Path, metavar="WARMUP.tsv",
        help="messages for the throwaway warm-up driver (its first 3,000 lines; default: the "
             "input's own). Not the input: a warm-up on the measured messages fills the "
             "process's caches with them, which a short run then hits (half of the 200-unit "
             "fleet's 30 s was replayed twice: ~5 %% faster than it would be)",
    )
    parser.add_argument(
        "--no-zones", dest="time_zones", action="store_false",
        help="do not wrap the zone builds to time them (no zone_us in the output)",
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    path: Path = args.input
    time_zones: bool = args.time_zones
    from broker import engine
    from broker.drive import Driver
    from broker.settings import EngineConfig

    cfg = EngineConfig()
    settle = getattr(sys.modules["broker.drive"], "settle_gc", None)
    if settle is not None:  # what `broker replay` and the worker do in this tree at start-up
        settle()
    # warm up: imports, the frame's Transformers, numpy/shapely first calls (a throwaway driver)
    warm: Driver[str] = Driver(cfg, tick_every_s=1.0)
    for topic, raw in lines(args.warmup or path, 3000):
        warm.handle(topic, raw)
    from broker.geo import zoning  # noqa: F401  (imported by the engine; looked up below)
    del warm
    gc.collect()
    base_rss = rss_mb()

    samples: list[float] = []
    batched: Any = getattr(sys.modules.get("broker.geo.zoning"), "ZoneBatch", None)
    if time_zones:
        original = engine.warning_zone
        clock = time.thread_time_ns  # CPU time: a preempted build does not count the wait

        def timed(*args: Any, **kw: Any) -> Any:
            t = clock()
            out = original(*args, **kw)
            samples.append((clock() - t) / 1000)
            return out

        engine.warning_zone = timed  # type: ignore[assignment]  # bench-only instrumentation
        if batched is not None:
            build = batched.build

            def timed_build(self: Any) -> int:
                t = clock()
                n = int(build(self))
                if n:
                    samples.extend([(clock() - t) / 1000 / n] * n)
                return n

            batched.build = timed_build

    driver: Driver[str] = Driver(cfg, tick_every_s=1.0)
    actions: Counter[str] = Counter()
    positions = routes = 0
    w0, c0 = time.perf_counter(), time.process_time()
    many = getattr(driver, "handle_many", None)
    run: list[tuple[str, bytes]] = []
    for topic, raw in lines(path):
        if topic == "cad.routes":
            routes += 1
        else:
            positions += 1
        if many is None:
            for ev in driver.handle(topic, raw).events:
                actions[ev.action] += 1
            continue
        run.append((topic, raw))
        if len(run) >= RUN:
            for handled in many(run):
                for ev in handled.events:
                    actions[ev.action] += 1
            run = []
    for handled in many(run) if many is not None and run else []:
        for ev in handled.events:
            actions[ev.action] += 1
    # the states at the end of the input, before the drain's events (all held in one list)
    input_rss = rss_mb()
    for ev in driver.drain():
        actions[ev.action] += 1
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    gc.collect()
    end_rss = rss_mb()
    states = driver.states
    out = {
        "input": path.name,
        "positions": positions,
        "routes": routes,
        "events": sum(actions.values()),
        "actions": dict(sorted(actions.items())),
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "positions_per_s_cpu": round(positions / cpu) if cpu > 0 else None,
        "positions_per_s_wall": round(positions / wall) if wall > 0 else None,
        "events_per_s_cpu": round(sum(actions.values()) / cpu) if cpu > 0 else None,
        "vehicles": len(states),
        "live_alerts_at_end": sum(1 for s in states.values() if s.alert is not None),
        "rss_mb_after_warmup": round(base_rss, 1),
        "rss_mb_end": round(end_rss, 1),
        "rss_mb_states": round(end_rss - base_rss, 1),
        "rss_mb_states_before_drain": round(input_rss - base_rss, 1),
        "zone_builds": len(samples),
    }
    if samples:
        out["zone_us"] = {f"p{q:g}": round(pct(samples, q), 1) for q in (50, 90, 99, 99.9)}
        out["zone_us"]["max"] = round(max(samples), 1)
        out["zone_us"]["mean"] = round(sum(samples) / len(samples), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
