"""The worker's ``audit`` topic read back whole: every record of every partition, from the
oldest still kept (``BROKER_AUDIT_RETENTION_S``) up to the end offsets taken when the reading
starts, so it ends while workers go on writing. ``broker transparency --kafka`` builds its
report from it: the topic holds every worker's records, a worker's ``BROKER_AUDIT_FILE`` only
its own.

Each record's value is one ``adapters.audit.AuditRecord`` as JSON (``ProducerAudit``, keyed by
partner id, so a partner's records are in one partition, in the order written); it is decoded
as :func:`adapters.audit.read_audit` decodes a line. A value that is no audit record is
counted by its partition and offset, not read, as the file reader counts a line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from adapters.audit import AuditRecord
from broker.streams.produce import CONNECT_TIMEOUT_S, bootstrapping
from broker.streams.settings import KafkaSecurity

if TYPE_CHECKING:
    from kafka import KafkaConsumer

# records read so far, and how many there are to read (the end offsets less the beginnings)
ReadProgress = Callable[[int, int], None]
POLL_MS = 500  # one wait for records; the reading ends as soon as every partition is read

_decoder = msgspec.json.Decoder(AuditRecord)  # as adapters.audit's, which is private


class AuditTopicMissing(RuntimeError):
    """Kafka answered, and has no topic of that name (a worker creates it at its first start)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"no topic {topic}")
        self.topic = topic


class AuditTopicStalled(RuntimeError):
    """No record came for ``stalled_s`` while ``left`` were still to read (Kafka went away
    mid-reading): a report of part of the topic would be untrue."""

    def __init__(self, topic: str, left: int, stalled_s: float) -> None:
        super().__init__(f"{topic}: {left} records not read: no answer for {stalled_s:g} s")
        self.topic, self.left, self.stalled_s = topic, left, stalled_s


@dataclass
class AuditTopicRead:
    """What a reading of the audit topic gave: its records, partition by partition, each in
    offset order; where the values that are no audit record are; how many partitions."""

    records: list[AuditRecord] = field(default_factory=list)
    unreadable: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)
    partitions: int = 0


def read_audit_topic(
    bootstrap: str,
    topic: str,
    *,
    security: KafkaSecurity | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    progress: ReadProgress | None = None,
) -> AuditTopicRead:
    """Every record of ``topic`` up to the end offsets of when it was called (no consumer
    group: nothing committed, no worker's assignment touched).

    Raises :class:`broker.streams.produce.KafkaUnreachable` when no broker answers within
    ``connect_timeout_s``, :class:`AuditTopicMissing` when the topic does not exist, and
    :class:`AuditTopicStalled` when the records stop coming for ``connect_timeout_s``.
    """
    from kafka import KafkaConsumer

    with bootstrapping(bootstrap, connect_timeout_s):
        consumer = KafkaConsumer(
            bootstrap_servers=[s.strip() for s in bootstrap.split(",")],
            group_id=None,
            enable_auto_commit=False,
            allow_auto_create_topics=False,  # a mistyped prefix must not make a topic
            # records deleted by retention while it reads: go on from the oldest left
            auto_offset_reset="earliest",
            bootstrap_timeout_ms=int(connect_timeout_s * 1000),
            **(security or KafkaSecurity()).kafka_python_kwargs(),
        )
    try:
        return _read(consumer, topic, stalled_s=connect_timeout_s, progress=progress)
    finally:
        consumer.close()


def _read(consumer: KafkaConsumer, topic: str, *, stalled_s: float,
          progress: ReadProgress | None) -> AuditTopicRead:
    from kafka import TopicPartition

    if topic not in consumer.topics():  # asked of Kafka: creates nothing
        raise AuditTopicMissing(topic)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    left = {tp: end[tp] for tp in tps if end[tp] > begin[tp]}
    for tp in tps:
        consumer.seek(tp, begin[tp])
    consumer.pause(*(tp for tp in tps if tp not in left))
    total, done = sum(end[tp] - begin[tp] for tp in left), 0
    by_partition: dict[int, list[AuditRecord]] = {tp.partition: [] for tp in tps}
    result = AuditTopicRead(partitions=len(tps))
    if progress is not None:  # the total, before the first record
        progress(0, total)
    last_news = time.monotonic()
    while left:
        for tp, batch in consumer.poll(timeout_ms=POLL_MS).items():
            done += _decode(batch, end[tp], by_partition[tp.partition], result.unreadable)
            last_news = time.monotonic()
        for tp in [tp for tp in left if consumer.position(tp) >= end[tp]]:
            consumer.pause(tp)
            del left[tp]
            last_news = time.monotonic()
        if progress is not None:
            progress(done, total)
        if left and time.monotonic() - last_news > stalled_s:
            raise AuditTopicStalled(topic, total - done, stalled_s)
    for partition in sorted(by_partition):
        result.records.extend(by_partition[partition])
    return result


def _decode(batch: list[Any], end: int, records: list[AuditRecord],
            unreadable: list[tuple[int, int]]) -> int:
    """Decode a partition's batch of kafka-python records into ``records`` (a value that is no
    audit record into ``unreadable``), up to offset ``end``; how many were before it."""
    taken = 0
    for rec in batch:
        if rec.offset >= end:  # written after the reading began
            continue
        taken += 1
        try:
            if rec.value is None:  # a tombstone: no audit record
                raise msgspec.DecodeError("no value")
            records.append(_decoder.decode(rec.value))
        except msgspec.DecodeError:
            unreadable.append((rec.partition, rec.offset))
    return taken
