"""When a partition counts as caught up for its tick clock (``InputLag.caught_up``,
``Runtime.caught_up``): a restarted worker whose partition had records not processed yet once
took "nothing handled since the assignment" as "no backlog", so its ticks ran on the wall
clock, ahead of the backlog's event time, and could cancel as stale a unit whose fixes were
still waiting in that backlog (review of the tick clock, 2026-12-06)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from broker import engine
from broker.model import Position, VehicleState
from broker.settings import EngineConfig
from broker.streams.agents import VehicleAgent
from broker.streams.consumer import HandoffConsumer
from broker.streams.input_lag import InputLag
from broker.streams.input_sequence import InputSequence
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames

POS, ROUTES = "avl.positions", "cad.routes"
T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
CFG = EngineConfig()


class Subscription:
    """aiokafka's subscription state as ``HandoffConsumer.fetch_position`` reads it, in the
    consumer thread's consumer: a partition's position, None while a reset is pending."""

    def __init__(self) -> None:
        self.positions: dict[TP, int | None] = {}
        self.subscription = SimpleNamespace(assignment=self)

    def state_value(self, tp: TP) -> Any:
        if tp not in self.positions:
            return None  # not assigned
        position = self.positions[tp]
        return SimpleNamespace(has_valid_position=position is not None, position=position)


def _worker(
    highwaters: Mapping[TP, int], committed: Mapping[TP, int] | None = None,
    log_starts: Mapping[TP, int] | None = None, *, handoff: bool = True,
) -> Any:
    """The parts of a restarted worker's vehicle agent that tell a backlog: its runtime, with
    the consumer's committed offsets, fetch positions and read offsets wired in as the agent
    wires them (``InputSequence``), over a HandoffConsumer's state only (``handoff``; else a
    transport that says none of them) whose fetches have said the high watermarks given (others
    not fetched yet). Its consumer thread not started: no fetch position (:func:`_fetching`)."""
    def highwater(tp: TP) -> int:
        if tp not in highwaters:
            raise KeyError(tp)  # as aiokafka's, for a partition not fetched yet
        return highwaters[tp]

    if handoff:
        consumer: Any = object.__new__(HandoffConsumer)  # its state only: nothing connects
        consumer._committed_offset = dict(committed or {})
        consumer._log_starts = dict(log_starts or {})
    else:
        consumer = SimpleNamespace()
    consumer.highwater = highwater
    consumer.assignment = lambda: {TP(t, p) for t in (POS, ROUTES) for p in (0, 1, 2, 3)}
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: 0.0)
    agent: Any = SimpleNamespace(app=SimpleNamespace(consumer=consumer, rebalancing_count=0), rt=rt,
                                 topics=SimpleNamespace(names=rt.names), metrics=rt.metrics)
    InputSequence(agent.app, rt, SimpleNamespace())  # rt.committed etc.: the consumer's
    agent.lag = InputLag(agent.app, rt.names, rt)
    agent.caught_up = agent.lag.caught_up
    return agent


def _fetching(agent: Any) -> Subscription:
    """Start ``agent``'s consumer thread: its subscription state, and Faust's read offsets,
    set by the seek to the committed offsets (Faust's ``perform_seek``) for each partition
    with one; the others' position unknown (their reset to where Kafka starts pending)."""
    consumer, subscription = agent.app.consumer, Subscription()
    consumer._thread = SimpleNamespace(
        _ensure_consumer=lambda: SimpleNamespace(_subscription=subscription))
    consumer._read_offset = defaultdict(lambda: None)
    for tp in consumer.assignment():
        offset = consumer._committed_offset.get(tp)
        subscription.positions[tp] = offset
        consumer._read_offset[tp] = offset or None  # as Faust's: 0 is None
    return subscription


def _hand_over(agent: Any, subscription: Subscription, tp: TP, until: int) -> None:
    """The consumer thread hands ``tp``'s records up to ``until`` (excluded) to the streams."""
    subscription.positions[tp] = until
    agent.app.consumer._read_offset[tp] = until - 1


def _caught_up(agent: Any, partition: int) -> bool:
    return agent.lag.caught_up(partition)


def test_records_not_processed_since_a_restart_are_a_backlog() -> None:
    agent = _worker({TP(POS, 2): 400, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 170, TP(ROUTES, 2): 30})
    assert not _caught_up(agent, 2)  # 230 fixes to read, none processed yet
    for offset in range(170, 400):
        agent.rt.processed(POS, 2, offset, None)
    assert _caught_up(agent, 2)


def test_a_partition_not_fetched_yet_may_have_a_backlog() -> None:
    agent = _worker({TP(ROUTES, 1): 5}, committed={TP(POS, 1): 170, TP(ROUTES, 1): 5})
    assert not _caught_up(agent, 1)  # positions[1]: its high watermark comes with a fetch
    agent.app.consumer.highwater = lambda tp: {TP(POS, 1): 170, TP(ROUTES, 1): 5}[tp]
    assert _caught_up(agent, 1)  # read to its end before the restart


@pytest.mark.parametrize("handoff", [True, False], ids=["kafka", "another-transport"])
def test_an_empty_or_fully_read_partition_does_not_hold_its_clock(handoff: bool) -> None:
    agent = _worker(
        {TP(POS, 0): 0, TP(ROUTES, 0): 0, TP(POS, 3): 90, TP(ROUTES, 3): 12},
        committed={TP(POS, 3): 90, TP(ROUTES, 3): 12},  # read to the end before the restart
        log_starts={TP(POS, 0): 0, TP(ROUTES, 0): 0},  # no record ever, never committed
        handoff=handoff,
    )
    assert _caught_up(agent, 0) and _caught_up(agent, 3)


def test_a_partition_with_routes_only_still_ticks() -> None:
    agent = _worker({TP(POS, 2): 0, TP(ROUTES, 2): 8}, log_starts={TP(POS, 2): 0, TP(ROUTES, 2): 0})
    assert not _caught_up(agent, 2)
    for offset in range(8):
        agent.rt.processed(ROUTES, 2, offset, T0 + timedelta(seconds=offset))
    assert _caught_up(agent, 2)  # no fix ever on positions[2]: it has nothing to wait for


def test_the_lag_gauge_counts_a_restarted_workers_backlog_before_its_first_message() -> None:
    agent = _worker({TP(POS, 2): 400, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 170, TP(ROUTES, 2): 30})
    agent.lag.update()
    lag = agent.metrics.consumer_lag
    assert lag.labels(POS, "2")._value.get() == 230
    assert lag.labels(ROUTES, "2")._value.get() == 0


def _fix(seconds: float) -> Position:
    return Position(
        vehicle_id="E1", ts=T0 + timedelta(seconds=seconds), lat=35.2271,
        lon=-80.8431 + seconds * 0.00013, status="responding", lights_sirens=True,
        incident_id="F1", speed_mps=12.0, heading_deg=90.0,
    )


def test_a_restarted_worker_cancels_no_unit_whose_fixes_wait_in_its_backlog() -> None:
    """The unit's state recovered with its last flushed fix at T0 (the clock seeded there, as
    ``rebuild_index`` does); its later fixes wait in the backlog. A tick a minute of wall time
    later must not take that minute as a silence: the first worker never cancelled it."""
    agent = _worker({TP(POS, 2): 400, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 170, TP(ROUTES, 2): 30})
    state: VehicleState | None = None
    for i in range(5):
        state, _ = engine.step(state, _fix(i), now=_fix(i).ts, cfg=CFG)
    assert state is not None and state.alert is not None
    clocks = agent.rt.clocks
    clocks.observe(2, _fix(4).ts, 100.0)
    now = clocks.now(2, 160.0, caught_up=_caught_up(agent, 2))
    assert now is not None
    _, events = engine.tick(state, now=now, cfg=CFG)
    assert events == []
    # the backlog read (the unit's fixes had stopped after all): the wall clock runs on
    for offset in range(170, 400):
        agent.rt.processed(POS, 2, offset, None)
    now = clocks.now(2, 160.0, caught_up=_caught_up(agent, 2))
    assert now is not None
    _, events = engine.tick(state, now=now, cfg=CFG)
    assert [(e.action, e.cancel_reason) for e in events] == [("cancel", "stale")]



def test_a_restart_backlog_counts_until_its_records_are_handled() -> None:
    """Sought to the committed offset, the position says the backlog; records handed over to
    the streams (the position at the high watermark) but not handled still count."""
    agent = _worker({TP(POS, 2): 400, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 170, TP(ROUTES, 2): 30})
    subscription = _fetching(agent)
    assert not _caught_up(agent, 2)
    _hand_over(agent, subscription, TP(POS, 2), 400)
    assert not _caught_up(agent, 2)  # all 230 wait in the streams' buffers
    for offset in range(170, 398):
        agent.rt.processed(POS, 2, offset, None)
    assert not _caught_up(agent, 2)  # two left
    for offset in (398, 399):
        agent.rt.processed(POS, 2, offset, None)
    assert _caught_up(agent, 2)


def test_a_position_not_known_yet_counts_from_the_committed_offset() -> None:
    agent = _worker({TP(POS, 2): 400, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 170, TP(ROUTES, 2): 30})
    subscription = _fetching(agent)
    subscription.positions[TP(POS, 2)] = None  # a reset pending
    assert not _caught_up(agent, 2)
    assert agent.rt.lag(POS, 2, 400) == 230


def _deleted_by_retention(agent: Any, subscription: Subscription) -> None:
    """The fetch from positions[2]'s committed offset 100 is out of range: aiokafka resets
    the partition to where Kafka starts now, its high watermark (nothing handed over)."""
    subscription.positions[TP(POS, 2)] = 500


def test_a_backlog_retention_deleted_entirely_does_not_hold_the_clock() -> None:
    """The group away longer than the topic's retention, nothing written since: no record
    ever comes, so a lag counted from the committed offset would hold the clock for ever."""
    agent = _worker({TP(POS, 2): 500, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 100, TP(ROUTES, 2): 30})
    subscription = _fetching(agent)
    assert not _caught_up(agent, 2)  # sought to 100, not fetched yet
    _deleted_by_retention(agent, subscription)
    assert _caught_up(agent, 2)
    agent.lag.update()
    assert agent.metrics.consumer_lag.labels(POS, "2")._value.get() == 0
    assert agent.rt.skipped(POS, 2, 500) == 400  # a record still judged from the committed


def test_after_a_rebalance_a_quiet_partition_is_caught_up_again() -> None:
    """Review finding: a rebalance forgets what was handled; the retention-deleted backlog
    (or a partition read to its end) must count as none again, at every assignment."""
    agent = _worker({TP(POS, 2): 500, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 100, TP(ROUTES, 2): 30})
    for _ in range(3):
        subscription = _fetching(agent)  # sought again
        assert not _caught_up(agent, 2)
        _deleted_by_retention(agent, subscription)
        assert _caught_up(agent, 2)
        agent.rt.forget_progress()  # a rebalance
    agent = _worker({TP(POS, 2): 500, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 100, TP(ROUTES, 2): 30})
    subscription = _fetching(agent)
    _hand_over(agent, subscription, TP(POS, 2), 500)
    for offset in range(100, 500):
        agent.rt.processed(POS, 2, offset, None)
    assert _caught_up(agent, 2)
    agent.rt.forget_progress()
    agent.app.consumer._committed_offset[TP(POS, 2)] = 500  # committed before the rebalance
    _fetching(agent)
    assert _caught_up(agent, 2)  # quiet since: nothing to handle, the wall clock runs


@pytest.mark.parametrize("fetched", [True, False], ids=["position", "no-position"])
def test_an_empty_or_fully_read_partition_is_caught_up_at_once(fetched: bool) -> None:
    agent = _worker(
        {TP(POS, 0): 0, TP(ROUTES, 0): 0, TP(POS, 3): 90, TP(ROUTES, 3): 12},
        committed={TP(POS, 3): 90, TP(ROUTES, 3): 12}, log_starts={TP(POS, 0): 0, TP(ROUTES, 0): 0},
    )
    if fetched:
        subscription = _fetching(agent)
        subscription.positions[TP(POS, 0)] = subscription.positions[TP(ROUTES, 0)] = 0
    assert _caught_up(agent, 0) and _caught_up(agent, 3)


def test_commit_markers_after_the_last_record_are_no_backlog() -> None:
    """A transactional input (``BROKER_INPUT_OFFSET_GAPS=count``): the commit marker after the
    last record takes an offset no record comes with; the position passes it."""
    agent = _worker({TP(POS, 2): 101, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 0, TP(ROUTES, 2): 30})
    subscription = _fetching(agent)
    _hand_over(agent, subscription, TP(POS, 2), 100)
    for offset in range(98):
        agent.rt.processed(POS, 2, offset, None)
    subscription.positions[TP(POS, 2)] = 101  # the marker at 100 passed
    assert not _caught_up(agent, 2)  # records 98 and 99 handed over, not handled yet
    for offset in (98, 99):
        agent.rt.processed(POS, 2, offset, None)
    assert _caught_up(agent, 2)
    assert agent.rt.lag(POS, 2, 101) == 0
    agent.app.consumer._read_offset[TP(POS, 2)] = 100  # a rewind sought back to 100
    subscription.positions[TP(POS, 2)] = 100
    assert not _caught_up(agent, 2)


def test_a_partition_kept_through_a_rebalance_ends_on_its_commit_marker() -> None:
    """Kept through a rebalance (what was handled remembered), its read offset set to the
    committed one by Faust's seek: that is no record waiting, the marker no backlog."""
    agent = _worker({TP(POS, 2): 101, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 100, TP(ROUTES, 2): 30})
    agent.rt.processed(POS, 2, 99, None)
    subscription = _fetching(agent)  # read offset 100, position 100
    assert not _caught_up(agent, 2)
    subscription.positions[TP(POS, 2)] = 101  # the fetch passes the marker
    assert _caught_up(agent, 2)


def _lag_figures(agent: Any) -> dict[tuple[str, str], float]:
    """What the lag gauge shows now, per (topic, partition): what a scrape of /metrics reads."""
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for family in agent.metrics.consumer_lag.collect() for s in family.samples}


