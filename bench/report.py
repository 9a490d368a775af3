"""docs/benchmarks.md from bench/results.json: every figure with its unit, target and verdict.

Pure rendering (results dict -> Markdown text), so the note can be regenerated from a saved
results.json: ``.venv/bin/python -m bench.report`` rewrites docs/benchmarks.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import ROOT


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the summary: what, measured value, unit, design target, holds?"""

    what: str
    value: Any
    unit: str
    target: str
    holds: bool | None  # None: not measured in this run


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _check(value: Any, ok: Callable[[Any], bool]) -> bool | None:
    return None if value is None else bool(ok(value))


def figures(r: dict[str, Any]) -> list[Figure]:
    """The design's figures (design.md "Figures it is built for") against this run."""
    out: list[Figure] = []
    eng = _get(r, "engine_throughput", "replay", "positions_per_s_cpu_median")
    out.append(Figure("engine in-process, fleet-200, decode+step+tick, one core (CPU time)",
                      eng, "positions/s", ">= 20,000", _check(eng, lambda v: v >= 20_000)))
    wall = _get(r, "engine_throughput", "replay", "positions_per_s_wall_median")
    out.append(Figure("same, wall clock (shared machine)", wall, "positions/s", ">= 20,000",
                      _check(wall, lambda v: v >= 20_000)))
    only = _get(r, "engine_throughput", "engine_only", "positions_per_s_cpu_median")
    out.append(Figure("engine only (pre-decoded), one core (CPU time)", only, "positions/s",
                      "(no target)", None))
    p99 = _get(r, "zone_build", "all_us", "p99")
    p50 = _get(r, "zone_build", "all_us", "p50")
    out.append(Figure("zone build p50", p50, "µs", "(no target)", None))
    out.append(Figure("zone build p99", p99, "µs", "<= 1,000", _check(p99, lambda v: v <= 1000)))
    rss = _get(r, "rss_10k", "rss_mb_total")
    out.append(Figure("RSS with 10,000 tracked units (total)", rss, "MiB", "<= 300",
                      _check(rss, lambda v: v <= 300)))
    out.append(Figure("RSS delta of the 10,000 states", _get(r, "rss_10k", "rss_mb_delta_states"),
                      "MiB", "(part of the above)", None))
    for n in (1, 2):
        v = _get(r, "kafka_throughput", f"workers_{n}", "sustained_positions_per_s")
        target = ">= 5,000" if n == 1 else "(scale-out: > 1 worker)"
        ok = _check(v, lambda x: x >= 5000) if n == 1 else None
        out.append(Figure(f"Faust worker(s) on real Kafka, {n} worker(s), sustained", v,
                          "positions/s", target, ok))
    for form in ("split", "traccar"):
        ratio = _get(r, "ingest_throughput", f"{form}_vs_combined_median")
        out.append(Figure(f"one worker's fixes/s in the {form} form / the combined form "
                          "(the join; median of interleaved rounds)", ratio, "ratio", ">= 0.85",
                          _check(ratio, lambda x: x >= 0.85)))
    for mode in ("e2e_kafka", "e2e_inprocess"):
        lat = _get(r, mode, "latency_all") or {}
        steady = _get(r, mode, "latency_steady") or {}
        label = "through Kafka + worker" if mode == "e2e_kafka" else "in-process pipeline"
        if steady:
            warm = _get(r, mode, "warmup_s")
            out.append(Figure(f"produced -> webhook received, p50, steady ({label}, after the "
                              f"first {warm:g} s)", steady.get("p50_ms"), "ms", "<= 30",
                              _check(steady.get("p50_ms"), lambda v: v <= 30)))
            out.append(Figure(f"produced -> webhook received, p99, steady ({label}, after the "
                              f"first {warm:g} s)", steady.get("p99_ms"), "ms", "<= 100",
                              _check(steady.get("p99_ms"), lambda v: v <= 100)))
        out.append(Figure(f"produced -> webhook received, p50, all ({label})", lat.get("p50_ms"),
                          "ms", "<= 30", _check(lat.get("p50_ms"), lambda v: v <= 30)))
        out.append(Figure(f"produced -> webhook received, p99, all ({label})", lat.get("p99_ms"),
                          "ms", "<= 100", _check(lat.get("p99_ms"), lambda v: v <= 100)))
        out.append(Figure(f"produced -> webhook received, p99.9, all ({label})",
                          lat.get("p99_9_ms"), "ms", "(no target)", None))
        lost = _get(r, mode, "lost")
        out.append(Figure(f"lost alerts ({label})", lost, "deliveries", "0",
                          _check(lost, lambda v: v == 0)))
    for fixture, per in sorted((_get(r, "lead_time") or {}).items()):
        if not isinstance(per, dict) or "no_roads" not in per:
            continue
        f = per["no_roads"]
        if f.get("has_cad_route"):
            out.append(Figure(f"lead time median, {fixture} (CAD route)", f["lead_time_median_s"],
                              "s", ">= 45", f["lead_time_median_s"] >= 45))
            out.append(Figure(f"points warned >= 15 s, {fixture} (CAD route)",
                              round(100 * f["frac_warned_15s"], 1), "%", ">= 95",
                              f["frac_warned_15s"] >= 0.95))
        else:
            out.append(Figure(f"lead time median, {fixture} (dead reckoning)",
                              f["lead_time_median_s"], "s", ">= 20",
                              f["lead_time_median_s"] >= 20))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _verdict(h: bool | None) -> str:
    return {True: "holds", False: "**misses**", None: ""}[h]


