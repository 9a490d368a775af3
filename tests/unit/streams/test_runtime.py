"""The worker's bookkeeping of what it was handed (broker.streams.runtime)."""

from __future__ import annotations

from broker.streams.runtime import Runtime
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


def test_the_offset_gap_choice_is_read_case_insensitively_as_it_is_spelled() -> None:
    assert from_env({"BROKER_INPUT_OFFSET_GAPS": " Count "}).input_offset_gaps == "count"
    assert from_env({"BROKER_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert from_env({}).input_offset_gaps == "stop"
