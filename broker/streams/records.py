"""Kafka record batches as the worker's consumer reads them: a header key that is not UTF-8 is
read, not raised.

Kafka's record header keys are strings, but a producer may write any bytes there (librdkafka
takes a name and its length, ``kcat -H`` passes what it is given). aiokafka decodes each key as
UTF-8 while it iterates a fetched batch, and raised ``UnicodeDecodeError`` out of its fetcher:
Faust's consumer crashed and the worker stopped, before any of the batch reached an agent, so
nothing was dead-lettered or acked. The restarted worker, or the one the partition went to,
fetched the same record and stopped the same way: one record on an input topic stopped every
worker that came to own its partition (measured: ``tests/integration/test_poison_input.py``).

:class:`LenientRecords` stands in for aiokafka's ``MemoryRecords`` in its fetcher
(:func:`install`): each batch is still read by aiokafka's C reader; only a batch whose reading
raised ``UnicodeDecodeError`` is read again from its bytes by aiokafka's pure-Python reader,
header keys decoded with ``errors="replace"``, from the record after the last one handed over.
The record goes on as any other (the worker reads only its own header names, ``kind`` and
``rekeyed_from``, which such a key never equals).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.record import default_records, memory_records

_C_RECORDS = memory_records.MemoryRecords  # aiokafka's own (its C reader when built)
_LOG_OVERHEAD = 12  # a batch's base offset (int64) and length (int32), before its length
_BATCH_LENGTH = struct.Struct(">i")


class _LenientSlice(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return super().decode(encoding, "replace")


class _LenientBuffer(bytearray):
    """A batch's bytes whose slices decode leniently (aiokafka's Python reader decodes a
    header key as ``buffer[a:b].decode("utf-8")``)."""

    def __getitem__(self, index: Any) -> Any:
        got = super().__getitem__(index)
        return _LenientSlice(got) if isinstance(index, slice) else got


class _LenientBatch:
    """A batch read by aiokafka's C reader, its records read again leniently from ``raw`` if a
    header key is not UTF-8. Anything else is the batch's own (``base_offset``,
    ``validate_crc`` ...: the fetcher asks)."""

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch, self._raw = batch, raw  # copied only if it has to be read again

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:  # the fetcher reads a control batch's marker this way
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        last = None
        try:
            for record in self._batch:
                last = record.offset
                yield record
        except UnicodeDecodeError:
            for record in lenient_batch(bytes(self._raw)):
                if last is None or record.offset > last:
                    yield record


def lenient_batch(raw: bytes) -> Any:
    """aiokafka's Python reader of one v2 batch (``raw``, its bytes), iterated: its header keys
    decoded with ``errors="replace"``."""
    batch = default_records._DefaultRecordBatchPy(raw)
    iter(batch)  # decompressed now, into its buffer
    batch._buffer = _LenientBuffer(batch._buffer)
    return batch


class LenientRecords:
    """aiokafka's ``MemoryRecords`` over a fetched partition's bytes, its v2 batches wrapped
    (:class:`_LenientBatch`)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._records = _C_RECORDS(data)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._pos
        (length,) = _BATCH_LENGTH.unpack_from(self._data, start + 8)
        self._pos = start + _LOG_OVERHEAD + length
        if getattr(batch, "magic", 0) < 2:  # legacy message sets carry no headers
            return batch
        return _LenientBatch(batch, memoryview(self._data)[start:self._pos])


def install() -> None:
    """aiokafka's fetcher reads what it fetched through :class:`LenientRecords` (every
    consumer of the process)."""
    fetcher.MemoryRecords = LenientRecords
