"""The operator console on the worker's web server: one call from ``create_app``.

The console itself lives in ``broker.console`` (handlers, Server-Sent Events, state, static
files); this module only wires it to the worker: its Kafka settings and topic names, its
partners and road network, and the figures only this worker knows (position messages read and
consumer lag, from its in-process ``Metrics``, never by scraping ``/metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from adapters.config import PartnersConfig
from adapters.fanout import PartnerSet
from broker.console.config import ConsoleConfig
from broker.console.live import LiveSource, LiveTopics, WorkerFigures, aiokafka_security
from broker.console.server import Console, mount
from broker.drive import POSITIONS
from broker.streams.metrics import Metrics
from broker.streams.runtime import Runtime

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork


def worker_figures(metrics: Metrics, positions_topic: str) -> WorkerFigures:
    """Position messages read so far and the consumer lag on ``positions_topic`` (this worker)."""
    registry = metrics.registry
    total = registry.get_sample_value("broker_messages_in_total", {"topic": POSITIONS}) or 0.0
    lags = [s.value for fam in registry.collect() if fam.name == "broker_consumer_lag"
            for s in fam.samples if s.labels.get("topic") == positions_topic]
    return WorkerFigures(total, sum(lags) if lags else None)


def register_console(
    app: faust.App,
    rt: Runtime,
    console: ConsoleConfig | None,
    *,
    partners: PartnersConfig | None,
    roads: RoadNetwork | None,
) -> LiveSource | None:
    """Mount the console under ``/console`` of the worker's web server (None: no console)."""
    if console is None:
        return None
    settings, names = rt.settings, rt.names
    sec = settings.security
    source = LiveSource(
        bootstrap=settings.bootstrap,
        topics=LiveTopics(names.alerts, names.audit, names.routes, names.dlq),
        partitions=settings.partitions,
        client_kwargs=aiokafka_security(
            sec.protocol, mechanism=sec.sasl_mechanism, username=sec.sasl_username,
            password=sec.sasl_password, ssl_context=sec.ssl_context(),
        ),
        figures=lambda: worker_figures(rt.metrics, names.positions),
        partners=PartnerSet.from_config(partners) if partners is not None else None,
        roads=roads,
        lookback_s=console.lookback_s,
        title=settings.app_id,
    )
    mount(app.web.web_app, Console(source, console.access, tiles=console.tiles,  # type: ignore[attr-defined]
                                   attribution=console.attribution,
                                   write_timeout_s=console.write_timeout_s))
    return source
