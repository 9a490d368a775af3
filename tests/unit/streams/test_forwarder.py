"""The forwarder (``broker.streams.ingest``) on a failure: a message it cannot hand to the
producer stops the worker un-acked, and nothing after it is acked; batches settle in order."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from broker import codec
from broker.agencies import load_agencies
from broker.drive import CAD_STATUS, TRACCAR
from broker.failure import StopWork
from broker.streams import ingest
from broker.streams.ingest import Forwarder, IngestEndpoint
from broker.streams.log_repeats import MISROUTED
from broker.streams.runtime import Runtime, partition_for
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"


class Refused(Exception):
    """What the producer raises for a record it will not take (too large, buffer full ...)."""


def _status(vehicle_id: str, status: str) -> bytes:
    return json.dumps({"vehicle_id": vehicle_id, "ts": datetime.now(UTC).isoformat(),
                       "status": status}).encode()


class Producer:
    """``send`` resolves at once, or raises for a value in ``refuse``; ``delays`` holds back
    the future of a value until its event is set, ``fails`` makes that future fail."""

    def __init__(self, refuse: frozenset[bytes] = frozenset()) -> None:
        self.refuse = refuse
        self.sent: list[bytes] = []
        self.records: list[tuple[str, Any, dict[str, bytes]]] = []  # topic, key, headers
        self.timestamps: list[float | None] = []  # each record's, in seconds (Faust's send)
        self.gates: dict[bytes, tuple[asyncio.Event, BaseException | None]] = {}

    async def send(self, topic: str, key: Any, value: bytes, partition: Any, timestamp: Any,
                   headers: Any) -> asyncio.Future[Any]:
        if value in self.refuse:
            raise Refused("the producer refused the record")
        self.sent.append(value)
        self.records.append((topic, key, dict(headers or [])))
        self.timestamps.append(timestamp)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value in self.gates:
            gate, error = self.gates[value]

            async def resolve() -> None:
                await gate.wait()
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

            asyncio.get_running_loop().create_task(resolve())
        else:
            fut.set_result(None)
        return fut


class Stream:
    """Faust's stream as the forwarder reads it: ``noack().events()`` (``keys``: the records'
    keys, none by default)."""

    def __init__(self, values: list[bytes], acked: list[int], partition: int = 0,
                 keys: list[bytes | None] | None = None, timestamp: float | None = None) -> None:
        self.values, self.acked, self.partition = values, acked, partition
        self.keys = keys or [None] * len(values)
        self.timestamp = timestamp  # the records' Kafka timestamp (s); None: none

    def noack(self) -> Stream:
        return self

    async def events(self) -> AsyncIterator[Any]:
        for offset, value in enumerate(self.values):
            message = SimpleNamespace(topic="cad.status", partition=self.partition, offset=offset,
                                      timestamp=self.timestamp)
            yield SimpleNamespace(value=value, key=self.keys[offset], message=message,
                                  ack=lambda o=offset: self.acked.append(o))


def _forwarder(producer: Producer) -> tuple[Forwarder, list[StopWork]]:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    stops: list[StopWork] = []

    async def stop_worker(app: Any, stop: StopWork) -> None:
        rt.stopped = rt.stopped or stop
        stops.append(stop)

    rt.stop_worker = stop_worker  # type: ignore[method-assign]
    app = SimpleNamespace(producer=producer)
    return Forwarder(app, None, rt, None, rt.failure_policy()), stops  # type: ignore[arg-type]


def test_a_message_the_producer_refuses_stops_the_worker_with_it_and_the_rest_unacked() -> None:
    """Raised out of the agent, Faust restarted it and acked the messages after the refused
    one: the commit went past a lost status change (responding -> available), its alert live."""
    refused = _status("E1", "available") + b" " * 10
    values = [_status("E1", "responding"), refused, _status("E1", "dispatched")]
    producer = Producer(refuse=frozenset({refused}))
    forwarder, stops = _forwarder(producer)
    acked: list[int] = []

    stream = Stream(values, acked, partition_for(b"E1", forwarder.rt.settings.partitions))
    asyncio.run(forwarder.run(CAD_STATUS, stream))  # type: ignore[arg-type]

    assert acked == [0]  # the one before, once Kafka had it; not the refused one, nor after
    assert producer.sent == [values[0]]
    assert [s.failure.site for s in stops] == ["ingest"]
    failure = stops[0].failure
    assert f"cad.status[{stream.partition}]@1" in failure.key and "Refused" in failure.error
    assert ('broker_failures_total{decision="stop",site="ingest"} 1.0'
            in forwarder.rt.metrics.render().decode())


def test_a_later_batch_is_not_acked_before_an_earlier_one_failed() -> None:
    """The ack timer and the agent both settle: a batch taken later, whose sends came back
    first, was acked while the earlier one was still in flight, and then failed."""
    first, second = _status("E1", "responding"), _status("E2", "responding")
    producer = Producer()
    gate = asyncio.Event()
    producer.gates[first] = (gate, Refused("Kafka did not take it"))
    forwarder, stops = _forwarder(producer)
    acked: list[str] = []

    async def scenario() -> tuple[bool, bool]:
        fut, _ = await forwarder.forward(CAD_STATUS, first, datetime.now(UTC), "cad.status")
        forwarder.pending.append((fut, lambda: acked.append("first")))
        earlier = asyncio.create_task(forwarder.settle())  # the timer's: awaits the first
        await asyncio.sleep(0)
        fut, _ = await forwarder.forward(CAD_STATUS, second, datetime.now(UTC), "cad.status")
        forwarder.pending.append((fut, lambda: acked.append("second")))
        later = asyncio.create_task(forwarder.settle())  # the agent's: its send is done
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        return await earlier, await later

    assert asyncio.run(scenario()) == (False, False)
    assert acked == []
    assert len(stops) == 1


def test_a_status_not_keyed_by_its_vehicle_id_is_counted_warned_and_still_forwarded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A status on another ``cad.status`` partition than its vehicle id's (a librdkafka
    producer's CRC32 partitioner misroutes most of them): appended to its unit's log, keyed by
    the vehicle id as every status is, and counted, with a warning that says what to fix."""
    caplog.set_level(logging.WARNING, logger=MISROUTED.name)
    producer = Producer()
    forwarder, stops = _forwarder(producer)
    n = forwarder.rt.settings.partitions
    own = partition_for(b"E1", n)
    values = [_status("E1", "responding"), _status("E1", "available")]
    acked: list[int] = []

    async def forward(partition: int) -> None:
        await forwarder.run(CAD_STATUS, Stream(values, acked, partition))  # type: ignore[arg-type]
        assert await forwarder.settle()  # the ack timer's

    asyncio.run(forward((own + 1) % n))
    assert acked == [0, 1] and stops == []
    assert [(topic, key) for topic, key, _ in producer.records] == [
        ("avl.positions", b"E1")] * 2
    assert producer.sent == values  # as they came, in order
    metrics = forwarder.rt.metrics.render().decode()
    assert "broker_misrouted_total 2.0" in metrics
    assert 'reason="misrouted"' not in metrics  # not refused
    warnings = [r.getMessage() for r in caplog.records if r.name == MISROUTED.name]
    # one or both (another test may have held repeats back: log_repeats)
    assert warnings and f"belongs to input partition {own}" in warnings[0]
    assert "partitioner=murmur2_random" in warnings[0]
    asyncio.run(forward(own))
    assert [topic for topic, _, _ in producer.records[2:]] == ["avl.positions"] * 2
    assert "broker_misrouted_total 2.0" in forwarder.rt.metrics.render().decode()


