"""Dead letters gathered between flushes: one batch per partition, produced and awaited by the
flush before its acks, dropped with the cache at a rebalance. No Kafka: a producer double with
aiokafka's batch interface records what it was handed; futures are resolved by hand."""

from __future__ import annotations

import asyncio
import hashlib
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from broker.streams.agents import VehicleAgent, vehicle_dead_letters
from broker.streams.dead_letters import KEY_MAX_BYTES, DeadLetterBatches, fitted
from broker.streams.metrics import Metrics
from broker.streams.settings import StreamSettings
from broker.streams.states import VehicleStates
from tests.unit.streams.fakes import never_written

PARTITIONS = {0, 1, 2, 3}
MAX = StreamSettings().dead_letter_bytes
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # the broker's message.max.bytes, a topic's default


class Batch:
    """Holds up to ``room`` records (the first always fits, as aiokafka's does)."""

    def __init__(self, room: int) -> None:
        self.room, self.closed = room, False
        self.records: list[tuple[bytes | None, bytes, Any]] = []

    def append(self, *, timestamp: float | None, key: bytes | None, value: bytes | None,
               headers: Any = ()) -> object | None:
        if self.closed or (self.records and len(self.records) >= self.room):
            self.closed = True
            return None
        assert value is not None
        self.records.append((key, value, list(headers)))
        return object()

    def close(self) -> None:
        self.closed = True


class Producer:
    def __init__(self, room: int = 100) -> None:
        self.room = room
        self.sent: list[tuple[str, int, Batch]] = []
        self.futures: list[asyncio.Future[Any]] = []

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        assert batch.closed, "a batch goes out closed"
        self.sent.append((topic, partition, batch))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut

    async def partitions_for(self, topic: str) -> set[int]:
        return PARTITIONS


def headers(reason: str) -> list[tuple[str, bytes]]:
    return [("reason", reason.encode())]


def test_one_batch_per_partition_each_record_where_its_key_belongs() -> None:
    producer = Producer()
    letters = DeadLetterBatches("avl.dlq", lambda: producer, max_bytes=MAX)
    keys = [f"E{i}".encode() for i in range(20)]
    for n, key in enumerate(keys):
        letters.add(key, b"junk %d" % n, headers("not_json"))
    assert len(letters) == 20
    taken = letters.take()
    assert len(letters) == 0
    futures = asyncio.run(_produce(letters, taken))
    assert len(futures) == len(producer.sent) == len({p for _, p, _ in producer.sent})
    murmur2 = DefaultPartitioner()
    parts = sorted(PARTITIONS)
    got = {key: (p, value, hdrs) for _, p, b in producer.sent for key, value, hdrs in b.records}
    assert sorted(got) == sorted(keys)
    for n, key in enumerate(keys):
        assert got[key] == (murmur2(key, parts, parts), b"junk %d" % n, headers("not_json"))
    assert {t for t, _, _ in producer.sent} == {"avl.dlq"}


def test_a_full_batch_goes_out_and_the_next_takes_the_rest_in_order() -> None:
    producer = Producer(room=3)
    letters = DeadLetterBatches("avl.dlq", lambda: producer, max_bytes=MAX)
    for n in range(8):
        letters.add(b"E1", b"line %d" % n, headers("bad"))  # one key: one partition
    asyncio.run(_produce(letters, letters.take()))
    assert [len(b.records) for _, _, b in producer.sent] == [3, 3, 2]
    values = [v for _, _, b in producer.sent for _, v, _ in b.records]
    assert values == [b"line %d" % n for n in range(8)]


def test_nothing_gathered_produces_nothing() -> None:
    producer = Producer()
    letters = DeadLetterBatches("avl.dlq", lambda: producer, max_bytes=MAX)
    assert asyncio.run(_produce(letters, letters.take())) == []
    assert producer.sent == []


async def _flushing_one_letter() -> tuple[Producer, list[str], asyncio.Task[Any]]:
    """A flush under way with one dead letter handed to the producer, not yet in Kafka."""
    producer = Producer()
    letters = DeadLetterBatches("avl.dlq", lambda: producer, max_bytes=MAX)
    states = VehicleStates(read=lambda k: None, write=never_written, epoch=lambda: 0,
                           outboxes=[letters])
    order: list[str] = []
    letters.add(b"E1", b"not json", headers("not_json"))
    states.processed(lambda: order.append("ack"))
    task = asyncio.create_task(states.flush())
    for _ in range(3):
        await asyncio.sleep(0)
    return producer, order, task


