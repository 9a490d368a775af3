"""``broker replay``: an incident in-process (alerts, summary, map; optionally delivered to the
partners or served in the console's incident player), or produced into Kafka; the rules of
which options go with which mode; and ``broker console-token``, the token its player takes."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from broker.cli.common import (
    DEFAULT_INCIDENT,
    AgenciesOption,
    RoadsOption,
    kafka_unreachable_at,
    lead_time_of,
    load_agencies_for,
    load_roads,
    read_messages,
    refuse_if_nothing_read,
    routes_of,
    run_replay,
)
from broker.replay import ReplayResult, write_alerts
from broker.roads_check import (
    AllowDisconnectedOption,
    OriginOption,
    RoadClassesOption,
    SnapOption,
)
from broker.settings import EngineConfig
from broker.terminal import console, err_console, fail, warn

if TYPE_CHECKING:
    from adapters.audit import JsonlAudit
    from adapters.config import PartnersConfig
    from broker.console.config import ConsoleConfig
    from broker.geo.roads import RoadNetwork

MAX_PORT = 65535
KAFKA_CONNECT_TIMEOUT_S = 30.0  # how long `replay --kafka` tries to reach a broker


def replay(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(help="Incident directory, positions .ndjson file, or .gpx track."),
    ] = DEFAULT_INCIDENT,
    out: Annotated[
        Path,
        typer.Option("--out", help="Where to write alerts.ndjson and map.png. Not with --kafka."),
    ] = Path("out"),
    roads: RoadsOption = None,
    road_classes: RoadClassesOption = None,
    snap_m: SnapOption = None,
    origin: OriginOption = None,
    allow_disconnected: AllowDisconnectedOption = False,
    agencies: AgenciesOption = None,
    kafka: Annotated[
        str | None,
        typer.Option("--kafka", help="Produce into Kafka at HOST:PORT instead of in-process."),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option("--speed", help="With --kafka: time scale of the recorded timing (2 = "
                     "twice as fast; default 1). Not with --max-speed."),
    ] = None,
    max_speed: Annotated[
        bool, typer.Option("--max-speed", help="With --kafka: send as fast as possible, "
                           "without waiting. Not with --speed.")
    ] = False,
    topic_prefix: Annotated[
        str | None,
        typer.Option(help="With --kafka: prefix of the topic names (env BROKER_TOPIC_PREFIX)."),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(help="With --kafka: partitions of topics it creates (env BROKER_PARTITIONS)."),
    ] = None,
    show: Annotated[
        int, typer.Option("--show", min=0,
                          help="Alert events to print (0: none). Not with --kafka.")
    ] = 12,
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver",
            help="Also deliver the alerts to the partners in --partners (push URLs, e.g. a "
            "running `broker sink`); writes audit.jsonl and delivery_dlq.jsonl to --out.",
        ),
    ] = False,
    partners: Annotated[
        Path,
        typer.Option("--partners", help="Partners file of --deliver and --serve (only with them)."),
    ] = Path("fixtures/partners.toml"),
    segments: Annotated[
        bool,
        typer.Option("--segments", help="Also build each alert's warning segments (as the "
                     "worker does when a partner takes them; always with --deliver)."),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Then open the operator console's incident player on a "
                     "local port (docs/console.md) until Ctrl-C."),
    ] = False,
    host: Annotated[
        str, typer.Option("--host", help="With --serve: address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="With --serve: port (0: any free port).")
    ] = 8765,
    tiles: Annotated[
        str | None,
        typer.Option("--tiles", help="With --serve: base-map tile URL template "
                     "(https://.../{z}/{x}/{y}.png; env BROKER_CONSOLE_TILES). None by default."),
    ] = None,
) -> None:
    """Replay a recorded incident in-process (no Kafka): alerts, summary, map picture.

    Writes alerts.ndjson and map.png to --out. With --kafka, produces the incident into Kafka
    instead, with the worker's Kafka settings (BROKER_KAFKA_SECURITY_PROTOCOL, SASL, TLS ...:
    docs/settings-env.md); with --deliver, also delivers the alerts to the configured partners.
    """
    _check_replay_mode(
        kafka is not None,
        kafka_only={"--speed": speed is not None, "--max-speed": max_speed,
                    "--topic-prefix": topic_prefix is not None,
                    "--partitions": partitions is not None},
        in_process_only={"--out": _given(ctx, "out"), "--roads": roads is not None,
                         "--road-classes": road_classes is not None,
                         "--snap-m": snap_m is not None, "--origin": origin is not None,
                         "--allow-disconnected": allow_disconnected,
                         "--agencies": agencies is not None, "--show": _given(ctx, "show"),
                         "--deliver": deliver, "--partners": _given(ctx, "partners"),
                         "--segments": segments, "--serve": serve, "--tiles": tiles is not None},
        needing=(
            ({"--host": _given(ctx, "host"), "--port": _given(ctx, "port"),
              "--tiles": tiles is not None}, serve,
             "only with --serve (they set up the incident player it opens after the replay; "
             "docs/console.md)"),
            ({"--road-classes": road_classes is not None, "--snap-m": snap_m is not None,
              "--origin": origin is not None, "--allow-disconnected": allow_disconnected},
             roads is not None,
             "only with --roads FILE (they say how to read that road network; docs/roads.md)"),
            ({"--partners": _given(ctx, "partners")}, deliver or serve,
             "only with --deliver or --serve (the partners the alerts are delivered to, or "
             "whose share the player shows)"),
        ),
    )  # fmt: skip
    if serve and not 0 <= port <= MAX_PORT:
        raise fail(f"--port {port}: want 0 (any free port) to {MAX_PORT}")
    console_config = _console_config(host, tiles) if serve else None  # before the replay
    partners_config = _partners_config(partners) if deliver or serve else None  # and this
    if kafka is None:
        _check_out(out, deliver)  # before the replay: a directory in a file's place was a
        # traceback after the whole run
    cfg = EngineConfig(warning_segments=segments or deliver)
    messages = read_messages(path, cfg)
    if kafka is not None:
        _replay_into_kafka(
            messages, kafka, speed=1.0 if speed is None else speed, max_speed=max_speed,
            topic_prefix=topic_prefix, partitions=partitions,
        )
        return
    units = load_agencies_for(agencies, path, messages)
    network = load_roads(roads, road_classes, snap_m, origin, allow_disconnected)
    result = run_replay(messages, cfg, network, progress=True, agencies=units)
    refuse_if_nothing_read(path, result)  # it wrote an empty map, exit 0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise fail(f"--out {out}: cannot create it ({err.strerror})") from err
    from broker.map_picture import draw_replay

    report = lead_time_of(result, progress=True)
    try:
        write_alerts(result.events, out / "alerts.ndjson")
        picture = draw_replay(result, routes_of(messages), out / "map.png",
                              title=f"replay of {path}", roads=network)
    except OSError as err:  # no rights, a full disk
        raise fail(f"--out {out}: cannot write {err.filename or 'in it'} "
                   f"({err.strerror or err})") from err
    _print_events(result, show)
    _print_summary(path, result, report.to_dict())
    console.print(f"wrote [bold]{out / 'alerts.ndjson'}[/] and [bold]{picture}[/]")
    lost = (_deliver(result, partners_config, out)
            if deliver and partners_config is not None else None)
    if console_config is not None and partners_config is not None:  # it shows what went where
        if lost is not None:
            warn(lost)
        _serve_player(path, messages, result, report.to_dict(), network, partners_config,
                      console_config, host=host, port=port)
    if lost is not None:
        raise fail(lost, code=1)


def _console_config(host: str, tiles: str | None) -> ConsoleConfig:
    """The player's console settings, checked before the replay runs (a non-loopback --host
    without BROKER_CONSOLE_TOKEN was refused only after the whole replay and its outputs)."""
    import os

    from broker.console.config import TILES_VAR, ConsoleConfigError, console_from_env

    env = dict(os.environ)
    if tiles is not None:
        env[TILES_VAR] = tiles
    try:
        config = console_from_env(env, host=host, allow_dev=True)
    except ConsoleConfigError as err:  # a --tiles given is named as such, not as the env var
        said = str(err) if tiles is None else str(err).replace(f"{TILES_VAR}=", "--tiles=", 1)
        raise fail(said) from err
    if config is None:
        raise fail(f"--host {host} is not loopback: set BROKER_CONSOLE_TOKEN (docs/console.md)")
    return config


OUT_FILES = ("alerts.ndjson", "map.png")
DELIVER_FILES = ("audit.jsonl", "delivery_dlq.jsonl")


def _check_out(out: Path, deliver: bool) -> None:
    """Exit 2 naming --out and the path if the files of the run cannot go there: --out is a
    file (say /dev/null), or one of the files it writes is a directory (an IsADirectoryError
    traceback, exit 1, after the whole replay)."""
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out}: not a directory (the replay writes "
                   f"{', '.join(OUT_FILES)} into it): give a directory")
    for name in OUT_FILES + (DELIVER_FILES if deliver else ()):
        if (out / name).is_dir():
            raise fail(f"--out {out}: {out / name} is a directory, where the replay writes "
                       "that file: remove it or give another --out")


def _partners_config(path: Path) -> PartnersConfig:
    """The partners file of --deliver and --serve, read before the replay (exit 2 naming it):
    a missing or broken one was refused only after the whole replay and its outputs."""
    import os

    from adapters.partners_file import PartnerConfigError, load_partners

    try:
        return load_partners(path, env=dict(os.environ), allow_dev_defaults=True)
    except (PartnerConfigError, OSError) as err:
        raise fail(f"--partners: {err}") from err


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (on the command line or by its env var), not left
    at its default: ``--host 127.0.0.1`` without --serve is refused as well."""
    source = ctx.get_parameter_source(name)  # typer's own click: the enum's name is stable
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _serve_player(
    path: Path,
    messages: list[tuple[str, bytes]],
    result: ReplayResult,
    lead_time: dict[str, float | int],
    network: RoadNetwork | None,
    partners: PartnersConfig,
    config: ConsoleConfig,
    *,
    host: str,
    port: int,
) -> None:
    """Serve the incident player of this replay until Ctrl-C."""
    from adapters.fanout import PartnerSet
    from broker.console.player import PlayerSource, message_times
    from broker.console.serve import console_app
    from broker.console.serve import serve as run_server
    from broker.drive import POSITIONS

    # fan-out only (no HTTP): which partner would get what; dev secrets stay in-process
    partner_set = PartnerSet.from_config(partners)
    source = PlayerSource(result, routes_of(messages), message_times(messages, POSITIONS),
                          lead_time, title=str(path), partners=partner_set, roads=network)
    how = ("the token in BROKER_CONSOLE_TOKEN" if config.access.source != "dev-default"
           else "the development token (`broker console-token`; loopback only)")

    def ready(url: str) -> None:
        console.print(f"console: [bold]{url}[/]  (sign in with {how}; Ctrl-C stops)",
                      soft_wrap=True)
        sys.stdout.flush()

    try:
        run_server(console_app(source, config), host=host, port=port, on_ready=ready)
    except OSError as err:
        raise fail(f"--port {port}: cannot listen on {host} ({err.strerror})") from err