@pytest.mark.parametrize("kind", [CAD_STATUS, TRACCAR])
def test_a_decoder_bug_is_dead_lettered_with_its_bytes_and_the_stream_goes_on(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Junk is a Rejection; a decoder that raises is a bug of ours on these bytes: parked in
    ``avl.dlq`` as ``decode_error`` with them, acked in its turn. It stopped the worker (the
    ``ingest`` site), un-acked: the restarted worker read the same record and stopped again,
    every later status of the partition held behind it."""
    poison = _status("E1", "available") + b" "
    values = [_status("E1", "responding"), poison, _status("E1", "dispatched")]
    real = codec.decode_status

    def decode(raw: bytes, *args: Any, received_at: datetime, **kwargs: Any) -> Any:
        if raw == poison:
            raise ZeroDivisionError("a bug")
        return real(raw, received_at=received_at)  # Traccar's too: what it reads is not the point

    if kind == TRACCAR:
        monkeypatch.setattr(ingest, "decode_traccar", decode)
    else:
        monkeypatch.setattr(codec, "decode_status", decode)
    producer = Producer()
    forwarder, stops = _forwarder(producer)
    acked: list[int] = []
    stream = Stream(values, acked, partition_for(b"E1", forwarder.rt.settings.partitions))

    async def forward() -> None:
        await forwarder.run(kind, stream)  # type: ignore[arg-type]
        assert await forwarder.settle()  # the ack timer's

    asyncio.run(forward())
    assert stops == [] and acked == [0, 1, 2]
    assert [topic for topic, _, _ in producer.records] == [
        "avl.positions", "avl.dlq", "avl.positions"]
    assert producer.sent[1] == poison
    headers = producer.records[1][2]
    assert headers["reason"] == b"decode_error" and headers["source_topic"] == b"cad.status"
    assert b"ZeroDivisionError" in headers["detail"]
    metrics = forwarder.rt.metrics.render().decode()
    assert 'broker_failures_total{decision="skip",site="decode"} 1.0' in metrics
    assert 'broker_rejected_total{reason="decode_error"} 1.0' in metrics


def test_a_decode_bug_whose_letter_kafka_did_not_take_stops_uncounted_as_a_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker stops un-acked (its letter not written) and the restarted one meets the bug
    again: it was counted a decode skip each time, though nothing was skipped until a letter
    was in Kafka."""
    poison = _status("E1", "available") + b"  "

    def decode(raw: bytes, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(codec, "decode_status", decode)
    producer = Producer()
    producer.gates[poison] = (asyncio.Event(), Refused("Kafka did not take it"))
    forwarder, stops = _forwarder(producer)
    acked: list[int] = []

    async def forward() -> None:
        producer.gates[poison][0].set()
        await forwarder.run(CAD_STATUS, Stream([poison], acked))  # type: ignore[arg-type]
        assert not await forwarder.settle()

    asyncio.run(forward())
    assert acked == [] and len(stops) == 1
    assert 'site="decode"' not in forwarder.rt.metrics.render().decode()


def test_a_dead_letter_keeps_its_input_records_key_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused message and one whose reading raised: their dead letters had no key (``None``),
    the input record's dropped; now it is there as it came, any bytes (Traccar's device id, a
    CAD system's own key)."""
    poison = _status("E1", "available") + b" "
    real = codec.decode_status

    def decode(raw: bytes, *args: Any, received_at: datetime, **kwargs: Any) -> Any:
        if raw == poison:
            raise ZeroDivisionError("a bug")
        return real(raw, received_at=received_at)

    monkeypatch.setattr(codec, "decode_status", decode)
    values = [_status("E1", "responding"), b"not json", poison, b"not json either"]
    keys: list[bytes | None] = [b"E1", b"\xff\xfeCAD-7\x00", b"E1\x80", None]
    producer = Producer()
    forwarder, stops = _forwarder(producer)
    acked: list[int] = []
    stream = Stream(values, acked, partition_for(b"E1", forwarder.rt.settings.partitions), keys)

    async def forward() -> None:
        await forwarder.run(CAD_STATUS, stream)  # type: ignore[arg-type]
        assert await forwarder.settle()

    asyncio.run(forward())
    assert stops == [] and acked == [0, 1, 2, 3]
    assert [(topic, key) for topic, key, _ in producer.records] == [
        ("avl.positions", b"E1"), ("avl.dlq", keys[1]), ("avl.dlq", keys[2]), ("avl.dlq", None)]
    assert [h["reason"] for _, _, h in producer.records[1:]] == [
        b"bad_json", b"decode_error", b"bad_json"]


def test_an_outage_while_decoding_stops_the_worker_with_it_and_the_rest_unacked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An outage is never parked: the worker stops, that message and those after it un-acked,
    those before acked once Kafka has them; counted once, where it happened."""
    down = _status("E1", "available") + b" "
    values = [_status("E1", "responding"), down, _status("E1", "dispatched")]
    real = codec.decode_status

    def decode(raw: bytes, *args: Any, **kwargs: Any) -> Any:
        if raw == down:
            raise OSError("disk gone")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(codec, "decode_status", decode)
    producer = Producer()
    forwarder, stops = _forwarder(producer)
    acked: list[int] = []
    stream = Stream(values, acked, partition_for(b"E1", forwarder.rt.settings.partitions))
    asyncio.run(forwarder.run(CAD_STATUS, stream))  # type: ignore[arg-type]
    assert acked == [0] and producer.sent == [values[0]]
    assert [s.failure.site for s in stops] == ["decode"]
    assert f"cad.status[{stream.partition}]@1" in stops[0].failure.key
    metrics = forwarder.rt.metrics.render().decode()
    assert 'broker_failures_total{decision="stop",site="decode"} 1.0' in metrics
    assert 'site="ingest"' not in metrics


POSITION = (FIXTURES / "traccar" / "lights-off.json").read_bytes().strip()


class Failing(Producer):
    """A producer whose ``send`` raises ``error`` for a record to ``topic``; ``then``: the
    errors of the sends to other topics, in turn (None: taken), the last one for every send
    after."""

    def __init__(self, topic: str, error: Exception,
                 **then: list[Exception | None]) -> None:
        super().__init__()
        self.errors: dict[str, list[Exception | None]] = {topic: [error]}
        self.errors.update({name.replace("_", "."): errors for name, errors in then.items()})

    async def send(self, topic: str, *args: Any) -> asyncio.Future[Any]:
        errors = self.errors.get(topic, [None])
        error = errors.pop(0) if len(errors) > 1 else errors[0]
        if error is not None:
            raise error
        return await super().send(topic, *args)


def _post(producer: Producer, body: bytes = POSITION) -> tuple[int, dict[str, Any], Runtime]:
    forwarder, stops = _forwarder(producer)
    forwarder.agencies = load_agencies(FIXTURES / "agencies.toml")
    endpoint = IngestEndpoint(forwarder, "t" * 32)

    async def read(n: int) -> bytes:
        return body[:n]

    status, answer = asyncio.run(endpoint.post({"authorization": "Bearer " + "t" * 32}, read,
                                               datetime.now(UTC)))
    assert stops == []  # the endpoint answers; it never stops the worker
    return status, answer, forwarder.rt


def test_post_a_decoder_bug_is_dead_lettered_and_answered_202_not_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 503 made Traccar send the same body again, to fail the same way (it retries every
    answer but a 2xx: forward.retry.count times, holding a place of its forward.retry.limit
    pending positions meanwhile); now it is in avl.dlq with its bytes, and the 202 ends it."""
    assert _post(Producer())[:2] == (200, {"taken": True})

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ingest, "decode_traccar", bug)
    producer = Producer()
    status, answer, rt = _post(producer)
    assert (status, answer) == (202, {"taken": False, "dead_lettered": "decode_error"})
    assert producer.sent == [POSITION]
    assert producer.records[0][0] == "avl.dlq"
    assert producer.records[0][2]["source_topic"] == b"/ingest/traccar"
    assert 'broker_ingest_requests_total{status="202"} 1.0' in rt.metrics.render().decode()


def test_post_a_kafka_outage_is_503(caplog: pytest.LogCaptureFixture) -> None:
    """Kafka away: 503, Traccar retries (a bug of ours was answered 503 too, as if it were)."""
    caplog.set_level(logging.WARNING, logger=ingest.log.name)
    assert _post(Failing("avl.positions", KafkaTimeoutError()))[0] == 503
    assert [r.levelno for r in caplog.records if r.name == ingest.log.name] == [logging.WARNING]


def test_post_a_bug_past_the_reading_is_dead_lettered_with_the_body_and_answered_202(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug of ours sending the record was answered 500, the body only logged (size and
    sha256): Traccar retries a 5xx a few times (forward.retry.count), by default not at all,
    then the position was gone. Now it is in avl.dlq with its bytes, as ``ingest_error``."""
    caplog.set_level(logging.WARNING, logger=ingest.log.name)
    producer = Failing("avl.positions", Refused("a bug"))
    status, answer, rt = _post(producer)
    assert (status, answer) == (202, {"taken": False, "dead_lettered": "ingest_error"})
    assert producer.sent == [POSITION]
    [(topic, _, headers)] = producer.records
    assert topic == "avl.dlq" and headers["reason"] == b"ingest_error"
    assert headers["source_topic"] == b"/ingest/traccar" and b"Refused" in headers["detail"]
    [record] = [r for r in caplog.records if r.name == ingest.log.name]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert f"{len(POSITION)} bytes" in record.getMessage()
    metrics = rt.metrics.render().decode()
    assert 'broker_ingest_requests_total{status="202"} 1.0' in metrics
    assert 'broker_rejected_total{reason="ingest_error"} 1.0' in metrics
    # a bug skipped, as every other site's: an operator's alert on failures sees it
    assert 'broker_failures_total{decision="skip",site="ingest"} 1.0' in metrics


def test_post_a_decode_error_whose_dead_letter_failed_is_dead_lettered_as_ingest_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its ``decode_error`` dead letter refused (not an outage), the position was answered 500
    and not stored: it is dead-lettered again, as ``ingest_error``."""
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ingest, "decode_traccar", bug)
    producer = Failing("avl.positions", Refused("unused"), avl_dlq=[Refused("a bug"), None])
    status, answer, rt = _post(producer)
    assert (status, answer) == (202, {"taken": False, "dead_lettered": "ingest_error"})
    [(topic, _, headers)] = producer.records
    assert topic == "avl.dlq" and headers["reason"] == b"ingest_error"
    assert producer.sent == [POSITION]
    # one body, one dead letter in Kafka: counted once, under the reason it went out with
    # (counted before its send, the decode_error letter that never got there was counted too)
    rejected = [line for line in rt.metrics.render().decode().splitlines()
                if line.startswith("broker_rejected_total")]
    assert rejected == ['broker_rejected_total{reason="ingest_error"} 1.0']
    # and one skip, of the letter that holds the body (the decoding's bug is in the log)
    failures = [line for line in rt.metrics.render().decode().splitlines()
                if line.startswith("broker_failures_total")]
    assert failures == ['broker_failures_total{decision="skip",site="ingest"} 1.0']


class DlqAway(Producer):
    """Kafka takes nothing for ``avl.dlq`` the first ``away`` times (the future fails)."""

    def __init__(self, away: int) -> None:
        super().__init__()
        self.away = away

    async def send(self, topic: str, *args: Any) -> asyncio.Future[Any]:
        fut = await super().send(topic, *args)
        if topic == "avl.dlq" and self.away > 0:
            self.away -= 1
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError())
            return failed
        return fut


