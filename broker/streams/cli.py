"""``broker worker``: the streams command, as a plain function, and the settings it reads.

``broker.cli`` registers it on the main ``broker`` command (and uses :func:`load_settings` for
``broker replay --kafka``, so both read the same ``BROKER_*`` Kafka settings);
``python -m broker.streams.cli worker`` runs it without the rest of the CLI (the integration
tests and benchmarks start workers that way). This is the edge: the only place in
broker.streams that reads ``os.environ``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer

from broker.streams.settings import (
    SECURITY_ENV_VARS,
    SettingsError,
    StreamSettings,
    from_env,
    unknown_variables,
)

if TYPE_CHECKING:
    from adapters.config import PartnersConfig
    from broker.agencies import Agencies
    from broker.console.config import ConsoleConfig
    from broker.geo.roads import RoadNetwork


# The exit code of a command that got no answer from Kafka (sysexits' EX_UNAVAILABLE: a service
# is unavailable): apart from 1 (the run failed) and 2 (bad usage or settings), so a supervisor
# can tell an outage (restart later) from a setting to fix.
EXIT_UNAVAILABLE = 69


def kafka_unreachable(bootstrap: str, timeout_s: float) -> typer.Exit:
    """Say in one line that no Kafka broker answered at ``bootstrap`` within ``timeout_s``, and
    what to check; the :class:`typer.Exit` to raise (``EXIT_UNAVAILABLE``)."""
    typer.echo(
        f"error: no Kafka broker answered at {bootstrap} within {timeout_s:g} s: check "
        "--bootstrap or BROKER_KAFKA_BOOTSTRAP (host:port of a running Kafka, reachable from "
        "here), BROKER_KAFKA_SECURITY_PROTOCOL and its TLS/SASL settings; "
        "BROKER_KAFKA_CONNECT_TIMEOUT_S sets how long to wait (docs/settings-env.md)",
        err=True,
    )
    return typer.Exit(EXIT_UNAVAILABLE)


@contextlib.contextmanager
def kafka_logs_quiet(log_level: str) -> Iterator[None]:
    """kafka-python's own lines (an ERROR and two WARNINGs per refused connection attempt, for
    the whole connect timeout) held back while a command waits for Kafka, unless the log level
    asks for INFO or DEBUG: the command's one line says what went wrong."""
    kafka_log = logging.getLogger("kafka")
    before = kafka_log.level
    if logging.getLevelName(log_level) >= logging.WARNING:
        kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(before)


def load_settings(options: dict[str, str] | None = None, **overrides: object) -> StreamSettings:
    """Settings from the environment plus CLI overrides; exits 2 naming a bad setting (an
    override by its option: ``options`` maps a field to it, default ``--field-name``)."""
    try:
        settings = from_env(os.environ, options, **overrides)
    except SettingsError as err:
        typer.echo(f"error: bad setting: {err}", err=True)
        raise typer.Exit(2) from None
    for name in unknown_variables(os.environ):  # a partners file may name its own: warned
        typer.echo(f"warning: {name} is no broker setting: ignored (docs/settings-env.md)",
                   err=True)
    env_of = {field: name for name, (field, _) in SECURITY_ENV_VARS.items()}
    for field in settings.security.unused():
        typer.echo(
            f"warning: {env_of[field]} is set but BROKER_KAFKA_SECURITY_PROTOCOL="
            f"{settings.security.protocol} does not use it: ignored", err=True,
        )
    return settings


def worker(
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka host:port[,...] (env BROKER_KAFKA_BOOTSTRAP)")
    ] = None,
    web_port: Annotated[
        int | None, typer.Option(help="the public port: /feeds, /console (env BROKER_WEB_PORT)")
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(help="partitions of the topics (env BROKER_PARTITIONS)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Faust data directory (env BROKER_DATA_DIR)")
    ] = None,
) -> None:
    """Run the Faust worker: avl.positions, cad.status, cad.routes and avl.traccar (also
    POST /ingest/traccar) in; alerts, avl.dlq, partner deliveries (audit, delivery.dlq) and
    /feeds out."""
    settings = load_settings(
        bootstrap=bootstrap, web_port=web_port, partitions=partitions, data_dir=data_dir
    )
    run_worker(settings)


