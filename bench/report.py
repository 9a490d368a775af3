"""docs/benchmarks.md from bench/results.json: every figure with its unit, target and verdict.

Pure rendering (results dict -> Markdown text), so the note can be regenerated from a saved
results.json: ``.venv/bin/python -m bench.report`` rewrites docs/benchmarks.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT

# the narrative of section 5 (what changed, what was tried and measured): prose, kept as markdown
NOTES = Path(__file__).with_name("notes.md")


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


INPUTS = ("fleet-200", "generated-200", "generated-2000", "generated-10000")


def ratio_figures(r: dict[str, Any]) -> list[Figure]:
    """Issue 16's targets: ratios of this tree to today's code (the base), from one run."""
    out: list[Figure] = []
    fl = _get(r, "engine_fleets", "by_input") or {}
    for name in INPUTS:
        ratio = _get(fl, name, "ratio", "positions_per_s_cpu")
        out.append(Figure(f"engine in process, {name}: positions/s (CPU) vs base", ratio, "x",
                          ">= 3", _check(ratio, lambda v: v >= 3)))
    flat = _get(r, "engine_fleets", "flatness_10000_vs_200", "head")
    out.append(Figure("engine in process, 10,000 units vs 200 (positions/s)", flat, "x",
                      ">= 0.8", _check(flat, lambda v: v >= 0.8)))
    for name in INPUTS:
        ratio = _get(fl, name, "ratio", "zone_p99_us")
        out.append(Figure(f"zone build p99, {name}, vs base", ratio, "x", "<= 0.33",
                          _check(ratio, lambda v: v <= 1 / 3)))
    rss = _get(fl, "generated-10000", "head", "rss_mb_states")
    out.append(Figure("RSS of the states of 10,000 units", rss, "MiB", "<= 100",
                      _check(rss, lambda v: v <= 100)))
    worker = _get(r, "kafka_throughput", "ratio_1_worker")
    out.append(Figure("one worker on Kafka vs base (sustained positions/s)", worker, "x",
                      ">= 1.5", _check(worker, lambda v: v >= 1.5)))
    cpu = _get(r, "kafka_throughput", "ratio_1_worker_cpu")
    out.append(Figure("one worker on Kafka vs base (CPU per position, base / head)", cpu, "x",
                      ">= 1.5", _check(cpu, lambda v: v >= 1.5)))
    for label in ("head", "base"):
        x = _get(r, "e2e_kafka", label) or {}
        burst = burst_ratio(x)
        out.append(Figure(f"end to end through Kafka ({label}): p99 with the start burst / "
                          "steady p99", burst, "x", "<= 1.5" if label == "head" else "(base)",
                          _check(burst, lambda v: v <= 1.5) if label == "head" else None))
    warm = _get(r, "e2e_kafka", "head_warm")
    if warm:  # runs before 2026-12-06 (night) have no warm runs: no row rather than an empty one
        burst = burst_ratio(warm)
        out.append(Figure(f"end to end through Kafka (head, the burst after "
                          f"{warm.get('lead_in_s', 0):g} s of patrol traffic): p99 with the "
                          "burst / steady p99", burst, "x", "<= 1.5",
                          _check(burst, lambda v: v <= 1.5)))
    return out


def burst_ratio(x: dict[str, Any]) -> float | None:
    """p99 with the start burst / steady p99 of one end-to-end run (None: not measured)."""
    every, steady = _get(x, "latency_all", "p99_ms"), _get(x, "latency_steady", "p99_ms")
    return round(every / steady, 2) if every and steady else None


def e2e_brief(x: dict[str, Any]) -> dict[str, Any]:
    """One end-to-end run in a line: p99 with the burst, steady p99, their ratio, lost."""
    return {"p99_all_ms": _get(x, "latency_all", "p99_ms"),
            "p99_steady_ms": _get(x, "latency_steady", "p99_ms"),
            "burst_ratio": burst_ratio(x), "lost": x.get("lost")}


def figures(r: dict[str, Any]) -> list[Figure]:
    """The design's figures (design.md "Figures it is built for") against this run."""
    out: list[Figure] = []
    eng = _get(r, "engine_fleets", "by_input", "fleet-200", "head", "positions_per_s_cpu")
    out.append(Figure("engine in-process, fleet-200, decode+step+tick, one core (CPU time)",
                      eng, "positions/s", ">= 20,000", _check(eng, lambda v: v >= 20_000)))
    p99 = _get(r, "engine_fleets", "by_input", "fleet-200", "head", "zone_p99_us")
    out.append(Figure("zone build p99, fleet-200", p99, "µs", "<= 1,000",
                      _check(p99, lambda v: v <= 1000)))
    rss = _get(r, "engine_fleets", "by_input", "generated-10000", "head", "rss_mb_end")
    out.append(Figure("RSS with 10,000 tracked units (total)", rss, "MiB", "<= 300",
                      _check(rss, lambda v: v <= 300)))
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
        run = (_get(r, mode, "head") or {}) if mode == "e2e_kafka" else (r.get(mode) or {})
        lat = run.get("latency_all") or {}
        steady = run.get("latency_steady") or {}
        label = "through Kafka + worker" if mode == "e2e_kafka" else "in-process pipeline"
        if steady:
            warm = run.get("warmup_s", 5.0)
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
        lost = run.get("lost")
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


