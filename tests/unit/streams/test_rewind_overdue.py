"""The tick's watch over seeks back that bring nothing (``VehicleAgent.rewind_overdue``): seen
after a start-up rebalance, a partition sought back to a record never handed over got no
record at all, and waited silently for ever. The tick seeks again, then stops the worker."""

from __future__ import annotations

import asyncio
import functools
from types import SimpleNamespace
from typing import Any

from broker.failure import FailurePolicy, StopWork
from broker.streams.agents import VehicleAgent
from broker.streams.consumer import HandoffConsumer
from broker.streams.metrics import Metrics
from broker.streams.runtime import REWIND_PATIENCE_S, REWINDS, Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames


def test_the_tick_seeks_again_then_stops_the_worker() -> None:
    now = [0.0]
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: now[0])
    seeks: list[tuple[Any, int]] = []
    stopped: list[StopWork] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tuple(tp), offset))

    async def stop_worker(app: Any, stop: StopWork) -> None:
        stopped.append(stop)

    rt.stop_worker = stop_worker  # type: ignore[method-assign]
    agent: Any = SimpleNamespace(rt=rt, failures=FailurePolicy(), metrics=Metrics(),
                                 app=SimpleNamespace(consumer=SimpleNamespace(seek=seek)))
    agent.read_again = functools.partial(VehicleAgent.read_again, agent)
    rt.processed("avl.positions", 2, 68, None)
    assert rt.gap_step("avl.positions", 2, 70) == "seek"  # the agent's own first seek

    async def ticks(n: int) -> list[bool]:
        outcomes = []
        for _ in range(n):
            now[0] += REWIND_PATIENCE_S / 2  # two ticks per patience
            outcomes.append(await VehicleAgent.rewind_overdue(agent))
        return outcomes

    outcomes = asyncio.run(ticks(2 * REWINDS))
    assert seeks == [(("avl.positions", 2), 69)] * (REWINDS - 1)  # once per patience, to 69
    assert len(stopped) == 1 and outcomes == [True] * (2 * REWINDS - 1) + [False]
    assert "avl.positions[2]: offset 69 not read again" in str(stopped[0])


def test_the_worker_consumer_reads_again_at_its_next_poll_not_now() -> None:
    """On the worker's own consumer a rewind waits for the next poll (made there, in the
    consumer thread, between two batches), so nothing of the batch in hand undoes it."""
    consumer = object.__new__(HandoffConsumer)  # its state only: nothing connects
    agent: Any = SimpleNamespace(app=SimpleNamespace(consumer=consumer))
    asyncio.run(VehicleAgent.read_again(agent, "avl.positions", 2, 69))
    asyncio.run(VehicleAgent.read_again(agent, "cad.routes", 2, 7))
    asyncio.run(VehicleAgent.read_again(agent, "avl.positions", 2, 64))  # the latest stands
    assert consumer._rewinds == {("avl.positions", 2): 64, ("cad.routes", 2): 7}
