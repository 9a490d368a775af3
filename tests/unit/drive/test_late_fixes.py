"""A unit whose fixes are stamped ``stale_timeout_s`` or more behind the clock its ticks run at
(a device clock behind, a delayed or store-and-forward feed sharing a partition with real-time
units): before ``Driver.late`` each tick cancelled its alert as stale and its next fix created
it again, a new life (a new pseudonymous id for partners) every second (review, 2026-12-07:
20 creates and 20 cancels in 20 s). Now such a fix is refused (``late``, to avl.dlq) and
nothing flaps; the shells' clocks: the worker's partition clock (``clock=``), the replay's and
the simulator's own event clock (the default)."""

from __future__ import annotations

from datetime import datetime

import pytest

from broker import codec
from broker.drive import POSITIONS, DictStore, Driver, Handled
from broker.model import AlertEvent
from broker.settings import EngineConfig
from broker.streams.clock import PartitionClocks
from tests.conftest import at, fix

CFG = EngineConfig()
LAG_S = 40.0  # X's stamps behind real time (and behind Y's): more than the 30 s stale timeout


def _fix(vid: str, t: float, east_m: float = 0.0) -> bytes:
    return codec.encode(fix(t, east_m, vehicle_id=vid, north_m=300.0 if vid == "X" else 0.0))


def _creates_and_cancels(events: list[AlertEvent], vid: str) -> list[str]:
    return [e.action for e in events if e.vehicle_id == vid and e.action in ("create", "cancel")]


def _worker_run(lags: list[float], *, clock_given: bool = True) -> tuple[
        list[AlertEvent], list[Handled]]:
    """Y on time and X ``lags[s]`` behind, one fix each a second on one partition, as the
    worker runs them: each fix judged against the partition's clock (its newest event time,
    clamped to the receive time, ``Runtime.processed``), a tick after each second at the
    partition's clock through ``Driver.pass_time``. ``clock_given``: as the worker did before
    (the driver's default: its own clock, which in the worker spans every partition)."""
    driver = Driver(CFG, store=DictStore(), key=str.encode)
    clocks = PartitionClocks()
    events: list[AlertEvent] = []
    handled_x: list[Handled] = []
    for s, lag in enumerate(lags):
        wall = at(s)
        for vid, behind in (("Y", 0.0), ("X", lag)):
            ts = s - behind
            kw = {"clock": clocks.event_time(0)} if clock_given else {}
            h = driver.handle(POSITIONS, _fix(vid, ts, 12.0 * ts), received_at=wall, **kw)
            if vid == "X":
                handled_x.append(h)
            events += h.events
            if h.msg is not None:
                clocks.observe(0, min(h.msg.ts, wall), float(s))
        now = clocks.now(0, s + 0.5, caught_up=True)
        assert now is not None
        events += driver.pass_time(now, set(driver.live), set(driver.pending))
    return events, handled_x


@pytest.mark.parametrize("clock_given", [True, False], ids=["partition-clock", "own-clock"])
def test_a_unit_behind_its_partitions_clock_does_not_flap(clock_given: bool) -> None:
    """The review's case (one partition: the driver's own clock is the partition's too)."""
    events, handled = _worker_run([LAG_S] * 20, clock_given=clock_given)
    assert _creates_and_cancels(events, "X") == []  # was 20 creates and 20 cancels
    assert [h.rejection.reason for h in handled if h.rejection] == ["late"] * 20
    detail = handled[0].rejection.detail if handled[0].rejection else ""
    assert detail.startswith("40.0 s behind its stream's clock") and "device clock" in detail
    assert _creates_and_cancels(events, "Y") == ["create"]  # Y: as before


def test_the_replay_refuses_the_late_unit_too() -> None:
    """The in-process replay ticks on its own event clock (``tick_every_s``): the driver's
    default clock is that one, so the replay of such a recording is the worker's twin."""
    driver = Driver(CFG, tick_every_s=1.0)
    events: list[AlertEvent] = []
    refused = 0
    for s in range(20):
        for vid, ts in (("Y", float(s)), ("X", s - LAG_S)):
            h = driver.handle(POSITIONS, _fix(vid, ts, 12.0 * ts), received_at=at(s))
            events += h.events
            refused += h.rejection is not None and h.rejection.reason == "late"
    assert _creates_and_cancels(events, "X") == [] and refused == 20
    assert _creates_and_cancels(events + driver.drain(), "Y") == ["create", "cancel"]


def test_a_unit_whose_clock_recovers_works_again_at_once() -> None:
    events, handled = _worker_run([LAG_S] * 5 + [0.0] * 5)
    assert [h.rejection is not None for h in handled] == [True] * 5 + [False] * 5
    assert _creates_and_cancels(events, "X") == ["create"]  # the first fix on time