def test_post_a_decode_error_is_counted_skipped_once_its_letter_is_in_kafka(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its ``decode_error`` letter met an outage: answered 503, not stored, so nothing was
    skipped yet. It was counted ``site="decode",decision="skip"`` all the same, once for
    every retry of Traccar's; now once, when the body is in ``avl.dlq``."""
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ingest, "decode_traccar", bug)
    forwarder, stops = _forwarder(DlqAway(away=2))
    forwarder.agencies = load_agencies(FIXTURES / "agencies.toml")
    endpoint = IngestEndpoint(forwarder, "t" * 32)

    async def read(n: int) -> bytes:
        return POSITION[:n]

    async def post_three_times() -> list[int]:
        auth = {"authorization": "Bearer " + "t" * 32}
        answers = [(await endpoint.post(auth, read, datetime.now(UTC)))[0] for _ in range(3)]
        await asyncio.sleep(0)  # the letter's done callbacks run
        return answers

    assert asyncio.run(post_three_times()) == [503, 503, 202]
    assert stops == []
    failures = [line for line in forwarder.rt.metrics.render().decode().splitlines()
                if line.startswith("broker_failures_total")]
    assert failures == ['broker_failures_total{decision="skip",site="decode"} 1.0']


@pytest.mark.parametrize("outage", [OSError("a disk away"), KafkaTimeoutError()])
def test_post_an_outage_while_reading_is_503_and_no_stop_is_counted(
    monkeypatch: pytest.MonkeyPatch, outage: Exception,
) -> None:
    """The failure policy decides ``stop`` on an outage; the POST path stops nothing (it
    answers 503, Traccar retries, as for Kafka away on the send, which broker_failures does
    not count either). It was counted ``broker_failures_total{site="decode",
    decision="stop"}``: a stop the worker never made."""
    def down(*args: Any, **kwargs: Any) -> Any:
        raise outage

    monkeypatch.setattr(ingest, "decode_traccar", down)
    producer = Producer()
    status, answer, rt = _post(producer)
    assert (status, answer) == (503, {"error": "not stored; retry"})
    assert producer.sent == []
    metrics = rt.metrics.render().decode()
    assert "broker_failures_total{" not in metrics
    assert 'broker_ingest_requests_total{status="503"} 1.0' in metrics