def load_partners_for(settings: StreamSettings) -> PartnersConfig | None:
    """The partners file of ``BROKER_PARTNERS``, loaded once; exits 2 naming what is wrong."""
    from adapters.config import dev_secrets_check
    from adapters.partners_file import PartnerConfigError, load_partners

    path = settings.partners_path
    if path is None:
        return None
    if not path.is_file():
        typer.echo(f"error: bad setting: BROKER_PARTNERS={str(path)!r}: no such file "
                   "(set BROKER_PARTNERS to a partners.toml, or to '' for no partners)", err=True)
        raise typer.Exit(2)
    try:
        config = load_partners(
            path, env=os.environ, allow_dev_defaults=settings.allow_dev_defaults,
            service_area=settings.engine.service_area,
        )
    except (PartnerConfigError, OSError) as err:
        hint = "" if settings.allow_dev_defaults else (
            " (set the secrets' env vars, see docs/partners.md; for a local demo only: "
            "BROKER_ALLOW_DEV_SECRETS=true)"
        )
        typer.echo(f"error: BROKER_PARTNERS: {err}{hint}", err=True)  # err names the file
        raise typer.Exit(2) from None
    problem, warning = dev_secrets_check(config, [settings.web_host, settings.ops_host])
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    if warning:
        logging.getLogger("broker").warning(warning)
    return config


def load_roads_for(settings: StreamSettings) -> RoadNetwork | None:
    """The road network of ``BROKER_ROADS``, loaded once; exits 2 naming the file if bad.

    With ``BROKER_ROAD_CLASSES`` (mapping file), ``BROKER_ROADS_SNAP_M`` and
    ``BROKER_ROADS_ORIGIN`` (a SUMO net without geo-reference); the load logs its
    check's warnings and refuses a mostly disconnected network (docs/roads.md).
    """
    if settings.roads_path is None:
        refuse_road_options_without_roads(settings)
        return None
    from broker.geo.roads import RoadNetwork, load_road_classes

    try:
        classes = None
        if settings.road_classes_path is not None:
            classes = load_road_classes(settings.road_classes_path)
        roads = RoadNetwork.load(
            settings.roads_path, classes=classes, snap_m=settings.roads_snap_m,
            allow_unusable=settings.roads_allow_disconnected, origin=settings.roads_origin,
        )  # fmt: skip
    except Exception as err:  # any reader error: name the file and stop
        typer.echo(f"error: BROKER_ROADS={str(settings.roads_path)!r}: cannot load it: {err}",
                   err=True)
        raise typer.Exit(2) from None
    refuse_roads_outside_the_area(settings, roads)
    return roads


def refuse_roads_outside_the_area(settings: StreamSettings, roads: RoadNetwork) -> None:
    """Exit 2 when ``BROKER_ENGINE_SERVICE_AREA`` is set and the network's extent does not
    meet it: a file written [lat, lon] loaded on the other side of the globe, and every zone
    came out without (and smaller than without) roads, not a word said."""
    from broker.model import WORLD

    area = settings.engine.service_area
    if area == WORLD or roads.overlaps(area):
        return
    w, s, e, n = roads.lonlat_bounds
    swapped = (s, w, n, e)  # the extent were its lon and lat read the other way round
    hint = ("; with lon and lat swapped it would: the file looks written [lat, lon], GeoJSON "
            "wants [lon, lat]" if swapped[0] <= area[2] and area[0] <= swapped[2]
            and swapped[1] <= area[3] and area[1] <= swapped[3] else "")
    typer.echo(
        f"error: bad setting: BROKER_ROADS={str(settings.roads_path)!r} lies at lon {w:.3f} to "
        f"{e:.3f}, lat {s:.3f} to {n:.3f}, outside BROKER_ENGINE_SERVICE_AREA="
        f"{','.join(f'{v:g}' for v in area)}{hint} (docs/roads.md)", err=True,
    )
    raise typer.Exit(2)