def test_a_live_unit_whose_clock_falls_behind_ends_once() -> None:
    """On time, then its stamps 40 s behind: its fixes are refused, and its alert ends as any
    silent unit's does (stale, at last fix + timeout), once: no new life per fix."""
    events, handled = _worker_run([0.0] * 5 + [LAG_S] * 40)
    assert _creates_and_cancels(events, "X") == ["create", "cancel"]
    cancel = next(e for e in events if e.vehicle_id == "X" and e.action == "cancel")
    assert cancel.cancel_reason == "stale" and cancel.ts == at(4 + CFG.stale_timeout_s)
    assert sum(h.rejection is not None for h in handled) == 40


def test_the_worker_judges_against_the_partition_clock_not_the_drivers() -> None:
    """The worker's one driver serves every partition it owns; its own clock (the newest
    event time of all of them) would make a partition read behind another look late."""
    driver = Driver(CFG, store=DictStore(), key=str.encode)
    assert driver.handle(POSITIONS, _fix("Y", 600.0), received_at=at(600)).rejection is None
    # X is on a partition read 10 minutes behind (uneven fetches, a backlog): its clock
    clocks = PartitionClocks()
    clocks.observe(1, at(0), 0.0)
    h = driver.handle(POSITIONS, _fix("X", 1.0), received_at=at(600),
                      clock=clocks.event_time(1))
    assert h.rejection is None and [e.action for e in h.events] == ["create"]
    late = driver.handle(POSITIONS, _fix("Z", 1.0), received_at=at(600))  # the default: late
    assert late.rejection is not None and late.rejection.reason == "late"


def test_a_backlog_old_against_the_wall_clock_is_taken() -> None:
    """A worker catching up: every fix hours old against the wall clock (its receive time,
    when it was produced, is old too) but in order on its partition: nothing is late."""
    driver = Driver(CFG, store=DictStore(), key=str.encode)
    clocks = PartitionClocks()
    events: list[AlertEvent] = []
    for s in range(20):
        for vid in ("Y", "X"):
            h = driver.handle(POSITIONS, _fix(vid, s, 12.0 * s), received_at=at(s),
                              clock=clocks.event_time(0))
            assert h.rejection is None
            events += h.events
            clocks.observe(0, at(s), 1e6)  # the wall clock hours later: not caught up
        now = clocks.now(0, 1e6 + s, caught_up=False)
        assert now is not None
        events += driver.pass_time(now)
    assert _creates_and_cancels(events, "X") == ["create"]


def test_a_units_own_out_of_order_fix_is_counted_as_before() -> None:
    driver = Driver(CFG)
    for t in (0.0, 1.0, 20.0):
        assert driver.handle(POSITIONS, _fix("X", t, 12.0 * t)).rejection is None
    back = driver.handle(POSITIONS, _fix("X", 5.0, 60.0))  # 15 s behind its own last fix
    assert back.rejection is None and back.events == []
    assert back.state is not None and back.state.counters.out_of_order == 1


@pytest.mark.parametrize(("behind_s", "late"), [(29.999, False), (30.0, True), (45.0, True)])
def test_the_threshold_is_the_stale_timeout(behind_s: float, late: bool) -> None:
    """A tick at ``clock`` cancels an alert whose last fix is the timeout old or more
    (``stale_at``): exactly those fixes are refused."""
    driver = Driver(CFG)
    clock: datetime = at(100)
    ts = 100 - behind_s
    h = driver.handle(POSITIONS, _fix("X", ts), received_at=clock, clock=clock)
    assert (h.rejection is not None) is late
    if late:
        assert h.rejection is not None and h.rejection.reason == "late"


def test_no_clock_judges_nothing_and_a_fix_at_the_clock_is_never_late() -> None:
    driver = Driver(CFG)
    assert driver.handle(POSITIONS, _fix("X", -3600.0), clock=None).rejection is None
    zero = Driver(EngineConfig(stale_timeout_s=0.0))  # every tick cancels: degenerate
    assert zero.handle(POSITIONS, _fix("Y", 0.0), clock=at(0)).rejection is None
    assert zero.handle(POSITIONS, _fix("X", -1.0), clock=at(0)).rejection is not None


def test_a_unit_ahead_does_not_make_the_others_late() -> None:
    """The driver's own clock goes no further than the receive time: a unit 45 s ahead (the
    skew allows 60 s) moved it, and every other unit's fixes were 45 s behind it. So is a
    stored fix from a device clock years ahead: the trusted clock repairs it (``repair``)."""
    driver = Driver(CFG)
    assert driver.handle(POSITIONS, _fix("A", 145.0), received_at=at(100)).rejection is None
    assert driver.clock == at(145)
    assert driver.handle(POSITIONS, _fix("X", 100.0), received_at=at(100)).rejection is None
    old = Driver(CFG)
    old.step(fix(10**9, vehicle_id="X"))  # year ~2058, stored before the skew was judged
    h = old.handle(POSITIONS, _fix("X", 3600.0), received_at=at(3600))
    assert h.rejection is None and [e.action for e in h.events] == ["cancel", "create"]
