"""The tick clock: event time while a partition has a backlog, wall clock once caught up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker import engine
from broker.model import Position, VehicleState
from broker.settings import EngineConfig
from broker.streams.clock import PartitionClock, PartitionClocks

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
CFG = EngineConfig()


def fix(seconds: float, lon: float) -> Position:
    return Position(
        vehicle_id="E1", ts=T0 + timedelta(seconds=seconds), lat=35.2271, lon=lon,
        status="responding", lights_sirens=True, incident_id="F1", speed_mps=12.0,
        heading_deg=90.0,
    )


def test_a_clock_without_events_has_no_time() -> None:
    assert PartitionClock().now(100.0, caught_up=True) is None


def test_fast_replay_keeps_event_time_while_there_is_a_backlog() -> None:
    clock = PartitionClock()
    clock.observe(T0, wall_s=10.0)
    clock.observe(T0 + timedelta(minutes=5), wall_s=10.2)  # 5 minutes of fixes in 0.2 s
    # a long pause of the worker with messages still waiting must not make units stale
    assert clock.now(500.0, caught_up=False) == T0 + timedelta(minutes=5)


def test_caught_up_partition_runs_on_with_the_wall_clock() -> None:
    clock = PartitionClock()
    clock.observe(T0, wall_s=10.0)
    assert clock.now(41.5, caught_up=True) == T0 + timedelta(seconds=31.5)


def test_older_event_times_do_not_move_the_clock_back() -> None:
    clock = PartitionClock()
    clock.observe(T0 + timedelta(seconds=60), wall_s=1.0)
    clock.observe(T0, wall_s=2.0)
    assert clock.now(1.0, caught_up=True) == T0 + timedelta(seconds=60)


def test_partitions_keep_their_own_time() -> None:
    clocks = PartitionClocks()
    clocks.observe(0, T0, 0.0)
    clocks.observe(1, T0 + timedelta(hours=1), 0.0)  # read far ahead, e.g. uneven fetches
    assert clocks.now(0, 0.0, caught_up=False) == T0
    clocks.forget({1})
    assert clocks.partitions() == [0]


def test_a_silent_unit_gets_its_stale_cancel_about_30_s_after_its_last_fix() -> None:
    state: VehicleState | None = None
    clock = PartitionClock()
    for i in range(5):
        state, _ = engine.step(state, fix(i, -80.8431 + i * 0.00013), now=fix(i, 0).ts, cfg=CFG)
        clock.observe(fix(i, 0).ts, wall_s=100.0 + i)
    assert state is not None and state.alert is not None
    # nothing else arrives on the partition: ticks run on the wall clock
    early, events = engine.tick(state, now=clock.now(120.0, caught_up=True), cfg=CFG)
    assert events == [] and early.alert is not None
    late, events = engine.tick(state, now=clock.now(135.0, caught_up=True), cfg=CFG)
    assert [e.action for e in events] == ["cancel"] and events[0].cancel_reason == "stale"
    assert events[0].ts == fix(4, 0).ts + timedelta(seconds=CFG.stale_timeout_s)
    assert late.alert is None
