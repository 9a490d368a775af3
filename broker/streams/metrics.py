"""Prometheus metrics of one worker, in their own registry (two apps in one process don't clash)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from adapters.audit import AuditRecord

# Engine latency buckets in seconds: a step is ~0.1-1 ms; the tail shows zone builds with roads.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
# Delivery attempt buckets in seconds: a local sink answers in ~1 ms, a partner across the
# internet in 50-500 ms; the top buckets are timeouts.
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    """Counters, histogram and gauges that /metrics serves."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # fields a fix's "no reading" was taken as unknown for, logged once each (unknown_reading)
    _unknown_logged: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages_in = Counter(
            "broker_messages_in", "Messages read, by input topic", ["topic"], registry=r
        )
        self.ingest_requests = Counter(
            "broker_ingest_requests",
            "POST /ingest/traccar requests, by status (200 taken, 202 dead-lettered, 401, "
            "400 unreadable body, 404 off, 413, 429, 503 Kafka unavailable)",
            ["status"],
            registry=r,
        )
        self.rejected = Counter(
            "broker_rejected",
            "Messages dead-lettered to the DLQ, by reason, each counted once Kafka has its "
            "dead letter",
            ["reason"],
            registry=r,
        )
        self.alerts = Counter(
            "broker_alerts", "Alert events produced, by action", ["action"], registry=r
        )
        self.updates_coalesced = Counter(
            "broker_alert_updates_coalesced",
            "Alert updates of late messages superseded before they were produced (catching up)",
            registry=r,
        )
        self.engine_latency = Histogram(
            "broker_engine_step_seconds",
            "Time spent in engine.step / engine.tick per call",
            ["call"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "broker_consumer_lag",
            "Messages behind the high watermark, per input topic partition",
            ["topic", "partition"],
            registry=r,
        )
        self.misrouted = Counter(
            "broker_misrouted",
            "Input messages on a partition that is not their vehicle id's (murmur2): not keyed "
            "by the vehicle id; fixes and routes appended again under it (dead-lettered, reason "
            "misrouted, only if re-keyed once already), statuses forwarded under it",
            registry=r,
        )
        self.offset_gaps = Counter(
            "broker_input_offset_gaps",
            "Input offsets never handed to the vehicle agent and not there when read again "
            "(a transactional producer's commit markers), per input topic",
            ["topic"],
            registry=r,
        )
        self.offset_rewinds = Counter(
            "broker_input_rewinds",
            "Seeks back to input records the consumer never handed to the vehicle agent, so "
            "they are read again before anything after them is acked, per input topic",
            ["topic"],
            registry=r,
        )
        self.failures = Counter(
            "broker_failures",
            "Work that raised, by site (engine, tick, cancel, fanout, delivery, flush ...) and "
            "the failure policy's decision: skip (dead-lettered, the stream goes on) or stop "
            "(the worker stops without acking; broker.failure)",
            ["site", "decision"],
            registry=r,
        )
        self.state_writes = Counter(
            "broker_state_writes",
            "Vehicle states written to the changelogged table (once per changed vehicle per flush)",
            registry=r,
        )
        self.state_flushes = Counter(
            "broker_state_flushes",
            "Flushes of the state cache: ok, deferred (mid-rebalance) or dropped (a rebalance "
            "started meanwhile)",
            ["outcome"],
            registry=r,
        )
        self.loop_work = Histogram(
            "broker_loop_work_seconds",
            "Time the event loop spends in one synchronous stretch of worker code: the tick's "
            "sweep over live units, and the write half of a state flush",
            ["part"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ready = Gauge("broker_ready", "1 when assigned and recovered", registry=r)
        self.unknown_readings = Counter(
            "broker_unknown_readings",
            "Fixes taken with a reading their device sent as 'no reading' (a heading below 0, "
            "a speed of -1) read as unknown rather than refused, by field",
            ["field"],
            registry=r,
        )
        self.units_quarantined = Gauge(
            "broker_units_quarantined",
            "Units whose tick raised (dead-lettered as tick_error, live alert cancelled): not "
            "ticked again until a message of theirs comes",
            registry=r,
        )
        self.vehicles_forgotten = Counter(
            "broker_vehicles_forgotten",
            "Vehicles dropped from the state table after BROKER_VEHICLE_IDLE_EXPIRY_S idle",
            registry=r,
        )
        # delivery (fed from the audit records the DeliveryHub writes, one per attempt)
        self.deliveries = Counter(
            "broker_deliveries",
            "Delivery outcomes per partner: delivered, failed (an attempt; a retry may follow), "
            "expired, dead_letter, disabled, circuit_open",
            ["partner", "status"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "broker_delivery_attempt_seconds",
            "HTTP round trip of a delivery attempt, per partner",
            ["partner"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.partner_disabled = Gauge(
            "broker_partner_disabled", "1 once a partner answered 410 Gone", ["partner"],
            registry=r,
        )
        self.fanned_out = Counter(
            "broker_fanout_deliveries", "Deliveries queued by fan-out, per partner", ["partner"],
            registry=r,
        )
        self.delivery_pending = Gauge(
            "broker_delivery_pending", "Deliveries queued or in flight on this worker", registry=r
        )
        self.feed_requests = Counter(
            "broker_feed_requests", "Pull feed requests, by partner and HTTP status",
            ["partner", "status"], registry=r,
        )

    def unknown_reading(self, name: str) -> None:
        """A fix's reading ``name`` (``heading_deg``, ``speed_mps``) sent as "no reading" and
        taken as unknown (``broker.codec.check_fix``): counted; logged the first time a worker
        meets one of each field (a device that sends it sends it every second)."""
        self.unknown_readings.labels(name).inc()
        if name not in self._unknown_logged:
            self._unknown_logged.add(name)
            log.info("a fix's %s came as 'no reading' (a heading below 0, a speed of -1): read "
                     "as unknown, the fix taken; counted in broker_unknown_readings_total", name)

    def queued(self, partner_id: str) -> None:
        """One delivery queued by fan-out (``adapters.dispatch.DispatchMetrics``)."""
        self.fanned_out.labels(partner_id).inc()

    def pending(self, n: int) -> None:
        """Deliveries queued or in flight now (``adapters.dispatch.DispatchMetrics``)."""
        self.delivery_pending.set(n)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)


@dataclass
class MetricsAudit:
    """Audit sink that counts outcomes into the worker's Prometheus metrics."""

    metrics: Metrics

    def write(self, record: AuditRecord) -> None:
        if record.action == "feed":
            return  # counted by the web view
        self.metrics.deliveries.labels(record.partner, record.status).inc()
        if record.latency_ms is not None:
            self.metrics.delivery_latency.labels(record.partner).observe(record.latency_ms / 1000)
        if record.status == "disabled":
            self.metrics.partner_disabled.labels(record.partner).set(1)
