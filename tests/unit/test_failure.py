"""The one failure policy: skip a bug with a record, stop on an outage, raise in-process."""

from __future__ import annotations

import asyncio

import pytest

from broker.failure import RAISE, Failure, FailurePolicy, FirstFailure, StopWork, decide


def test_a_bug_is_skipped_with_a_record_and_counted() -> None:
    records: list[Failure] = []
    counts: list[tuple[str, str]] = []
    policy = FailurePolicy(dead_letter=records.append, count=lambda s, d: counts.append((s, d)))
    failure = policy("engine", KeyError("lat"), key="CFD-E7", raw=b"{...}", source="avl.positions")
    assert records == [failure]
    assert (failure.reason, failure.key, failure.raw, failure.source) == (
        "engine_error", "CFD-E7", b"{...}", "avl.positions",
    )
    assert "KeyError" in failure.error and counts == [("engine", "skip")]


def test_a_skip_left_uncounted_is_the_callers_to_count_but_a_stop_is_counted() -> None:
    """``counted=False``: the caller counts the skip once its record is durable (``POST
    /ingest/traccar``); a stop is counted where it is decided, as always."""
    counts: list[tuple[str, str]] = []
    policy = FailurePolicy(count=lambda s, d: counts.append((s, d)))
    assert policy.check("decode", KeyError("lat"), key="k", counted=False).site == "decode"
    assert counts == []
    with pytest.raises(StopWork):
        policy.check("decode", ConnectionError(), key="k", counted=False)
    assert counts == [("decode", "stop")]


@pytest.mark.parametrize("error", [ConnectionError("refused"), TimeoutError(), OSError(28, "full")])
def test_an_outage_stops_without_a_record(error: Exception) -> None:
    records: list[Failure] = []
    counts: list[tuple[str, str]] = []
    policy = FailurePolicy(dead_letter=records.append, count=lambda s, d: counts.append((s, d)))
    with pytest.raises(StopWork) as stop:
        policy("fanout", error, key="ev-1")
    assert records == [] and counts == [("fanout", "stop")]
    assert stop.value.failure.site == "fanout" and stop.value.__cause__ is error


def test_a_flush_always_stops_and_shells_add_their_own_outages() -> None:
    assert decide("flush", ValueError("a bug")) == "stop"  # skipping would drop acked work

    class KafkaDown(Exception):
        pass

    assert decide("engine", KafkaDown()) == "skip"
    assert decide("engine", KafkaDown(), outages=(KafkaDown,)) == "stop"


def test_in_process_tools_see_the_error_itself() -> None:
    with pytest.raises(ZeroDivisionError):
        RAISE("engine", ZeroDivisionError(), key="x")
    with pytest.raises(ZeroDivisionError):
        RAISE.check("delivery", ZeroDivisionError(), key="x")


def test_a_policy_without_a_sink_only_decides() -> None:
    policy = FailurePolicy()
    assert policy.check("delivery", ValueError("bug"), key="m-v1").reason == "delivery_error"
    with pytest.raises(ValueError, match="no dead-letter sink"):
        policy("delivery", ValueError("bug"), key="m-v1")


class Wrapped(Exception):
    """A library's own error type around its client's (Faust's ProducerSendError)."""


def wrapped(cause: BaseException) -> Wrapped:
    try:
        raise Wrapped("Error while sending") from cause
    except Wrapped as err:
        return err


def test_an_error_raised_from_an_outage_is_an_outage_and_a_handlers_bug_is_not() -> None:
    assert decide("delivery", wrapped(ConnectionError("Kafka away"))) == "stop"
    assert decide("delivery", wrapped(wrapped(TimeoutError()))) == "stop"  # a chain of them
    assert decide("delivery", wrapped(KeyError("a bug"))) == "skip"
    try:  # raised while *handling* an outage (implicit __context__): may be the handler's bug
        try:
            raise ConnectionError("Kafka away")
        except ConnectionError:
            raise KeyError("a bug in the handler")  # noqa: B904 - the point of the test
    except KeyError as err:
        assert decide("delivery", err) == "skip"


def test_a_failed_settling_always_stops() -> None:
    with pytest.raises(StopWork) as stop:
        FailurePolicy().check("settle", KeyError("dead letter not written"), key="ev-1")
    assert stop.value.failure.reason == "settle_error"


@pytest.mark.parametrize("interrupt", [asyncio.CancelledError(), KeyboardInterrupt()])
@pytest.mark.parametrize("first", [None, "a block's own"])
def test_a_cancellation_after_a_failure_is_the_one_raised_the_failure_logged_and_noted(
    interrupt: BaseException, first: str | None, caplog: pytest.LogCaptureFixture,
) -> None:
    """Behind a bug, a cancellation was only a note on it: the bug came out of a cancelled
    shutdown (``asyncio.timeout`` did not turn it into ``TimeoutError``; a caller catching
    ``Exception`` carried on)."""
    block = RuntimeError("the block's bug")
    failures = FirstFailure(block if first else None)
    if not first:
        failures.keep(block, "draining")
    failures.keep(interrupt, "stopping")
    failures.keep(OSError("gone"), "closing")  # after the cancellation: noted on it
    with pytest.raises(type(interrupt)) as raised:
        failures.raise_first(unless=block)
    assert raised.value is interrupt
    notes = raised.value.__notes__
    assert "the block's bug" in notes[0] and "OSError('gone')" in notes[1]
    assert "the block's bug" in caplog.text and "OSError('gone')" in caplog.text


def test_a_failure_after_a_cancellation_is_logged_and_noted_on_it() -> None:
    cancelled = asyncio.CancelledError()
    failures = FirstFailure(cancelled)
    failures.keep(RuntimeError("a bug stopping"), "stopping")
    failures.raise_first(unless=cancelled)  # the block's own goes on by itself
    assert "a bug stopping" in cancelled.__notes__[0]


async def test_a_childs_cancellation_does_not_replace_a_failure_when_this_task_is_not_cancelled(
) -> None:
    """A CancelledError a step let out of a child task, this task not being cancelled, is
    that step's failure: the earlier bug stays the one raised (promoted, it cut short a
    shutdown nobody cancelled)."""
    bug = RuntimeError("draining failed")
    failures = FirstFailure()
    failures.keep(bug, "draining")
    child = asyncio.ensure_future(asyncio.Event().wait())
    child.cancel()
    with pytest.raises(asyncio.CancelledError) as from_child:
        await child
    failures.keep(from_child.value, "stopping")
    with pytest.raises(RuntimeError, match="draining failed") as raised:
        failures.raise_first()
    assert "CancelledError" in raised.value.__notes__[0]


async def test_this_tasks_own_cancellation_replaces_a_failure() -> None:
    bug = RuntimeError("draining failed")
    failures = FirstFailure()
    failures.keep(bug, "draining")
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError as own:
        failures.keep(own, "stopping")
        with pytest.raises(asyncio.CancelledError):
            failures.raise_first()
        task.uncancel()
