"""Run every scenario and the lookahead / approach trade-off; write docs tables and the plot.

``python -m broker.simulate.sweep matrix``   -> out/simulate/matrix.json + markdown table
``python -m broker.simulate.sweep tradeoff`` -> docs/img/tradeoff.png + out/simulate/tradeoff.json

Scenarios whose recipe says ``held_out = true`` are a check of generalisation (issue 15): the
matrix runs them but reports them apart (their own markdown section and summary line,
``held_out`` in each JSON row) and the tuning summary never counts them; the trade-off refuses
them.

The trade-off feeds the same SUMO traffic through one engine per (lookahead_s, approach_s)
pair (``RunOptions.sweep``), so every point of the plot is scored on identical drivers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import typer

from broker.settings import EngineConfig
from broker.simulate import report, scorer
from broker.simulate.cli import engine_config, engine_overrides
from broker.simulate.isolated import run_isolated
from broker.simulate.network import load_scenario, scenario_names
from broker.simulate.options import OptionError, RunOptions, parse_dropout
from broker.simulate.run import RunResult

app = typer.Typer(add_completion=False, no_args_is_help=True)

# RunOptions' fields as `matrix` options (OptionError)
MATRIX_OPTIONS = {"units": "--units", "seed": "--seed", "route_lead_s": "--route-lead-s",
                  "dropout_s": "--dropout"}
LOOKAHEADS_S = (20.0, 30.0, 45.0, 60.0, 90.0)
APPROACHES_S = (0.0, 10.0, 20.0, 30.0)


@app.command()
def matrix(
    out: Path = Path("out/simulate"),
    seed: int = 1,
    seeds: int = 5,
    scenarios: str = ",".join(scenario_names()),
    units_: str = typer.Option("1,3", "--units", help="Unit counts, comma-separated."),
    levels: str = typer.Option("light,heavy", help="Traffic levels, comma-separated."),
    demand: str | None = typer.Option(
        None, help="random, counts or recorded for every scenario (default: each recipe's own)"
    ),
    set_: list[str] = typer.Option(  # noqa: B008  (typer's way of declaring a list option)
        [], "--set", help="FIELD=VALUE of the engine: also score that variant, with roads "
        "('zones+roads (set)') and without ('zones (set)'), on the same traffic",
    ),
    route_lead_s: float = typer.Option(
        0.0, help="CAD routes sent this many seconds before the units' first fixes (dispatch)"
    ),
    dropout: str = typer.Option(
        "", help="AFTER,LENGTH seconds: the units' fixes withheld (a tunnel); empty: none"
    ),
) -> None:
    """Every scenario x {1, 3 units} x {light, heavy}, ``seeds`` seeds pooled: JSON + markdown."""
    try:
        unit_counts = [int(u) for u in units_.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"{units_!r}: want unit counts, e.g. 1,3", param_hint="--units"
        ) from None
    try:  # before the first run, as RunOptions checks them: never run as no dropout / no lead
        dropout_s = parse_dropout(dropout)
        for units in unit_counts:  # ...and the first and last seed (not only after a run)
            for s in {seed, seed + max(seeds, 1) - 1}:
                RunOptions(units=units, route_lead_s=route_lead_s, dropout_s=dropout_s, seed=s)
    except OptionError as err:
        raise typer.BadParameter(
            f"{err.value}: {err.want}", param_hint=MATRIX_OPTIONS.get(err.field, err.field)
        ) from None
    variant = _variant(set_)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    lines: dict[bool, list[str]] = {False: [report.MARKDOWN_HEAD], True: [report.MARKDOWN_HEAD]}
    for name in scenarios.split(","):
        held_out = load_scenario(name).held_out
        for units in unit_counts:
            for level in levels.split(","):
                t0 = time.perf_counter()
                done = {
                    s: isolated(RunOptions(
                        scenario=name, seed=s, units=units, traffic=level, demand=demand,
                        route_lead_s=route_lead_s, dropout_s=dropout_s,
                        variants=(("zones+roads (set)", variant),) if variant else (),
                        variants_without_roads=(("zones (set)", variant),) if variant else (),
                    ))
                    for s in range(seed, seed + seeds)
                }
                wall = time.perf_counter() - t0
                runs = [r for r in done.values() if r is not None]
                crashed = sorted(s for s, r in done.items() if r is None)
                if not runs:
                    typer.echo(f"{name} {units}u {level}: SUMO crashed on every seed", err=True)
                    continue
                figures = {k: scorer.pool([r.figures[k] for r in runs]) for k in runs[0].figures}
                lim = figures[report.LIMIT]
                label = f"{name} {units}u {level}"
                if crashed:
                    label += f" (seeds {', '.join(map(str, crashed))} crashed)"
                for method, m in figures.items():
                    lines[held_out].append(report.markdown_row(f"{label} · {method}", m, lim))
                tg = {k: report.targets(figures, k) for k in report.scored_methods(figures)}
                rows.append({
                    "scenario": name, "units": units, "traffic": level, "seeds": seeds,
                    "held_out": held_out, "demand": demand or load_scenario(name).traffic.demand,
                    # what this matrix ran: the "(set)" methods' settings, the CAD route lead
                    # and the dropout (a row said none of them)
                    "set": engine_overrides(variant) if variant else {},
                    "route_lead_s": route_lead_s, "dropout_s": list(dropout_s),
                    "wall_s": round(wall, 1), "civilians": sum(r.civilians for r in runs),
                    "abandoned": sum(len(r.meta.get("abandoned", [])) for r in runs),
                    "crashed_seeds": crashed,
                    "methods": {k: report.method_json(m) for k, m in figures.items()},
                    "targets": tg,
                })  # fmt: skip
                held = {
                    m: {k: v["holds"] for k, v in tg.get(m, {}).items() if k != "all_hold"}
                    for m in ("zones+roads", f"zones+roads{scorer.HEADING}")
                }
                typer.echo(f"{label}: {wall:.1f} s wall, targets: {held}")
                # after every row: a crash (libsumo can segfault) keeps the rows done so far
                (out / "matrix.json").write_text(json.dumps(rows, indent=1))
    text = []
    for held_out, title in ((False, "Tuning scenarios"), (True, "Held out (never tuned on)")):
        found = report.summary(rows, held_out=held_out)
        if found["rows"]:
            text += [f"## {title}", "", *lines[held_out], "", report.summary_line(found), ""]
            typer.echo(report.summary_line(found))
    (out / "matrix.md").write_text("\n".join(text))
    typer.echo(f"wrote {out}/matrix.json and matrix.md")


def isolated(opts: RunOptions) -> RunResult | None:
    """One run of a sweep in a child process (``broker.simulate.isolated``); a run SUMO
    crashed is said on stderr and left out (None)."""
    got = run_isolated(opts)
    if got is None:
        typer.echo(
            f"{opts.scenario} {opts.units}u {opts.traffic} seed {opts.seed}: SUMO crashed; "
            "left out", err=True,
        )
    return got


def tuning_scenarios(names: list[str]) -> list[str]:
    """``names`` if none is held out; a held-out scenario must never shape a default."""
    held = [n for n in names if load_scenario(n).held_out]
    if held:
        raise typer.BadParameter(f"{', '.join(held)}: held out of tuning (recipe held_out)")
    return names


def _variant(settings: list[str]) -> EngineConfig | None:
    """The run's engine configuration (warning segments on, for the heading-aware receiver)
    with ``FIELD=VALUE`` overrides (None: no overrides), read as ``broker simulate --set``
    reads them: a bad one exits 2 naming it before any run, a tuple field takes commas.
    (Its own reading raised a traceback for an item without ``=`` and could not set a
    tuple field, ``service_area=w,s,e,n``, at all.)"""
    if not settings:
        return None
    return engine_config(None, None, settings)


def _point(r: Any, name: str) -> dict[str, float]:
    m, lim, circ = r.figures[name], r.figures[report.LIMIT], r.figures[report.CIRCLE]
    share = m.affected.warned_15 / lim.affected.warned_15 if lim.affected.warned_15 else math.nan
    return {
        "median_lead_s": m.affected.median_lead_s,
        "share15_vs_limit": share,
        "bystander_s": m.bystander_vehicle_s,
        "circle_bystander_s": circ.bystander_vehicle_s,
    }


@app.command()
def tradeoff(
    out: Path = Path("out/simulate"),
    plot: Path = Path("docs/img/tradeoff.png"),
    seed: int = 1,
    scenarios: str = "grid,helsinki,braunschweig",
) -> None:
    """Lookahead x approach seconds against lead and bystanders, summed over scenarios."""
    try:  # before the first run (a traceback after it until 2026-12-08)
        RunOptions(seed=seed)
    except OptionError as err:
        raise typer.BadParameter(f"{err.value}: {err.want}", param_hint="--seed") from None
    grid = tuple((la, ap) for la in LOOKAHEADS_S for ap in APPROACHES_S)
    points: dict[str, dict[str, list[float]]] = {}
    for name in tuning_scenarios(scenarios.split(",")):
        for level in ("light", "heavy"):
            r = isolated(RunOptions(scenario=name, seed=seed, units=3, traffic=level, sweep=grid))
            if r is None:
                continue  # SUMO crashed on this run: said on stderr, no point from it
            for la, ap in grid:  # one point per run and variant
                key = f"la{la:g}-ap{ap:g}"
                p = _point(r, key)
                acc = points.setdefault(key, {k: [] for k in p})
                for k, v in p.items():
                    acc[k].append(v)
            typer.echo(f"{name} {level}: done")
    summary = {
        key: {
            "median_lead_s": float(_nanmean(v["median_lead_s"])),
            "share15_vs_limit": float(_nanmean(v["share15_vs_limit"])),
            # bystander vehicle-seconds relative to the 300 m circle's, over all runs
            "bystanders_vs_circle": sum(v["bystander_s"]) / max(sum(v["circle_bystander_s"]), 1),
        }
        for key, v in points.items()
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tradeoff.json").write_text(json.dumps(summary, indent=1))
    draw_tradeoff(summary, plot)
    typer.echo(f"wrote {plot} and {out}/tradeoff.json")


def _nanmean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def draw_tradeoff(summary: dict[str, dict[str, float]], path: Path) -> Path:
    """Three panels against lookahead seconds, one line per approach seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
    panels = (
        ("share15_vs_limit", "share warned >= 15 s / limit's", 0.95),
        ("median_lead_s", "median lead (s)", 30.0),
        ("bystanders_vs_circle", "bystander veh·s / 300 m circle's", 1.0),
    )
    for ax, (key, label, target) in zip(axes, panels, strict=True):
        for ap in APPROACHES_S:
            ys = [summary[f"la{la:g}-ap{ap:g}"][key] for la in LOOKAHEADS_S]
            ax.plot(LOOKAHEADS_S, ys, marker="o", label=f"approach {ap:g} s")
        ax.axhline(target, color="k", ls="--", lw=0.8)
        ax.set_xlabel("lookahead (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Trade-off on simulated traffic (3 units, light + heavy, dashed = target)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":  # pragma: no cover
    app()
