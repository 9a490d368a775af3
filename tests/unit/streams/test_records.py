"""A header key that is not UTF-8 in a fetched batch (``broker.streams.records``): read, not
raised out of aiokafka's fetcher (which stopped the worker on that record after every
restart, and every worker the partition went to)."""

from __future__ import annotations

import struct

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.structs import TopicPartition

from broker.streams import records


class RawKey(str):
    """A header key whose bytes are not UTF-8 (as librdkafka or ``kcat -H`` may write)."""

    def encode(self, *args: object, **kwargs: object) -> bytes:
        return b"\xff\xfe"


def batch(base_offset: int, headers: list[list[tuple[str, bytes]]], compression: int) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(
        magic=2, compression_type=compression, is_transactional=0, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1_000_000)
    for delta, hs in enumerate(headers):
        builder.append(delta, timestamp=None, key=b"E1", value=b'{"n": %d}' % delta, headers=hs)
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base_offset)  # not under the CRC
    return bytes(raw)


@pytest.mark.parametrize("compression", [0, 1])  # none, gzip
def test_a_header_key_that_is_not_utf8_is_read_and_every_record_handed_over(
    compression: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = [("kind", b"status")]
    data = (batch(0, [good, [(RawKey("k"), b"v"), *good], []], compression)
            + batch(3, [good], compression))
    with pytest.raises(UnicodeDecodeError):  # aiokafka's own reader
        list(fetcher.PartitionRecords(TopicPartition("t", 0), records._C_RECORDS(data), [], 0,
                                      None, None, True, fetcher.READ_UNCOMMITTED))
    monkeypatch.setattr(fetcher, "MemoryRecords", fetcher.MemoryRecords)  # undone after
    records.install()
    read = fetcher.PartitionRecords(TopicPartition("t", 0), fetcher.MemoryRecords(data), [], 0,
                                    None, None, True, fetcher.READ_UNCOMMITTED)
    got = [(r.offset, r.value, r.headers) for r in read]
    assert got == [
        (0, b'{"n": 0}', (("kind", b"status"),)),
        (1, b'{"n": 1}', (("\ufffd\ufffd", b"v"), ("kind", b"status"))),
        (2, b'{"n": 2}', ()),
        (3, b'{"n": 0}', (("kind", b"status"),)),
    ]