def test_the_flush_acks_only_once_kafka_has_the_dead_letters() -> None:
    async def scenario() -> list[str]:
        producer, order, task = await _flushing_one_letter()
        assert len(producer.sent) == 1 and order == [], "no ack before Kafka has the record"
        producer.futures[0].set_result(None)
        result = await task
        assert result.events_acked == 1
        return order

    assert asyncio.run(scenario()) == ["ack"]


def test_a_failed_dead_letter_fails_the_flush_and_acks_nothing() -> None:
    async def scenario() -> list[str]:
        producer, order, task = await _flushing_one_letter()
        producer.futures[0].set_exception(ConnectionError("broker gone"))
        try:
            await task
        except ConnectionError:
            order.append("flush failed")
        return order

    assert asyncio.run(scenario()) == ["flush failed"]


def test_a_rebalance_drops_the_gathered_dead_letters_with_the_cache() -> None:
    producer = Producer()
    letters = DeadLetterBatches("avl.dlq", lambda: producer, max_bytes=MAX)
    epoch = [0]
    states = VehicleStates(read=lambda k: None, write=never_written, epoch=lambda: epoch[0],
                           outboxes=[letters])
    letters.add(b"E1", b"not json", headers("not_json"))
    epoch[0] = 1
    assert states.begin() is True  # the new epoch drops what was not flushed
    assert len(letters) == 0, "the messages come again after the seek: so do their letters"


def test_a_dead_letter_is_counted_once_kafka_has_it_not_when_gathered() -> None:
    """``taken`` (what counts ``broker_rejected_total``) sees a record once its batch is in
    Kafka: not one whose batch failed, nor one a rebalance dropped before the flush (its
    message comes again and is dead-lettered again: counted when gathered, it was counted
    twice for the one record in Kafka)."""
    async def scenario() -> list[bytes]:
        producer = Producer(room=1)
        counted: list[bytes] = []
        letters = DeadLetterBatches("avl.dlq", lambda: producer, max_bytes=MAX,
                                    taken=lambda letter: counted.append(letter.value))
        epoch = [0]
        states = VehicleStates(read=lambda k: None, write=never_written,
                               epoch=lambda: epoch[0], outboxes=[letters])
        letters.add(b"E1", b"junk 1", headers("not_json"))
        epoch[0] = 1
        assert states.begin() is True  # a rebalance: dropped, its message comes again
        assert counted == []
        letters.add(b"E1", b"junk 1", headers("not_json"))
        letters.add(b"E1", b"junk 2", headers("not_json"))  # room=1: a batch of its own
        futures = await letters.produce(letters.take())
        assert len(producer.futures) == 2 and counted == []  # handed over, not in Kafka
        producer.futures[0].set_result(None)
        producer.futures[1].set_exception(ConnectionError("broker gone"))
        await asyncio.gather(*futures, return_exceptions=True)
        return counted

    assert asyncio.run(scenario()) == [b"junk 1"]


async def _produce(letters: DeadLetterBatches, taken: list[Any]) -> list[Any]:
    return await letters.produce(taken)