def test_a_dead_letter_kafka_did_not_take_is_not_counted_rejected() -> None:
    """``broker_rejected_total`` counts the dead letters Kafka has: one whose send failed
    stops the worker, un-acked, and the restarted worker counts it when it gets there."""
    junk = b"not json"
    producer = Producer()
    gate = asyncio.Event()
    producer.gates[junk] = (gate, Refused("Kafka did not take it"))
    forwarder, stops = _forwarder(producer)
    acked: list[int] = []

    async def forward() -> None:
        gate.set()
        await forwarder.run(CAD_STATUS, Stream([junk], acked))  # type: ignore[arg-type]
        assert not await forwarder.settle()

    asyncio.run(forward())
    assert acked == [] and len(stops) == 1 and producer.records[0][0] == "avl.dlq"
    assert "broker_rejected_total{" not in forwarder.rt.metrics.render().decode()


@pytest.mark.parametrize(("dlq_error", "answered"), [(KafkaTimeoutError(), 503),
                                                     (Refused("a bug too"), 500)])
def test_post_a_bug_whose_dead_letter_fails_too_is_503_in_an_outage_else_500_logged(
    dlq_error: Exception, answered: int, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=ingest.log.name)
    status, answer, rt = _post(Failing("avl.positions", Refused("a bug"), avl_dlq=[dlq_error]))
    assert status == answered and "not stored" in answer["error"]
    last = [r for r in caplog.records if r.name == ingest.log.name][-1]
    if answered == 500:
        assert last.levelno == logging.ERROR and last.exc_info is not None
        assert f"{len(POSITION)} bytes" in last.getMessage()
    answers = f'broker_ingest_requests_total{{status="{answered}"}} 1.0'
    assert answers in rt.metrics.render().decode()
    # not stored, so not skipped: no failure counted (a 500 shows in the answers alone)
    assert "broker_failures_total{" not in rt.metrics.render().decode()