def test_the_lag_gauge_shows_no_figure_while_it_is_not_known_or_not_ours() -> None:
    highwaters = {TP(POS, 1): 400, TP(ROUTES, 1): 30, TP(POS, 2): 50, TP(ROUTES, 2): 8}
    agent = _worker(highwaters, committed={TP(POS, 1): 170, TP(ROUTES, 1): 30,
                                           TP(POS, 2): 50, TP(ROUTES, 2): 8})
    agent.app.consumer.assignment = lambda: {TP(t, p) for t in (POS, ROUTES) for p in (1, 2)}
    agent.lag.update()
    assert _lag_figures(agent) == {(POS, "1"): 230, (ROUTES, "1"): 0, (POS, "2"): 0,
                                   (ROUTES, "2"): 0}
    del highwaters[TP(POS, 1)]  # its high watermark unknown again (a new assignment, say)
    agent.app.consumer.assignment = lambda: {TP(POS, 1), TP(ROUTES, 1)}  # partition 2 moved
    agent.lag.update()
    assert _lag_figures(agent) == {(ROUTES, "1"): 0}  # not 230 fixes behind for ever
    highwaters[TP(POS, 1)] = 400
    agent.lag.update()
    assert _lag_figures(agent) == {(POS, "1"): 230, (ROUTES, "1"): 0}


