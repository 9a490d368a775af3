"""Where a partition's records start for a worker given it (``InputSequence.check``,
``Runtime.expected_offset``, ``HandoffConsumer.committed_offset``): a restarted worker once
took a first record from beyond the committed offset as the start, and the records in between
were lost without a trace."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from broker.streams.consumer import HandoffConsumer
from broker.streams.input_sequence import InputSequence
from broker.streams.runtime import REWINDS, Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames

POS = "avl.positions"


def _sequence(rt: Runtime, committed: int, log_start: int | None) -> Any:
    """The vehicle agent's watch over a partition whose commit is at ``committed``, over a
    consumer that only knows where Kafka starts; its reads again and stops recorded."""
    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        if log_start is None:
            raise OSError("Kafka away")
        return {tp: log_start for tp in tps}

    stops: list[BaseException] = []
    failures: Any = SimpleNamespace(check=lambda site, err, **kw: stops.append(err))
    app: Any = SimpleNamespace(consumer=SimpleNamespace(earliest_offsets=earliest_offsets))
    seq: Any = InputSequence(app, rt, failures)
    rt.committed = lambda topic, partition: committed  # the consumer's, as it would say
    seq.rewinds, seq.stops = [], stops

    async def read_again(topic: str, partition: int, offset: int) -> None:
        seq.rewinds.append((topic, partition, offset))

    seq.read_again = read_again
    return seq


def _handed(seq: Any, offset: int) -> bool:
    return asyncio.run(seq.check(SimpleNamespace(topic=POS, partition=2, offset=offset)))


def test_a_first_record_beyond_the_committed_offset_is_read_again_from_it() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    seq = _sequence(rt, committed=120, log_start=0)
    assert not _handed(seq, 150)
    assert seq.rewinds == [(POS, 2, 120)]
    assert _handed(seq, 120)  # the read again starts where the commit left off


def test_records_retention_deleted_are_counted_and_passed_over() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    seq = _sequence(rt, committed=50, log_start=80)  # Kafka now starts at 80
    handed = [_handed(seq, 80) for _ in range(REWINDS + 1)]
    assert handed == [False] * REWINDS + [True]
    assert seq.rewinds == [(POS, 2, 50)] * REWINDS and not seq.stops
    gaps = seq.metrics.offset_gaps.labels(POS)._value.get()
    assert gaps == 30  # 50..79


@pytest.mark.parametrize("log_start", [50, None], ids=["kafka-has-them", "kafka-away"])
def test_records_kafka_still_has_but_never_hands_over_stop_the_worker(
    log_start: int | None,
) -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    seq = _sequence(rt, committed=50, log_start=log_start)
    for _ in range(REWINDS + 1):
        _handed(seq, 80)
    assert len(seq.stops) == 1 and "offsets 50..79" in str(seq.stops[0])


def _consumer() -> Any:
    consumer = object.__new__(HandoffConsumer)  # its state only: nothing connects
    consumer.app = SimpleNamespace(  # type: ignore[assignment]
        rebalancing=False,
        topics=SimpleNamespace(acks_enabled_for=lambda topic: not topic.endswith("-changelog")),
    )
    consumer._committed_offset = {}
    consumer._gap = defaultdict(IntervalTree)

    async def seek_wait(offsets: dict[TP, int]) -> None:
        pass  # the consumer thread's seek: none here

    consumer.seek_wait = seek_wait  # type: ignore[method-assign]
    return consumer


def test_partitions_never_committed_start_where_kafka_started_at_the_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = _consumer()
    committed, fresh, table = TP(POS, 1), TP(POS, 2), TP("app-vehicles-changelog", 2)
    asked: list[tuple[TP, ...]] = []

    async def faust_seek(self: Any) -> None:
        self._committed_offset[committed] = 40

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        asked.append(tps)
        return {tp: 7 for tp in tps}

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    consumer.assignment = lambda: {committed, fresh, table}
    consumer.earliest_offsets = earliest_offsets
    asyncio.run(consumer.perform_seek())
    assert asked == [(fresh,)]  # not the committed one, not a table's changelog
    assert consumer.committed_offset(committed) == 40
    assert consumer.committed_offset(fresh) == 7
    assert consumer.committed_offset(TP(POS, 3)) is None

    async def kafka_away(*tps: TP) -> dict[TP, int]:
        raise OSError("Kafka away")

    consumer.earliest_offsets = kafka_away  # the next seek cannot ask: the start it had stands
    asyncio.run(consumer.perform_seek())
    assert consumer.committed_offset(fresh) == 7


def _read_again(monkeypatch: pytest.MonkeyPatch, consumer: Any, tp: TP, offset: int) -> None:
    """One poll of the consumer with a rewind of ``tp`` to ``offset`` asked for."""
    async def seek_wait(offsets: dict[TP, int]) -> None:
        pass

    async def faust_getmany(self: Any, active: Any, timeout: float) -> str:  # noqa: ASYNC109
        return "batch"

    monkeypatch.setattr(faust_aiokafka.Consumer, "_getmany", faust_getmany)
    consumer.assignment = lambda: {tp, TP(POS, 3)}
    consumer.seek_wait = seek_wait
    consumer.rewind(tp, offset)
    assert asyncio.run(consumer._getmany(None, 1.0)) == "batch"


def test_a_partition_read_again_lets_faust_commit_only_what_was_acked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust books the jump to a record beyond a gap as offsets it may commit over; once they
    are read again the booking must go, or a commit after one ack passes them all."""
    consumer = _consumer()
    tp = TP(POS, 2)
    consumer._committed_offset[tp] = 120
    consumer._acked, consumer._acked_index = defaultdict(list), defaultdict(set)
    asyncio.run(consumer._add_gap(tp, 121, 149))  # Faust's read offset 120, first record 150
    _read_again(monkeypatch, consumer, tp, 120)
    consumer._acked[tp] = [120, 121, 122]  # only these processed again so far
    assert faust_aiokafka.Consumer._new_offset(consumer, tp) == 123  # not 150