def test_a_forwarded_record_keeps_its_input_records_timestamp() -> None:
    """The unit's log record is stamped as its ``cad.status`` record was: the vehicle agent
    judges lateness and moves the partition's clock by it. Stamped when forwarded, a backlog
    drained after a restart came "now", and a unit whose clock ran ahead took the partition's
    clock past the other units' fixes (refused as late)."""
    producer = Producer()
    forwarder, stops = _forwarder(producer)
    two_minutes_ago = datetime.now(UTC).timestamp() - 120.0
    status = json.dumps({"vehicle_id": "E1", "status": "responding", "ts": datetime.fromtimestamp(
        two_minutes_ago, UTC).isoformat()}).encode()  # sent when it happened, read 2 min on
    stream = Stream([status], [],
                    partition_for(b"E1", forwarder.rt.settings.partitions),
                    timestamp=two_minutes_ago)
    asyncio.run(forwarder.run(CAD_STATUS, stream))  # type: ignore[arg-type]
    assert not stops and producer.records[0][0] == "avl.positions"
    assert producer.timestamps == [pytest.approx(two_minutes_ago, abs=1e-3)]


class Hanging(Producer):
    """Kafka away: every record is handed over and its future never resolves (the producer's
    own bound is Faust's request timeout, 20 minutes)."""

    async def send(self, topic: str, *args: Any) -> asyncio.Future[Any]:
        await super().send(topic, *args)
        self.pending = asyncio.get_running_loop().create_future()
        return self.pending


