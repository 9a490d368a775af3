"""``broker simulate``: run a SUMO scenario through the engine and score it driver by driver.

``simulate`` is a plain typer command function; ``broker/cli/__init__.py`` registers it with
``app.command()(simulate)``. It also runs on its own: ``python -m broker.simulate.cli grid``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, get_args

import msgspec
import msgspec.inspect as mi
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from broker.ingest_forms import Form
from broker.settings import EngineConfig, respell
from broker.simulate import report
from broker.simulate.isolated import run_isolated
from broker.simulate.network import ScenarioError, scenario_names
from broker.simulate.options import OptionError, RunOptions, parse_dropout
from broker.simulate.run import RunResult
from broker.terminal import err_console, fail
from broker.validation import did_you_mean, explain, locate, type_at

console = Console(width=max(Console().width, 180))  # the table is wide


# RunOptions' fields as this command's options (OptionError.said)
OPTIONS = {"units": "--vehicles", "max_s": "--max-s", "seed": "--seed",
           "route_lead_s": "--route-lead-s", "dropout_s": "--dropout", "traffic": "--traffic",
           "demand": "--demand"}


def result_json(result: RunResult, wall_s: float | None = None) -> dict[str, Any]:
    """Everything worth keeping of a run, as plain JSON data."""
    o = result.options
    main = next(iter(result.events))
    return {
        "scenario": result.built.scenario.name,
        "title": result.built.scenario.title,
        "seed": o.seed,
        "units": o.units,
        "traffic": o.traffic,
        "demand": o.demand or result.built.scenario.traffic.demand,
        "held_out": result.built.scenario.held_out,
        "roads": o.roads,
        "form": o.form,
        "route_lead_s": o.route_lead_s,
        "dropout_s": list(o.dropout_s),
        "max_s": o.max_s,
        "engine": {
            "lookahead_s": o.cfg.lookahead_s,
            "approach_s": o.cfg.approach_s,
            "on_scene_upstream_s": o.cfg.on_scene_upstream_s,
        },
        "engine_set": engine_overrides(o.cfg),
        "simulated_s": result.sim_end_s,
        "wall_s": None if wall_s is None else round(wall_s, 2),
        "civilians": result.civilians,
        "rejections": result.rejections,
        "abandoned_units": result.meta.get("abandoned", []),
        "methods": {name: report.method_json(m) for name, m in result.figures.items()},
        "targets": {
            name: report.targets(result.figures, name)
            for name in report.scored_methods(result.figures)
        },
        "main_method": main,
    }


def engine_overrides(cfg: EngineConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that differ from the simulator's default engine, as JSON data:
    what ``--set`` / ``--lookahead-s`` / ``--approach-s`` changed, so a result says which
    engine it measured (its ``engine`` block names three settings only)."""
    base = msgspec.to_builtins(EngineConfig(warning_segments=True))
    mine = msgspec.to_builtins(cfg)
    return {k: v for k, v in mine.items() if base.get(k) != v}


def engine_config(
    lookahead_s: float | None, approach_s: float | None, sets: list[str]
) -> EngineConfig:
    """The run's engine: the options and ``--set FIELD=VALUE`` (exit 2 naming a bad one);
    ``sweep matrix --set`` reads its variant with it too."""
    cfg = EngineConfig(warning_segments=True)  # the heading-aware receiver scores them
    for option, name, seconds in (("--lookahead-s", "lookahead_s", lookahead_s),
                                  ("--approach-s", "approach_s", approach_s)):
        if seconds is not None:
            try:
                cfg = msgspec.structs.replace(cfg, **{name: seconds})
            except ValueError as err:
                raise fail(f"{option} {seconds}: {err}") from None
    known = [f.name for f in msgspec.structs.fields(EngineConfig)]
    # the declared types (type_at drops a union's None, which respell reads)
    field_types = {f.name: f.type for f in mi.type_info(EngineConfig).fields}  # type: ignore[attr-defined]
    for item in sets:
        field, sep, value = item.partition("=")
        field = field.strip()
        if not sep or not field:
            raise fail(f"--set {item!r}: want FIELD=VALUE (e.g. lookahead_s=60)")
        if field not in known:
            raise fail(f"--set {item!r}: no engine setting {field!r}"
                        f"{did_you_mean([field], known, otherwise=' (see docs/settings.md)')}")
        tp = type_at(EngineConfig, (field,))
        given: Any = value.strip()
        if isinstance(tp, mi.TupleType):  # "w,s,e,n" -> a list, as BROKER_ENGINE_* reads it
            given = [part.strip() for part in given.split(",")]
        else:  # none, yes/off ... as BROKER_ENGINE_* reads them (=none was "want a number")
            given = respell(given, field_types[field])
        try:
            cfg = msgspec.convert(msgspec.structs.asdict(cfg) | {field: given},
                                  EngineConfig, strict=False)
        except msgspec.ValidationError as err:
            raise fail(f"--set {item!r}: {explain(locate(err)[1], tp)}") from None
        except ValueError as err:
            raise fail(f"--set {item!r}: {err}") from None
    return cfg