def test_a_dead_letter_keeps_what_fits_and_says_what_the_original_was() -> None:
    original = b'{"vehicle_id": "E2", "pad": "' + b"a" * 2_000_000 + b'"}'
    letter = fitted(b"E2", original, headers("oversized"), max_bytes=1000)
    assert letter.key == b"E2"
    assert letter.value == original[:998]  # the key's 2 bytes count too
    extra = dict(letter.headers)
    assert extra["reason"] == b"oversized"
    assert extra["truncated"] == b"true"
    assert extra["original_bytes"] == str(len(original)).encode()
    assert extra["original_sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert "original_key_bytes" not in extra


def test_a_dead_letter_that_fits_is_the_original_with_no_more_headers() -> None:
    letter = fitted(b"E2", b"x" * 998, headers("bad_json"), max_bytes=1000)
    assert (letter.key, letter.value, list(letter.headers)) == (b"E2", b"x" * 998,
                                                                 headers("bad_json"))


def test_a_key_too_long_is_cut_too() -> None:
    key = b"k" * (MAX + 10)
    letter = fitted(key, b"v" * 10, headers("unknown_unit"), max_bytes=MAX)
    assert letter.key == key[:KEY_MAX_BYTES] and letter.value == b"v" * 10
    extra = dict(letter.headers)
    assert extra["original_key_bytes"] == str(MAX + 10).encode()
    assert extra["original_key_sha256"] == hashlib.sha256(key).hexdigest().encode()
    assert "original_bytes" not in extra


def test_the_limit_is_the_setting_and_never_more_than_a_batch_holds_beside_headers() -> None:
    assert 0 < MAX < KAFKA_DEFAULT_MAX_MESSAGE_BYTES - 4096
    assert StreamSettings(dlq_max_bytes=1000).dead_letter_bytes == 1000
    small = StreamSettings(producer_max_batch_bytes=65_536)
    assert small.dead_letter_bytes <= 65_536 - 4096


@pytest.mark.parametrize(
    "value_bytes",
    [2_000_017, KAFKA_DEFAULT_MAX_MESSAGE_BYTES - 80],
    ids=["2-MB-line-taken-compressed", "80-bytes-under-the-limit"],
)
def test_the_dead_letter_of_a_record_kafka_took_fits_the_dlq_topic(value_bytes: int) -> None:
    """Kafka checks its limit on the compressed batch: a gzip-compressed 2 MB line was taken on
    avl.positions, handed over whole and refused (oversized); its dead letter, 2 MB plus
    headers, was refused by Kafka in turn (MESSAGE_TOO_LARGE), the flush failed and the worker
    stopped, un-acked, on every restart. So did one just under the limit (its headers)."""
    producer = Producer(room=100)
    settings = StreamSettings()
    letters = DeadLetterBatches("avl.dlq", lambda: producer, max_bytes=settings.dead_letter_bytes)
    detail = "é" * 500  # the longest detail, two bytes a character
    letters.add(b"E2", b"a" * value_bytes,
                [("reason", b"oversized"), ("detail", detail.encode()),
                 ("source_topic", b"avl.positions")])
    (letter,) = letters.take()
    # the batch the worker's producer sends it in (aiokafka's own, as configured by app.py)
    batch = BatchBuilder(settings.producer_max_batch_bytes, 0)
    assert batch.append(timestamp=None, key=letter.key, value=letter.value,
                        headers=list(letter.headers)) is not None
    batch.close()
    assert batch.size() <= KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    assert batch.size() <= settings.producer_max_batch_bytes  # and Faust's max request size
    assert dict(letter.headers)["original_bytes"] == str(value_bytes).encode()


def test_the_vehicle_agent_counts_a_dead_letter_once_kafka_has_it() -> None:
    """The agent's wiring: ``dead_letter`` gathers without counting; the batches it builds
    count ``broker_rejected_total{reason}`` once Kafka has the letter, once."""
    metrics = Metrics()
    producer = Producer()
    app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))
    topics = SimpleNamespace(dlq=SimpleNamespace(get_topic_name=lambda: "avl.dlq"))
    rt = SimpleNamespace(metrics=metrics, settings=StreamSettings())
    agent: Any = SimpleNamespace(dead_letters=vehicle_dead_letters(app, topics, rt))  # type: ignore[arg-type]

    def rejected() -> float | None:
        return metrics.registry.get_sample_value("broker_rejected_total", {"reason": "not_json"})

    async def scenario() -> list[float | None]:
        VehicleAgent.dead_letter(agent, b"E1", b"junk", "avl.positions", "not_json", "no JSON")
        seen = [rejected()]
        futures = await agent.dead_letters.produce(agent.dead_letters.take())
        seen.append(rejected())  # handed over, not in Kafka yet
        producer.futures[0].set_result(None)
        await asyncio.gather(*futures)
        return [*seen, rejected()]

    assert asyncio.run(scenario()) in ([None, None, 1.0], [0.0, 0.0, 1.0])
