"""The worker's bookkeeping of what it was handed (broker.streams.runtime)."""

from __future__ import annotations

from broker.streams.runtime import REWIND_PATIENCE_S, REWINDS, Runtime
from broker.streams.settings import StreamSettings, from_env
from broker.streams.topics import TopicNames


def test_offsets_never_handed_over_are_counted_a_seek_back_is_not_a_gap() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    assert rt.skipped("avl.positions", 3, 40) == 0  # the first since the assignment
    rt.processed("avl.positions", 3, 40, None)
    assert rt.skipped("avl.positions", 3, 41) == 0  # the next one
    assert rt.skipped("avl.positions", 3, 45) == 4  # 41..44 never came
    assert rt.skipped("avl.positions", 3, 12) == 0  # a seek back after a rebalance
    assert rt.skipped("cad.routes", 3, 99) == 0  # each topic partition on its own
    rt.forget_progress()  # a rebalance dropped the cache: the messages come again
    assert rt.skipped("avl.positions", 3, 45) == 0


def test_a_gap_is_read_again_and_the_messages_fetched_before_the_seek_wait() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 100.0)
    rt.processed("avl.positions", 5, 201, None)
    assert rt.gap_step("avl.positions", 5, 203) == "seek"  # 202 never came: read from there
    assert rt.gap_step("avl.positions", 5, 204) == "wait"  # fetched before the seek
    assert rt.gap_step("avl.positions", 5, 205) == "wait"
    assert rt.skipped("avl.positions", 5, 202) == 0  # 202 comes: the gap is closed
    rt.processed("avl.positions", 5, 202, None)
    assert not rt.rewinds
    assert rt.skipped("avl.positions", 5, 203) == 0


def test_a_gap_that_reading_again_never_fills_stops_after_the_last_seek() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    rt.processed("avl.positions", 1, 1, None)
    steps = [rt.gap_step("avl.positions", 1, 3)]  # offset 2 is a commit marker: never comes
    steps += [rt.gap_step("avl.positions", 1, 3) for _ in range(REWINDS)]  # 3 again each read
    assert steps == ["seek"] * REWINDS + ["stop"]


def test_a_rewind_that_waits_too_long_seeks_again() -> None:
    now = [0.0]
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: now[0])
    rt.processed("cad.routes", 0, 9, None)
    assert rt.gap_step("cad.routes", 0, 12) == "seek"
    now[0] = REWIND_PATIENCE_S + 1  # newer offsets only, long after the seek: try again
    assert rt.gap_step("cad.routes", 0, 40) == "seek"
    assert rt.rewinds[("cad.routes", 0)].seeks == 2


def test_a_rebalance_forgets_the_rewinds_with_the_offsets() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    rt.processed("avl.positions", 2, 7, None)
    rt.processed("avl.positions", 6, 7, None)
    rt.gap_step("avl.positions", 2, 10)
    rt.gap_step("avl.positions", 6, 10)
    rt.set_owned({6})
    assert set(rt.rewinds) == {("avl.positions", 6)}
    rt.forget_progress()
    assert not rt.rewinds