def test_records_retention_deleted_stay_passed_over_when_reading_again_past_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Committed 50, Kafka starting at 60 (retention), first record handed 80: the agent reads
    again from 60, and Faust's booking of 51..59 must stay or it would never commit again."""
    consumer = _consumer()
    tp = TP(POS, 2)
    consumer._committed_offset[tp] = 50
    consumer._acked, consumer._acked_index = defaultdict(list), defaultdict(set)
    asyncio.run(consumer._add_gap(tp, 51, 79))
    _read_again(monkeypatch, consumer, tp, 60)
    consumer._acked[tp] = [60, 61]
    assert faust_aiokafka.Consumer._new_offset(consumer, tp) == 62


def test_an_assignment_is_sought_only_once_faust_has_sought_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust resumes the partitions it assigns before it seeks them to their committed
    offsets: until that seek a record may come from anywhere, and the consumer says so."""
    consumer = _consumer()

    async def faust_seek(self: Any) -> None:
        self._committed_offset[TP(POS, 2)] = 170

    async def faust_rebalance(self: Any, *args: Any) -> None:
        pass

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", faust_rebalance)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", faust_rebalance)
    consumer.assignment = lambda: {TP(POS, 2)}
    assert not consumer.sought()  # a worker just started
    asyncio.run(consumer.perform_seek())
    assert consumer.sought()
    asyncio.run(consumer.on_partitions_revoked(set()))
    assert not consumer.sought()
    asyncio.run(consumer.perform_seek())
    asyncio.run(consumer.on_partitions_assigned({TP(POS, 2)}, 3))
    assert not consumer.sought()  # a new assignment: its seek is still to come



def test_a_partition_never_committed_is_sought_only_once_its_start_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never committed: the start to judge a first record by is where Kafka's log begins,
    asked for after Faust's seek. ``sought()`` was True while that answer was awaited, and a
    record handed over then was taken as the start (review of 0bf5d62, D1)."""
    consumer = _consumer()
    tp = TP(POS, 2)
    seen: list[tuple[bool, int | None]] = []

    async def faust_seek(self: Any) -> None:
        pass  # nothing committed: Faust leaves the partition where it is

    async def earliest(*tps: TP) -> dict[TP, int]:
        seen.append((consumer.sought(), consumer.committed_offset(tp)))  # while Kafka answers
        return {t: 40 for t in tps}

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest)
    consumer.assignment = lambda: {tp}
    asyncio.run(consumer.perform_seek())
    assert seen == [(False, None)]  # not sought while the start was unknown
    assert consumer.sought() and consumer.committed_offset(tp) == 40


