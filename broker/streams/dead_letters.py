"""Dead-letter records gathered between flushes and produced to Kafka a batch at a time.

Why: producing each refused message on its own (one Faust send, one producer future) cost about
as much as everything else the worker does for it; a flood of malformed lines (the ``make
faults`` hostile burst: 100,000 in under a minute) then held the real fixes behind it for a
minute and more. Here the agent only appends the record (synchronous, cheap); the flush takes
what was gathered at its snapshot, hands it to the producer as one record batch per partition,
and awaits those batches before it acks the messages they stand for, exactly as it awaits the
alerts (``broker.streams.states``). A crash before the acks loses nothing: the messages come
again and are refused again.

A dead letter holds at most ``StreamSettings.dead_letter_bytes`` of the refused message
(:func:`fitted`): its first bytes, with headers giving the original's size and SHA-256. Kafka
checks its size limit against the *compressed* batch, so it took a gzip-compressed 2 MB line on
``avl.positions``, which the consumer handed over whole; its dead letter (2 MB, uncompressed) was
refused (MESSAGE_TOO_LARGE), the flush failed and the worker stopped, un-acked, on every
restart. A message within some 80 bytes of the limit did the same (the headers made it too big).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from aiokafka.partitioner import DefaultPartitioner

Headers = Sequence[tuple[str, bytes]]
# of a dead letter's bytes, the most its key keeps (a vehicle id, a Traccar device id: a key
# near Kafka's limit is no id, and would leave the value no room)
KEY_MAX_BYTES = 1024


def dlq_headers(source_topic: str, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """Headers of a DLQ record: why it was refused and where it came from."""
    return [
        ("reason", reason.encode()),
        ("detail", detail[:500].encode()),
        ("source_topic", source_topic.encode()),
    ]


def reason_of(headers: Iterable[tuple[str, bytes]]) -> str:
    """A DLQ record's ``reason`` header (:func:`dlq_headers`), "" if it has none."""
    return next((value.decode(errors="replace") for name, value in headers if name == "reason"),
                "")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message as it goes to the dead-letter topic: its key and original bytes,
    and headers saying why (:func:`dlq_headers`)."""

    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int | None = None  # the record's timestamp; None: when it is produced


def fitted(key: bytes | None, value: bytes, headers: Headers, max_bytes: int) -> DeadLetter:
    """The dead letter of a refused message whose key and value are ``key`` and ``value``: as
    they are when together they are at most ``max_bytes``; else their first bytes (the key's at
    most :data:`KEY_MAX_BYTES`) and, after ``headers``, ``truncated: true`` and of each one cut
    its size and SHA-256 (hex): ``original_bytes``, ``original_sha256`` of the value,
    ``original_key_bytes``, ``original_key_sha256`` of the key.

    >>> letter = fitted(b"E1", b"x" * 10, [("reason", b"oversized")], max_bytes=6)
    >>> letter.key, letter.value, [name for name, _ in letter.headers]
    (b'E1', b'xxxx', ['reason', 'truncated', 'original_bytes', 'original_sha256'])
    """
    key_bytes = len(key) if key is not None else 0
    if key_bytes + len(value) <= max_bytes:
        return DeadLetter(key, value, headers)
    noted: list[tuple[str, bytes]] = [("truncated", b"true")]
    if key is not None and len(key) > min(KEY_MAX_BYTES, max_bytes):
        noted += [("original_key_bytes", str(len(key)).encode()),
                  ("original_key_sha256", hashlib.sha256(key).hexdigest().encode())]
        key = key[:min(KEY_MAX_BYTES, max_bytes)]
    room = max_bytes - (len(key) if key is not None else 0)
    if len(value) > room:
        noted += [("original_bytes", str(len(value)).encode()),
                  ("original_sha256", hashlib.sha256(value).hexdigest().encode())]
        value = value[:room]
    return DeadLetter(key, value, [*headers, *noted])


class BatchBuilder(Protocol):
    """What aiokafka's ``BatchBuilder`` offers (typed here: aiokafka ships no stubs)."""

    def append(self, *, timestamp: float | None, key: bytes | None, value: bytes | None,
               headers: Headers = ...) -> object | None: ...

    def close(self) -> None: ...