def test_a_high_watermark_unknown_for_long_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = _worker({TP(ROUTES, 1): 5}, committed={TP(POS, 1): 170, TP(ROUTES, 1): 5})
    agent.app.consumer.assignment = lambda: {TP(POS, 1), TP(ROUTES, 1)}
    wall = [0.0]
    agent.rt.wall = lambda: wall[0]
    with caplog.at_level(logging.WARNING, "broker.streams.agents"):
        for wall[0] in (0.0, 30.0, 61.0, 62.0, 200.0):
            agent.lag.update()
    warned = [r.getMessage() for r in caplog.records if "high watermark" in r.getMessage()]
    assert warned == ["avl.positions[1]: high watermark not fetched for 61 s: its partition's "
                      "clock waits at event time (no lag known)"]
    assert not _caught_up(agent, 1)
    agent.app.consumer.highwater = lambda tp: {TP(POS, 1): 170, TP(ROUTES, 1): 5}[tp]
    agent.lag.update()
    assert agent.lag.unknown == {}


def test_a_new_assignment_warns_again_of_a_partition_still_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = _worker({TP(ROUTES, 1): 5}, committed={TP(POS, 1): 170, TP(ROUTES, 1): 5})
    assignment = {TP(POS, 1), TP(ROUTES, 1)}
    agent.app.consumer.assignment = lambda: assignment
    wall = [0.0]
    agent.rt.wall = lambda: wall[0]
    with caplog.at_level(logging.WARNING, "broker.streams.agents"):
        for wall[0] in (0.0, 61.0):
            agent.lag.update()
        # two rebalances with no tick between: partition 1 moves away and comes back
        agent.app.rebalancing_count += 2
        for wall[0] in (100.0, 130.0, 161.0):
            agent.lag.update()
        assignment = set()  # moved away for good
        agent.lag.update()
    warned = [r.getMessage().split(":")[1] for r in caplog.records
              if "high watermark" in r.getMessage()]
    # warned at 61 s, and once more in the new assignment (unknown since 0 s), not again
    assert warned == [" high watermark not fetched for 61 s",
                      " high watermark not fetched for 100 s"]
    assert agent.lag.unknown == {}  # not ours: forgotten