def console_token() -> None:
    """Print the development operator token of the console (loopback use only).

    The console's real token is BROKER_CONSOLE_TOKEN; this documented default is what
    `broker replay --serve` on 127.0.0.1 accepts when that is unset (docs/console.md).
    """
    from broker.console.access import dev_token

    typer.echo(dev_token())


def _sync_audit(audit: JsonlAudit) -> str:
    """fsync the audit file; what went wrong, if it could not be (the deliveries are sent: the
    command still reports them)."""
    try:
        audit.sync()
    except OSError as err:
        return (f"{audit.path} was not synced to disk ({err}): after a host crash it may miss "
                "records of this run")
    return ""


def _deliver(result: ReplayResult, config: PartnersConfig, out: Path) -> str | None:
    """Fan the replay's alerts out to the configured partners and deliver them (at least
    once); what did not reach its partner, in words (the run then exits 1), else None."""
    import asyncio

    from adapters.audit import JsonlAudit
    from adapters.config import dev_secrets_check
    from adapters.dead_letters import JsonlDeadLetter
    from adapters.delivery_model import PartnerStats
    from adapters.fanout import PartnerSet
    from adapters.http_pool import make_client
    from adapters.hub import deliver_events, latency_percentile

    problem, warning = dev_secrets_check(config, [])
    if problem:
        raise fail(f"--partners: {problem}")
    if warning:
        warn(warning)

    audit = JsonlAudit(out / "audit.jsonl")
    status = err_console.status("delivering")

    def watch(queued: int, stats: dict[str, PartnerStats]) -> None:
        status.update(f"delivering {queued} queued: " + "; ".join(
            f"{pid} {st.delivered} delivered, {st.failed_attempts} failed attempts"
            + (" (retried until each alert expires)" if st.failed_attempts else "")
            for pid, st in sorted(stats.items())))

    async def run() -> object:
        async with make_client() as client:
            return await deliver_events(
                result.events,
                PartnerSet.from_config(config),
                client,
                audit,
                dead_letter=JsonlDeadLetter(out / "delivery_dlq.jsonl"),
                watch=watch,
            )

    try:
        with status:
            summary = asyncio.run(run())
    finally:  # what was sent is on disk before the summary (or the error) says so
        unsynced = _sync_audit(audit)
    if unsynced:
        warn(unsynced)
    table = Table(title=f"deliveries ({summary.deliveries} queued)")  # type: ignore[attr-defined]
    for col in ("partner", "delivered", "failed attempts", "expired", "dead-lettered", "p50 ms"):
        table.add_column(col, justify="right")
    for pid, st in sorted(summary.stats.items()):  # type: ignore[attr-defined]
        p50 = f"{latency_percentile(st.latencies_ms, 50):.1f}" if st.latencies_ms else "-"
        name = f"{pid} (disabled)" if st.disabled else pid
        table.add_row(
            name,
            str(st.delivered),
            str(st.failed_attempts),
            str(st.expired),
            str(st.dead_lettered),
            p50,
        )
    console.print(table)
    console.print(f"audit log: [bold]{out / 'audit.jsonl'}[/]")
    lost = {pid: st.expired + st.dead_lettered
            for pid, st in summary.stats.items()  # type: ignore[attr-defined]
            if st.expired + st.dead_lettered}
    if not lost:
        return None
    # a partner down, refusing, or disabled: the run did not do what it was asked (exit 1)
    return ("not every delivery reached its partner: " + ", ".join(
        f"{pid} {n} expired or dead-lettered" for pid, n in sorted(lost.items()))
        + f" (the audit log and {out / 'delivery_dlq.jsonl'} say why)")


