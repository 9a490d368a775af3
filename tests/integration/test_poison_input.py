"""Input records that once stopped the worker for good, on a real one: each goes to ``avl.dlq``
with its reason (or, a header key that is not UTF-8, is read), and the stream goes on (the
next fix makes its alert, the offset is committed past it).

- JSON nested a thousand deep: msgspec raised RecursionError out of every decoder; on
  ``avl.positions`` the worker stopped on that record after every restart, on ``cad.status``
  the forwarder never acked it.
- A 2 MB line Kafka took gzip-compressed (its limit applies to the compressed batch): refused
  as ``oversized``, its 2 MB dead letter was refused by Kafka (MESSAGE_TOO_LARGE), the flush
  failed and the worker stopped, un-acked, on every restart. On ``cad.status`` a 1,000,100-byte
  line's dead letter was over the producer's request limit: the forwarder's send raised.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer, TopicPartition

from broker import codec
from broker.model import Position
from broker.streams.settings import StreamSettings
from tests.integration.conftest import Run, Worker, alerts_of, read_topic, wait_committed

pytestmark = pytest.mark.integration


def _fix(vehicle_id: str) -> bytes:
    return codec.encode(Position(
        vehicle_id=vehicle_id, ts=datetime.now(UTC), lat=35.2271, lon=-80.8431,
        status="responding", lights_sirens=True, incident_id="F-POISON", speed_mps=12.0,
        heading_deg=90.0,
    ))


def _status(vehicle_id: str) -> bytes:
    return json.dumps({"vehicle_id": vehicle_id, "ts": datetime.now(UTC).isoformat(),
                       "status": "available"}).encode()


def _the_stream_went_on(run: Run, worker: Worker, vehicle_id: str, poison_at: int,
                        partition: int) -> None:
    """A fix sent after the poison made its alert, the worker still runs, and its group
    committed ``avl.positions`` past the poison (it will not meet it again after a restart)."""
    alerts = read_topic(run.bootstrap, run.topic("alerts"), timeout_s=60,
                        until=lambda r: any(e.vehicle_id == vehicle_id for e in alerts_of(r)))
    assert [(e.action, e.vehicle_id) for e in alerts_of(alerts)] == [("create", vehicle_id)]
    tp = TopicPartition(run.topic("avl.positions"), partition)
    assert wait_committed(run, tp, poison_at + 1) > poison_at
    assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()


def test_json_nested_too_deeply_is_dead_lettered_and_the_stream_goes_on(kafka_run: Run) -> None:
    deep = b'{"vehicle_id": "E1", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    worker = kafka_run.worker()
    worker.wait_ready()
    producer = KafkaProducer(bootstrap_servers=kafka_run.bootstrap)
    try:
        # the forwarder's input first, then the vehicle agent's, then a good fix of that unit
        producer.send(kafka_run.topic("cad.status"), deep, key=b"E1").get(10)
        producer.send(kafka_run.topic("cad.status"), _status("E1"), key=b"E1").get(10)
        poison = producer.send(kafka_run.topic("avl.positions"), deep, key=b"E1").get(10)
        producer.send(kafka_run.topic("avl.positions"), _fix("E1"), key=b"E1").get(10)
    finally:
        producer.close()
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"), timeout_s=60,
                     until=lambda r: len(r) >= 2, idle_s=1.0)
    got = sorted((dict(r.headers)["source_topic"], r.value) for r in dlq)  # type: ignore[attr-defined]
    assert got == sorted([(kafka_run.topic("cad.status").encode(), deep),
                          (kafka_run.topic("avl.positions").encode(), deep)])
    for record in dlq:
        headers = dict(record.headers)  # type: ignore[attr-defined]
        assert headers["reason"] == b"bad_json"
        assert b"nested too deeply" in headers["detail"]
    _the_stream_went_on(kafka_run, worker, "E1", poison.offset, poison.partition)


def test_a_record_too_large_for_its_dead_letter_is_cut_and_the_stream_goes_on(
    kafka_run: Run,
) -> None:
    keep = StreamSettings().dead_letter_bytes  # the worker runs with the default
    big = b'{"vehicle_id": "E2", "pad": "' + b"a" * 2_000_000 + b'"}'
    assert len(gzip.compress(big)) < 100_000  # Kafka takes it: its limit is on the batch
    near = b"x" * 1_000_100  # no compression: within Kafka's limit, over the producer's
    worker = kafka_run.worker()
    worker.wait_ready()
    gz = KafkaProducer(bootstrap_servers=kafka_run.bootstrap, compression_type="gzip",
                       max_request_size=3_000_000)
    plain = KafkaProducer(bootstrap_servers=kafka_run.bootstrap, max_request_size=3_000_000)
    try:
        plain.send(kafka_run.topic("cad.status"), near, key=b"E2").get(10)
        poison = gz.send(kafka_run.topic("avl.positions"), big, key=b"E2").get(10)
        plain.send(kafka_run.topic("avl.positions"), _fix("E2"), key=b"E2").get(10)
    finally:
        gz.close()
        plain.close()
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"), timeout_s=60,
                     until=lambda r: len(r) >= 2, idle_s=1.0)
    by_source = {dict(r.headers)["source_topic"]: r for r in dlq}  # type: ignore[attr-defined]
    assert len(dlq) == 2 and len(by_source) == 2
    for source, original, key in [("avl.positions", big, b"E2"), ("cad.status", near, b"E2")]:
        record = by_source[kafka_run.topic(source).encode()]
        headers = dict(record.headers)  # type: ignore[attr-defined]
        assert headers["reason"] == b"oversized"
        assert headers["truncated"] == b"true"
        assert headers["original_bytes"] == str(len(original)).encode()
        assert headers["original_sha256"] == hashlib.sha256(original).hexdigest().encode()
        assert record.key == key  # type: ignore[attr-defined]
        assert record.value == original[:keep - len(key or b"")]  # type: ignore[attr-defined]
    _the_stream_went_on(kafka_run, worker, "E2", poison.offset, poison.partition)


class _RawKey(str):
    """A header key whose bytes are not UTF-8 (Kafka's header keys are strings, but a
    librdkafka producer or ``kcat -H`` writes whatever bytes it is given)."""

    def encode(self, *args: object, **kwargs: object) -> bytes:
        return b"\xff\xfe"


def test_a_header_key_that_is_not_utf8_is_read_and_the_stream_goes_on(
    kafka_run: Run,
) -> None:
    """aiokafka raised out of its fetcher on such a key: the worker stopped on it, restart
    after restart. The fix is read as any other (its alert is the only one of its unit)."""
    worker = kafka_run.worker()
    worker.wait_ready()
    producer = KafkaProducer(bootstrap_servers=kafka_run.bootstrap)
    try:
        poison = producer.send(kafka_run.topic("avl.positions"), _fix("E3"), key=b"E3",
                               headers=[(_RawKey("k"), b"v")]).get(10)
    finally:
        producer.close()
    _the_stream_went_on(kafka_run, worker, "E3", poison.offset, poison.partition)
