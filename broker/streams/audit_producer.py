"""The ``audit`` topic's own Kafka producer, so a delivery's audit record never queues behind
the worker's alerts, changelog writes and offsets.

Delivery waits for its ``sending`` record to be durable before each request (``adapters.audit``).
Through Faust's one producer that record went out only after the request already in flight to
the broker (aiokafka keeps one per broker connection) had its answer: a whole batch of alerts
and table writes, ~14 ms at the median on the bench. A second producer has its own connection
and sends the record at once. An aiokafka producer built as Faust builds its own (the same
settings, credentials and paced metadata retries: ``PacedProducer``), records in the order
written (one pump).

It starts with the worker (:meth:`AuditProducer.start`, Kafka answered moments before) and, like
Faust's producer, waits a Kafka outage out: a start that finds no broker is tried again, paced,
while the records wait (``adapters.audit.ANSWER_WITHIN_S`` bounds that wait; past it the worker
stops). A record the producer refuses fails with the reason, and so does every later one: the
worker stops (``AuditLost``), nothing silent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import faust

log = logging.getLogger(__name__)
# at shutdown, how long queued and in-flight records may take to reach Kafka (within the
# worker's STOP_GRACE_S with the hub's own drain before it)
STOP_WITHIN_S = 8.0
START_RETRY_FIRST_S = 0.05  # a start that found no broker is tried again after this, doubling
START_RETRY_MAX_S = 1.0  # ... to this

_Pending = tuple[bytes, bytes, "asyncio.Future[object]"]


class AuditProducer:
    """``send(key, value)`` returns a future resolved once Kafka has the record (or failed with
    why not). :meth:`start` starts the producer (the first record does too); :meth:`stop`
    flushes and closes it, and every record written after that fails at once."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app, self.topic = app, topic
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wake: asyncio.Event | None = None  # a record was queued
        self._drained: asyncio.Event | None = None  # every queued record is with the producer
        self._pump: asyncio.Task[None] | None = None
        self._producer: Any = None  # an aiokafka AIOKafkaProducer
        self.failed: Exception | None = None  # why the producer can take no more records
        self.closed = False  # stop() was called: records are refused

    @property
    def accepting(self) -> bool:
        """Whether a record written now can reach Kafka (not stopped, not failed)."""
        return not self.closed and self.failed is None

    def start(self) -> None:
        """Start the pump (and with it the producer) if it is not running yet."""
        if self._pump is None and not self.closed:
            self._wake, self._drained = asyncio.Event(), asyncio.Event()
            self._drained.set()  # nothing queued yet
            self._pump = asyncio.create_task(self._run(), name="audit-producer")

    def send(self, key: bytes, value: bytes) -> asyncio.Future[object]:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if not self.accepting:
            why = "stopped" if self.closed else f"failed: {self.failed!r}"
            fut.set_exception(RuntimeError(f"audit producer {why}"))
            return fut
        self._queue.append((key, value, fut))
        self.start()
        assert self._wake is not None and self._drained is not None
        self._drained.clear()
        self._wake.set()
        return fut

    async def _run(self) -> None:
        """Start the producer, then hand it each record in order; on an error past the start
        fail every record queued and every later one."""
        assert self._wake is not None and self._drained is not None
        try:
            self._producer = await self._started()
            while True:
                while self._queue:
                    key, value, fut = self._queue[0]
                    sent = await self._producer.send(self.topic, value, key=key)
                    self._queue.popleft()
                    _chain(sent, fut)
                self._wake.clear()
                self._drained.set()
                await self._wake.wait()
        except asyncio.CancelledError:
            self._fail(RuntimeError("audit producer stopped"))
            raise
        except Exception as err:  # a record too large, a closed producer: not retried
            log.error("audit producer failed: %r", err)
            self._fail(err)

    async def _started(self) -> Any:
        """A started producer; a start that fails (no broker answering) is tried again with a
        new producer, 50 ms doubling to 1 s apart, as long as it takes."""
        # Faust's factory of the worker's own aiokafka producer (PacedProducer), made once;
        # not its service: that one's stop clears state it shares with the worker's producer
        factory: Any = self.app.transport.create_producer(beacon=self.app.beacon)
        wait, since = 0.0, asyncio.get_running_loop().time()
        while True:
            producer = factory._new_producer()
            try:
                await producer.start()
            except BaseException as err:
                # not started (or cancelled at a shutdown mid-start): closed, connections too
                await asyncio.shield(_quietly_stopped(producer))
                if not isinstance(err, Exception):
                    raise
                waited = asyncio.get_running_loop().time() - since
                if not wait or waited // 10 != (waited - wait) // 10:  # then every 10 s
                    log.warning("audit producer could not start (%r) for %.0f s: records wait, "
                                "trying again", err, waited)
                wait = min(max(START_RETRY_FIRST_S, 2 * wait), START_RETRY_MAX_S)
                await asyncio.sleep(wait)
                continue
            if wait:
                log.warning("audit producer started after Kafka answered again")
            return producer

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
        """Refuse new records; hand Kafka what is queued and in flight, within
        ``STOP_WITHIN_S`` in all; close. Records not answered by then fail (their deliveries
        were not settled, so their alerts not acked: a restarted worker sends them again)."""
        self.closed = True
        if self._pump is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_WITHIN_S
        assert self._drained is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), STOP_WITHIN_S)
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump
        if self._producer is not None:
            with contextlib.suppress(Exception):  # stopping: a failure already failed its records
                await asyncio.wait_for(self._producer.flush(), max(0.0, deadline - loop.time()))
            with contextlib.suppress(Exception):  # aiokafka's stop: a second at least
                await asyncio.wait_for(self._producer.stop(), max(1.0, deadline - loop.time()))


async def _quietly_stopped(producer: Any) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()


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