class BatchProducer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used here."""

    def create_batch(self) -> BatchBuilder: ...

    async def send_batch(
        self, batch: BatchBuilder, topic: str, *, partition: int
    ) -> Awaitable[Any]: ...

    async def partitions_for(self, topic: str) -> set[int]: ...


class DeadLetterBatches:
    """Refused messages of one worker, gathered until the next flush takes them.

    ``producer`` returns the started aiokafka producer (looked up at produce time: Faust starts
    it after the agents are registered); ``max_bytes``: the most of a message (key and value) a
    dead letter keeps (:func:`fitted`); ``taken``: called with each record once Kafka has it
    (what counts the dead letters: counted when gathered, those a rebalance dropped were
    counted again when their messages came back, and those of a failed flush counted)."""

    def __init__(self, topic: str, producer: Callable[[], BatchProducer], *,
                 max_bytes: int, taken: Callable[[DeadLetter], object] | None = None) -> None:
        self.topic = topic
        self.max_bytes = max_bytes
        self._producer = producer
        self._taken = taken  # called with each record once Kafka has its batch
        self._partitioner = DefaultPartitioner()  # Kafka's murmur2, as every producer here
        self._pending: list[DeadLetter] = []

    def add(self, key: bytes | None, value: bytes, headers: Headers,
            timestamp_ms: int | None = None) -> None:
        """One more record for the next flush (cut to fit: :func:`fitted`), stamped
        ``timestamp_ms`` (None: when produced)."""
        letter = fitted(key, value, headers, self.max_bytes)
        if timestamp_ms is not None:
            letter = replace(letter, timestamp_ms=timestamp_ms)
        self._pending.append(letter)

    def __len__(self) -> int:
        return len(self._pending)

    def take(self) -> list[DeadLetter]:
        """What was gathered so far (the flush's snapshot); the buffer starts empty again."""
        taken, self._pending = self._pending, []
        return taken

    def clear(self) -> None:
        """Forget what was gathered (a rebalance: the messages will come again)."""
        self._pending = []

    async def produce(self, letters: list[DeadLetter]) -> list[Awaitable[Any]]:
        """Hand ``letters`` to the producer, one batch per partition (more when a batch fills
        up); returns the futures that resolve once Kafka has each batch."""
        if not letters:
            return []
        producer = self._producer()
        partitions = sorted(await producer.partitions_for(self.topic))
        by_partition: dict[int, list[DeadLetter]] = {}
        for letter in letters:
            p = self._partitioner(letter.key, partitions, partitions)
            by_partition.setdefault(p, []).append(letter)
        futures: list[Awaitable[Any]] = []
        for partition, group in by_partition.items():
            batch, in_batch = producer.create_batch(), list[DeadLetter]()
            for letter in group:
                if not self._append(batch, letter):
                    # full: off it goes; the next starts with this record (the first
                    # record of a batch always fits, whatever its size)
                    futures.append(await self._send(producer, batch, partition, in_batch))
                    batch, in_batch = producer.create_batch(), []
                    self._append(batch, letter)
                in_batch.append(letter)
            futures.append(await self._send(producer, batch, partition, in_batch))
        return futures

    @staticmethod
    def _append(batch: BatchBuilder, letter: DeadLetter) -> bool:
        return batch.append(timestamp=letter.timestamp_ms, key=letter.key, value=letter.value,
                            headers=letter.headers) is not None

    async def _send(self, producer: BatchProducer, batch: BatchBuilder, partition: int,
                    letters: list[DeadLetter]) -> Awaitable[Any]:
        batch.close()
        fut = await producer.send_batch(batch, self.topic, partition=partition)
        if self._taken is None:
            return fut
        done = asyncio.ensure_future(fut)
        done.add_done_callback(partial(self._count, letters))
        return done

    def _count(self, letters: list[DeadLetter], fut: asyncio.Future[Any]) -> None:
        if self._taken is not None and not fut.cancelled() and fut.exception() is None:
            for letter in letters:
                self._taken(letter)
