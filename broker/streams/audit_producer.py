"""The ``audit`` topic's own Kafka producer, so a delivery's audit record never queues behind
the worker's alerts, changelog writes and offsets.

Delivery waits for its ``sending`` record to be durable before each request (``adapters.audit``).
Through Faust's one producer that record went out only after the request already in flight to
the broker (aiokafka keeps one per broker connection) had its answer: a whole batch of alerts
and table writes, ~14 ms at the median on the bench. A second producer has its own connection
and sends the record at once. Same settings and credentials as Faust's producer
(``Transport.create_producer``), records in the order written (one pump), and every failure
resolves the record's future with the error: the worker stops (``AuditLost``), nothing silent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import faust

log = logging.getLogger(__name__)
STOP_FLUSH_S = 10.0  # at shutdown, how long records still queued may take to reach Kafka

_Pending = tuple[bytes, bytes, "asyncio.Future[object]"]


class AuditProducer:
    """``send(key, value)`` returns a future resolved once Kafka has the record (or failed with
    why not). The producer starts on the first record; :meth:`stop` flushes and closes it."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app, self.topic = app, topic
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wake: asyncio.Event | None = None  # a record was queued
        self._drained: asyncio.Event | None = None  # every queued record is with the producer
        self._pump: asyncio.Task[None] | None = None
        self._producer: Any = None  # a Faust Producer service (aiokafka under it)
        self.failed: Exception | None = None  # why the producer can take no more records

    def send(self, key: bytes, value: bytes) -> asyncio.Future[object]:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.failed is not None:
            fut.set_exception(RuntimeError(f"audit producer failed: {self.failed!r}"))
            return fut
        self._queue.append((key, value, fut))
        if self._pump is None:
            self._wake, self._drained = asyncio.Event(), asyncio.Event()
            self._pump = asyncio.create_task(self._run(), name="audit-producer")
        assert self._wake is not None and self._drained is not None
        self._drained.clear()
        self._wake.set()
        return fut

    async def _run(self) -> None:
        """Start the producer, then hand it each record in order; on any error fail every
        record queued and every later one."""
        assert self._wake is not None and self._drained is not None
        try:
            self._producer = self.app.transport.create_producer(
                beacon=self.app.beacon, loop=asyncio.get_running_loop())
            await self._producer.start()
            while True:
                while self._queue:
                    key, value, fut = self._queue[0]
                    sent = await self._producer.send(
                        self.topic, key, value, partition=None, timestamp=None, headers=None)
                    self._queue.popleft()
                    _chain(sent, fut)
                self._wake.clear()
                self._drained.set()
                await self._wake.wait()
        except asyncio.CancelledError:
            self._fail(RuntimeError("audit producer stopped"))
            raise
        except Exception as err:  # no broker at start, a record too large, a closed producer
            log.error("audit producer failed: %r", err)
            self._fail(err)

    def _fail(self, err: Exception) -> None:
        if self.failed is None:
            self.failed = err
        while self._queue:
            fut = self._queue.popleft()[2]
            if not fut.done():
                fut.set_exception(err)
        if self._drained is not None:
            self._drained.set()  # nothing more will reach the producer: stop need not wait

    async def stop(self) -> None:
        """Hand Kafka what is still queued (at most ``STOP_FLUSH_S``), then close."""
        if self._pump is None:
            return
        assert self._drained is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), STOP_FLUSH_S)
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump
        if self._producer is not None:
            with contextlib.suppress(Exception):  # stopping: a failure already failed its records
                await asyncio.wait_for(self._producer.flush(), STOP_FLUSH_S)
            with contextlib.suppress(Exception):
                await self._producer.stop()


def _chain(sent: Any, fut: asyncio.Future[object]) -> None:
    """Resolve ``fut`` as aiokafka's delivery future ``sent`` resolves."""

    def done(source: asyncio.Future[object]) -> None:
        if fut.done():
            return
        if source.cancelled():
            fut.set_exception(RuntimeError("audit record cancelled"))
        elif (err := source.exception()) is not None:
            fut.set_exception(err)
        else:
            fut.set_result(source.result())

    asyncio.ensure_future(sent).add_done_callback(done)
