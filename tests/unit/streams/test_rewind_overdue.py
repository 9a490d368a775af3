"""The tick's watch over rewinds that bring nothing (``InputSequence.rewind_overdue``): seen
after a start-up rebalance, a partition sought back to a record never handed over got no
record at all, and waited silently for ever. The tick asks again, with a warning each time;
and the worker's consumer makes a rewind at its next poll (``HandoffConsumer.rewind``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from broker.streams.consumer import HandoffConsumer
from broker.streams.input_sequence import InputSequence
from broker.streams.runtime import REWIND_PATIENCE_S, REWINDS, Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames


def test_the_tick_asks_again_for_a_rewind_that_brought_nothing() -> None:
    now = [0.0]
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), wall=lambda: now[0])
    seeks: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tuple(tp), offset))

    app: Any = SimpleNamespace(consumer=SimpleNamespace(seek=seek))  # another transport
    seq = InputSequence(app, rt, failures=None)  # type: ignore[arg-type]  # none to check
    rt.processed("avl.positions", 2, 68, None)
    assert rt.gap_step("avl.positions", 2, 70) == "seek"  # the agent's own first ask

    async def ticks(n: int) -> None:
        for _ in range(n):
            now[0] += REWIND_PATIENCE_S / 2  # two ticks per patience
            await seq.rewind_overdue()

    asyncio.run(ticks(2 * REWINDS))
    assert seeks == [(("avl.positions", 2), 69)] * REWINDS  # once per patience, to 69
    rt.processed("avl.positions", 2, 69, None)  # it came: nothing more to ask
    asyncio.run(ticks(4))
    assert len(seeks) == REWINDS


def test_a_rewind_asked_for_during_a_rebalance_is_dropped_until_the_seek() -> None:
    """Before the seek to the committed offsets the seek itself reads the partition again;
    after it (the rebalance still running) a gap must be read again at once: dropped, it
    waited the tick's patience (``make faults`` partner_down_kill9 recovered in 9 s)."""
    consumer = object.__new__(HandoffConsumer)  # its state only: nothing connects
    consumer.app = SimpleNamespace(rebalancing=True)  # type: ignore[assignment]
    consumer.rewind(("avl.positions", 2), 69)  # type: ignore[arg-type]
    assert not consumer._rewinds
    consumer._sought = True  # Faust's seek is done; its recovery is not
    consumer.rewind(("avl.positions", 2), 69)  # type: ignore[arg-type]
    assert consumer._rewinds == {("avl.positions", 2): 69}


def test_the_worker_consumer_reads_again_at_its_next_poll_not_now() -> None:
    """On the worker's own consumer a rewind waits for the next poll (made there, in the
    consumer thread, between two batches), so nothing of the batch in hand undoes it."""
    consumer = object.__new__(HandoffConsumer)  # its state only: nothing connects
    consumer.app = SimpleNamespace(rebalancing=False)  # type: ignore[assignment]
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    seq = InputSequence(SimpleNamespace(consumer=consumer), rt, failures=None)  # type: ignore[arg-type]
    asyncio.run(seq.read_again("avl.positions", 2, 69))
    asyncio.run(seq.read_again("cad.routes", 2, 7))
    asyncio.run(seq.read_again("avl.positions", 2, 64))  # the latest stands
    assert consumer._rewinds == {("avl.positions", 2): 64, ("cad.routes", 2): 7}