def test_post_answers_503_when_kafka_does_not_take_the_record_in_time() -> None:
    """Through an outage a POST waited for the producer's 20-minute timeout, answering nothing
    Traccar could retry on; now 503 after ``store_wait_s``, the producer's future left alone
    (it may land after all: the retry's copy is then a duplicate fix, dropped)."""
    producer = Hanging()
    forwarder, stops = _forwarder(producer)
    forwarder.agencies = load_agencies(FIXTURES / "agencies.toml")
    endpoint = IngestEndpoint(forwarder, "t" * 32, store_wait_s=0.05)

    async def read(n: int) -> bytes:
        return POSITION[:n]

    async def post() -> tuple[int, dict[str, Any], bool]:
        status, answer = await endpoint.post({"authorization": "Bearer " + "t" * 32}, read,
                                             datetime.now(UTC))
        return status, answer, producer.pending.cancelled()

    status, answer, cancelled = asyncio.run(post())
    assert (status, answer) == (503, {"error": "not stored in time; retry"})
    assert not cancelled and not stops and endpoint.waiting == 0
    assert 'broker_ingest_requests_total{status="503"} 1.0' in (
        forwarder.rt.metrics.render().decode())


def test_post_past_the_requests_waiting_on_kafka_is_503_with_its_body_unread() -> None:
    """While Kafka is slow each POST holds its body for up to ``store_wait_s``: past
    ``max_waiting`` of them a request is answered 503 at once, its body never read."""
    producer = Hanging()
    forwarder, _ = _forwarder(producer)
    forwarder.agencies = load_agencies(FIXTURES / "agencies.toml")
    endpoint = IngestEndpoint(forwarder, "t" * 32, store_wait_s=0.2, max_waiting=2)
    reads: list[int] = []

    async def read(n: int) -> bytes:
        reads.append(n)
        return POSITION[:n]

    async def post_three() -> list[int]:
        auth = {"authorization": "Bearer " + "t" * 32}
        first = [asyncio.create_task(endpoint.post(auth, read, datetime.now(UTC)))
                 for _ in range(2)]
        await asyncio.sleep(0.05)  # both past their reading, waiting on Kafka
        third = (await endpoint.post(auth, read, datetime.now(UTC)))[0]
        return [third] + [(await t)[0] for t in first]

    assert asyncio.run(post_three()) == [503, 503, 503]
    assert len(reads) == 2  # the third body was never read
    assert endpoint.waiting == 0