def _check_replay_mode(
    into_kafka: bool,
    *,
    kafka_only: dict[str, bool],
    in_process_only: dict[str, bool],
    needing: Iterable[tuple[dict[str, bool], bool, str]],
) -> None:
    """Refuse (exit 2, naming the options) what the chosen replay would silently ignore:
    options given (True) that only the other mode reads, --speed with --max-speed, and options
    given without the one they go with (``needing``: the options, whether that one is given,
    and what to say: the player's options without --serve, ...)."""
    if kafka_only["--speed"] and kafka_only["--max-speed"]:
        raise fail("--speed and --max-speed: give one (--speed X scales the recorded timing, "
                    "--max-speed sends without waiting)")
    if not into_kafka and (given := [name for name, on in kafka_only.items() if on]):
        raise fail(f"{', '.join(given)}: only with --kafka HOST:PORT (the in-process replay "
                    "runs as fast as it can and uses no topics)")
    if into_kafka and (given := [name for name, on in in_process_only.items() if on]):
        raise fail(f"--kafka does not take {', '.join(given)}: it only produces the incident "
                    "(no alerts, summary or map of its own); the worker takes its roads, "
                    "agencies and partners from BROKER_* settings (docs/settings-env.md)")
    for options, with_them, why in needing:
        if not with_them and (given := [name for name, on in options.items() if on]):
            raise fail(f"{', '.join(given)}: {why}")


