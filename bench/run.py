"""``make bench``: every benchmark, then bench/results.json and docs/benchmarks.md.

Today's code runs beside this tree's in the same run: the revision ``bench.fleets.BASE``
(``BENCH_BASE`` overrides it) is checked out under ``.cache/compare/<sha>`` and its engine and
its worker are measured interleaved with this tree's, so every speed-up is a ratio from one run
on one machine (absolute figures move up to 3x between machines of the same kind here).

Quick mode (default) stays around 10 minutes on 2 cores; ``--full`` (``make bench FULL=1``) runs
longer and bigger. Kafka parts run when ``BROKER_KAFKA_BOOTSTRAP`` is set (``make bench`` runs
under ``scripts/with-kafka``); without it they are recorded as skipped. Nothing here asserts a
time: the figures are compared with the design's targets in the report, not in a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import e2e_bench, fleets, ingest_bench, kafka_bench, leadtime_bench, report
from bench.common import ROOT, log, machine, versions

# The end-to-end burst measured again after this many seconds of patrol traffic (no alerts):
# the pipeline warm and busy when the units start responding (bench.e2e_bench._lead_in)
WARM_LEAD_IN_S = 10.0


def _section(results: dict[str, Any], name: str, fn: Any, *args: Any, **kw: Any) -> None:
    """Run one benchmark; a failure is recorded with its reason and the rest still runs."""
    t = time.monotonic()
    try:
        results[name] = fn(*args, **kw)
    except Exception as err:  # a benchmark that breaks must not hide the others
        log(f"{name} failed: {err!r}")
        results[name] = {"error": repr(err)[:2000]}
    results.setdefault("_timings_s", {})[name] = round(time.monotonic() - t, 1)
    log(f"{name}: {time.monotonic() - t:.0f} s")


def e2e_through_kafka(bootstrap: str, rate: float, duration_s: float,
                      base: Path | None = None, repeats: int = 1,
                      warm_lead_in_s: float = 0.0) -> dict[str, Any]:
    """The end-to-end run through one worker that fans out and delivers itself (it is started
    inside, once the sink's port is known); with ``base``, a run with that revision's worker
    first (the same source, the same sink, one after the other). The head's run ``repeats``
    times: ``head`` is the run with the median burst / steady ratio, ``head_runs`` all of
    them (one run's p99 with the burst rests on its dozen slowest deliveries). With
    ``warm_lead_in_s``, the head's runs again with that much patrol traffic first
    (``head_warm``, ``head_warm_runs``): the same burst on a running pipeline, as an incident
    meets a city's worker, not on one that has just said it is ready."""
    out: dict[str, Any] = {}
    if base is not None:
        out["base"] = e2e_bench.e2e(rate, duration_s, "kafka", bootstrap, tree=base)
    out["head"], out["head_runs"] = _median_burst(
        [e2e_bench.e2e(rate, duration_s, "kafka", bootstrap) for _ in range(repeats)])
    if warm_lead_in_s > 0:
        out["head_warm"], out["head_warm_runs"] = _median_burst(
            [e2e_bench.e2e(rate, duration_s, "kafka", bootstrap, lead_in_s=warm_lead_in_s)
             for _ in range(repeats)])
    return out


def _median_burst(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run with the median burst / steady ratio, and every run in a line."""
    ranked = sorted(runs, key=lambda x: report.burst_ratio(x) or math.inf)
    return ranked[(len(ranked) - 1) // 2], [report.e2e_brief(x) for x in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="longer runs (make bench FULL=1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--only", default="", help="comma list of sections to run")
    args = parser.parse_args()
    full = args.full
    bootstrap = os.environ.get("BROKER_KAFKA_BOOTSTRAP")
    only = {s for s in args.only.split(",") if s}
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": "make bench" + (" FULL=1" if full else ""),
        "mode": "full" if full else "quick",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
    }

    def want(name: str) -> bool:
        return not only or name in only

    base = fleets.base_tree(fleets.BASE)
    results["base"] = {"rev": fleets.BASE, "tree": str(base.relative_to(ROOT))}
    if want("engine_fleets"):
        # quick: a 30 s window per generated fleet, the 10,000 units three times per tree (the
        # median: one run per tree put its ratio at 2.99x and 3.09x in two runs of one tree)
        _section(results, "engine_fleets", fleets.fleets, 3 if full else 2, fleets.BASE, None,
                 60.0 if full else 30.0, None if full else 3)
    if want("lead_time"):
        _section(results, "lead_time", leadtime_bench.lead_times, full)
    if want("e2e_inprocess"):
        _section(results, "e2e_inprocess", e2e_bench.e2e, 500.0, 180.0 if full else 30.0)
    if bootstrap:
        if want("kafka_throughput"):
            _section(results, "kafka_throughput", kafka_bench.kafka_throughput, bootstrap,
                     120_000 if full else 60_000, 300.0 if full else 60.0, (1, 2), base, 3)
        if want("ingest_throughput"):
            _section(results, "ingest_throughput", ingest_bench.ingest_throughput, bootstrap,
                     60_000 if full else 40_000, 120.0 if full else 90.0, 3 if full else 2)
        if want("e2e_kafka"):
            _section(results, "e2e_kafka", e2e_through_kafka, bootstrap, 500.0,
                     180.0 if full else 45.0, base, 3, WARM_LEAD_IN_S)
    else:
        for name in ("kafka_throughput", "ingest_throughput", "e2e_kafka"):
            results[name] = {"skipped": "no BROKER_KAFKA_BOOTSTRAP (run under scripts/with-kafka)"}
    if full and want("profiles"):
        from bench import profile

        _section(results, "profiles", lambda: {
            "engine": str(profile.engine_profile().relative_to(ROOT)),
            "worker": str(p.relative_to(ROOT)) if bootstrap
            and (p := profile.worker_profile(bootstrap)) else None,
        })
    results["total_s"] = round(time.monotonic() - started, 1)
    if only and args.out.exists():  # a partial run updates the sections it ran, and says so
        previous = json.loads(args.out.read_text())
        previous.update({k: v for k, v in results.items() if k in only or not k[0].isalpha()})
        reruns = previous.setdefault("reruns", [])
        reruns.append({"sections": sorted(only), "date": results["date"],
                       "load_avg_1m_at_start": results["machine"]["load_avg_1m_at_start"],
                       "commit": results["versions"].get("git_commit"),
                       "total_s": results["total_s"]})
        results = previous
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.doc.write_text(report.render(results))
    log(f"wrote {args.out} and {args.doc} in {results['total_s']:.0f} s")


if __name__ == "__main__":
    main()
