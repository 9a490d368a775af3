"""Once the worker is stopping (``Runtime.stopped``: the failure policy stopped it), the vehicle
agent's state cache writes nothing more to the changelog and acks nothing more.

Why: a stop comes from work that failed part-way (a tick whose quarantine's cancel raised, after
the units ticked before it in that pass had their new states put in the cache and their events
dropped with the exception; a message whose engine step met an outage after the restatement on
its way in was kept). Faust takes seconds to stop after ``app.crash``, and meanwhile the agent's
background flushes went on: they wrote those states (a stale cancel recorded as done, never sent)
and acked the messages before it, and the restarted worker, reading the changelog, never sent
the cancel. Not flushing loses nothing: the messages are read again from the last commit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker.failure import Failure, StopWork
from broker.model import VehicleState
from tests.unit.streams.fakes import Written, worker_app


def test_once_the_worker_is_stopping_no_flush_writes_or_acks(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[bytes], list[int]]:
        app = worker_app(tmp_path)
        states, rt = app.broker_states, app.broker_runtime
        write = Written()
        states._write = write  # the changelog's producer (not started here)
        acked: list[int] = []
        states.processed(lambda: acked.append(7))  # a message handled before the failure
        # the failing tick's first unit, ticked to its stale cancel, which the raise dropped
        states.put(b"E1", VehicleState(vehicle_id="E1"))
        # what ``Runtime.stop_worker`` sets first (it also arms an exit timer: not called here)
        rt.stopped = StopWork(Failure(site="cancel", key="E2", error="KeyError()", raw=b""))
        await states.flush()
        return write.keys, acked

    written, acked = asyncio.run(scenario())
    assert written == [], "no state written once stopping: its events may never have gone out"
    assert acked == [], "nothing acked once stopping"


def test_once_faust_has_crashed_no_flush_writes_or_acks(tmp_path: Path) -> None:
    """The same for a stop that did not go through the failure policy: an exception out of a
    Faust timer (the tick's, raised part-way through a pass) or service crashes the app
    (``app.crash``), which leaves ``Runtime.stopped`` unset; the agent's flushes went on until
    Faust had stopped it, writing what the failed pass had put."""
    async def scenario() -> tuple[list[bytes], list[int]]:
        app = worker_app(tmp_path)
        states = app.broker_states
        write = Written()
        states._write = write
        acked: list[int] = []
        states.processed(lambda: acked.append(7))
        states.put(b"E1", VehicleState(vehicle_id="E1"))
        await app.crash(KeyError("raised out of the tick timer"))  # what mode does with it
        await states.flush()
        return write.keys, acked

    written, acked = asyncio.run(scenario())
    assert written == [] and acked == []


def test_a_flush_cancelled_at_shutdown_leaves_the_later_ones_deferred_not_a_loud_stop(
    tmp_path: Path,
) -> None:
    """Faust's shutdown cancels the tick's timer and the agent, a flush that had taken its
    snapshot among them: the flushes after it (its snapshot lost, not acked) write and ack
    nothing, and say so quietly: no failure policy, no critical log, during a normal stop."""
    async def scenario() -> tuple[list[bytes], list[int], object, object]:
        app = worker_app(tmp_path)
        states, rt = app.broker_states, app.broker_runtime
        written: list[bytes] = []
        hang, writing = asyncio.Event(), asyncio.Event()

        async def write(key: bytes, raw: bytes | None) -> asyncio.Future[Any]:
            written.append(key)
            writing.set()
            await hang.wait()  # Kafka slow: the shutdown comes first
            raise AssertionError("never answered")

        states._write = write
        acked: list[int] = []
        states.processed(lambda: acked.append(7))
        states.put(b"E1", VehicleState(vehicle_id="E1"))
        first = asyncio.ensure_future(states.flush())
        await writing.wait()
        app._stopped.set()  # what mode's Service.stop sets first
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        states.processed(lambda: acked.append(8))
        states.put(b"E2", VehicleState(vehicle_id="E2"))
        later = await states.flush()
        return written, acked, later, rt.stopped

    written, acked, later, stopped = asyncio.run(scenario())
    assert written == [b"E1"] and acked == []  # the cancelled one wrote, nothing acked
    assert getattr(later, "deferred", None) is True and stopped is None
