"""``broker roads check FILE``: what a road network file gives the engine, and what is wrong.

A user's streets come as an OSM extract, GeoJSON from a GIS layer or a traffic model, or a SUMO
network. Loaded wrongly they fail quietly: a class the table does not know drops its lines, line
ends that stop short of a junction leave a graph the walks cannot cross. This command loads the
file exactly as ``--roads`` would (same classes, same snapping) and prints the report of
:class:`~broker.geo.roads.NetworkCheck`.

Exit codes: 0 the network is usable and nothing looks wrong; 1 usable, with warnings (near
misses, unknown classes, pieces cut off); 2 unusable (mostly disconnected, no drivable roads,
unreadable file or options). ``--json`` prints the same report as JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from broker.terminal import console, err_console

if TYPE_CHECKING:
    from broker.geo.roads import NetworkCheck, RoadClasses, RoadNetwork

roads_app = typer.Typer(
    name="roads",
    help="Road network files: check what loads and what is wrong (docs/roads.md).",
    no_args_is_help=True,
    add_completion=False,
)

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_UNUSABLE = 2

RoadClassesOption = Annotated[
    Path | None,
    typer.Option(
        "--road-classes",
        help="Road-class mapping (TOML): map classes the built-in table does not know, pick "
        "the class property, say what unknown classes do (docs/roads.md).",
    ),
]


MAX_SNAP_M = 50.0  # as the worker's ``roads_snap_m`` (broker.streams.settings)


def snap_metres(value: float | None) -> float | None:
    """``--snap-m`` as given, refused unless from 0 to 50 m (typer's own range check said
    "should be <= 50" of nan)."""
    if value is not None and not (math.isfinite(value) and 0.0 <= value <= MAX_SNAP_M):
        raise typer.BadParameter(f"{value} is no snapping distance: give metres from 0 to 50")
    return value


MAX_NEAR_MISS_M = 100.0


def near_miss_metres(value: float) -> float:
    """``--near-miss-m`` as given, refused unless from 0 to 100 m (typer's own range check said
    "should be <= 100" of nan, as it did of ``--snap-m nan``)."""
    if not (math.isfinite(value) and 0.0 <= value <= MAX_NEAR_MISS_M):
        raise typer.BadParameter(f"{value} is no distance: give metres from 0 to 100")
    return value


SnapOption = Annotated[
    float | None,
    typer.Option(
        "--snap-m",
        callback=snap_metres,
        help="Join line ends that stop this close (m, 0 to 50) to another line. Default: 1 for "
        "GeoJSON, 0 for OSM and SUMO.",
    ),
]
AllowDisconnectedOption = Annotated[
    bool,
    typer.Option(
        "--allow-disconnected",
        help="Use a network whose largest connected piece holds under half its km anyway "
        "(approaches never cross from one piece to another).",
    ),
]
OriginOption = Annotated[
    str | None,
    typer.Option(
        "--origin",
        help="LON,LAT where a SUMO net without geo-reference has its (0, 0).",
    ),
]


def parse_origin(text: str | None) -> tuple[float, float] | None:
    """``"LON,LAT"`` -> (lon, lat); raises ValueError saying what is wrong."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        lon, lat = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--origin: want LON,LAT in degrees, got {text!r}") from None
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"--origin: {text!r} is not a place on Earth (lon, lat order)")
    return lon, lat


def load_classes(path: Path | None) -> RoadClasses | None:
    """The road-class mapping to load with; raises RoadClassesError naming the file."""
    if path is None:
        return None
    from broker.geo.roads import load_road_classes

    return load_road_classes(path)


def _km(value: float) -> str:
    return f"{value:,.2f}"


def render(report: NetworkCheck, out: Console) -> None:
    """The report as rich tables: facts, classes, findings.

    Everything taken from the file or the report (paths, classes as written, reasons, problems,
    warnings) is escaped: rich reads ``[lon, lat]`` or ``roads[v2].geojson`` as markup tags and
    prints nothing in their place.
    """
    facts = Table(title=escape(f"{report.source} ({report.kind})"), show_header=False)
    facts.add_column("what")
    facts.add_column("value", justify="right")
    dropped = sum(report.dropped.values())
    facts.add_row("lines read / kept / left out", f"{report.lines_read} / {report.lines_kept} / "
                  f"{dropped}")  # fmt: skip
    facts.add_row("road km", _km(report.km_total))
    facts.add_row("nodes (junctions of 3+ roads / dead ends)",
                  f"{report.nodes} ({report.junctions} / {report.dead_ends})")  # fmt: skip
    facts.add_row("segments / directed edges", f"{report.segments} / {report.directed_edges}")
    facts.add_row("one-way share of the km", f"{report.oneway_share:.1%}")
    facts.add_row(
        "connected pieces (largest's share of the km)",
        f"{report.components} ({report.largest_share:.1%})",
    )
    facts.add_row("line ends joined by snapping (snap_m)",
                  f"{report.snap.joined} ({report.snap.snap_m:g} m)")  # fmt: skip
    facts.add_row(f"near misses (dead ends within {report.near_miss_m:g} m of a line)",
                  str(len(report.near_misses)))  # fmt: skip
    out.print(facts)
    _render_classes(report, out)
    _render_findings(report, out)


