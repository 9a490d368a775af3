"""The engine over every kind of fleet, today's commit beside this tree, in one run.

    .venv/bin/python -m bench.fleets [--repeats N] [--base REV] [--only NAMES]

For each input (fleet-200, the fixture; and generated fleets of 200, 2,000 and 10,000 units
with a third dead-reckoning, ``bench.fleetgen``) and each tree (``base``: the revision the
speed-up is measured against, checked out into ``.cache/compare/<sha>`` as
``scripts/compare-outputs`` does; ``head``: this tree), a fresh interpreter runs
``bench/engine_run.py`` with ``PYTHONPATH`` at that tree: positions/s and events/s in CPU time,
zone build p50/p99 (``warning_zone`` timed), and the RSS growth of the states (the input is
streamed from a file, never held). Runs are interleaved (base, head, head, base, ...) so both
see the same machine: the ratios head/base are what this reports; absolute figures move up to
3x between machines of the same kind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import FLEET, ROOT, log
from bench.fleetgen import SIZES, fixture_file, fleet_file

# Today's code: main when issue 16 branched off (the engine before the zone work). Override with
# BENCH_BASE (any git revision) to measure against another.
BASE = os.environ.get("BENCH_BASE", "777fae7")
RUNNER = ROOT / "bench" / "engine_run.py"
# runs of the 200-unit generated fleet per tree: its 30 s window is ~0.2 s of CPU, where one
# run in four or five came out 15-20 % slow on this machine (29,000 against 35,000 /s), and the
# flatness ratio divides by it; the median of five costs a few seconds
SMALL_REPEATS = 5
# The warm-up's input (bench/engine_run.py --warmup): a seed no measured fleet uses
WARMUP_UNITS, WARMUP_S, WARMUP_SEED = 200, 30.0, 2


def base_tree(rev: str = BASE) -> Path:
    """A checkout of ``rev`` under .cache/compare/<short sha> (made once, reused)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout.strip()
    path = ROOT / ".cache" / "compare" / sha
    if not (path / "broker").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), sha],
                       cwd=ROOT, check=True, capture_output=True)
    return path


def inputs(seconds: float | None = None) -> dict[str, Path]:
    """Name -> input file (``topic<TAB>json`` lines), generated once and cached. ``seconds``:
    the generated fleets' window (default: ``bench.fleetgen.SIZES``'s)."""
    out = {"fleet-200": fixture_file(FLEET)}
    for units, window_s in SIZES:
        out[f"generated-{units}"] = fleet_file(units, seconds or window_s)
    return out


def warmup_file() -> Path:
    """What every run warms up on: another seed's 200-unit fleet in the same city (the same
    frame, imports and first calls), not the measured messages themselves."""
    return fleet_file(WARMUP_UNITS, WARMUP_S, seed=WARMUP_SEED)


def run_one(tree: Path, path: Path, *, zones: bool = True) -> dict[str, Any]:
    """One engine run of ``tree`` over ``path`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    args = [sys.executable, str(RUNNER), str(path), "--warmup", str(warmup_file())]
    args += [] if zones else ["--no-zones"]
    proc = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, check=False,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"engine run of {tree.name} on {path.name} failed:\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, Any]], *path: str) -> float | None:
    vals = []
    for r in runs:
        v: Any = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, int | float):
            vals.append(float(v))
    return statistics.median(vals) if vals else None


def fleets(repeats: int = 1, base_rev: str = BASE, only: set[str] | None = None,
           seconds: float | None = None, big_repeats: int | None = None) -> dict[str, Any]:
    """Every input through base and head, interleaved; medians and head/base ratios.
    ``big_repeats``: runs of the 10,000-unit fleet per tree, if not ``repeats`` (the longest)."""
    trees = {"base": base_tree(base_rev), "head": ROOT}
    files = {k: v for k, v in inputs(seconds).items() if not only or k in only}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"base": [], "head": []} for name in files
    }
    def runs_of(name: str) -> int:
        if name == "generated-10000" and big_repeats is not None:
            return big_repeats
        return max(repeats, SMALL_REPEATS) if name == "generated-200" else repeats

    for r in range(max(map(runs_of, files), default=0)):
        order = ("base", "head") if r % 2 == 0 else ("head", "base")
        for name, path in files.items():
            if r >= runs_of(name):
                continue
            for label in order:
                result = run_one(trees[label], path)
                raw[name][label].append(result)
                log(f"fleets {name} {label} (run {r + 1}/{runs_of(name)}): "
                    f"{result['positions_per_s_cpu']:,}/s, zones p99 "
                    f"{result.get('zone_us', {}).get('p99')} µs, states "
                    f"{result['rss_mb_states']} MiB")
    out: dict[str, Any] = {"base_rev": base_rev, "base_tree": str(trees["base"]),
                           "repeats": repeats, "big_repeats": big_repeats,
                           "small_repeats": max(repeats, SMALL_REPEATS),
                           "inputs": {k: v.name for k, v in files.items()}, "by_input": {}}
    for name, by in raw.items():
        row: dict[str, Any] = {}
        for label, runs in by.items():
            row[label] = {
                "positions": runs[0]["positions"],
                "events": runs[0]["events"],
                "actions": runs[0]["actions"],
                "zone_builds": runs[0]["zone_builds"],
                "positions_per_s_cpu": _median(runs, "positions_per_s_cpu"),
                "positions_per_s_wall": _median(runs, "positions_per_s_wall"),
                "events_per_s_cpu": _median(runs, "events_per_s_cpu"),
                "zone_p50_us": _median(runs, "zone_us", "p50"),
                "zone_p99_us": _median(runs, "zone_us", "p99"),
                "rss_mb_states": _median(runs, "rss_mb_states"),
                "rss_mb_states_before_drain": _median(runs, "rss_mb_states_before_drain"),
                "rss_mb_end": _median(runs, "rss_mb_end"),
                "runs": runs,
            }
        b, h = row["base"], row["head"]
        row["ratio"] = {
            "positions_per_s_cpu": _ratio(h["positions_per_s_cpu"], b["positions_per_s_cpu"]),
            "zone_p99_us": _ratio(h["zone_p99_us"], b["zone_p99_us"]),
            "zone_p50_us": _ratio(h["zone_p50_us"], b["zone_p50_us"]),
        }
        out["by_input"][name] = row
    small, big = out["by_input"].get("generated-200"), out["by_input"].get("generated-10000")
    if small and big:
        out["flatness_10000_vs_200"] = {
            label: _ratio(big[label]["positions_per_s_cpu"], small[label]["positions_per_s_cpu"])
            for label in ("base", "head")
        }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--only", default="")
    parser.add_argument("--seconds", type=float, default=None, help="generated fleets' window")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s} or None
    result = fleets(args.repeats, args.base, only, args.seconds)
    for name, row in result["by_input"].items():
        b, h, ratio = row["base"], row["head"], row["ratio"]["positions_per_s_cpu"]
        print(f"{name}: base {b['positions_per_s_cpu']:,.0f}/s head "
              f"{h['positions_per_s_cpu']:,.0f}/s ({ratio}x)"
              f"; zone p50 {row['base']['zone_p50_us']} -> {row['head']['zone_p50_us']} µs, "
              f"p99 {row['base']['zone_p99_us']} -> {row['head']['zone_p99_us']} µs; events "
              f"{row['base']['events']} -> {row['head']['events']}", file=sys.stderr)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