def refuse_road_options_without_roads(settings: StreamSettings) -> None:
    """Exit 2 when a setting that says how to read ``BROKER_ROADS`` is given without it: they
    were silently ignored (the worker ran without roads), as ``broker replay`` refuses
    ``--road-classes`` and the others without ``--roads``."""
    given = [name for name, unset in (
        ("BROKER_ROAD_CLASSES", settings.road_classes_path is None),
        ("BROKER_ROADS_SNAP_M", settings.roads_snap_m is None),
        ("BROKER_ROADS_ALLOW_DISCONNECTED", not settings.roads_allow_disconnected),
        ("BROKER_ROADS_ORIGIN", settings.roads_origin is None),
    ) if not unset]  # fmt: skip
    if given:
        typer.echo(f"error: bad setting: {', '.join(given)} set without BROKER_ROADS: they say "
                   "how to read that road network; set BROKER_ROADS too, or unset them "
                   "(docs/roads.md)", err=True)
        raise typer.Exit(2)


def load_agencies_for(settings: StreamSettings) -> Agencies | None:
    """The agency file of ``BROKER_AGENCIES``, loaded once; exits 2 naming what is wrong."""
    if settings.agencies_path is None:
        return None
    from broker.agencies import AgencyFileError, load_agencies

    try:
        return load_agencies(settings.agencies_path)
    except AgencyFileError as err:
        typer.echo(f"error: BROKER_AGENCIES: {err}", err=True)  # err names the file and place
        raise typer.Exit(2) from None


def load_console_for(settings: StreamSettings) -> ConsoleConfig | None:
    """The console's settings (``BROKER_CONSOLE_*``); exits 2 naming a bad one. None (and a
    line saying so) when there is no operator token to use."""
    from broker.console.config import ConsoleConfigError, console_from_env

    try:
        console = console_from_env(os.environ, host=settings.web_host,
                                   allow_dev=settings.allow_dev_defaults)
    except ConsoleConfigError as err:
        typer.echo(f"error: bad setting: {err}", err=True)
        raise typer.Exit(2) from None
    if console is None:
        typer.echo("note: no operator console (set BROKER_CONSOLE_TOKEN; docs/console.md)",
                   err=True)
    return console


def check_audit_file(settings: StreamSettings) -> None:
    """Exit 2 if ``BROKER_AUDIT_FILE`` cannot be appended to: a worker that could not audit
    would stop at its first delivery (nothing goes out unaudited), better before it starts."""
    from adapters.audit import JsonlAudit

    if settings.audit_file is None:
        return
    try:
        JsonlAudit(settings.audit_file).check_writable()
    except OSError as err:
        typer.echo(f"error: bad setting: BROKER_AUDIT_FILE={str(settings.audit_file)!r}: "
                   f"cannot append to it ({err.strerror or err})", err=True)
        raise typer.Exit(2) from None