def test_a_seek_that_ends_after_a_newer_assignment_does_not_count_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's fetcher seeks at a rebalance too, and may finish after the next assignment came:
    the flag was set for an assignment no one had sought yet (review of 0bf5d62, D2)."""
    consumer = _consumer()

    async def run() -> None:
        started, finish = asyncio.Event(), asyncio.Event()

        async def slow_seek(self: Any) -> None:
            started.set()
            await finish.wait()
            self._committed_offset[TP(POS, 2)] = 170

        async def faust_rebalance(self: Any, *args: Any) -> None:
            pass

        monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", slow_seek)
        monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", faust_rebalance)
        consumer.assignment = lambda: {TP(POS, 2)}
        old_seek = asyncio.create_task(consumer.perform_seek())
        await started.wait()
        await consumer.on_partitions_assigned({TP(POS, 2)}, 4)  # a newer assignment
        finish.set()
        await old_seek
        assert not consumer.sought()  # the newer assignment's own seek is still to come
        started.clear()
        await consumer.perform_seek()
        assert consumer.sought()

    asyncio.run(run())


def test_a_stale_seek_ending_after_the_newer_assignments_own_leaves_it_sought(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's fetcher seek, begun before a rebalance, may end after the new assignment's own
    seek: it set the flag to False, and the consumer held every input back for good."""
    consumer = _consumer()

    async def run() -> None:
        started, finish = asyncio.Event(), asyncio.Event()
        seeks = 0

        async def seek(self: Any) -> None:
            nonlocal seeks
            seeks += 1
            if seeks == 1:  # the fetcher's, of the old assignment
                started.set()
                await finish.wait()
            self._committed_offset[TP(POS, 2)] = 170

        async def faust_rebalance(self: Any, *args: Any) -> None:
            pass

        monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", seek)
        monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", faust_rebalance)
        consumer.assignment = lambda: {TP(POS, 2)}
        stale = asyncio.create_task(consumer.perform_seek())
        await started.wait()
        await consumer.on_partitions_assigned({TP(POS, 2)}, 4)
        await consumer.perform_seek()  # the newer assignment's own, done first
        assert consumer.sought()
        finish.set()
        await stale
        assert consumer.sought()

    asyncio.run(run())

class _Fetched:
    """aiokafka's fetched records in the consumer thread, in small: what a poll asks for is
    taken (the position moves on), a seek drops what it holds of a partition and fetches
    from the offset sought."""

    def __init__(self, log: dict[TP, list[int]], at: dict[TP, int]) -> None:
        self.log, self.at, self.asked = log, at, []

    async def getmany(self, active: set[TP], timeout: float) -> dict[TP, list[int]]:  # noqa: ASYNC109  # Faust's
        self.asked.append(set(active))
        assert active, "an empty set asks aiokafka for every partition"
        taken = {tp: [o for o in self.log[tp] if o >= self.at[tp]] for tp in active}
        for tp, offsets in taken.items():
            if offsets:
                self.at[tp] = offsets[-1] + 1
        return {tp: offsets for tp, offsets in taken.items() if offsets}

    def seek(self, tp: TP, offset: int) -> None:
        self.at[tp] = offset


def _polled(consumer: Any) -> dict[TP, list[int]]:
    return asyncio.run(consumer._getmany(set(consumer.assignment()), 1.0))


def test_no_record_of_an_input_is_handed_over_before_the_seek_to_the_committed_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kill -9 test's v22 made twice (2026-12-06): the restarted worker was handed offset
    374 of a partition committed at about 170 while Faust was still seeking it (Faust resumes
    the partitions first), and acking it let Faust commit over 170..373. Until the seek a poll
    now leaves every acked partition out (the tables' changelogs go on: their recovery must not
    wait), so no agent sees such a record; after it the partition comes from 170, and nothing
    the consumer held is lost, 374 in its turn."""
    consumer = _consumer()
    pos, table = TP(POS, 5), TP("app-vehicles-changelog", 5)
    fetched = _Fetched({pos: list(range(170, 380)), table: [0, 1]}, {pos: 374, table: 0})
    consumer._thread = fetched  # type: ignore[assignment]
    consumer.assignment = lambda: {pos, table}

    async def faust_seek(self: Any) -> None:
        self._committed_offset[pos] = 170
        fetched.seek(pos, 170)

    async def faust_rebalance(self: Any, *args: Any) -> None:
        pass

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", faust_rebalance)
    asyncio.run(consumer.on_partitions_assigned({pos, table}, 3))
    assert _polled(consumer) == {table: [0, 1]}  # the changelog's recovery goes on
    assert fetched.asked == [{table}]
    assert _polled(consumer) == {}
    asyncio.run(consumer.perform_seek())
    assert _polled(consumer)[pos][:2] == [170, 171]  # from the committed offset, in order
    assert fetched.at[pos] == 380  # 374 included


def test_a_poll_with_every_partition_held_asks_the_consumer_thread_for_nothing() -> None:
    """aiokafka takes an empty set of partitions for all of them: held, a poll must not ask."""
    consumer = _consumer()
    pos = TP(POS, 5)
    fetched = _Fetched({pos: [0, 1]}, {pos: 0})
    consumer._thread = fetched  # type: ignore[assignment]
    consumer.assignment = lambda: {pos}
    assert _polled(consumer) == {}
    assert fetched.asked == []
    consumer._sought = True
    assert _polled(consumer) == {pos: [0, 1]}


def test_a_seek_ending_during_a_poll_begun_before_it_hands_nothing_of_the_held_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poll decides what it asks for as it starts: one begun before the seek, still waiting
    in the consumer thread when the seek ends, may hold records aiokafka took from the old
    position; it returns none of the held partitions' records."""
    consumer = _consumer()
    pos, table = TP(POS, 5), TP("app-vehicles-changelog", 5)

    async def faust_seek(self: Any) -> None:
        self._committed_offset[pos] = 170

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)

    class SeekDuringPoll:
        async def getmany(self, active: set[TP], timeout: float) -> dict[TP, list[int]]:  # noqa: ASYNC109  # Faust's
            await consumer.perform_seek()  # ends while this poll waits
            return {tp: [374] for tp in active}

    consumer._thread = SeekDuringPoll()  # type: ignore[assignment]
    consumer.assignment = lambda: {pos, table}
    assert asyncio.run(consumer._getmany({pos, table}, 1.0)) == {table: [374]}
    assert consumer.sought()


