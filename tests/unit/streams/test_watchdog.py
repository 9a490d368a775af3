"""The readiness watchdog (``broker.streams.watchdog``): a worker not ready for too long with
nothing moving stops, with a reason and an exit code of its own; a long recovery that moves
does not. The decision takes its times in: no clock, no Kafka, no event loop."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from broker.failure import Failure, StopWork
from broker.streams.membership import Membership
from broker.streams.runtime import EXIT_NOT_READY, Runtime, exit_code_for
from broker.streams.settings import StreamSettings
from broker.streams.shutdown import DeadlineWorker
from broker.streams.topics import TopicNames
from broker.streams.watchdog import (
    Progress,
    ReadinessWatch,
    ReadinessWatchdog,
    Stall,
    progress_of,
    register_watchdog,
)

LIMIT = 600.0
STILL = Progress(recovery_started=1.0, changelog_offsets=100, input_offsets=0)


def moved(n: int) -> Progress:
    """A marker ``n`` changelog records further on."""
    return Progress(recovery_started=1.0, changelog_offsets=100 + n, input_offsets=0)


def looks(dog: ReadinessWatchdog, times: range | list[float], ready: bool = False,
          progress: Progress = STILL) -> list[Stall | None]:
    return [dog.look(float(t), ready, progress) for t in times]


def test_a_worker_never_ready_and_never_moving_stops_once_the_limit_has_passed() -> None:
    dog = ReadinessWatchdog(LIMIT)
    assert looks(dog, range(0, 600, 5)) == [None] * 120  # 0 .. 595 s: waits
    stall = dog.look(600.0, False, STILL)
    assert stall == Stall(not_ready_s=600.0, still_s=600.0, progress=STILL)


def test_a_long_recovery_whose_offsets_advance_is_never_stopped() -> None:
    """A big changelog restored for an hour, a record applied between any two looks."""
    dog = ReadinessWatchdog(LIMIT)
    verdicts = [dog.look(float(t), False, moved(t)) for t in range(0, 3600, 5)]
    assert verdicts == [None] * 720
    # then it stalls: stopped a whole limit after the last progress, not before
    assert looks(dog, range(3600, 4195, 5), progress=moved(3595)) == [None] * 119
    stall = dog.look(3595.0 + 600.0, False, moved(3595))
    assert stall is not None and stall.still_s == 600.0 and stall.not_ready_s == 4195.0
    assert stall.progress == moved(3595)


def test_any_part_of_the_marker_moving_is_progress() -> None:
    dog = ReadinessWatchdog(LIMIT, blind_s=float("inf"))  # looks far apart, all seen
    dog.look(0.0, False, STILL)
    for t, marker in ((500.0, Progress(2.0, changelog_offsets=100, input_offsets=0)),
                      (1000.0, Progress(2.0, changelog_offsets=100, input_offsets=7))):
        assert dog.look(t, False, marker) is None
    assert dog.look(1599.0, False, Progress(2, 100, 7)) is None
    assert dog.look(1600.0, False, Progress(2, 100, 7)) is not None


def test_being_ready_in_between_starts_the_count_again() -> None:
    dog = ReadinessWatchdog(LIMIT)
    looks(dog, range(0, 590, 5))
    assert dog.look(590.0, True, STILL) is None  # ready: recovered just in time
    assert looks(dog, range(595, 1190, 5)) == [None] * 119  # not ready again from 595 s
    stall = dog.look(1195.0, False, STILL)
    assert stall is not None and stall.not_ready_s == 600.0


def test_ready_for_ever_never_stops_whatever_the_progress() -> None:
    dog = ReadinessWatchdog(LIMIT)
    assert looks(dog, range(0, 5000, 5), ready=True) == [None] * 1000


def test_zero_is_off() -> None:
    dog = ReadinessWatchdog(0.0)
    assert looks(dog, range(0, 100_000, 50)) == [None] * 2000


def test_a_pause_between_two_looks_starts_the_count_again() -> None:
    """A process stopped (SIGSTOP) while not ready: the look after it has
    not seen whether the recovery moved, so it judges from then on."""
    dog = ReadinessWatchdog(LIMIT, blind_s=60.0)
    looks(dog, range(0, 400, 5))
    assert dog.look(395.0 + 3600.0, False, STILL) is None  # an hour later
    assert dog.look(395.0 + 3600.0 + 599.0, False, STILL) is None  # looks 60 s apart at most...
    # ...but this one comes 599 s after the one before: blind again
    assert dog.look(395.0 + 3600.0 + 599.0 + 600.0, False, STILL) is None
    gone = 395.0 + 3600.0 + 599.0 + 600.0
    assert looks(dog, [gone + 50.0 * i for i in range(1, 12)]) == [None] * 11
    stall = dog.look(gone + 600.0, False, STILL)
    assert stall is not None and stall.not_ready_s == 600.0


# ---- the exit code -------------------------------------------------------------------------

def _stop(site: Any) -> StopWork:
    return StopWork(Failure(site=site, key="k", error="e", raw=b""))


def test_the_watchdog_s_stop_asks_for_its_own_exit_code_and_no_other_does() -> None:
    assert exit_code_for(_stop("readiness")) == EXIT_NOT_READY == 75
    assert exit_code_for(_stop("flush")) is None
    assert exit_code_for(RuntimeError("boom")) is None and exit_code_for(None) is None


@pytest.mark.parametrize(("first", "crash", "code"), [
    (None, "readiness", 75), (None, "flush", 1), (None, None, 1),
    ("readiness", "flush", 75),  # a later crash during the watchdog's shutdown: still 75
    ("flush", "readiness", 1),
])
def test_the_worker_exits_with_the_code_its_first_stop_asks_for(
    first: Any, crash: Any, code: int,
) -> None:
    """Faust's worker exits 1 after any crash (mode's ``exiting``); the CLI's worker turns the
    watchdog's into 75 and leaves every other as it was. The worker's first stop decides:
    Faust keeps only the last crash."""
    worker: Any = object.__new__(DeadlineWorker)
    worker.crash_reason = None if crash is None else _stop(crash)
    if first is not None:
        rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
        rt.stopped = _stop(first)
        worker.app = SimpleNamespace(broker_runtime=rt)

    def faust_exits(self: Any) -> None:
        raise SystemExit(1)

    parent = DeadlineWorker.__mro__[1]
    original = parent.execute_from_commandline
    parent.execute_from_commandline = faust_exits  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit) as done:
            worker.execute_from_commandline()
    finally:
        parent.execute_from_commandline = original  # type: ignore[method-assign]
    assert done.value.code == code


# ---- the wiring ----------------------------------------------------------------------------

def fake_app(completed: bool = False) -> Any:
    """What the watchdog reads of a Faust app: the recovery, rebalancing, the generation."""
    event = SimpleNamespace(is_set=lambda: completed)
    recovery = SimpleNamespace(
        completed=event, active_offsets=Counter({"vehicles-changelog/0": 41}),
        in_recovery=False, active_remaining_total=lambda: 0, _recovery_started_at=7.5,
    )
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery), rebalancing=False,
                           consumer_generation_id=3, should_stop=False)


def test_progress_is_read_from_faust_s_recovery_and_the_inputs_handled() -> None:
    app = fake_app()
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    rt.next_offset = {("avl.positions", 0): 10, ("cad.routes", 0): 2}
    assert progress_of(app, rt) == Progress(recovery_started=7.5, changelog_offsets=41,
                                            input_offsets=12)
    app.consumer_generation_id = 4  # another member's rebalance: no recovery started here
    assert progress_of(app, rt).recovery_started == 7.5
    app.tables.recovery.active_offsets["vehicles-changelog/1"] = 5
    assert progress_of(app, rt).changelog_offsets == 46
    assert progress_of(SimpleNamespace(consumer_generation_id=None, tables=None), rt) == Progress(
        recovery_started=0.0, changelog_offsets=0, input_offsets=12)


async def test_a_worker_stuck_in_recovery_is_stopped_through_stop_worker_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    rt = Runtime(settings=StreamSettings(not_ready_exit_s=20.0),
                 names=TopicNames.for_prefix(), wall=lambda: now[0])
    stops: list[StopWork] = []

    async def stop_worker(app: Any, stop: StopWork) -> None:  # no crash, no exit timer here
        rt.stopped = stop
        stops.append(stop)

    rt.stop_worker = stop_worker  # type: ignore[method-assign]
    watch = ReadinessWatch(fake_app(), rt, ReadinessWatchdog(20.0), interval_s=5.0)
    for t in range(0, 20, 5):
        now[0] = float(t)
        assert await watch.look() is False
    now[0] = 20.0
    assert await watch.look() is True
    assert len(stops) == 1 and stops[0].failure.site == "readiness"
    reason = stops[0].failure.error
    assert "not ready for 20 s, no progress for 20 s" in reason
    assert "/health missing: recovered, assigned; recovery_completed=False" in reason
    assert "changelog_offsets=41" in reason
    assert "readiness watchdog: not ready for 20 s" in caplog.text
    assert rt.metrics.failures.labels("readiness", "stop")._value.get() == 1
    now[0] = 40.0
    assert await watch.look() is False  # stopping already: no second stop
    assert len(stops) == 1


async def test_a_worker_shutting_down_on_a_signal_is_not_stopped_again() -> None:
    now = [0.0]
    rt = Runtime(settings=StreamSettings(not_ready_exit_s=20.0),
                 names=TopicNames.for_prefix(), wall=lambda: now[0])
    stops: list[StopWork] = []

    async def stop_worker(app: Any, stop: StopWork) -> None:  # no crash, no exit timer here
        stops.append(stop)

    rt.stop_worker = stop_worker  # type: ignore[method-assign]
    app = fake_app()
    app.should_stop = True  # SIGTERM: Faust's graceful shutdown under way
    watch = ReadinessWatch(app, rt, ReadinessWatchdog(20.0), interval_s=5.0)
    for t in range(0, 100, 5):
        now[0] = float(t)
        assert await watch.look() is False
    assert stops == []


async def test_a_ready_worker_is_left_alone_and_its_gauge_kept() -> None:
    now = [0.0]
    rt = Runtime(settings=StreamSettings(not_ready_exit_s=20.0),
                 names=TopicNames.for_prefix(), wall=lambda: now[0])
    rt.assigned_once = True
    watch = ReadinessWatch(fake_app(completed=True), rt, ReadinessWatchdog(20.0), 5.0)
    for t in range(0, 200, 5):
        now[0] = float(t)
        assert await watch.look() is False
    assert rt.metrics.ready._value.get() == 1  # readiness evaluated on the timer, not on /health


async def test_a_worker_that_only_lost_its_lease_waits_on_kafka_and_is_not_stopped() -> None:
    """Recovered and assigned, its lease lapsed (Kafka away): /health says 503, but the worker
    comes back by itself when Kafka answers; only a recovery that never ends is stopped."""
    now = [0.0]
    rt = Runtime(settings=StreamSettings(not_ready_exit_s=20.0),
                 names=TopicNames.for_prefix(), wall=lambda: now[0])
    rt.assigned_once = True
    rt.membership = Membership(session_timeout_s=10.0, clock=lambda: now[0])
    rt.membership.renewed(0.0)  # last heard of the group at 0 s: lapsed from 10 s
    stops: list[StopWork] = []

    async def stop_worker(app: Any, stop: StopWork) -> None:
        stops.append(stop)

    rt.stop_worker = stop_worker  # type: ignore[method-assign]
    app = fake_app(completed=True)
    watch = ReadinessWatch(app, rt, ReadinessWatchdog(20.0), interval_s=5.0)
    for t in range(0, 300, 5):
        now[0] = float(t)
        assert await watch.look() is False
    assert not rt.membership.held() and rt.metrics.ready._value.get() == 0  # 503 all along
    assert stops == []
    app.tables.recovery.completed = SimpleNamespace(is_set=lambda: False)  # a recovery now
    for t in range(300, 325, 5):
        now[0] = float(t)
        await watch.look()
    assert len(stops) == 1


def test_zero_registers_no_watchdog() -> None:
    rt = Runtime(settings=StreamSettings(not_ready_exit_s=0.0), names=TopicNames.for_prefix())
    assert register_watchdog(fake_app(), rt) is None
