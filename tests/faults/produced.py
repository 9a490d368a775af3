"""What the worker produced: the ``alerts`` topic read back from Kafka, with production times.

The expectation of every figure starts here, not from the traffic plan: whatever the engine
made of the traffic (and of the faults) is on ``alerts``, and each record's Kafka timestamp
(CreateTime, set by the worker's producer on this machine's clock) says when it existed. A
version produced twice (a restarted worker re-emits what it had not committed) counts once, at
its first production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker import codec
from broker.model import AlertEvent


@dataclass(frozen=True, slots=True)
class Produced:
    """One alert version as first produced on ``alerts``."""

    event: AlertEvent
    at: float  # Kafka timestamp of its first record, epoch seconds
    copies: int  # records of this (alert id, version) on the topic


def dedupe(records: list[tuple[bytes, int]]) -> list[Produced]:
    """(value, timestamp ms) records -> one :class:`Produced` per (alert id, version), ordered
    by alert id and version."""
    first: dict[tuple[str, int], tuple[AlertEvent, float]] = {}
    copies: dict[tuple[str, int], int] = {}
    for value, ts_ms in records:
        ev = codec.decode_alert(value)
        key = (ev.alert_id, ev.version)
        copies[key] = copies.get(key, 0) + 1
        at = ts_ms / 1000.0
        if key not in first or at < first[key][1]:
            first[key] = (ev, at)
    return [Produced(ev, at, copies[key]) for key, (ev, at) in sorted(first.items())]


class AlertLog:
    """A group-less consumer of every partition of ``alerts``, read up to the end on demand."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.consumer: Any = KafkaConsumer(
            bootstrap_servers=[s.strip() for s in bootstrap.split(",")],
            enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
            reconnect_backoff_max_ms=1000,
        )
        parts = self.consumer.partitions_for_topic(topic) or set()
        if not parts:
            raise RuntimeError(f"topic {topic} has no partitions (not created yet?)")
        self.parts = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)
        self.records: list[tuple[bytes, int]] = []

    def read(self, timeout_s: float = 30.0) -> list[Produced]:
        """Read everything produced so far (up to the end offsets now); all versions seen."""
        import time

        end = self.consumer.end_offsets(self.parts)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.consumer.position(tp) >= end[tp] for tp in self.parts):
                break
            for batch in self.consumer.poll(timeout_ms=500).values():
                self.records.extend((r.value, r.timestamp) for r in batch)
        return dedupe(self.records)

    def close(self) -> None:
        self.consumer.close()