def test_a_partition_never_committed_is_sought_to_its_start_before_it_is_handed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka's seek to the committed offsets leaves a partition never committed where the
    consumer stands: read on before the seek (records taken in during recovery, or a seek of
    an earlier assignment), it went on from there and the records before were never read. Now
    it is sought to where Kafka's log starts, before any record of it is handed over."""
    consumer = _consumer()
    fresh, committed = TP(POS, 2), TP(POS, 1)
    sought: list[tuple[dict[TP, int], bool]] = []

    async def faust_seek(self: Any) -> None:
        self._committed_offset[committed] = 40

    async def earliest(*tps: TP) -> dict[TP, int]:
        return {t: 7 for t in tps}

    async def seek_wait(offsets: dict[TP, int]) -> None:
        sought.append((dict(offsets), consumer.sought()))

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest)
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    consumer.assignment = lambda: {fresh, committed}
    asyncio.run(consumer.perform_seek())
    assert sought == [({fresh: 7}, False)]  # the committed one is Faust's; held meanwhile
    assert consumer.sought()

    async def refused(offsets: dict[TP, int]) -> None:
        raise OSError("revoked meanwhile")

    monkeypatch.setattr(consumer, "seek_wait", refused)
    asyncio.run(consumer.perform_seek())  # a warning; the next assignment seeks again
    assert consumer.sought()


def test_a_stale_seek_asks_kafka_nothing_and_moves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A seek begun for an assignment a rebalance has replaced neither asks where the newer
    assignment's never-committed partitions start nor seeks them (nor marks them sought)."""
    consumer = _consumer()
    fresh = TP(POS, 2)
    asked: list[tuple[TP, ...]] = []
    moved: list[dict[TP, int]] = []

    async def rebalanced_meanwhile(self: Any) -> None:
        self._assignments += 1  # the rebalance came while Faust's seek ran

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        asked.append(tps)
        return {tp: 7 for tp in tps}

    async def seek_wait(offsets: dict[TP, int]) -> None:
        moved.append(offsets)

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", rebalanced_meanwhile)
    consumer.assignment = lambda: {fresh}
    consumer.earliest_offsets = earliest_offsets
    consumer.seek_wait = seek_wait
    asyncio.run(consumer.perform_seek())
    assert asked == [] and moved == [] and not consumer.sought()


def test_kafka_slow_to_say_where_partitions_start_does_not_hold_the_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust gives the whole seek its request timeout and gives the recovery up for good when
    it runs out: asking where partitions start is bounded, and the assignment is sought."""
    consumer = _consumer()
    fresh = TP(POS, 2)

    async def faust_seek(self: Any) -> None:
        pass

    async def never_answers(*tps: TP) -> dict[TP, int]:
        await asyncio.Event().wait()
        return {}

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    monkeypatch.setattr("broker.streams.consumer.LOG_STARTS_TIMEOUT_S", 0.01)
    consumer.assignment = lambda: {fresh}
    consumer.earliest_offsets = never_answers
    asyncio.run(asyncio.wait_for(consumer.perform_seek(), 5))
    assert consumer.sought() and consumer.committed_offset(fresh) is None