def _lead_table(r: dict[str, Any]) -> list[str]:
    rows = ["| fixture | roads | points | median s | p10 s | mean s | >= 15 s | >= 30 s | >= 45 s "
            "| zone area km²·s | false-alert area km²·s | alerts | messages |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fixture, per in sorted((_get(r, "lead_time") or {}).items()):
        if not isinstance(per, dict):
            continue
        for label, f in per.items():
            if not isinstance(f, dict) or "points" not in f:
                continue
            rows.append(
                f"| {fixture} | {'yes' if label == 'roads' else 'no'} | {f['points']:,} "
                f"| {f['lead_time_median_s']} | {f['lead_time_p10_s']} | {f['lead_time_mean_s']} "
                f"| {100 * f['frac_warned_15s']:.1f} % | {100 * f['frac_warned_30s']:.1f} % "
                f"| {100 * f['frac_warned_45s']:.1f} % | {f['zone_area_km2_s']:,.1f} "
                f"| {f['false_alert_area_km2_s']:,.1f} | {f['alerts']} | {f['alert_messages']} |"
            )
    return rows


def _lag_line(res: dict[str, Any]) -> str:
    lag = res.get("lag_over_time") or []
    step = max(1, len(lag) // 12)
    pts = ", ".join(f"{t:.0f} s: {n:,}" for t, n in lag[::step])
    return pts + (f", {lag[-1][0]:.0f} s: {lag[-1][1]:,}" if lag and len(lag) % step != 1 else "")


def _ingest_section(r: dict[str, Any]) -> list[str]:
    """Ingest forms: the worker's fixes/s per form, round by round (bench/ingest_bench.py)."""
    it = r.get("ingest_throughput") or {}
    if not it.get("rounds"):
        return []
    lines = ["### Ingest forms: the join's cost in the worker", "",
             f"The first {it['positions']:,} fixes of fleet-200 as a backlog in the combined, "
             "split (fixes + status records in each unit's log) and Traccar form "
             "(`avl.traccar`, forwarded and re-keyed by the worker itself), each drained by a "
             "fresh one-worker group, the forms interleaved round by round "
             "(`bench/ingest_bench.py`, docs/ingest.md). fixes/s between 10 % and 90 % "
             "committed, per wall second and per CPU second of the worker process (the ratios "
             "are of the latter: the shared machine's load moves the wall clock more).", "",
             "| round | combined fixes/s (per CPU s) | split | traccar | split / combined "
             "| traccar / combined |",
             "|---:|---:|---:|---:|---:|---:|"]

    def cell(x: dict[str, Any]) -> str:
        return f"{_fmt(x['fixes_per_s'])} ({_fmt(x['fixes_per_cpu_s'])})"

    for i, row in enumerate(it["rounds"], start=1):
        lines.append(
            f"| {i} | {cell(row['combined'])} | {cell(row['split'])} | {cell(row['traccar'])} "
            f"| {_fmt(row['split_vs_combined'])} | {_fmt(row['traccar_vs_combined'])} |")
    return [*lines, ""]


def render(r: dict[str, Any]) -> str:
    """The whole note."""
    m, v = r.get("machine", {}), r.get("versions", {})
    figs = figures(r)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py` (`make bench`); every figure below is in "
        "`bench/results.json`. Benchmarks are not tests: nothing asserts a time in `make test`.",
        "",
        f"- command: `{r.get('command')}` ({r.get('mode')} mode, {r.get('total_s')} s)",
        f"- date: {r.get('date')}",
        f"- machine: {m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('ram_gb')} GiB RAM, "
        f"load average {m.get('load_avg_1m_at_start')} at start (shared with other engineers' "
        "test runs: wall-clock figures are noisy, CPU-time figures less so)",
        f"- Python {m.get('python')}; " + ", ".join(
            f"{k} {val}" for k, val in v.items() if k not in ("git_commit",)
        ) + f"; commit `{v.get('git_commit')}`",
        "",
        "## Summary against the design's targets",
        "",
        "| figure | measured | unit | target | verdict |",
        "|---|---:|---|---|---|",
    ]
    lines += [f"| {f.what} | {_fmt(f.value)} | {f.unit} | {f.target} | {_verdict(f.holds)} |"
              for f in figs]
    holds = [f.what for f in figs if f.holds is True]
    misses = [f.what for f in figs if f.holds is False]
    lines += ["", f"**Hold ({len(holds)}):** " + "; ".join(holds) + ".", "",
              f"**Miss ({len(misses)}):** " + ("; ".join(misses) if misses else "none") + ".", ""]

    et = r.get("engine_throughput") or {}
    lines += ["## 1. Engine in-process", ""]
    if "replay" in et:
        lines += [
            f"fleet-200: {et['positions']:,} positions of 200 units over 10 minutes; "
            f"{et['repeats']} runs each, routes re-projected every run.",
            "",
            "| loop | wall best | wall median | CPU best | CPU median |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, label in (("replay", "decode + step + tick (as `broker replay`)"),
                            ("engine_only", "step + tick, pre-decoded"),
                            ("decode", "decode only (msgspec)")):
            x = et[name]
            lines.append(f"| {label} | {x['positions_per_s_wall_best']:,} "
                         f"| {x['positions_per_s_wall_median']:,} "
                         f"| {x['positions_per_s_cpu_best']:,} "
                         f"| {x['positions_per_s_cpu_median']:,} |")
        lines += ["", "positions/s. CPU = positions / process CPU seconds (one core).", ""]
    zb = r.get("zone_build") or {}
    if "all_us" in zb:
        lines += ["Zone build: `engine._emit` timed by a hook installed by the benchmark only "
                  "(stretch ahead, corridor and circle buffers, union, `zones.finish`, GeoJSON, "
                  f"path), over {', '.join(zb['fixtures'])}.", "",
                  "| kind | n | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, s in [("all", zb["all_us"]), *zb.get("by_kind_us", {}).items()]:
            lines.append(f"| {kind} | {s['n']:,} | {s['p50']} | {s['p90']} | {s['p99']} "
                         f"| {s['p99.9']} | {s['max']:,} |")
        lines += [""]
    rs = r.get("rss_10k") or {}
    if "vehicles" in rs:
        lines += [
            f"RSS: a fresh interpreter steps {rs['messages_stepped']:,} messages of "
            f"{rs['vehicles']:,} units (fleet-200 cloned 50 times, 40 s each from the busy "
            f"part), keeping every state in a dict: {rs['live_alerts']:,} live alerts, "
            f"{rs['with_route']:,} with a CAD route, {rs['projected_routes_cached']:,} "
            f"projected routes cached. RSS {rs['rss_mb_interpreter_and_imports']} MiB after "
            f"imports, {rs['rss_mb_fixture_loaded']} MiB with the fixture text loaded, "
            f"**{rs['rss_mb_total']} MiB** at the end (states: +{rs['rss_mb_delta_states']} MiB). "
            f"Encoded as the worker's table stores them: {rs['state_bytes_encoded_mean']} bytes "
            f"per unit, {rs['state_bytes_encoded_total_mb']} MiB in all.",
            "",
        ]

    kt = r.get("kafka_throughput") or {}
    lines += ["## 2. Through Kafka", ""]
    if "backlog" in kt:
        b = kt["backlog"]
        lines += [
            f"A backlog of {b['positions']:,} fleet-200 positions ({b['messages']:,} messages, "
            f"produced in {b['produce_s']} s) in {kt['partitions']} partitions on the KRaft "
            "broker from `scripts/kafka`, drained by fresh worker processes (`broker worker`); "
            "committed offsets read once a second. Sustained rate between 10 % and 90 % of the "
            "backlog, time counted from starting the processes.",
            "",
            "| workers | sustained positions/s | ready after s | drained in s |",
            "|---:|---:|---:|---:|",
        ]
        for n in (1, 2):
            x = kt.get(f"workers_{n}") or {}
            if "backlog_positions" in x:
                lines.append(f"| {n} | {_fmt(x.get('sustained_positions_per_s'))} "
                             f"| {x['ready_after_s']} | {x['elapsed_s']} |")
        lines += [""]
        for n in (1, 2):
            x = kt.get(f"workers_{n}") or {}
            if "lag_over_time" in x:
                lines += [f"Lag over time, {n} worker(s) (positions): {_lag_line(x)}.", ""]
    else:
        lines += [f"Not run: {kt.get('skipped') or kt.get('error')}", ""]
    lines += _ingest_section(r)

    lines += ["## 3. End to end", ""]
    for mode, label in (("e2e_kafka", "Through Kafka"), ("e2e_inprocess", "In-process")):
        x = r.get(mode) or {}
        if "latency_all" not in x:
            lines += [f"{label}: not run ({x.get('skipped') or x.get('error')}).", ""]
            continue
        la = x["latency_all"]
        lines += [
            f"**{label}**: {x['units']} units at {x['rate_positions_per_s']:.0f} positions/s for "
            f"{x['duration_s']:.0f} s ({x['positions_sent']:,} positions); each position stamped "
            "with the wall clock as it is produced; latency = sink receive time - that stamp, "
            f"in an HdrHistogram (µs, 3 digits). Producer fell behind its schedule by at most "
            f"{x['producer_worst_lag_s']} s.",
            "",
            f"- latency, all deliveries ({la['n']}): p50 {la.get('p50_ms')} ms, p99 "
            f"{la.get('p99_ms')} ms, p99.9 {la.get('p99_9_ms')} ms, max {la.get('max_ms')} ms",
        ]
        ls = x.get("latency_steady") or {}
        if ls.get("n"):
            lines.append(
                f"- latency, steady (positions produced {x['warmup_s']:g} s or more after the "
                f"start; {ls['n']}): p50 {ls.get('p50_ms')} ms, p99 {ls.get('p99_ms')} ms, "
                f"p99.9 {ls.get('p99_9_ms')} ms, max {ls.get('max_ms')} ms"
            )
        for key, what in (("stages", "all"), ("stages_steady", "steady")):
            st = x.get(key) or {}
            if st:
                a, h = st["position_to_alert"], st["alert_to_webhook"]
                lines.append(
                    f"- stages, {what}: position produced -> alert produced by the worker p50 "
                    f"{a.get('p50_ms')} / p99 {a.get('p99_ms')} ms; alert produced -> webhook "
                    f"received (fan-out, delivery, HTTP) p50 {h.get('p50_ms')} / p99 "
                    f"{h.get('p99_ms')} ms"
                )
        for path, lp in x.get("latency_by_path", {}).items():
            lines.append(f"- {path} ({lp['n']}): p50 {lp.get('p50_ms')} ms, p99 "
                         f"{lp.get('p99_ms')} ms, p99.9 {lp.get('p99_9_ms')} ms")
        lines += [
            f"- alert events {x['alert_events']}; {x['engine_alert_versions']} alert versions, "
            f"{x['versions_delivered_to_a_partner']} delivered to at least one partner, "
            f"{x['versions_held_back_by_min_update_interval']} held back on purpose by every "
            "partner's minimum update interval",
            f"- deliveries queued {x['deliveries_queued']} {x['deliveries_queued_by_partner']}, "
            f"verified webhooks received {x['webhooks_received']}, **lost {x['lost']}**",
            "",
        ]

    lines += ["## 4. Lead time", "",
              "`broker evaluate <fixture> --json` figures (same code path), without and with the "
              "Charlotte Uptown road centrelines (`--roads fixtures/roads/charlotte-uptown."
              "geojson`). Lead time = seconds between a point of the unit's path first lying "
              "(continuously) inside a live zone and the unit reaching it.", ""]
    lines += _lead_table(r)
    if "fleet-200" not in (r.get("lead_time") or {}):
        lines += ["", "fleet-200 is evaluated in full mode only (28,785 points, ~2 min)."]
    lines += ["", NOTES, ""]
    return "\n".join(lines)


NOTES = """## 5. Profiles: what stands in the way, what would move it

Profiles are in `docs/profiles/` (`engine-fleet200.txt`: pyinstrument over the fleet-200
replay; `worker-pyspy.txt`: py-spy attached to one `broker worker` draining a backlog).
Regenerate with `.venv/bin/python -m bench.profile engine` and
`scripts/with-kafka .venv/bin/python -m bench.profile worker`.

**Engine in-process.** Per position the engine pays a pyproj call for the jump check, a
window search along the route (numpy on a few dozen vertices: call overhead, not arithmetic),
and, on about one fix in 35, a zone build (shapely buffers, union, make_valid/simplify, the
GeoJSON round trip through pyproj). Optimisations made here are listed in the git log with
before/after figures.

**One Faust worker.** Before (commit `2980299`, ~2,200-2,700 positions/s): the engine was under
10 % of the worker's samples; the rest was Faust and aiokafka per message - one changelog
record per position (the table write), each alert produced and awaited on its own, the asyncio
send path and Faust's stream machinery. What changed (`broker/streams/states.py`,
docs/streams.md; before/after figures in the git log): (1) decoded states cached per vehicle
and written to the table once per changed vehicle per flush (0.5 s or 5,000 messages) instead
of once per fix, with the order that keeps a `kill -9` lossless - alerts acked, then states
written and acked, then offsets acked; (2) alerts handed to the producer without awaiting each
one, awaited once per flush, and the flush running in the background on a snapshot;
(3) state writes straight to the producer in chunks, not through Faust's send buffer, where
hundreds of them queued ahead of the next alerts; (4) no Faust terminal spinner, which had
set the root logger to DEBUG whatever the log level, so aiokafka built a log record on every
fetch. Now (`worker-pyspy.txt`) `engine.step` is about a third of the main thread's samples;
the rest is Faust's per-event stream machinery (conductor, stream iterator, acks), the
consumer thread's fetches and the producer. What would move it further: vectorising zone
builds across the units of a batch (the engine's share), a C Kafka client (confluent-kafka)
in place of aiokafka's pure-Python protocol, and one worker per core with more partitions
(two workers on this 2-core machine share the cores with each other and the Kafka broker:
between -10 % and +25 % against one worker in our runs, depending on the load).

**Lead time, noisy-gps.** Not yet broken down point by point; the likely cause is the
fixture's 45 s dropout and the fix 300 m off the road: zones of a unit that is not reporting
go stale and are cancelled, so the points it drives through during the dropout get little or
no warning. If so, that is the engine's stale rule working as designed; moving it means a
longer stale timeout for units with a CAD route (keep projecting along the route), a trade
against false alerts (lead engineer's call).

**Noise.** This machine has 2 cores shared with other engineers' test runs and a Kafka broker;
wall-clock figures move with the load (top of page): the same worker drained 5,600-6,900
positions/s in runs at load 0.4-1.4, and the end-to-end p99 of the first seconds
doubled at load ~1.4. Compare runs by their load average.

**End to end.** Through Kafka, the worker now fans out and delivers itself (its partners file
points at the sink), as in production; the bench reads `alerts` only to keep the zero-loss
ledger. The stage split (alert record CreateTime, the worker's clock on the same machine) shows
where the time goes. Steady state (positions produced 5 s or more after the start) holds the
target (p99 32-76 ms in our runs, depending on the load). The *all deliveries* figure includes
the start, where every responding unit of the 500-unit source appears within a second and
creates its alert: ~100 zone builds, route projections, fan-outs and first HTTP deliveries at
once, which queue in the worker for up to a few hundred ms on this shared machine (the
in-process pipeline, with no Kafka broker and no second process competing for the cores,
absorbs the same burst). A worker taking over partitions after a rebalance meets the same
burst. What would move it: pre-projecting the routes of a partition's units at assignment, more
partitions and workers (the burst splits), and a per-batch zone build.
"""


if __name__ == "__main__":
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    (ROOT / "docs" / "benchmarks.md").write_text(render(results))
