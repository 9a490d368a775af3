"""``create_app(settings) -> faust.App``: the Faust worker of the alert broker.

No module-level app: each call builds a fresh app with its own topics, tables, agents, timer,
web pages, metrics registry and (with partners) delivery hub, so tests and two workers in one
process don't share state. The caller (``broker.streams.cli``, the edge) loads the partners
file and the road network once and passes them in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust
from faust.types.auth import CredentialsT

from adapters.audit import AuditSink
from adapters.config import PartnersConfig, dev_secrets_in
from adapters.http_server import application_options, hide_server_version
from broker.agencies import Agencies
from broker.console.access import DEV_SOURCE
from broker.console.config import ConsoleConfig
from broker.streams.agents import register_agents
from broker.streams.console_hook import register_console
from broker.streams.consumer import KafkaTransport
from broker.streams.fanout_agent import register_delivery, worker_audit
from broker.streams.feed_table import feed_table_writes
from broker.streams.ingest import register_ingest
from broker.streams.membership import Membership
from broker.streams.ops import register_ops
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.tables import Tables, declare_tables
from broker.streams.topics import Topics, declare_topics
from broker.streams.watchdog import register_watchdog
from broker.streams.web import register_web

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork


def broker_credentials(settings: StreamSettings) -> CredentialsT | None:
    """Faust credentials for SASL / TLS, or None for PLAINTEXT."""
    sec = settings.security
    context = sec.ssl_context()
    if sec.uses_sasl:
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            mechanism=sec.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def uses_public_secrets(partners: PartnersConfig | None, console: ConsoleConfig | None) -> bool:
    """Whether the worker answers with a documented development secret or operator token
    (then a request through a proxy is refused: ``adapters.http_server``)."""
    dev_partners = partners is not None and bool(dev_secrets_in(partners))
    return dev_partners or (console is not None and console.access.source == DEV_SOURCE)


def create_app(
    settings: StreamSettings,
    *,
    partners: PartnersConfig | None = None,
    roads: RoadNetwork | None = None,
    console: ConsoleConfig | None = None,
    agencies: Agencies | None = None,
) -> faust.App:
    """Build the worker app.

    ``partners``: fan-out, push delivery and pull feeds (None: alerts only, feeds 404).
    ``roads``: an optional ``RoadNetwork`` handed to ``engine.step``.
    ``console``: the operator console's settings (None: no console; docs/console.md).
    ``agencies``: the agency file (None: every unit taken, no Traccar mapping; docs/ingest.md).
    """
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{s}" for s in settings.bootstrap_servers],
        broker_credentials=broker_credentials(settings),
        store="memory://",  # state is rebuilt from the changelog at start (no RocksDB here)
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        key_serializer="raw",
        value_serializer="raw",
        broker_commit_interval=settings.commit_interval_s,
        broker_max_poll_records=settings.max_poll_records,
        stream_buffer_maxsize=settings.stream_buffer,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
        producer_acks=-1,
        # a full batch holds Faust's one send queue (alerts behind table writes)
        # until Kafka answers: see StreamSettings.producer_max_batch_bytes
        producer_max_batch_size=settings.producer_max_batch_bytes,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,  # the public port: feeds and the console only
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # the public port's idle-connection timeout (aiohttp's default keeps a half-sent
        # request an hour) and, with public secrets, no answer through a proxy
        web_application_options=application_options(
            public_secrets=uses_public_secrets(partners, console)),
        # Faust's own debugging routes tell anyone how the cluster is laid out: off
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        table_standby_replicas=0,
        stream_wait_empty=False,
    )
    # Faust's transport with a cheaper hand-off of each record and shorter waits for records
    # (broker.streams.consumer)
    app.transport = KafkaTransport(app.conf.broker_consumer, app)
    app.transport.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.transport.prefetch_backoff_ms = settings.prefetch_backoff_ms
    topics: Topics = declare_topics(app, settings)
    tables: Tables = declare_tables(app, settings)
    rt = Runtime(settings=settings, names=topics.names,
                 membership=Membership(settings.session_timeout_s))
    app.transport.membership = rt.membership  # renewed by the consumer thread's coordinator
    feed_writes = feed_table_writes(app, tables, rt)
    register_agents(app, topics, tables, rt, roads=roads, agencies=agencies, partners=partners,
                    feed_writes=feed_writes)
    register_ingest(app, topics, rt, agencies)
    audit: AuditSink | None = None
    if partners is not None:
        audit, audit_producer = worker_audit(app, topics, rt, settings.audit_file)
        register_delivery(app, topics, tables, rt, partners, audit, audit_producer)
    hide_server_version(app.web.web_app)  # type: ignore[attr-defined]  # Faust's aiohttp driver
    register_web(app, rt, tables, partners, audit, feed_writes=feed_writes)
    register_ops(app, rt)
    register_watchdog(app, rt)  # not ready for too long with no progress: stops loudly
    register_console(app, rt, console, partners=partners, roads=roads)
    app.broker_runtime = rt  # type: ignore[attr-defined]  # for tests and the cli
    return app
