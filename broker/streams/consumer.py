"""The Kafka transport of the worker: Faust's aiokafka one, with a cheaper hand-off per record.

Faust's fetcher hands every record to the streams through
``wait_first(callback(message), suspend_flow.wait())``: four tasks (the callback, the flow,
``stopped`` and ``crashed`` events) and an ``asyncio.wait`` per record, about a fifth of a
worker's CPU at a few thousand records a second (py-spy, docs/benchmarks.md). Almost every
callback finishes without ever waiting: it puts the event on a stream buffer that has room.
:class:`HandoffConsumer` runs the callback's first step in place; only a callback that has to
wait (a full buffer) goes through Faust's race with the flow, so a rebalance still abandons a
blocked hand-off exactly as before.

Only between rebalances: from a rebalance's start to the end of its recovery, records go
through Faust's own path. Handed over in place during recovery, a few hundred records reached
the stream buffer that Faust clears at the end of recovery and were never handed over again
(a kill -9 test lost 177 fixes; the agent now stops on such a gap, docs/streams.md).
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """The rest of ``coro``, whose first step (``coro.send(None)``) yielded ``pending``: what
    it yields goes up to the task running this, what the task sends or throws goes down."""
    while True:
        try:
            sent = yield pending
        except BaseException as exc:  # cancellation included: coro decides
            try:
                pending = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                pending = coro.send(sent)
            except StopIteration as done:
                return done.value


async def _finish(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _resumed(coro, pending)


Race = Callable[..., Awaitable[WaitResults]]


async def hand_off(callback: Coroutine[Any, Any, Any], flow: WaitArgT, race: Race) -> WaitResults:
    """``race(callback, flow)`` (Faust's ``wait_first``), without its tasks when ``callback``
    finishes in its first step; else the rest of it races ``flow`` through ``race``."""
    try:
        pending = callback.send(None)
    except BaseException as exc:
        if isinstance(flow, Coroutine):
            flow.close()  # never started
        if isinstance(exc, StopIteration):  # handed off without waiting: the common case
            return WaitResults([callback], [exc.value], False)
        raise
    # the buffer is full: the rest of the hand-off races the flow, as in Faust
    return await race(_finish(callback, pending), flow)


class HandoffConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; a record's hand-off to the streams runs in place when it
    does not have to wait."""

    async def wait_first(
        self,
        *coros: WaitArgT,
        timeout: Seconds | None = None,  # noqa: ASYNC109  # mode's
    ) -> WaitResults:
        """``wait_first(callback(message), suspend_flow.wait())`` from the fetcher, the only
        caller on a consumer, through :func:`hand_off`. Anything else, or flow suspended, or
        stopping: Faust's own race."""
        race = super().wait_first
        if (
            timeout is not None
            or len(coros) != 2
            or not isinstance(coros[0], Coroutine)
            or self.suspend_flow.is_set()
            or self.should_stop
            or self.app.rebalancing  # recovery included: see the module doc
        ):
            return await race(*coros, timeout=timeout)  # type: ignore[arg-type]  # None is mode's default
        return await hand_off(coros[0], coros[1], race)


class KafkaTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`HandoffConsumer`."""

    Consumer = HandoffConsumer
