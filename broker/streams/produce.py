"""Replay a recorded incident into Kafka (kafka-python producer).

Messages go out in file (arrival) order, keyed by vehicle id, so the default partitioner puts
each vehicle's positions and routes on the same partition number of the co-partitioned topics,
and the idempotent producer keeps their order. Timing follows the messages' own ``ts``, scaled
by ``speed`` (2.0 = twice as fast); ``max_speed`` sends without waiting.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from broker import codec
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, TRACCAR
from broker.streams.settings import KafkaSecurity

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of messages sent so far


class _Envelope(msgspec.Struct):
    """The two fields the producer needs; everything else passes through untouched."""

    vehicle_id: str | None = None
    ts: datetime | None = None


class _TraccarDevice(msgspec.Struct):
    id: int | None = None


class _TraccarPosition(msgspec.Struct, rename="camel"):
    fix_time: datetime | int | None = None


class _TraccarEnvelope(msgspec.Struct):
    """Traccar's forwarded position: keyed by its numeric device id, as Traccar keys it."""

    position: _TraccarPosition | None = None
    device: _TraccarDevice | None = None


_envelope = msgspec.json.Decoder(_Envelope)
_traccar_envelope = msgspec.json.Decoder(_TraccarEnvelope)
TOPICS = (POSITIONS, ROUTES, CAD_STATUS, TRACCAR)  # what a replay may send


def envelope(raw: bytes, topic: str = POSITIONS) -> tuple[bytes | None, datetime | None]:
    """(key, event time) of a raw message; (None, None) for bytes that are not its JSON.

    Malformed messages are still sent (the worker's DLQ is part of what a replay shows), JSON
    nested too deeply too (unread: msgspec raised RecursionError on it, out of the replay).
    """
    if codec.too_deep(raw) is not None:
        return None, None
    if topic == TRACCAR:
        return _traccar_key(raw)
    try:
        env = _envelope.decode(raw)
    except msgspec.DecodeError:
        return None, None
    ts = env.ts if env.ts is not None and env.ts.tzinfo is not None else None
    return (env.vehicle_id.encode() if env.vehicle_id else None), ts


def _traccar_key(raw: bytes) -> tuple[bytes | None, datetime | None]:
    try:
        env = _traccar_envelope.decode(raw)
    except msgspec.DecodeError:
        return None, None
    key = str(env.device.id).encode() if env.device and env.device.id is not None else None
    when = env.position.fix_time if env.position else None
    ts: datetime | None = None
    if isinstance(when, datetime) and when.tzinfo is not None:
        ts = when
    elif isinstance(when, int) and 0 <= when < 253_402_300_799_000:
        ts = datetime.fromtimestamp(when / 1000.0, UTC)
    return key, ts


class TopicMismatch(RuntimeError):
    """An existing topic has another partition count than the settings say (co-partitioning):
    the ``topic``, its ``partitions`` and the count ``wanted``."""

    def __init__(self, topic: str, partitions: int, wanted: int) -> None:
        super().__init__(
            f"topic {topic} has {partitions} partitions, BROKER_PARTITIONS is "
            f"{wanted}: co-partitioned topics must agree"
        )
        self.topic, self.partitions, self.wanted = topic, partitions, wanted


class TopicLimitTooSmall(RuntimeError):
    """An existing topic takes smaller record batches (``max.message.bytes``) than the worker's
    producer gathers: a full batch would be refused by Kafka (not retried) and stop the worker
    mid-stream, so it is refused at start, naming the ``topic``, its ``limit`` and the batch."""

    def __init__(self, topic: str, limit: int, batch: int) -> None:
        super().__init__(
            f"topic {topic} takes record batches of at most {limit} bytes (max.message.bytes), "
            f"the producer gathers up to {batch} (BROKER_PRODUCER_MAX_BATCH_BYTES): raise the "
            f"topic's max.message.bytes to {batch} or more, or set "
            f"BROKER_PRODUCER_MAX_BATCH_BYTES to {limit} or less"
        )
        self.topic, self.limit, self.batch = topic, limit, batch


CONNECT_TIMEOUT_S = 30.0  # kafka-python's own bootstrap timeout
DESCRIBE_RETRIES, DESCRIBE_RETRY_S = 5, 0.2  # a topic's configs asked for again, just created


class KafkaUnreachable(RuntimeError):
    """No Kafka broker answered at the bootstrap address within the connect timeout."""

    def __init__(self, bootstrap: str, timeout_s: float) -> None:
        super().__init__(f"no Kafka broker answered at {bootstrap} within {timeout_s:g} s")
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s


