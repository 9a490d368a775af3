"""The state cache's ordering promises: alerts before states, states before acks, and nothing
written or acked across a rebalance. No Kafka: the table is a dict, produce futures are asyncio
futures the test resolves by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker import codec
from broker.streams.states import VehicleStates
from tests.unit.streams.fakes import Table, make_states, state


def test_get_decodes_once_then_serves_the_cached_state() -> None:
    table, epoch = Table(), [0]
    table.data[b"E1"] = codec.dump_state(state("E1", 2))
    states = make_states(table, epoch)
    assert states.get(b"E1") == state("E1", 2)
    assert states.get(b"E1") == state("E1", 2)
    assert states.get(b"nobody") is None
    assert states.get(b"nobody") is None
    assert table.log == ["read E1", "read nobody"]


def test_flush_awaits_alerts_then_writes_each_dirty_vehicle_once_then_acks() -> None:
    async def scenario() -> tuple[list[str], Table, Any]:
        table, epoch = Table(), [0]
        states = make_states(table, epoch)
        order: list[str] = []
        alert: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        states.sent(alert)
        for n in range(3):  # three fixes of one vehicle: one write
            states.put(b"E1", state("E1", n))
            states.processed(lambda n=n: order.append(f"ack {n}"))
        task = asyncio.create_task(states.flush())
        await asyncio.sleep(0)
        assert table.log == [] and order == [], "nothing written before the alert is in Kafka"
        alert.set_result(None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert table.log == ["write E1"] and order == [], "no ack before the state is in Kafka"
        table.writes[0].set_result(None)
        result = await task
        return order, table, result

    order, table, result = asyncio.run(scenario())
    assert order == ["ack 0", "ack 1", "ack 2"]
    assert codec.load_state(table.data[b"E1"]) == state("E1", 2)
    assert (result.alerts_awaited, result.states_written, result.events_acked) == (1, 1, 3)


def test_changes_made_during_a_flush_wait_for_the_next_one_and_its_alerts() -> None:
    async def scenario() -> Table:
        table, epoch = Table(), [0]
        states = make_states(table, epoch)
        loop = asyncio.get_running_loop()
        first: asyncio.Future[Any] = loop.create_future()
        late: asyncio.Future[Any] = loop.create_future()
        states.sent(first)
        states.put(b"E1", state("E1", 1))
        task = states.flush_soon()
        assert task is not None
        await asyncio.sleep(0)
        assert states.flushing and states.flush_soon() is None, "one flush at a time"
        states.sent(late)  # the agent goes on: E2's fix and its alert, after the snapshot
        states.put(b"E2", state("E2", 1))
        first.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)
        assert table.log == ["write E1"], "the snapshot only: E2's alert is not in Kafka yet"
        table.writes[0].set_result(None)
        await task
        second = asyncio.create_task(states.flush())
        for _ in range(3):
            await asyncio.sleep(0)
        assert table.log == ["write E1"], "E2's state waits for E2's alert"
        late.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)
        assert table.log == ["write E1", "write E2"]
        table.writes[1].set_result(None)
        await second
        return table

    table = asyncio.run(scenario())
    assert codec.load_state(table.data[b"E2"]) == state("E2", 1)


def test_a_rebalance_during_the_flush_drops_everything_unwritten_and_acks_nothing() -> None:
    async def scenario() -> tuple[list[str], Table, Any, VehicleStates]:
        table, epoch = Table(), [0]
        table.data[b"E1"] = codec.dump_state(state("E1", 0))
        states = make_states(table, epoch)
        acked: list[str] = []
        alert: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        states.get(b"E1")
        states.sent(alert)
        states.put(b"E1", state("E1", 5))
        states.processed(lambda: acked.append("E1"))
        task = asyncio.create_task(states.flush())
        await asyncio.sleep(0)
        epoch[0] = 1  # the consumer thread starts a rebalance
        alert.set_result(None)
        result = await task
        return acked, table, result, states

    acked, table, result, states = asyncio.run(scenario())
    assert result.dropped and acked == []
    assert table.log == ["read E1"], "no write after the rebalance started"
    assert states.pending == 0
    assert states.get(b"E1") == state("E1", 0), "the table's state again, not the dropped one"


def test_mid_rebalance_a_flush_defers_and_the_new_epoch_drops_the_work() -> None:
    async def scenario() -> tuple[Any, list[str], VehicleStates, Table]:
        table, epoch, paused = Table(), [0], [True]
        states = make_states(table, epoch, paused)
        acked: list[str] = []
        states.put(b"E1", state("E1", 1))
        states.processed(lambda: acked.append("E1"))
        result = await states.flush()
        return result, acked, states, table

    result, acked, states, table = asyncio.run(scenario())
    assert result.deferred and not result.dropped
    assert acked == [] and table.log == [] and states.pending == 1


def test_begin_drops_the_cache_and_tells_the_owner_when_the_epoch_moved() -> None:
    table, epoch = Table(), [0]
    forgotten: list[bool] = []
    states = make_states(table, epoch, on_drop=lambda: forgotten.append(True))
    states.put(b"E1", state("E1", 3))
    states.processed(lambda: None)
    assert states.begin() is False and forgotten == []
    epoch[0] = 7
    assert states.begin() is True
    assert forgotten == [True] and states.pending == 0 and list(states.cached_keys()) == []
    assert states.begin() is False


def test_due_after_enough_messages_or_time() -> None:
    table, epoch = Table(), [0]
    now = [100.0]
    states = make_states(table, epoch, max_pending=3, max_age_s=0.5, clock=lambda: now[0])
    assert not states.due()
    states.processed(lambda: None)
    assert not states.due()
    now[0] += 0.5
    assert states.due()
    fresh = make_states(table, epoch, max_pending=3, max_age_s=0.5, clock=lambda: now[0])
    for _ in range(3):
        fresh.processed(lambda: None)
    assert fresh.due()



def test_a_forgotten_vehicle_leaves_the_table_by_tombstone_and_can_come_back() -> None:
    async def scenario() -> Table:
        table, epoch = Table(), [0]
        table.data[b"IDLE"] = codec.dump_state(state("IDLE"))
        table.data[b"BACK"] = codec.dump_state(state("BACK"))
        states = make_states(table, epoch)
        states.get(b"IDLE")
        states.forget(b"IDLE")
        states.forget(b"BACK")
        states.put(b"BACK", state("BACK", 1))  # a message came after all: it stays
        states.forget(b"NEVER")  # never in the table: nothing to delete... but harmless
        flushing = asyncio.create_task(states.flush())
        await asyncio.sleep(0)
        for fut in table.writes:
            fut.set_result(None)
        await flushing
        # the cache lets go of what it forgot once the tombstones are written (it grew by
        # every vehicle ever forgotten, so the idle sweep walked them all each minute)
        assert set(states.cached_keys()) == {b"BACK"}
        assert states.get(b"IDLE") is None
        return table

    table = asyncio.run(scenario())
    assert b"IDLE" not in table.data and b"BACK" in table.data
    assert "delete IDLE" in table.log and "delete BACK" not in table.log


def test_after_a_failed_flush_no_later_flush_writes_or_acks() -> None:
    """A flush whose alerts Kafka did not take (a send timed out while Kafka was away) lost its
    snapshot: the worker is stopping (``VehicleAgent.flush_failed``), but not at once, and the
    tick's flush, waiting on the lock, or the agent's next background one ran meanwhile. It
    wrote the cache's states, computed from the failed snapshot's messages, to the changelog
    and acked the messages after them: the restarted worker took those messages as done (the
    state already past them) and the lost alert was never made again."""
    async def scenario() -> tuple[list[int], Table, BaseException | None]:
        table, epoch = Table(), [0]
        states = make_states(table, epoch)
        acked: list[int] = []
        lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lost.set_exception(TimeoutError("alert batch expired"))
        states.sent(lost)
        states.put(b"E1", state("E1", 1))
        states.processed(lambda: acked.append(1))
        with pytest.raises(TimeoutError):
            await states.flush()
        # the agent goes on until the stop takes effect: the unit's next fix, from state 1
        states.put(b"E1", state("E1", 2))
        states.processed(lambda: acked.append(2))
        later = asyncio.create_task(states.flush())
        for _ in range(3):
            await asyncio.sleep(0)
        for fut in table.writes:
            fut.set_result(None)
        try:
            await later
        except Exception as err:  # the fix: it refuses, as the first one failed
            return acked, table, err
        return acked, table, None

    acked, table, err = asyncio.run(scenario())
    assert table.log == [], "no state after a failed flush: its alerts may be lost"
    assert acked == [], "nothing acked after a failed flush"
    assert err is not None, "the later flush fails too (the worker stops)"


def test_a_flush_cancelled_while_it_waits_for_the_one_under_way_stops_nothing() -> None:
    """Only a flush that took its snapshot and raised stops later ones: one cancelled while it
    waited for the lock (the tick's, at shutdown) lost nothing."""
    async def scenario() -> list[int]:
        table, epoch = Table(), [0]
        states = make_states(table, epoch)
        acked: list[int] = []
        alert: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        states.sent(alert)
        states.processed(lambda: acked.append(1))
        first = asyncio.create_task(states.flush())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(states.flush())
        await asyncio.sleep(0)
        waiting.cancel()
        alert.set_result(None)
        await first
        states.processed(lambda: acked.append(2))
        await states.flush()
        return acked

    assert asyncio.run(scenario()) == [1, 2]


def test_once_stopping_a_flush_after_a_failed_one_defers_quietly() -> None:
    """The failed flush's stop is under way (``stopping``): a later flush writes and acks
    nothing, and raises nothing more (each raise was one more stop, and one more critical log,
    every flush until the worker had exited)."""
    async def scenario() -> tuple[Any, list[int], Table]:
        table, epoch, stopping = Table(), [0], [False]
        states = make_states(table, epoch, stopping=lambda: stopping[0])
        acked: list[int] = []
        lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lost.set_exception(TimeoutError("alert batch expired"))
        states.sent(lost)
        states.put(b"E1", state("E1", 1))
        states.processed(lambda: acked.append(1))
        with pytest.raises(TimeoutError):
            await states.flush()
        stopping[0] = True  # Runtime.stop_worker, from VehicleAgent.flush_failed
        states.put(b"E1", state("E1", 2))
        states.processed(lambda: acked.append(2))
        return await states.flush(), acked, table

    result, acked, table = asyncio.run(scenario())
    assert result.deferred and acked == [] and table.log == []
