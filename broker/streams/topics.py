"""Topic declarations of the worker (the names are ``broker.drive``'s, with a prefix).

Positions and routes are co-partitioned (same key = vehicle id, same partition count, the
default murmur2 partitioner), so one agent sees all of a vehicle's messages. Unit status
(``cad.status``, same key) and Traccar's positions (``avl.traccar``, keyed by Traccar's device
id) are appended to ``avl.positions`` by the forwarder (broker.streams.ingest), so a unit's
fixes and status changes have one order.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from broker.drive import (
    ALERTS,
    AUDIT,
    CAD_STATUS,
    DELIVERY_DLQ,
    DLQ,
    POSITIONS,
    ROUTES,
    TRACCAR,
)
from broker.streams.settings import StreamSettings


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The topic names after the configured prefix."""

    positions: str
    routes: str
    alerts: str
    dlq: str
    audit: str
    delivery_dlq: str
    cad_status: str
    traccar: str

    @classmethod
    def for_prefix(cls, prefix: str = "") -> TopicNames:
        """Names with ``prefix`` prepended (tests give each run its own prefix)."""
        return cls(
            prefix + POSITIONS, prefix + ROUTES, prefix + ALERTS, prefix + DLQ,
            prefix + AUDIT, prefix + DELIVERY_DLQ, prefix + CAD_STATUS, prefix + TRACCAR,
        )

    @property
    def inputs(self) -> tuple[str, str]:
        """The co-partitioned inputs of the vehicle agent."""
        return (self.positions, self.routes)

    def all(self) -> list[str]:
        """Every topic the worker creates at start."""
        return [
            self.positions, self.routes, self.cad_status, self.traccar, self.alerts, self.dlq,
            self.audit, self.delivery_dlq,
        ]

    def written(self) -> list[str]:
        """The topics the worker writes to (the forwarder appends to ``avl.positions``): each
        must take its producer's batches (``BROKER_PRODUCER_MAX_BATCH_BYTES``)."""
        return [self.positions, self.alerts, self.dlq, self.audit, self.delivery_dlq]

    def source_of(self, topic: str) -> str:
        """Which input a message came from, by its unprefixed name (``broker.drive``)."""
        return {self.routes: ROUTES, self.cad_status: CAD_STATUS, self.traccar: TRACCAR}.get(
            topic, POSITIONS
        )


@dataclass(frozen=True, slots=True)
class Topics:
    """Declared Faust topics: ``inputs`` carries positions and routes in one channel;
    ``positions`` is where the forwarder appends; ``cad_status`` and ``traccar`` are its inputs."""

    names: TopicNames
    inputs: faust.TopicT
    positions: faust.TopicT
    cad_status: faust.TopicT
    traccar: faust.TopicT
    alerts: faust.TopicT
    dlq: faust.TopicT
    audit: faust.TopicT
    delivery_dlq: faust.TopicT


def declare_topics(app: faust.App, settings: StreamSettings) -> Topics:
    """Declare the topics on ``app`` (Faust creates them at start if they are missing)."""
    names = TopicNames.for_prefix(settings.topic_prefix)

    def topic(*topic_names: str) -> faust.TopicT:
        return app.topic(
            *topic_names,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            replicas=settings.replication_factor,
            internal=True,  # the worker creates them at start with these partitions/replicas
        )

    return Topics(
        names=names,
        inputs=topic(*names.inputs),
        positions=topic(names.positions),
        cad_status=topic(names.cad_status),
        traccar=topic(names.traccar),
        alerts=topic(names.alerts),
        dlq=topic(names.dlq),
        audit=topic(names.audit),
        delivery_dlq=topic(names.delivery_dlq),
    )