@contextlib.contextmanager
def bootstrapping(bootstrap: str, timeout_s: float) -> Iterator[None]:
    """Turn kafka-python's bootstrap timeout (a client that never reached a broker) into
    :class:`KafkaUnreachable`: a wrong address, a stopped Kafka or wrong security settings."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    try:
        yield
    except (KafkaTimeoutError, KafkaConnectionError) as err:
        raise KafkaUnreachable(bootstrap, timeout_s) from err


def ensure_topics(
    bootstrap: str,
    names: Sequence[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    security: KafkaSecurity | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    max_batch_bytes: int | None = None,
    written: Sequence[str] | None = None,
) -> list[str]:
    """Create the topics that are missing and check the partition count of those that exist.

    Never rely on broker auto-creation: it would use the broker's default partition count and
    break co-partitioning. ``configs`` (topic -> Kafka topic configs, e.g. ``retention.ms``)
    are set on creation and applied to existing topics too. With ``max_batch_bytes`` (what a
    producer writing them gathers per batch) the ``max.message.bytes`` of every topic in
    ``written`` (default: all of ``names``) must take it.
    Returns the names created; raises :class:`TopicMismatch`, :class:`TopicLimitTooSmall`, and
    :class:`KafkaUnreachable` when no broker answers within ``connect_timeout_s``.
    """
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    configs = configs or {}

    with bootstrapping(bootstrap, connect_timeout_s):
        admin = KafkaAdminClient(
            bootstrap_servers=[s.strip() for s in bootstrap.split(",")],
            bootstrap_timeout_ms=int(connect_timeout_s * 1000),
            **(security or KafkaSecurity()).kafka_python_kwargs(),
        )
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a worker made it meanwhile
                admin.create_topics([
                    NewTopic(n, partitions, replication_factor,
                             topic_configs=dict(configs.get(n, {})))
                    for n in missing
                ])
        present = [n for n in names if n in existing]
        altered = [ConfigResource(ConfigResourceType.TOPIC, n, configs=dict(configs[n]))
                   for n in present if configs.get(n)]
        if altered:
            admin.alter_configs(altered)
        for desc in admin.describe_topics(present) if present else []:
            n = len(desc.get("partitions") or [])
            if n != partitions:
                # kafka-python 3 names it "name" (MetadataResponse's Name); "topic" before
                raise TopicMismatch(str(desc.get("name") or desc.get("topic")), n, partitions)
        if max_batch_bytes is not None:
            check_batch_limits(admin, list(names if written is None else written),
                               max_batch_bytes)
        return missing
    finally:
        admin.close()


def check_batch_limits(admin: KafkaAdminClient, checked: list[str], batch: int) -> None:
    """Raise :class:`TopicLimitTooSmall` for the first of ``checked`` whose limit is below
    ``batch``; warn about those Kafka would not describe (no permission), not a refusal."""
    limits = batch_limits(admin, checked)
    for _ in range(DESCRIBE_RETRIES):  # a topic just created: not known everywhere yet
        if not (later := [n for n in checked if n not in limits]):
            break
        time.sleep(DESCRIBE_RETRY_S)
        limits |= batch_limits(admin, later)
    if unknown := sorted(set(checked) - limits.keys()):
        # kafka-python drops a topic Kafka answered with an error
        log.warning("max.message.bytes of %s unknown: the producer's batches of %d bytes "
                    "not checked against it", ", ".join(unknown), batch)
    for topic, limit in limits.items():
        if limit < batch:
            raise TopicLimitTooSmall(topic, limit, batch)


def batch_limits(admin: KafkaAdminClient, names: Sequence[str]) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` as Kafka applies it (set on the topic, or the
    broker's default): the largest record batch it takes."""
    from kafka.admin import ConfigResource, ConfigResourceType

    key = "max.message.bytes"
    wanted = [ConfigResource(ConfigResourceType.TOPIC, n, configs={key: None}) for n in names]
    # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}; "all": defaults too
    answers = admin.describe_configs(wanted, config_filter="all").get("topic", {})
    return {n: int(c[key]["value"]) for n, c in answers.items() if key in c}


