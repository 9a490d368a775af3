"""Input not keyed by its vehicle id, appended again to its own topic under that key.

The worker's partitions are the vehicle ids' (murmur2 of the id, Kafka's default partitioner):
one worker owns a unit's state, its live alert and its ticks. A producer that hashes its keys
another way (librdkafka's CRC32, confluent-kafka's default) or keys by something else puts a
unit's records on another partition, whose owner would process them against a state it does
not own (a second ``create`` of the unit's alert). The vehicle agent refuses such a record
(``misrouted``) and, rather than losing it to ``avl.dlq``, appends it again to the same topic
keyed by the vehicle id: the unit's own partition's owner takes it there, in the order they
came, one Kafka hop later. It is marked (header ``rekeyed_from``): one that comes misrouted
again (the topic's partitions changed under the worker) goes to ``avl.dlq``, never round.
It keeps its first timestamp (when its producer sent it: the worker judges a fix's lateness
no later than that, so a fix re-keyed behind a backlog is not ``late``) and of its headers
only those the worker reads (``keep``: a status's ``kind``; any other, a null one or one of
megabytes, would only cost room). The next flush produces these records with the dead
letters and awaits them before acking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from broker.streams.dead_letters import BatchProducer, DeadLetterBatches

REKEYED_HEADER = "rekeyed_from"  # the partition the record first came on
LATEST_TIMESTAMP_S = 253_402_300_799.0  # 9999-12-31T23:59:59Z: later, stamped when produced


def was_rekeyed(headers: Any) -> bool:
    """Whether a record's headers (a list of pairs, or a mapping) say it was re-keyed."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return any(k == REKEYED_HEADER for k, _ in pairs)


class Rekeying:
    """One outbox per input topic (``DeadLetterBatches`` aimed at the topic itself: keyed,
    murmur2-partitioned, batched, awaited by the flush)."""

    def __init__(self, topics: Iterable[str], producer: Callable[[], BatchProducer], *,
                 max_bytes: int, keep: Iterable[str] = ()) -> None:
        self.outboxes = {t: DeadLetterBatches(t, producer, max_bytes=max_bytes) for t in topics}
        self.keep = frozenset(keep)

    def take(self, topic: str, vehicle_id: str, raw: bytes, headers: Any, partition: int,
             timestamp_s: float | None = None) -> bool:
        """Queue ``raw`` for ``topic`` keyed by ``vehicle_id``, stamped ``timestamp_s`` (its
        first record's), with its ``keep`` headers and marked; False (nothing queued) for a
        record re-keyed once already, of another topic, or larger than the outbox's
        ``max_bytes`` (it would go cut)."""
        outbox = self.outboxes.get(topic)
        if outbox is None or was_rekeyed(headers):
            return False
        key = vehicle_id.encode()
        if len(key) + len(raw) > outbox.max_bytes:
            # the outbox cuts a record to fit, as a dead letter is cut: appended cut, a valid
            # fix was refused as bad_json on its unit's partition, lost. To avl.dlq instead
            return False
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
        kept = [(k, bytes(v)) for k, v in pairs
                if k in self.keep and isinstance(v, bytes | bytearray)]
        # a producer's CreateTime may be anything: past year 9999 it overflowed the batch's int64
        ok = timestamp_s is not None and 0 < timestamp_s < LATEST_TIMESTAMP_S
        stamp = int(timestamp_s * 1000) if ok and timestamp_s is not None else None
        outbox.add(key, raw, [*kept, (REKEYED_HEADER, str(partition).encode())],
                   timestamp_ms=stamp)
        return True
