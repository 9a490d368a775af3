"""Repeated Kafka client warnings held back (broker.streams.log_repeats)."""

from __future__ import annotations

import logging

import pytest

from broker.streams.log_repeats import RepeatsHeldBack


def _record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka.x"
            ) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_of_a_kind_per_interval_then_the_count_held_back() -> None:
    now = [0.0]
    repeats = RepeatsHeldBack(every_s=10.0, clock=lambda: now[0])
    template = "Failed fetch messages from %s: %s"
    passed = []
    for i in range(30):  # a retry every 100 ms... for 3 s, then one 10 s on
        now[0] = i * 0.1
        passed.append(repeats.filter(_record(template, 1, "NodeNotReadyError")))
    assert passed == [True] + [False] * 29
    now[0] = 10.5
    late = _record(template, 1, "NodeNotReadyError")
    assert repeats.filter(late)
    assert late.getMessage() == (
        "Failed fetch messages from 1: NodeNotReadyError (29 more like this held back in 10 s)"
    )
    now[0] = 21.0
    quiet = _record(template, 1, "KafkaConnectionError")
    assert repeats.filter(quiet) and quiet.getMessage().endswith("KafkaConnectionError")


@pytest.mark.parametrize(
    ("other", "passes"),
    [
        (_record("Unable connect to node with id %s: %s", 1, "refused"), True),  # another kind
        (_record("Failed fetch messages from %s: %s", 1, "x", name="aiokafka.y"), True),
        (_record("Failed fetch messages from %s: %s", 2, "x", level=logging.INFO), True),
        (_record("Failed fetch messages from %s: %s", 2, "other error"), False),  # same kind
    ],
)
def test_kinds_are_the_logger_and_template_and_lower_levels_always_pass(
    other: logging.LogRecord, passes: bool
) -> None:
    repeats = RepeatsHeldBack(every_s=10.0, clock=lambda: 0.0)
    assert repeats.filter(_record("Failed fetch messages from %s: %s", 1, "NodeNotReadyError"))
    assert repeats.filter(other) is passes