def _render_classes(report: NetworkCheck, out: Console) -> None:
    classes = Table(title="km per class")
    classes.add_column("class")
    classes.add_column("km", justify="right")
    for cls, km in report.km_by_class.items():
        classes.add_row(escape(cls), _km(km))
    out.print(classes)

    if report.mapped_classes or report.unknown_classes or report.not_for_cars:
        written = Table(title="classes as written in the file")
        written.add_column("written")
        written.add_column("read as")
        written.add_column("lines", justify="right")
        for raw, targets in report.mapped_classes.items():
            for cls, n in targets.items():
                written.add_row(escape(raw), escape(cls), str(n))
        for raw, n in sorted(report.not_for_cars.items()):
            written.add_row(escape(raw), "not for cars (left out)", str(n))
        fate = "unknown: unclassified" if report.unknown_policy == "keep" else "unknown: left out"
        for raw, n in sorted(report.unknown_classes.items()):
            written.add_row(escape(raw), f"[yellow]{fate}[/]", str(n))
        out.print(written)


def _render_findings(report: NetworkCheck, out: Console) -> None:
    if report.dropped:
        from broker.geo.roads.check import DROP_REASONS

        why = Table(title="lines left out")
        why.add_column("reason")
        why.add_column("lines", justify="right")
        for reason, n in sorted(report.dropped.items(), key=lambda item: -item[1]):
            why.add_row(escape(DROP_REASONS.get(reason, reason)), str(n))
        out.print(why)

    if report.near_misses:
        misses = Table(title="nearest misses (lon, lat: the dead end)")
        misses.add_column("lon", justify="right")
        misses.add_column("lat", justify="right")
        misses.add_column("gap m", justify="right")
        for miss in report.near_misses[:5]:
            misses.add_row(f"{miss.lon:.6f}", f"{miss.lat:.6f}", f"{miss.gap_m:.2f}")
        out.print(misses)

    for problem in report.problems:
        out.print(f"[bold red]unusable:[/] {escape(problem)}")
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
    if report.usable and not report.warnings:
        out.print("[green]ok:[/] usable, nothing looks wrong")


def exit_code(report: NetworkCheck) -> int:
    """0 usable and clean, 1 usable with warnings, 2 unusable."""
    if not report.usable:
        return EXIT_UNUSABLE
    return EXIT_WARNINGS if report.warnings else EXIT_OK


@roads_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Road network: .geojson, .osm.pbf/.osm, .net.xml")],
    road_classes: RoadClassesOption = None,
    snap_m: SnapOption = None,
    near_miss_m: Annotated[
        float,
        typer.Option(
            "--near-miss-m",
            callback=near_miss_metres,
            help="Report dead ends this close (m) to a line they do not join.",
        ),
    ] = 5.0,
    origin: OriginOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Load a road network as --roads would and report what was loaded and what is wrong.

    Exit 0: usable, nothing looks wrong; 1: usable with warnings; 2: unusable or unreadable.
    """
    from broker.geo.roads import RoadClassesError, RoadNetwork, RoadNetworkError

    try:
        classes = load_classes(road_classes)
        net: RoadNetwork = RoadNetwork.load(
            path, classes=classes, snap_m=snap_m, origin=parse_origin(origin),
            allow_unusable=True, log_warnings=False,
        )  # fmt: skip
    except (RoadClassesError, RoadNetworkError, ValueError) as err:
        if as_json:
            console.print_json(json.dumps({"source": str(path), "usable": False,
                                           "problems": [str(err)]}))  # fmt: skip
        else:
            err_console.print(f"[bold red]unusable:[/] {escape(str(err))}")
        raise typer.Exit(EXIT_UNUSABLE) from err
    report = net.check_with(near_miss_m)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        render(report, console)
    raise typer.Exit(exit_code(report))
