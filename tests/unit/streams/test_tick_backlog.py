"""When a partition counts as caught up for its tick clock (``VehicleAgent.caught_up``,
``Runtime.caught_up``): a restarted worker whose partition had records not processed yet once
took "nothing handled since the assignment" as "no backlog", so its ticks ran on the wall
clock, ahead of the backlog's event time, and could cancel as stale a unit whose fixes were
still waiting in that backlog (review of the tick clock, 2026-12-06)."""

from __future__ import annotations

import asyncio
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
from broker.streams.input_sequence import InputSequence
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames

POS, ROUTES = "avl.positions", "cad.routes"
T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
CFG = EngineConfig()


def _worker(
    highwaters: Mapping[TP, int], committed: Mapping[TP, int] | None = None,
    log_starts: Mapping[TP, int] | None = None, *, handoff: bool = True,
) -> Any:
    """The parts of a restarted worker's vehicle agent that tell a backlog: its runtime, with
    the consumer's committed offsets wired in as the agent wires them (``InputSequence``), over
    a HandoffConsumer's state only (``handoff``; else a transport that does not say where it
    resumes) whose fetches have said the high watermarks given (others not fetched yet)."""
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
    agent: Any = SimpleNamespace(app=SimpleNamespace(consumer=consumer), rt=rt,
                                 topics=SimpleNamespace(names=rt.names), metrics=rt.metrics)
    agent.highwater = lambda topic, partition: VehicleAgent.highwater(agent, topic, partition)
    InputSequence(agent.app, rt, SimpleNamespace())  # rt.committed: the consumer's
    return agent


def _caught_up(agent: Any, partition: int) -> bool:
    return VehicleAgent.caught_up(agent, partition)


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
    VehicleAgent.update_lag(agent)
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


def _ask_kafka(agent: Any, log_start: int | None) -> list[tuple[TP, ...]]:
    """Run the tick's look for backlogs retention deleted, Kafka saying its partitions start at
    ``log_start`` (None: Kafka away); returns what it was asked."""
    asked: list[tuple[TP, ...]] = []

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        asked.append(tps)
        if log_start is None:
            raise OSError("Kafka away")
        return {tp: log_start for tp in tps}

    agent.app.consumer.earliest_offsets = earliest_offsets
    seq = InputSequence(agent.app, agent.rt, SimpleNamespace())
    if backlogs := seq.deleted_backlogs([2], agent.highwater):
        asyncio.run(seq.pass_over_deleted(backlogs))
    assert not seq.deleted_backlogs([2], agent.highwater)  # asked once, not at every tick
    return asked


def test_a_backlog_retention_deleted_entirely_does_not_hold_the_clock() -> None:
    """The group away longer than the topic's retention, nothing written since: the consumer
    resets to where Kafka starts (the high watermark) and no record ever comes, so a lag
    counted from the committed offset would hold the clock for ever."""
    agent = _worker({TP(POS, 2): 500, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 100, TP(ROUTES, 2): 30})
    assert not _caught_up(agent, 2)
    assert _ask_kafka(agent, log_start=500) == [(TP(POS, 2),)]
    assert _caught_up(agent, 2)
    assert agent.rt.skipped(POS, 2, 500) == 0  # the next record is judged from there
    assert agent.metrics.offset_gaps.labels(POS)._value.get() == 400


@pytest.mark.parametrize("log_start", [100, 300, None], ids=["all-there", "some-left", "away"])
def test_a_backlog_with_records_left_to_read_still_holds_the_clock(
    log_start: int | None,
) -> None:
    agent = _worker({TP(POS, 2): 500, TP(ROUTES, 2): 30},
                    committed={TP(POS, 2): 100, TP(ROUTES, 2): 30})
    _ask_kafka(agent, log_start)
    assert not _caught_up(agent, 2)
    assert (POS, 2) not in agent.rt.next_offset