def test_the_tick_runs_each_partition_on_its_backlog() -> None:
    """Review finding: the tick's wiring was untested. Partition 2 has a restart backlog, 3 a
    backlog retention deleted: 2 ticks at its newest event time, 3 on the wall clock."""
    agent = _worker({TP(POS, 2): 400, TP(ROUTES, 2): 30, TP(POS, 3): 500, TP(ROUTES, 3): 30},
                    committed={TP(POS, 2): 170, TP(ROUTES, 2): 30,
                               TP(POS, 3): 100, TP(ROUTES, 3): 30})
    subscription = _fetching(agent)
    subscription.positions[TP(POS, 3)] = 500  # reset to where Kafka starts
    rt = agent.rt
    rt.owned = rt.index_built_for = frozenset({2, 3})
    for p in (2, 3):
        rt.clocks.observe(p, T0, 100.0)
    rt.wall = lambda: 160.0
    nows: list[datetime] = []

    async def tick_or_stop(now: datetime, live: Any, pending: Any) -> list[Any]:
        nows.append(now)
        return []

    async def flush_now() -> bool:
        return True

    agent.begin_tick = lambda: True
    agent.forget_idle = lambda: 0
    agent.send = lambda events: None
    agent.tick_or_stop, agent.flush_now = tick_or_stop, flush_now
    agent.driver = SimpleNamespace(quarantined=())
    asyncio.run(VehicleAgent.tick(agent))
    assert nows == [T0, T0 + timedelta(seconds=60)]


def test_a_reset_asked_for_between_the_two_reads_of_the_position_is_no_position() -> None:
    """aiokafka's ``position`` asserts while a reset is pending; the consumer thread may ask
    for one (an offset out of range) after ``has_valid_position`` said yes: the tick must get
    "unknown", not the AssertionError (which stopped the worker from its timer)."""

    class ResetMeanwhile:
        has_valid_position = True

        @property
        def position(self) -> int:
            raise AssertionError  # aiokafka's: `assert self._position is not None`

    consumer: Any = object.__new__(HandoffConsumer)
    assignment = SimpleNamespace(state_value=lambda tp: ResetMeanwhile())
    consumer._thread = SimpleNamespace(_ensure_consumer=lambda: SimpleNamespace(
        _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))))
    assert consumer.fetch_position(TP(POS, 2)) is None