def _replay_into_kafka(
    messages: list[tuple[str, bytes]],
    bootstrap: str,
    *,
    speed: float,
    max_speed: bool,
    topic_prefix: str | None,
    partitions: int | None,
) -> None:
    """Produce the incident into Kafka with every Kafka setting the worker reads."""
    from broker.streams.cli import load_settings
    from broker.streams.produce import (
        KafkaUnreachable,
        TopicMismatch,
        produce_replay,
        rich_progress,
    )

    if not (math.isfinite(speed) and speed > 0):  # nan and inf sent as --max-speed does
        raise fail(f"--speed {speed:g}: want a number > 0 (2 = twice as fast; --max-speed "
                   "sends without waiting)")
    settings = load_settings({"bootstrap": "--kafka"}, bootstrap=bootstrap,
                             topic_prefix=topic_prefix, partitions=partitions)
    try:
        with rich_progress(len(messages)) as progress:
            summary = produce_replay(
                messages,
                settings.bootstrap,
                speed=None if max_speed else speed,
                max_speed=max_speed,
                topic_prefix=settings.topic_prefix,
                partitions=settings.partitions,
                security=settings.security,
                progress=progress,
                connect_timeout_s=KAFKA_CONNECT_TIMEOUT_S,
            )
    except TopicMismatch as err:  # the topics exist: their count is the one to produce with
        raise fail(
            f"--kafka {bootstrap}: topic {err.topic} has {err.partitions} partitions, "
            f"not the {err.wanted} asked for (--partitions, env BROKER_PARTITIONS): give "
            f"--partitions {err.partitions} to replay into these topics, or another "
            "--topic-prefix for new ones"
        ) from None
    except KafkaUnreachable as err:
        raise kafka_unreachable_at(bootstrap, err.timeout_s) from None
    console.print(summary.describe())


