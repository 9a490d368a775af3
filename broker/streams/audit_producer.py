"""The worker's audit records straight to its producer, in order, not through Faust's send queue.

A delivery writes its ``sending`` record and waits until Kafka has it before the webhook goes
(``adapters.audit``, the delivery contract). Through ``topic.send_soon`` the record waited in
Faust's one send queue behind the alerts and table writes queued before it, and Faust hands
them to aiokafka one at a time, three loop turns each: in a traced end-to-end run that queue
was the largest part of the audit's wait (bench/notes.md, 2026-12-06 late evening). Here the
records go to the producer as the vehicle agent's state writes do (``Producer.send``: into
aiokafka's batch), through a queue of their own, one task draining it, so they keep the order
they were written in; acks=all and the record's future are the same as before.

The ``delivered`` and ``active-alerts`` tables' changelog records go the same way, each table
through its own (``broker.streams.table_writes``): in order per key, each with its future.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

# Producer.send(topic, key, value, partition, timestamp, headers) of Faust's producer: returns,
# once the record is in aiokafka's batch, the future of Kafka's answer
ProducerSend = Callable[[str, bytes, bytes | None, None, None, None],
                        Awaitable[Awaitable[Any]]]


class AuditProducer:
    """``send(key, value)`` for ``ProducerAudit``: a future resolved once Kafka has the record
    (or failed with the producer's error). Records reach the producer in the order sent. A
    None value is a tombstone (a table's changelog)."""

    def __init__(self, producer_send: Callable[[], ProducerSend], topic: str,
                 name: str = "audit-producer") -> None:
        self.producer_send = producer_send  # looked up at each record: the producer starts later
        self.topic = topic
        self.name = name  # of the task that hands the records over
        self._queue: collections.deque[tuple[bytes, bytes | None, asyncio.Future[Any]]] = (
            collections.deque())
        self._drain: asyncio.Task[None] | None = None

    def __call__(self, key: bytes, value: bytes | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._queue.append((key, value, answer))
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._hand_over(), name=self.name)
        return answer

    async def _hand_over(self) -> None:
        """Give queued records to the producer, oldest first, until none is left."""
        while self._queue:
            key, value, answer = self._queue.popleft()
            if answer.done():  # cancelled by its waiter: nothing to send it for
                continue
            try:
                kafka_answer = await self.producer_send()(self.topic, key, value, None, None,
                                                          None)
                _chain(asyncio.ensure_future(kafka_answer), answer)
            except Exception as err:  # refused before it was queued (a stopped producer)
                if not answer.done():
                    answer.set_exception(err)
            except BaseException:  # cancelled (the worker stopping), or the process exiting
                for _, _, left in [(key, value, answer), *self._queue]:
                    if not left.done():
                        left.cancel()  # no record left unanswered: its barrier fails at once
                self._queue.clear()
                raise

    async def flush(self) -> None:
        """Until every record written so far is with the producer (at shutdown, after the
        last outcome records: the producer's own stop then waits for Kafka's answers)."""
        while self._drain is not None and not self._drain.done():
            await asyncio.wait({self._drain})  # its end, whatever it was (no error raised here)


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    """Resolve ``target`` as ``source`` resolves (result, error or cancellation)."""

    def copy(done: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif (err := done.exception()) is not None:
            target.set_exception(err)
        else:
            target.set_result(done.result())

    if source.done():
        copy(source)
    else:
        source.add_done_callback(copy)