def _fmt_ratio(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


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


def _engine_section(r: dict[str, Any]) -> list[str]:
    fl = r.get("engine_fleets") or {}
    lines = ["## 1. Engine in process", ""]
    if "by_input" not in fl:
        return [*lines, f"Not run: {fl.get('error')}", ""]
    lines += [
        "Each input through the replay's loop (decode, `engine.step`, a tick per second of event "
        "time; runs of 1,024 messages through `Driver.handle_many` where the tree has it, and "
        "`drive.settle_gc()` at start where it has it, as `broker replay` does), one "
        "fresh interpreter per run (`bench/engine_run.py` with `PYTHONPATH` at the tree), the "
        "input streamed from a file (`bench/fleetgen.py`: `topic<TAB>json`). fleet-200 is the "
        "fixture (200 units, 67 responding along CAD routes, 10 min); `generated-N`: N units "
        "over one window, a third responding along a CAD route, a third responding without one "
        "(dead reckoning), a third not in emergency mode (patrols), on a 200 m street grid, "
        f"deterministic. Medians of {fl['repeats']} run(s) per tree"
        + (f" ({fl['big_repeats']} for 10,000 units)" if fl.get("big_repeats") else "")
        + (f" ({fl['small_repeats']} for generated-200, ~0.2 s of CPU a run)"
           if fl.get("small_repeats") else "")
        + "; positions/s and events/s per CPU second of the process; zone build = CPU time "
        "per zone (`warning_zone`, and `ZoneBatch.build` shared out over the zones it built); "
        "RSS of the states = RSS at the end minus RSS after the warm-up (states, memo, caches).",
        "",
        "| input | tree | positions | events (create/update/cancel) | positions/s | events/s "
        "| zone p50 µs | zone p99 µs | RSS states MiB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name in INPUTS:
        row = fl["by_input"].get(name)
        if not row:
            continue
        for label in ("base", "head"):
            x = row[label]
            a = x["actions"]
            lines.append(
                f"| {name} | {label} | {x['positions']:,} | {x['events']:,} "
                f"({a.get('create', 0):,}/{a.get('update', 0):,}/{a.get('cancel', 0):,}) "
                f"| {_fmt(x['positions_per_s_cpu'])} | {_fmt(x['events_per_s_cpu'])} "
                f"| {_fmt(x['zone_p50_us'])} | {_fmt(x['zone_p99_us'])} "
                f"| {_fmt(x['rss_mb_states'])} |"
            )
        rt = row["ratio"]
        lines.append(f"| {name} | head/base | | | **{_fmt_ratio(rt['positions_per_s_cpu'])}x** | "
                     f"| {_fmt_ratio(rt['zone_p50_us'])}x | **{_fmt_ratio(rt['zone_p99_us'])}x** "
                     "| |")
    flat = fl.get("flatness_10000_vs_200") or {}
    lines += ["", f"10,000 units vs 200 (positions/s): base {_fmt_ratio(flat.get('base'))}x, "
              f"head {_fmt_ratio(flat.get('head'))}x.", ""]
    return lines


def _kafka_section(r: dict[str, Any]) -> list[str]:
    kt = r.get("kafka_throughput") or {}
    lines = ["## 2. Through Kafka", ""]
    if "backlog" not in kt:
        return [*lines, f"Not run: {kt.get('skipped') or kt.get('error')}", ""]
    b = kt["backlog"]
    lines += [
        f"A backlog of {b['positions']:,} fleet-200 positions ({b['messages']:,} messages, "
        f"produced in {b['produce_s']} s) in {kt['partitions']} partitions on the KRaft "
        "broker from `scripts/kafka`, drained by fresh worker processes (`broker worker`; "
        "`base`: today's code, its own `PYTHONPATH`); the positions each worker has taken "
        "(its `broker_messages_in_total` on `/metrics`) read every 0.2 s, committed offsets "
        "once a second. Sustained rate = positions taken between 10 % and 90 % of the "
        "backlog, each crossing interpolated between two samples, time counted from starting "
        "the processes (until 2026-12-05 it was read from committed offsets, which move in "
        "steps of Faust's commit: up to +-20 % on one rate).",
        "",
        "| tree | workers | sustained positions/s | CPU µs per position | ready after s "
        "| drained in s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label, n in (("base_workers_1", "base", 1), ("workers_1", "head", 1),
                          ("workers_2", "head", 2)):
        x = kt.get(key) or {}
        if "backlog_positions" in x:
            lines.append(f"| {label} | {n} | {_fmt(x.get('sustained_positions_per_s'))} "
                         f"| {_fmt(x.get('cpu_us_per_position'))} "
                         f"| {x['ready_after_s']} | {x['elapsed_s']} |")
    runs = [f"{label} " + " / ".join(_fmt(x.get("sustained_positions_per_s"))
                                     for x in kt.get(key + "_runs") or [])
            for key, label in (("base_workers_1", "base"), ("workers_1", "head"))
            if kt.get(key + "_runs")]
    if runs:
        lines += ["", "Each run, one worker, in the order run (positions/s): "
                  + "; ".join(runs) + "."]
    lines += ["", f"One worker, head/base: **{_fmt_ratio(kt.get('ratio_1_worker'))}x** "
              "(sustained positions/s); base/head CPU per position: "
              f"**{_fmt_ratio(kt.get('ratio_1_worker_cpu'))}x** (medians of the interleaved "
              "runs; CPU time from ready to drained, which the machine's load moves far less "
              "than the rate).", ""]
    for key, label in (("base_workers_1", "base, 1 worker"), ("workers_1", "head, 1 worker"),
                       ("workers_2", "head, 2 workers")):
        x = kt.get(key) or {}
        if "lag_over_time" in x:
            lines += [f"Lag over time, {label} (positions): {_lag_line(x)}.", ""]
    return lines


def _e2e_lines(label: str, x: dict[str, Any]) -> list[str]:
    la = x["latency_all"]
    lines = [
        f"**{label}**: {x['units']} units at {x['rate_positions_per_s']:.0f} positions/s for "
        f"{x['duration_s']:.0f} s ({x['positions_sent']:,} positions); each position stamped "
        "with the wall clock as it is produced; latency = sink receive time - that stamp, "
        f"in an HdrHistogram (µs, 3 digits). Producer fell behind its schedule by at most "
        f"{x['producer_worst_lag_s']} s.",
        "",
        f"- latency, all deliveries ({la['n']}, with the start burst): p50 {la.get('p50_ms')} ms, "
        f"p99 {la.get('p99_ms')} ms, p99.9 {la.get('p99_9_ms')} ms, max {la.get('max_ms')} ms",
    ]
    ls = x.get("latency_steady") or {}
    if ls.get("n"):
        lines.append(
            f"- latency, steady (positions produced {x['warmup_s']:g} s or more after the "
            f"start; {ls['n']}): p50 {ls.get('p50_ms')} ms, p99 {ls.get('p99_ms')} ms, "
            f"p99.9 {ls.get('p99_9_ms')} ms, max {ls.get('max_ms')} ms; p99 all / steady: "
            f"**{_fmt_ratio(burst_ratio(x))}x**"
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
    cm = x.get("latency_clock_made") or {}
    if cm.get("n"):
        lines.append(
            f"- not in the figures above, deliveries of events the engine's clock made (a held "
            f"dispatch alert at its due time, a dead-reckoning step; {cm['n']}): their stamp -> "
            f"received p50 {cm.get('p50_ms')} ms, p99 {cm.get('p99_ms')} ms (the tick's period "
            "bounds how late after its stamp such an event is made)"
        )
    lines += [
        f"- alert events {x['alert_events']}; {x['engine_alert_versions']} alert versions, "
        f"{x['versions_delivered_to_a_partner']} delivered to at least one partner, "
        f"{x['versions_held_back_by_min_update_interval']} held back on purpose by every "
        "partner's minimum update interval",
        f"- deliveries queued {x['deliveries_queued']} {x['deliveries_queued_by_partner']}, "
        f"verified webhooks received {x['webhooks_received']}, **lost {x['lost']}**",
        "",
    ]
    return lines


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
             "(`bench/ingest_bench.py`, docs/ingest.md). fixes/s between 10 % and 90 % of the "
             "backlog taken by the vehicle agent (its /metrics every 0.2 s), and fixes per CPU "
             "second of the worker process from ready to drained (the ratios are of the latter: "
             "the shared machine's load moves the wall clock more).", "",
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
        "`bench/results.json`; section 5, what was changed and measured along the way, comes "
        "from `bench/notes.md` (`.venv/bin/python -m bench.report` renders this page again). "
        "Benchmarks are not tests: nothing asserts a time in `make test`.",
        "",
        f"- command: `{r.get('command')}` ({r.get('mode')} mode, {r.get('total_s')} s)",
        f"- date: {r.get('date')}",
        f"- machine: {m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('ram_gb')} GiB RAM, "
        f"load average {m.get('load_avg_1m_at_start')} at start (shared with other engineers' "
        "test runs: wall-clock figures are noisy, CPU-time figures less so)",
        f"- Python {m.get('python')}; " + ", ".join(
            f"{k} {val}" for k, val in v.items() if k not in ("git_commit",)
        ) + f"; commit `{v.get('git_commit')}`",
        *[f"- re-run on their own: {', '.join(x['sections'])} ({x['date']}, load average "
          f"{x['load_avg_1m_at_start']} at start, commit `{x['commit']}`, {x['total_s']} s)"
          for x in r.get("reruns", [])],
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
    base = r.get("base") or {}
    ratios = ratio_figures(r)
    lines += [
        "## Against today's code (issue 16), in this run",
        "",
        f"Today's code is commit `{base.get('rev')}` (main when issue 16 branched), checked out "
        f"under `{base.get('tree')}` and run beside this tree in the same `make bench`, "
        "interleaved (engine: base, head, head, base, ...; worker: base, then head): only "
        "these ratios are comparable between machines.",
        "",
        "| figure | ratio or value | unit | target | verdict |",
        "|---|---:|---|---|---|",
    ]
    lines += [f"| {f.what} | {_fmt_ratio(f.value) if f.unit == 'x' else _fmt(f.value)} "
              f"| {f.unit} | {f.target} | {_verdict(f.holds)} |" for f in ratios]
    lines += [""]
    lines += _engine_section(r)
    lines += _kafka_section(r)
    lines += _ingest_section(r)

    lines += ["## 3. End to end", ""]
    ek = r.get("e2e_kafka") or {}
    warm = ek.get("head_warm")
    warm_label = (f"Through Kafka, head, the burst on a running pipeline "
                  f"({(warm or {}).get('lead_in_s', 0):g} s of patrol traffic first, no alerts)")
    for label, x, runs in (
            ("Through Kafka, head (this tree's worker)", ek.get("head"), "head_runs"),
            ("Through Kafka, base (today's worker)", ek.get("base"), None),
            *([(warm_label, warm, "head_warm_runs")] if warm else []),
            ("In-process, head", r.get("e2e_inprocess"), None)):
        if not x or "latency_all" not in x:
            why = (x or ek).get("skipped") or (x or ek).get("error") or "not run"
            lines += [f"{label}: {why}.", ""]
            continue
        lines += _e2e_lines(label, x)
        if runs and len(ek.get(runs) or []) > 1:
            cells = [f"{_fmt(b.get('p99_all_ms'))} / {_fmt(b.get('p99_steady_ms'))} ms "
                     f"({_fmt_ratio(b.get('burst_ratio'))}x)" for b in ek[runs]]
            lines += [f"These runs, one after the other (p99 with the burst / steady): "
                      f"{'; '.join(cells)}. The figures above are of the run with the median "
                      "ratio: one run's p99 with the burst rests on its dozen slowest "
                      "deliveries, nearly all of them in its first second.", ""]

    lines += ["## 4. Lead time", "",
              "`broker evaluate <fixture> --json` figures (same code path), without and with the "
              "Charlotte Uptown road centrelines (`--roads fixtures/roads/charlotte-uptown."
              "geojson`). Lead time = seconds between a point of the unit's path first lying "
              "(continuously) inside a live zone and the unit first reaching it; a fix counts "
              "as a point reached when it lies >= 15 m from the unit's last counted one "
              "(`broker.evaluate.NEW_POINT_M`: a unit standing on scene reaches nothing new; "
              "until 2026-12-05 each of its fixes counted, with a lead as long as it had stood "
              "there).", ""]
    lines += _lead_table(r)
    if "fleet-200" not in (r.get("lead_time") or {}):
        lines += ["", "fleet-200 is evaluated in full mode only (28,785 points, ~2 min)."]
    lines += ["", NOTES.read_text(), ""]
    return "\n".join(lines)





if __name__ == "__main__":
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    (ROOT / "docs" / "benchmarks.md").write_text(render(results))
