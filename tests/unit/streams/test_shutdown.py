"""The deadline on a worker's graceful shutdown (``broker.streams.shutdown``): with Kafka gone
Faust's shutdown waits for ever; the deadline ends the process, saying why."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from broker.streams.shutdown import EXIT_SHUTDOWN_TIMEOUT, DeadlineWorker, ShutdownDeadline


def test_a_shutdown_past_its_deadline_ends_the_process_saying_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended: list[int] = []
    done = threading.Event()

    def end(code: int) -> None:
        ended.append(code)
        done.set()

    deadline = ShutdownDeadline(0.01, end=end)
    deadline.arm()
    deadline.arm()  # a second signal: the same countdown, not a second one
    assert done.wait(timeout=10)
    assert ended == [EXIT_SHUTDOWN_TIMEOUT]
    assert "shutdown not finished 0.01 s after the stop signal" in caplog.text


def test_an_unarmed_deadline_never_ends_anything() -> None:
    ended: list[int] = []
    deadline = ShutdownDeadline(0.01, end=ended.append)
    assert deadline._timer is None and ended == []


@pytest.mark.parametrize("signal_handler", ["_on_sigterm", "_on_sigint"])
def test_a_stop_signal_arms_the_deadline_and_starts_faust_s_shutdown(signal_handler: str) -> None:
    worker: Any = object.__new__(DeadlineWorker)  # its handlers only: nothing starts
    armed: list[bool] = []
    scheduled: list[Any] = []
    worker.deadline = type("D", (), {"arm": lambda self: armed.append(True)})()
    worker._schedule_shutdown = scheduled.append
    worker.carp = lambda *a: None  # mode's SIGINT banner
    worker.spinner = None  # Faust's own handlers stop it first
    getattr(worker, signal_handler)()
    assert armed == [True] and len(scheduled) == 1