def test_post_whose_client_goes_away_mid_body_is_counted_not_raised() -> None:
    """aiohttp puts ``ConnectionResetError`` on a request body whose connection dropped: it
    went out of the endpoint (an ERROR with a traceback, the request uncounted)."""
    forwarder, stops = _forwarder(Producer())
    endpoint = IngestEndpoint(forwarder, "t" * 32)

    async def read(n: int) -> bytes:
        raise ConnectionResetError("Connection lost")

    status, _ = asyncio.run(endpoint.post({"authorization": "Bearer " + "t" * 32}, read,
                                          datetime.now(UTC)))
    assert status == ingest.CLIENT_GONE and not stops
    assert 'broker_ingest_requests_total{status="499"} 1.0' in (
        forwarder.rt.metrics.render().decode())


def test_a_worker_whose_lease_lapsed_appends_nothing_of_the_ended_assignment() -> None:
    """After a stall past the session the partitions may be another worker's: the records of
    the assignment a rebalance ended are neither appended to the units' log nor acked (the
    vehicle agent skips them the same way). Until 2026-12-08 a worker resumed from such a
    stall appended its whole buffer after the new owner's records."""
    from broker.streams.membership import Membership

    producer = Producer()
    forwarder, stops = _forwarder(producer)
    clock = [0.0]
    membership = Membership(10.0, clock=lambda: clock[0])
    membership.renewed(0.0)
    clock[0] = 30.0  # no heartbeat answered for 30 s: the lease lapsed
    forwarder.rt.membership = membership
    forwarder.app.rebalancing = True  # type: ignore[attr-defined]  # the group moved on
    forwarder.app.consumer_generation_id = 4  # type: ignore[attr-defined]
    acked: list[int] = []
    stream = Stream([_status("E1", "responding"), _status("E1", "on_scene")], acked,
                    partition_for(b"E1", forwarder.rt.settings.partitions))
    asyncio.run(forwarder.run(CAD_STATUS, stream))  # type: ignore[arg-type]
    assert producer.sent == [] and acked == [] and not stops