def simulate(
    scenario: Annotated[
        str,
        typer.Argument(
            help=f"A scenario ({', '.join(scenario_names())}) or a SUMO net / OSM file."
        ),
    ] = "grid",
    seed: Annotated[int, typer.Option(help="Seed of traffic, dispatch and GPS noise.")] = 1,
    vehicles: Annotated[int, typer.Option("--vehicles", "-n", help="Emergency units.")] = 1,
    traffic: Annotated[str, typer.Option(help="Background traffic: light or heavy.")] = "light",
    demand: Annotated[
        str | None,
        typer.Option(help="random (uniform random trips), counts (routes sampled to "
                     "plausible counts by road class) or recorded (the network's own "
                     "calibrated trips, where its recipe names them); default: the "
                     "scenario's own."),
    ] = None,
    roads: Annotated[
        str,
        typer.Option(
            help="Road network for the engine: auto (the scenario's own), none, or a file."
        ),
    ] = "auto",
    lookahead_s: Annotated[
        float | None, typer.Option(help="Override the engine's lookahead.")
    ] = None,
    approach_s: Annotated[float | None, typer.Option(help="Override the approach seconds.")] = None,
    max_s: Annotated[float, typer.Option(help="Simulated seconds at most.")] = 1500.0,
    form: Annotated[
        str,
        typer.Option(help="What the units send: combined (status in each fix), split (fixes + "
                     "cad.status) or traccar (Traccar JSON + cad.status); docs/ingest.md."),
    ] = "combined",
    out: Annotated[
        Path | None, typer.Option(help="Write result JSON and map picture here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    route_lead_s: Annotated[
        float, typer.Option(help="Send each unit's CAD route this many seconds before its first "
                            "fix (real CAD: at dispatch, ~30 s before); 0: with the first fix.")
    ] = 0.0,
    dropout: Annotated[
        str, typer.Option(help="AFTER,LENGTH seconds: withhold every unit's fixes for LENGTH s "
                          "from AFTER s after its first fix (a tunnel); empty: none.")
    ] = "",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="FIELD=VALUE of the engine (repeatable).")
    ] = None,
    cache_dir: Annotated[Path, typer.Option(help="Built networks and trips.")] = Path(
        ".cache/simulate"
    ),
) -> None:
    """Simulate traffic with SUMO, drive emergency units through the engine, score the zones."""
    cfg = engine_config(lookahead_s, approach_s, set_ or [])
    if form not in get_args(Form):
        raise fail(f"--form {form!r}: want one of {', '.join(get_args(Form))}")
    try:  # the run's options, checked as RunOptions checks them, in this command's terms
        opts = RunOptions(
            scenario=scenario, seed=seed, units=vehicles, traffic=traffic, demand=demand,
            roads=None if roads == "none" else roads, max_s=max_s, cache_dir=cache_dir, cfg=cfg,
            form=form,  # type: ignore[arg-type]  # checked above
            route_lead_s=route_lead_s, dropout_s=parse_dropout(dropout),
        )  # fmt: skip
    except OptionError as err:
        raise fail(err.said(OPTIONS)) from None
    for option, folder in (("--out", out), ("--cache-dir", cache_dir)):
        try:  # before the run: --out was a traceback after it, --cache-dir a bare OSError
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise fail(f"{option} {folder}: cannot create it ({err.strerror or err}): give a "
                       "directory that can be written") from None
    from broker.geo.roads import RoadNetworkError  # --roads FILE: the run loads it

    started = time.perf_counter()
    try:
        with Progress(
            TextColumn("[bold]SUMO[/] {task.description}"), BarColumn(),
            TextColumn("{task.completed:.0f} s"), TimeElapsedColumn(),
            console=err_console, transient=True, disable=as_json,
        ) as bar:  # fmt: skip
            task = bar.add_task(scenario, total=max_s)
            result = run_isolated(opts, progress=lambda t, total: bar.update(task, completed=t))
    except (ScenarioError, FileNotFoundError, ValueError, RoadNetworkError) as exc:
        raise fail(str(exc)) from exc
    if result is None:
        raise fail(  # the run failed (README: exit codes)
            f"SUMO crashed on this run ({scenario}, seed {seed}): libsumo 1.28 segfaults on a "
            "few runs, the same way each time (docs/simulation.md, SUMO crashes); another "
            "--seed runs.", code=1,
        )
    wall = time.perf_counter() - started
    doc = result_json(result, wall)
    if out is not None:
        from broker.simulate.picture import draw_map

        out.mkdir(parents=True, exist_ok=True)
        stem = f"{doc['scenario']}-{traffic}-{vehicles}u-s{seed}"
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=2))
        draw_map(result, doc["main_method"], out / f"{stem}.png")
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    title = (
        f"{doc['title']}: {vehicles} unit(s), {traffic} traffic, seed {seed} - {doc['civilians']}"
        f" civilians, {doc['simulated_s']:.0f} s simulated in {wall:.1f} s"
    )
    console.print(report.figures_table(result.figures, title))
    for name, t in doc["targets"].items():
        marks = ", ".join(
            f"{k} {'ok' if v['holds'] else 'MISSED'}" for k, v in t.items() if isinstance(v, dict)
        )
        console.print(f"targets {name}: {marks}")
    if out is not None:
        console.print(f"wrote {out}/")


def main() -> None:  # pragma: no cover - console entry
    typer.run(simulate)


if __name__ == "__main__":  # pragma: no cover
    main()
