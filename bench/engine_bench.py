"""Engine in-process: positions/s over fleet-200 on one core, zone build cost, RSS at 10k units.

Run alone: ``.venv/bin/python -m bench.engine_bench [throughput|zones|rss] [--repeats N]``
(prints JSON). ``bench.run`` calls the same functions.

- **throughput**: the replay loop (decode + ``engine.step`` + a ``tick`` per second of event
  time), as ``broker replay`` runs it; and engine-only (messages decoded beforehand, same loop).
  Wall time and process CPU time are both reported: the machine is shared, and CPU time is
  what one core spends whatever the neighbours do. Best and median of the repeats.
- **zones**: ``engine._emit`` (stretch ahead, corridor, circle, union, finish, GeoJSON: the
  whole zone-building part of a create/update) wrapped by a timing hook *in this process only*;
  the engine itself carries no timing code.
- **rss**: a fresh interpreter drives 10,000 synthetic units (fleet-200 cloned 50 times, each
  clone with its own vehicle ids and routes) through the engine and keeps every state in a dict,
  as the worker's table does; RSS before and after, and the states' encoded size.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench.common import FIXTURES, FLEET, log, parse_lines, pct, rewrite, rss_mb, window
from broker import codec, engine, join
from broker.drive import ROUTES, Driver
from broker.model import AlertEvent, Position, Rejection, Route, VehicleState
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig

CFG = EngineConfig()


def _decoded(topic: str, raw: bytes) -> Position | Route | None:
    """A fixture message as the engine takes it (a fix of the combined form merged with no
    CAD status is the Position it carries), or None when refused."""
    if topic == ROUTES:
        route = codec.decode_route(raw)
        return None if isinstance(route, Rejection) else route
    fix = codec.decode_position(raw)
    return None if isinstance(fix, Rejection) else join.merge(fix, None, None)


def _decode_all(messages: list[tuple[str, bytes]]) -> list[Position | Route]:
    return [msg for topic, raw in messages if (msg := _decoded(topic, raw)) is not None]


def drive(decoded: list[Position | Route], cfg: EngineConfig) -> int:
    """The replay loop without decoding (``broker.drive``): step each message, tick the live
    units once a second of event time.

    Returns the number of alert events (so the work cannot be optimised away).
    """
    driver: Driver[str] = Driver(cfg, tick_every_s=1.0)
    n_events = 0
    for msg in decoded:
        n_events += len(driver.advance(msg.ts))
        n_events += len(driver.step(msg)[1])
    return n_events


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    gc.collect()  # each run makes its own driver: routes are projected again, as in a fresh worker
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def throughput(repeats: int = 3) -> dict[str, Any]:
    """Positions per second over fleet-200: full replay loop, engine-only, decode-only."""
    messages = load_messages(FLEET)
    n_pos = sum(1 for t, _ in messages if t != ROUTES)
    decoded = _decode_all(messages)
    out: dict[str, Any] = {"fixture": "fleet-200", "positions": n_pos, "repeats": repeats}
    runs: dict[str, list[tuple[float, float]]] = {"replay": [], "engine_only": [], "decode": []}
    for i in range(repeats):
        runs["replay"].append(_timed(lambda: replay_in_process(messages, cfg=CFG)))
        runs["engine_only"].append(_timed(lambda: drive(decoded, CFG)))
        runs["decode"].append(_timed(lambda: _decode_all(messages)))
        log(f"throughput run {i + 1}/{repeats}: replay {n_pos / runs['replay'][-1][0]:,.0f}/s")
    for name, rs in runs.items():
        walls = [n_pos / w for w, _ in rs]
        cpus = [n_pos / c for _, c in rs if c > 0]
        out[name] = {
            "positions_per_s_wall_best": round(max(walls)),
            "positions_per_s_wall_median": round(statistics.median(walls)),
            "positions_per_s_cpu_best": round(max(cpus)) if cpus else None,
            "positions_per_s_cpu_median": round(statistics.median(cpus)) if cpus else None,
        }
    return out


def zones(fixtures: tuple[str, ...] = ("fleet-200", "route-downtown", "dead-reckoning",
                                       "on-scene")) -> dict[str, Any]:
    """Zone build time per create/update, in µs, through a timing hook around ``engine._emit``."""
    original = engine._emit
    samples: list[float] = []
    by_kind: dict[str, list[float]] = {}

    def hook(*args: Any, **kwargs: Any) -> tuple[VehicleState, list[AlertEvent]]:
        t = time.perf_counter_ns()
        result = original(*args, **kwargs)
        us = (time.perf_counter_ns() - t) / 1000
        samples.append(us)
        kind = args[3]  # _emit(state, pos, place, kind, ...)
        if kind == "approaching":
            kind = "approaching_route" if args[2].route is not None else "dead_reckoning"
        by_kind.setdefault(kind, []).append(us)
        return result

    engine._emit = hook  # type: ignore[assignment]  # bench-only instrumentation
    try:
        for name in fixtures:
            replay_in_process(load_messages(FIXTURES / name), cfg=CFG)
    finally:
        engine._emit = original  # type: ignore[assignment]
    out: dict[str, Any] = {"fixtures": list(fixtures), "all_us": pct(samples)}
    out["by_kind_us"] = {k: pct(v) for k, v in sorted(by_kind.items())}
    return out


def rss_10k(copies: int = 50, span_s: float = 40.0, start_s: float = 240.0) -> dict[str, Any]:
    """RSS with ``copies`` x 200 tracked units (run this in a fresh interpreter)."""
    gc.collect()
    base = rss_mb()
    lines = parse_lines(load_messages(FLEET))
    routes, inside = window(lines, start_s, span_s)
    after_load = rss_mb()
    driver: Driver[str] = Driver(CFG)
    states = driver.states
    t0 = lines[0].ts
    n = 0
    for k in range(copies):
        suffix = f"~{k:02d}"
        # each clone keeps the fixture's times shifted by k ms, so its route keys are its own
        shift = timedelta(milliseconds=k)
        for ln in routes + inside:
            raw = rewrite(ln.raw, suffix=suffix, ts=ln.ts + shift)
            msg = _decoded(ln.topic, raw)
            if msg is None:
                continue
            driver.step(msg)
            n += 1
    gc.collect()
    after = rss_mb()
    live = sum(1 for s in states.values() if s.alert is not None)
    with_route = sum(1 for s in states.values() if s.route is not None)
    encoded = [len(codec.dump_state(s)) for s in states.values()]
    del t0
    return {
        "vehicles": len(states),
        "live_alerts": live,
        "with_route": with_route,
        "messages_stepped": n,
        "rss_mb_interpreter_and_imports": round(base, 1),
        "rss_mb_fixture_loaded": round(after_load, 1),
        "rss_mb_total": round(after, 1),
        "rss_mb_delta_states": round(after - after_load, 1),
        "state_bytes_encoded_mean": round(statistics.mean(encoded)),
        "state_bytes_encoded_total_mb": round(sum(encoded) / 2**20, 1),
        "projected_routes_cached": len(driver.memo),
    }


def rss_in_subprocess() -> dict[str, Any]:
    """``rss_10k`` in a fresh interpreter, so the baseline is not this process's heap."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.engine_bench", "rss"], capture_output=True, text=True,
        check=True, timeout=600,
    )
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "zones", "rss"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.what == "throughput":
        result = throughput(args.repeats)
    elif args.what == "zones":
        result = zones()
    else:
        result = rss_10k()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
