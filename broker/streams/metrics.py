"""Prometheus metrics of one worker, in their own registry (two apps in one process don't clash)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Engine latency buckets in seconds: a step is ~0.1-1 ms; the tail shows zone builds with roads.
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


@dataclass
class Metrics:
    """Counters, histogram and gauges that /metrics serves."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages_in = Counter(
            "broker_messages_in", "Messages read, by input topic", ["topic"], registry=r
        )
        self.rejected = Counter(
            "broker_rejected", "Messages sent to the DLQ, by reason", ["reason"], registry=r
        )
        self.alerts = Counter(
            "broker_alerts", "Alert events produced, by action", ["action"], registry=r
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
            "Messages whose partition is not murmur2(key) (producer not using the default "
            "partitioner; state would land in another partition)",
            registry=r,
        )
        self.ready = Gauge("broker_ready", "1 when assigned and recovered", registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