def run_worker(settings: StreamSettings) -> None:
    """Start a worker in this process and block until it stops (SIGINT/SIGTERM). Faust is
    slow to import: only the worker needs it (imported with the app and the shutdown)."""
    from kafka.errors import KafkaError

    from adapters.http_server import raise_open_file_limit
    from broker.drive import settle_gc
    from broker.streams.app import create_app
    from broker.streams.log_repeats import hold_back_repeats
    from broker.streams.produce import (
        KafkaUnreachable,
        TopicLimitTooSmall,
        TopicMismatch,
        ensure_topics,
    )
    from broker.streams.shutdown import DeadlineWorker, ShutdownDeadline
    from broker.streams.tables import changelog_topics
    from broker.streams.topics import TopicNames
    from broker.streams.warmup import warm_up

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file there, no rights: it was a traceback
        typer.echo(f"error: BROKER_DATA_DIR (--data-dir) {settings.data_dir}: cannot make the "
                   f"worker's data directory there ({err.strerror}): give a writable directory",
                   err=True)
        raise typer.Exit(2) from None
    # the lines before Faust sets up its own logging (the development secrets' warning ...):
    # a time and the level in words, not Python's bare "WARNING:broker:"
    logging.basicConfig(level=settings.log_level,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    hold_back_repeats()  # aiokafka's retry warnings while Kafka is away, misrouted input
    before, after = raise_open_file_limit()  # idle clients must not starve Kafka and webhooks
    if after != before:
        logging.getLogger("broker").info("open-file limit raised from %d to %d", before, after)
    partners = load_partners_for(settings)
    if partners is not None:
        check_audit_file(settings)
    roads = load_roads_for(settings)
    console = load_console_for(settings)
    agencies = load_agencies_for(settings)
    names = TopicNames.for_prefix(settings.topic_prefix)
    try:
        with kafka_logs_quiet(settings.log_level):
            # Before Faust subscribes: a topic created after the first metadata fetch would join
            # the assignment only at a later rebalance, out of step with its co-partitioned twin.
            retention = {"retention.ms": str(int(settings.dlq_retention_s * 1000))}
            kept = {"retention.ms": str(int(settings.audit_retention_s * 1000))}
            ensure_topics(
                settings.bootstrap,
                names.all(),
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                security=settings.security,
                configs={names.dlq: retention, names.delivery_dlq: retention, names.audit: kept},
                connect_timeout_s=settings.kafka_connect_timeout_s,
                max_batch_bytes=settings.producer_max_batch_bytes,
                written=names.written(),  # not the inputs it only reads (CAD's, Traccar's)
            )
            # The tables' changelogs too: created by Faust itself at start, one could miss the
            # leader's first assignment ("Ignoring missing topic"), and a global table whose
            # changelog was never assigned never finished recovery: a worker not ready for good.
            by_count: dict[int, list[str]] = {}
            for topic, n in changelog_topics(settings).items():
                by_count.setdefault(n, []).append(topic)
            for n, topics in sorted(by_count.items()):
                ensure_topics(
                    settings.bootstrap, topics, partitions=n,
                    replication_factor=settings.replication_factor, security=settings.security,
                    configs={t: {"cleanup.policy": "compact"} for t in topics},
                    connect_timeout_s=settings.kafka_connect_timeout_s,
                    max_batch_bytes=settings.producer_max_batch_bytes,
                )
    except (TopicMismatch, TopicLimitTooSmall) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except KafkaUnreachable as err:  # before Faust starts: Faust itself would retry for ever
        raise kafka_unreachable(err.bootstrap, err.timeout_s) from None
    except KafkaError as err:  # it answered, then a request failed or timed out
        typer.echo(
            f"error: Kafka at {settings.bootstrap} answered, but checking the topics failed "
            f"({type(err).__name__}: {err}): check that the brokers' advertised listeners are "
            "reachable from here, BROKER_KAFKA_SECURITY_PROTOCOL and its TLS/SASL settings, "
            "and the ACLs (docs/settings-env.md)", err=True,
        )
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    # start-only costs (lazy imports, first payloads) paid now, not by the first messages
    # of the start burst: the worker is not ready, so nothing waits on it yet
    if partners is not None and partners.wants_segments and not settings.engine.warning_segments:
        # a partner takes the warning segments: the engine builds them (EngineConfig)
        engine = msgspec.structs.replace(settings.engine, warning_segments=True)
        settings = msgspec.structs.replace(settings, engine=engine)
    warm_up(settings.engine, partners, roads)
    app = create_app(settings, partners=partners, roads=roads, console=console,
                     agencies=agencies)
    w = DeadlineWorker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
    )
    w.deadline = ShutdownDeadline(settings.shutdown_timeout_s)
    # No terminal spinner: with one, Faust sets the root logger to DEBUG (for a handler that
    # spins on every record) whatever the log level, and aiokafka's debug lines on every fetch
    # then cost ~10 % of the worker's CPU (docs/benchmarks.md, profile).
    w.spinner = None
    settle_gc()  # a worker keeps every unit's state: fewer full GC walks (broker.drive)
    w.execute_from_commandline()


