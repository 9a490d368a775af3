"""What the ``broker`` commands share: the error line and exit codes, and reading an incident
with its road network and agency file (``replay`` and ``evaluate``).

Exit codes: 0 success; 1 the run failed; 2 bad usage or unreadable input (the message says what
to fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from broker import codec
from broker.drive import ROUTES, settle_gc
from broker.model import Rejection, Route
from broker.replay import ReplayInputError, ReplayResult, load_messages, replay_in_process
from broker.roads_check import load_classes, parse_origin
from broker.settings import EngineConfig
from broker.terminal import err_console, fail, warn

if TYPE_CHECKING:
    from broker.agencies import Agencies
    from broker.evaluate import LeadTimeReport
    from broker.geo.roads import RoadNetwork

DEFAULT_INCIDENT = Path("fixtures/incidents/route-downtown")

RoadsOption = Annotated[
    Path | None,
    typer.Option(
        "--roads",
        help="Road network (.osm.pbf, .osm, GeoJSON centrelines or a SUMO .net.xml): zones "
        "cover the approaches. `broker roads check FILE` says what it holds.",
    ),
]


def load_roads(
    path: Path | None,
    road_classes: Path | None = None,
    snap_m: float | None = None,
    origin: str | None = None,
    allow_disconnected: bool = False,
) -> RoadNetwork | None:
    """Load a road network once, or explain why not (exit 2 naming the file); print the
    warnings of its check (unknown classes left out, near misses, pieces cut off)."""
    if path is None:
        return None
    from broker.geo.roads import RoadClassesError, RoadNetwork, RoadNetworkError

    try:
        net = RoadNetwork.load(
            path, classes=load_classes(road_classes), snap_m=snap_m,
            origin=parse_origin(origin), log_warnings=False, allow_unusable=allow_disconnected,
        )  # fmt: skip
    except (RoadNetworkError, RoadClassesError, ValueError) as err:
        raise fail(str(err)) from err
    for warning in (*net.check.problems, *net.check.warnings):
        warn(f"{path}: {warning}")
    return net


AgenciesOption = Annotated[
    Path | None,
    typer.Option(
        "--agencies",
        help="Agency file (units, AVL devices, lightbars; docs/ingest.md). Default: the "
        "incident directory's agencies.toml, if it has one. Needed for Traccar input.",
    ),
]


def read_messages(path: Path, cfg: EngineConfig) -> list[tuple[str, bytes]]:
    """The incident's messages (exit 2 naming what cannot be read), its CAD messages merged in
    with the future skew of ``cfg``, the config the replay judges them with."""
    try:
        return load_messages(path, max_future_skew_s=cfg.max_future_skew_s)
    except ReplayInputError as err:
        raise fail(str(err)) from err


def kafka_unreachable_at(bootstrap: str, timeout_s: float) -> typer.Exit:
    """Say that no Kafka broker answered at ``--kafka bootstrap`` within ``timeout_s`` and what
    to check; the Exit to raise (``EXIT_UNAVAILABLE``: an outage, not a setting to fix)."""
    from broker.streams.cli import EXIT_UNAVAILABLE

    return fail(
        f"--kafka {bootstrap}: could not reach a Kafka broker there "
        f"(tried {timeout_s:g} s): check the host and port, that Kafka is running and "
        f"listening on that address, and BROKER_KAFKA_SECURITY_PROTOCOL and its TLS/SASL "
        f"settings (docs/settings-env.md)",
        EXIT_UNAVAILABLE,
    )


def refuse_if_nothing_read(path: Path, result: ReplayResult) -> None:
    """Exit 2 when every message was refused: figures and a map of nothing would read as an
    incident's (a file of junk, Traccar devices the agency file does not know)."""
    read = result.positions_read + result.routes_read + result.statuses_read
    if read == len(result.rejections):
        why = ", ".join(f"{r} ({n})" for r, n in result.rejected_by_reason.items()) or "empty"
        raise fail(f"{path}: no message could be read ({read} read: {why})")


def load_agencies_for(
    path: Path | None, incident: Path, messages: list[tuple[str, bytes]]
) -> Agencies | None:
    """The agency file to replay with (exit 2 naming the file, the place and the value)."""
    from broker.agencies import AgencyFileError, load_agencies
    from broker.drive import TRACCAR

    given = path is not None
    if path is None and incident.is_dir() and (incident / "agencies.toml").is_file():
        path = incident / "agencies.toml"
    if path is None:
        if any(topic == TRACCAR for topic, _ in messages):
            raise fail(f"{incident}: Traccar positions need an agency file to map devices "
                        "to units: give --agencies (docs/ingest.md)")
        return None
    try:
        return load_agencies(path)
    except AgencyFileError as err:
        # the file's own error names it; say whether it was given or found beside the incident
        where = "--agencies" if given else "the incident directory's agencies.toml"
        raise fail(f"{where}: {err}") from err


def run_replay(
    messages: list[tuple[str, bytes]],
    cfg: EngineConfig,
    roads: RoadNetwork | None,
    *,
    progress: bool,
    agencies: Agencies | None = None,
) -> ReplayResult:
    """Replay with a progress bar when the input is long."""
    settle_gc()  # this process now keeps every unit's state (broker.drive)
    result = _replayed(messages, cfg, roads, progress=progress, agencies=agencies)
    if roads is not None:
        warn_if_elsewhere(roads, result)
    return result


def warn_if_elsewhere(roads: RoadNetwork, result: ReplayResult) -> None:
    """Warn, naming the file, when the road network's extent holds (almost) none of the
    incident's emergency fixes: a file written [lat, lon] loaded "ok" on the other side of
    the globe, and the zones came out smaller than with no roads at all, without a word."""
    fixes = ((lon, lat) for track in result.emergency_fixes.values() for _, lon, lat in track)
    placed = roads.placement(fixes)
    if placed.elsewhere():
        warn(placed.said(roads.source))


def _replayed(
    messages: list[tuple[str, bytes]],
    cfg: EngineConfig,
    roads: RoadNetwork | None,
    *,
    progress: bool,
    agencies: Agencies | None,
) -> ReplayResult:
    if not progress or len(messages) < 2000:
        return replay_in_process(messages, cfg=cfg, roads=roads, agencies=agencies)
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=len(messages))
        return replay_in_process(
            messages, cfg=cfg, roads=roads, on_message=lambda: bar.advance(task),
            agencies=agencies,
        )


def lead_time_of(result: ReplayResult, *, progress: bool) -> LeadTimeReport:
    """The lead-time and zone-cost figures of a replay, with a status line on stderr while
    they are computed: on a fleet they take longer than the replay itself (fleet-200: its bar
    done in ~4 s, then ~30 s of these), and the command said nothing meanwhile."""
    from broker.evaluate import evaluate_replay

    if not progress:
        return evaluate_replay(result)
    with err_console.status(f"lead time and zone cost of {len(result.events)} alert messages"):
        return evaluate_replay(result)


def routes_of(messages: list[tuple[str, bytes]]) -> list[Route]:
    """The CAD routes among the messages (the map and the player draw them)."""
    out = []
    for topic, raw in messages:
        if topic == ROUTES:
            msg = codec.decode_route(raw)
            if not isinstance(msg, Rejection):
                out.append(msg)
    return out