@dataclass
class ReplaySummary:
    """What a replay into Kafka sent."""

    sent_by_topic: Counter[str] = field(default_factory=Counter)
    vehicles: set[str] = field(default_factory=set)  # keys: vehicle ids (Traccar: device ids)
    unkeyed: int = 0  # messages with no readable key (sent without one)
    elapsed_s: float = 0.0
    event_span_s: float = 0.0  # event time covered, first to last ts

    def count(self, topic: str, key: bytes | None) -> None:
        """One message sent to ``topic`` with ``key``."""
        self.sent_by_topic[topic] += 1
        if key is None:
            self.unkeyed += 1
        else:
            self.vehicles.add(key.decode())

    @property
    def sent(self) -> int:
        """Messages sent in all."""
        return sum(self.sent_by_topic.values())

    def describe(self) -> str:
        """One-paragraph plain-text summary."""
        topics = ", ".join(f"{t}: {n}" for t, n in sorted(self.sent_by_topic.items()))
        rate = self.sent / self.elapsed_s if self.elapsed_s > 0 else float("inf")
        return (
            f"sent {self.sent} messages ({topics}) for {len(self.vehicles)} vehicles, "
            f"{self.unkeyed} without a key; {self.event_span_s:.0f} s of event time in "
            f"{self.elapsed_s:.1f} s ({rate:.0f} msg/s)"
        )


def produce_replay(
    messages: Sequence[tuple[str, bytes]],
    bootstrap: str,
    *,
    speed: float | None = 1.0,
    max_speed: bool = False,
    topic_prefix: str = "",
    partitions: int | None = 8,
    security: KafkaSecurity | None = None,
    progress: Progress | None = None,
    producer: KafkaProducer | None = None,
    sleep: Callable[[float], None] = time.sleep,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> ReplaySummary:
    """Send ``(topic, raw)`` messages (``broker.replay.load_messages``) to Kafka.

    ``topic`` is one of :data:`TOPICS`; ``topic_prefix`` is prepended. With
    ``speed=None`` or ``max_speed`` nothing waits. ``producer`` may be an existing
    ``kafka.KafkaProducer`` (not closed here); otherwise one is made and closed. Missing input
    topics are created first with ``partitions`` (None: leave topic creation to the caller).
    Raises :class:`KafkaUnreachable` when no broker answers within ``connect_timeout_s``.
    """
    from kafka import KafkaProducer

    if partitions is not None:
        ensure_topics(
            bootstrap,
            [topic_prefix + t for t in TOPICS],
            partitions=partitions,
            security=security,
            connect_timeout_s=connect_timeout_s,
        )
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    own = producer is None
    with bootstrapping(bootstrap, connect_timeout_s):
        prod = producer or KafkaProducer(
            bootstrap_servers=[s.strip() for s in bootstrap.split(",")],
            acks="all",
            enable_idempotence=True,  # keeps per-partition order with several requests in flight
            linger_ms=5,
            bootstrap_timeout_ms=int(connect_timeout_s * 1000),
            **(security or KafkaSecurity()).kafka_python_kwargs(),
        )
    summary = ReplaySummary()
    pacer = _Pacer(None if max_speed else speed)
    try:
        # Metadata of every topic first: a first send to a topic blocks on it, and at max speed
        # that pause, mid-stream, would read to a live worker as its feed going quiet.
        for topic in sorted({t for t, _ in messages} & set(TOPICS)):
            prod.partitions_for(topic_prefix + topic)
        for i, (topic, raw) in enumerate(messages, start=1):
            if topic not in TOPICS:
                raise ValueError(f"message {i}: unknown topic {topic!r}")
            key, ts = envelope(raw, topic)
            wait = pacer.wait_s(ts)
            if wait > 0:
                prod.flush()
                sleep(wait)
            prod.send(topic_prefix + topic, key=key, value=raw)
            summary.count(topic, key)
            if progress is not None:
                progress(i)
        prod.flush()
    finally:
        if own:
            prod.close()
    summary.elapsed_s = time.monotonic() - pacer.started
    summary.event_span_s = pacer.span_s
    return summary


class _Pacer:
    """When each message is due: its event time since the first, scaled by ``speed`` (None:
    never wait). Only a message newer than all before it moves the schedule."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.started = time.monotonic()
        self.first_ts: datetime | None = None
        self.last_ts: datetime | None = None

    def wait_s(self, ts: datetime | None) -> float:
        """Seconds to wait before sending a message of event time ``ts``."""
        if ts is None:
            return 0.0
        self.first_ts = self.first_ts or ts
        if self.last_ts is not None and ts <= self.last_ts:
            return 0.0
        self.last_ts = ts
        if self.speed is None:
            return 0.0
        due = self.started + (ts - self.first_ts).total_seconds() / self.speed
        return due - time.monotonic()

    @property
    def span_s(self) -> float:
        """Event time covered, first to last."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return (self.last_ts - self.first_ts).total_seconds()


@contextlib.contextmanager
def rich_progress(total: int) -> Iterator[Progress]:
    """A rich progress bar on stderr, as a :data:`Progress` callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task("replay", total=total)
        yield lambda n: bar.update(task, completed=n)