def _print_events(result: ReplayResult, show: int) -> None:
    if show <= 0 or not result.events:
        return
    table = Table(
        title=f"alert events (first {min(show, len(result.events))} of {len(result.events)})"
    )
    for col in ("time (UTC)", "action", "alert", "v", "kind", "vehicle", "zone vertices", "note"):
        table.add_column(col)
    for ev in result.events[:show]:
        rings = ev.zone.get("coordinates", [])
        verts = (
            sum(len(r[0]) for r in rings)
            if ev.zone.get("type") == "MultiPolygon"
            else (len(rings[0]) if rings else 0)
        )
        table.add_row(
            f"{ev.ts:%H:%M:%S}",
            ev.action,
            ev.alert_id,
            str(ev.version),
            ev.kind,
            ev.vehicle_id,
            str(verts),
            ev.cancel_reason or "",
        )
    console.print(table)


def _print_summary(path: Path, result: ReplayResult, figures: dict[str, float | int]) -> None:
    table = Table(title=f"replay of {path}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("positions read", str(result.positions_read))
    table.add_row("routes read", str(result.routes_read))
    if result.statuses_read:
        table.add_row("unit status events read", str(result.statuses_read))
    rejected = result.rejected_by_reason
    table.add_row("rejected", f"{sum(rejected.values())} " + (f"{rejected}" if rejected else ""))
    for kind, n in result.ignored_fixes.items():
        table.add_row(f"ignored fixes: {kind}", str(n))
    for name, n in sorted(result.unknown_readings.items()):  # a device's "no reading"
        table.add_row(f"taken with {name} unknown", str(n))
    for action, n in result.alerts_by_action.items():
        table.add_row(f"alerts {action}d" if action != "cancel" else "alerts cancelled", str(n))
    table.add_row("lead time median (s)", f"{figures['lead_time_median_s']}")
    table.add_row("lead time p10 (s)", f"{figures['lead_time_p10_s']}")
    table.add_row("points warned >= 15 s", f"{figures['frac_warned_15s']:.1%}")
    table.add_row("zone area-time (km2 s)", f"{figures['zone_area_km2_s']}")
    console.print(table)