def test_the_offset_gap_choice_is_read_case_insensitively_as_it_is_spelled() -> None:
    assert from_env({"BROKER_INPUT_OFFSET_GAPS": " Count "}).input_offset_gaps == "count"
    assert from_env({"BROKER_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert from_env({}).input_offset_gaps == "stop"


def test_a_rewind_that_brings_nothing_is_asked_again_by_the_clock_not_counted() -> None:
    """No message of the partition after a rewind: only the tick can see that (gap_step is
    called by messages); it asks again every REWIND_PATIENCE_S, without spending the seeks
    that find a real gap (a consumer that hands over nothing, Kafka away, shows none)."""
    now = [0.0]
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: now[0])
    rt.processed("avl.positions", 4, 68, None)
    assert rt.gap_step("avl.positions", 4, 70) == "seek"  # 69 never handed over
    assert rt.overdue_rewinds() == []  # just asked: patience
    tp = ("avl.positions", 4)
    for _ in range(2 * REWINDS):
        now[0] += REWIND_PATIENCE_S
        assert rt.overdue_rewinds() == [tp]
        assert rt.overdue_rewinds() == []  # once per patience, not per tick
    assert rt.rewinds[tp].seeks == 1
    # records after the gap come again at last, 69 still not: the real gap is gap_step's
    steps = [rt.gap_step("avl.positions", 4, 70) for _ in range(REWINDS)]
    assert steps == ["seek"] * (REWINDS - 1) + ["stop"]
    rt.processed("avl.positions", 4, 69, None)  # or it comes: nothing overdue any more
    now[0] += 10 * REWIND_PATIENCE_S
    assert rt.overdue_rewinds() == []


def test_the_first_message_since_the_assignment_follows_the_committed_offset() -> None:
    committed = {("avl.positions", 5): 120}
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    rt.committed = lambda topic, partition: committed.get((topic, partition))
    # a restarted worker handed offset 150 first: 120..149 never came, read from 120
    assert rt.skipped("avl.positions", 5, 150) == 30
    assert rt.gap_step("avl.positions", 5, 150) == "seek"
    assert rt.rewinds[("avl.positions", 5)].to == 120
    assert rt.skipped("avl.positions", 5, 120) == 0
    rt.processed("avl.positions", 5, 120, None)
    assert not rt.rewinds
    committed[("avl.positions", 5)] = 900  # a later commit: the handled offsets rule now
    assert rt.skipped("avl.positions", 5, 121) == 0
    assert rt.skipped("avl.positions", 5, 100) == 0  # below it (read again): no gap
    assert rt.skipped("avl.positions", 1, 7) == 0  # nothing committed: the first is the start


def test_records_gone_from_kafka_before_the_first_message_ask_where_kafka_starts() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    rt.committed = lambda topic, partition: 50  # retention deleted 50..79 while no one read
    read = [80, 81, 82]  # what each read from 50 brings
    steps = [rt.gap_step("avl.positions", 2, o) for _ in range(REWINDS) for o in read]
    assert steps == ["seek", "wait", "wait"] * REWINDS
    assert rt.gap_step("avl.positions", 2, 80) == "gone"  # the fourth read: still no 50
    rt.pass_over("avl.positions", 2, 80)  # Kafka starts at 80 now
    assert not rt.rewinds and rt.skipped("avl.positions", 2, 80) == 0
    steps = [rt.gap_step("avl.positions", 2, 83) for _ in range(REWINDS + 1)]
    assert steps == ["seek"] * REWINDS + ["stop"]  # after where it starts: a gap of our own


def test_one_read_again_counts_once_however_many_records_it_brings() -> None:
    """The rest of a batch read again is the same read (offsets going up), not another one:
    counting each record made three records of one read look like three reads."""
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    rt.processed("avl.positions", 4, 49, None)
    assert [rt.gap_step("avl.positions", 4, o) for o in (60, 61, 62)] == ["seek", "wait", "wait"]
    # read again from 50: Kafka starts the read at 60 again (50..59 never come)
    assert [rt.gap_step("avl.positions", 4, o) for o in (60, 61, 62)] == ["seek", "wait", "wait"]
    assert rt.rewinds[("avl.positions", 4)].seeks == 2


def test_a_partition_assigned_for_one_input_keeps_its_offsets() -> None:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    rt.processed("avl.positions", 3, 10, None)
    rt.processed("avl.positions", 4, 10, None)
    rt.partial = {3}  # its cad.routes partition not (yet) assigned
    rt.set_owned({5})
    assert set(rt.next_offset) == {("avl.positions", 3)}


def test_a_send_faust_could_not_make_in_a_kafka_outage_is_an_outage() -> None:
    """Faust's Topic.send wraps the producer's KafkaError (KafkaTimeoutError while Kafka is
    away) in ProducerSendError, no Kafka error type: judged a bug, it was dead-lettered."""
    from aiokafka.errors import KafkaTimeoutError
    from faust.exceptions import ProducerSendError

    from broker.failure import decide
    from broker.streams.runtime import WORKER_OUTAGES

    try:
        try:
            raise KafkaTimeoutError()
        except KafkaTimeoutError as exc:  # as faust.transport.drivers.aiokafka does
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
    except ProducerSendError as err:
        assert decide("delivery", err, WORKER_OUTAGES) == "stop"
        assert decide("fanout", err, WORKER_OUTAGES) == "stop"
    assert decide("delivery", ProducerSendError("no transaction producer"), WORKER_OUTAGES) == (
        "skip")  # not from an outage: a bug in how it was called


def test_a_send_while_fausts_producer_is_not_running_is_an_outage() -> None:
    """``NotReady`` (a send before the producer started or after it stopped: a POST during
    shutdown) was judged a bug: dead-lettered, or answered 500 to Traccar instead of 503."""
    from faust.exceptions import NotReady

    from broker.failure import decide
    from broker.streams.runtime import WORKER_OUTAGES

    assert decide("delivery", NotReady("Producer service not yet started"),
                  WORKER_OUTAGES) == "stop"