def test_a_status_never_handed_over_is_read_again_not_committed_over() -> None:
    """Faust commits the run of acked offsets wherever it starts: a ``cad.status`` record the
    consumer never handed over, followed by one that was acked, was committed over, the status
    change lost. The forwarder now leaves the record after the gap un-appended and un-acked and
    has the partition read again from the first missing offset (as the vehicle agent does)."""
    from broker.streams.input_sequence import InputSequence

    producer = Producer()
    forwarder, stops = _forwarder(producer)
    seeks: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp, offset))

    forwarder.app.consumer = SimpleNamespace(seek=seek)  # type: ignore[attr-defined]
    forwarder.sequence = InputSequence(forwarder.app, forwarder.rt, forwarder.failures)
    partition = partition_for(b"E1", forwarder.rt.settings.partitions)
    values = [_status("E1", s) for s in ("dispatched", "responding", "on_scene", "available")]
    acked: list[int] = []

    class Gap(Stream):
        """Offsets 0, 1, 3, then 2 and 3 read again: offset 2 was not handed over at first."""

        async def events(self) -> AsyncIterator[Any]:
            for offset in (0, 1, 3, 2, 3):
                message = SimpleNamespace(topic="cad.status", partition=self.partition,
                                          offset=offset, timestamp=None)
                yield SimpleNamespace(value=self.values[offset], key=None, message=message,
                                      ack=lambda o=offset: self.acked.append(o))

    async def run() -> None:
        await forwarder.run(CAD_STATUS, Gap(values, acked, partition))  # type: ignore[arg-type]
        await forwarder.settle()

    asyncio.run(run())
    assert [s.partition for s, _ in seeks] == [partition] and seeks[0][1] == 2
    assert producer.sent == values  # in offset order, each once
    assert sorted(acked) == [0, 1, 2, 3] and not stops
