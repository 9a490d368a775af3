"""``broker worker`` and ``broker replay --kafka``: the streams commands, as plain functions.

``broker.cli`` registers them on the main ``broker`` command; ``python -m broker.streams.cli``
runs them without it (the integration tests start workers that way). This is the edge: the
only place in broker.streams that reads ``os.environ``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from broker.streams.settings import SettingsError, StreamSettings, from_env


def load_settings(**overrides: object) -> StreamSettings:
    """Settings from the environment plus CLI overrides; exits 2 naming a bad setting."""
    try:
        return from_env(os.environ, **overrides)
    except SettingsError as err:
        typer.echo(f"error: bad setting: {err}", err=True)
        raise typer.Exit(2) from None


def worker(
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka host:port[,...] (env BROKER_KAFKA_BOOTSTRAP)")
    ] = None,
    web_port: Annotated[
        int | None, typer.Option(help="port of /health, /metrics, /feeds (env BROKER_WEB_PORT)")
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(help="partitions of the topics (env BROKER_PARTITIONS)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Faust data directory (env BROKER_DATA_DIR)")
    ] = None,
) -> None:
    """Run the Faust worker: avl.positions + cad.routes in, alerts and avl.dlq out."""
    settings = load_settings(
        bootstrap=bootstrap, web_port=web_port, partitions=partitions, data_dir=data_dir
    )
    run_worker(settings)


def run_worker(settings: StreamSettings) -> None:
    """Start a worker in this process and block until it stops (SIGINT/SIGTERM)."""
    import faust  # Faust is slow to import; only the worker needs it

    from broker.streams.app import create_app
    from broker.streams.produce import TopicMismatch, ensure_topics
    from broker.streams.topics import TopicNames

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=settings.log_level)
    names = TopicNames.for_prefix(settings.topic_prefix)
    try:
        # Before Faust subscribes: a topic created after the first metadata fetch would join
        # the assignment only at a later rebalance, out of step with its co-partitioned twin.
        ensure_topics(
            settings.bootstrap,
            [names.positions, names.routes, names.alerts, names.dlq],
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            security=settings.security,
        )
    except TopicMismatch as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    app = create_app(settings)
    w = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
    )
    w.execute_from_commandline()


def replay_kafka(
    path: Annotated[Path, typer.Argument(help="incident fixture (dir or file)")],
    kafka: Annotated[str, typer.Option("--kafka", help="bootstrap host:port")],
    speed: Annotated[float | None, typer.Option(help="time factor: 10 = ten times faster")] = None,
    max_speed: Annotated[bool, typer.Option("--max-speed", help="no waiting at all")] = False,
    topic_prefix: Annotated[str, typer.Option(help="prefix of the topic names")] = "",
) -> None:
    """Replay a recorded incident into Kafka, keyed by vehicle id, timing scaled."""
    from broker.replay import load_messages
    from broker.streams.produce import produce_replay, rich_progress

    if speed is not None and max_speed:
        typer.echo("error: give --speed or --max-speed, not both", err=True)
        raise typer.Exit(2)
    if speed is not None and speed <= 0:
        typer.echo("error: --speed must be > 0", err=True)
        raise typer.Exit(2)
    settings = load_settings(bootstrap=kafka, topic_prefix=topic_prefix or None)
    messages = load_messages(path)
    with rich_progress(len(messages)) as progress:
        summary = produce_replay(
            messages,
            settings.bootstrap,
            speed=None if max_speed else (speed or 1.0),
            max_speed=max_speed,
            topic_prefix=settings.topic_prefix,
            partitions=settings.partitions,
            security=settings.security,
            progress=progress,
        )
    typer.echo(summary.describe())


cli = typer.Typer(add_completion=False, help="Streams commands (also under `broker`).")
cli.command("worker")(worker)
cli.command("replay")(replay_kafka)

if __name__ == "__main__":
    sys.exit(cli())