def partner_enable(
    partner_id: Annotated[str, typer.Argument(help="The partner id (partners.toml) to enable.")],
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka host:port[,...] (env BROKER_KAFKA_BOOTSTRAP)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Enable an id the partners file (BROKER_PARTNERS) "
                           "does not list (a partner removed from it, still disabled).")
    ] = False,
) -> None:
    """Enable a partner that answered 410 Gone: delete its entry from the workers'
    partner-status table (a tombstone in its changelog, which every worker follows). With
    BROKER_PARTNERS set (the workers' partners file), an id it does not list is refused."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from broker.streams.produce import KafkaUnreachable, bootstrapping

    settings = load_settings(bootstrap=bootstrap)
    # the workers' file, when given: the default is the sample, not what an operator's shell
    # without the workers' environment may mean
    checked = os.environ.get("BROKER_PARTNERS") and not force
    known = _partner_ids(settings.partners_path) if checked else None
    if known is not None and partner_id not in known:
        # a typo was answered "enabled", exit 0, the real partner still disabled
        typer.echo(f"error: no partner {partner_id!r} in {settings.partners_path} "
                   f"(BROKER_PARTNERS); its partners: {', '.join(sorted(known)) or 'none'} "
                   "(--force enables it all the same)",
                   err=True)
        raise typer.Exit(2)
    topic = f"{settings.app_id}-partner-status-changelog"
    wait_s = settings.kafka_connect_timeout_s
    try:
        with bootstrapping(settings.bootstrap, wait_s):
            producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers, acks="all",
                bootstrap_timeout_ms=int(wait_s * 1000), max_block_ms=int(wait_s * 1000),
                **settings.security.kafka_python_kwargs(),
            )
    except KafkaUnreachable as err:
        raise kafka_unreachable(err.bootstrap, err.timeout_s) from None
    try:
        producer.send(topic, key=partner_id.encode(), value=None, partition=0).get(timeout=wait_s)
    except KafkaError as err:  # reached, but the topic's metadata or the write never came
        typer.echo(
            f"error: partner {partner_id!r} not enabled: no write to {topic} at "
            f"{settings.bootstrap} within {wait_s:g} s ({type(err).__name__}): check that "
            "BROKER_APP_ID is the workers' (a worker has created that topic) and that Kafka "
            "is up", err=True,
        )
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    finally:
        producer.close(timeout=wait_s)
    typer.echo(f"partner {partner_id!r} enabled (tombstone in {topic}); "
               "its next alerts are delivered again")


def _partner_ids(path: Path | None) -> set[str] | None:
    """The partner ids of the workers' partners file (None: no file given); exits 2 with the
    file's own load error when it cannot be read or lists no partners (an id could not be
    checked against it: the command went on to Kafka, exit 69, README says exit 2)."""
    from broker.validation import read_toml

    if path is None:
        return None
    try:
        data = read_toml(path, ValueError)  # as the worker reads it (a byte order mark too)
    except ValueError as err:  # names the file
        typer.echo(f"error: BROKER_PARTNERS: {err}", err=True)
        raise typer.Exit(2) from None
    entries = data.get("partner")
    ids = ({str(p["id"]) for p in entries if isinstance(p, dict) and "id" in p}
           if isinstance(entries, list) else set())
    if not ids:
        typer.echo(f"error: BROKER_PARTNERS: {path} lists no partners (no [[partner]] with an "
                   "id): no id can be checked against it (the worker refuses it too)", err=True)
        raise typer.Exit(2)
    return ids


cli = typer.Typer(add_completion=False, help="The worker command (also `broker worker`).")
cli.command("worker")(worker)


@cli.callback()
def _streams() -> None:
    """Keep ``worker`` a subcommand (typer runs a lone command without its name otherwise)."""

if __name__ == "__main__":
    sys.exit(cli())
