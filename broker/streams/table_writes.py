"""Writes of a changelogged table whose changelog records Kafka must have before the work that
made them is acked: the ``delivered`` table (fan-out) and the ``active-alerts`` table (the
``feed-table`` agent), as the ``vehicles`` table's flush awaits its own (``broker.streams.
states``).

Why not ``table[key] = value``: Faust sends that record fire-and-forget (``Table.on_key_set``
-> ``Topic.send_soon``); a send Kafka refuses is only logged (``Topic._on_published``), and
before a commit Faust's flush gives its send buffer at most 0.1 s without progress
(``ProducerBuffer.flush_atmost``) and the producer's own flush waits for an answer, not for a
good one: the ``alerts`` offset was committed with its record lost. A restarted worker then
read a ``delivered`` table without the partner's record (``fan_out`` skips a later cancel to a
partner it holds nothing of) and a feed without the alert's newest step.

Here a write updates the table's data at once (readers see it, as before) and hands the record
straight to the producer, through one ordered queue per table (``AuditProducer``: in the order
written, so per key too; acks=all as every record of the worker). :meth:`TableWrites.after`
calls back once every write of a key made so far has Kafka's answer; a write Kafka did not take
goes to ``on_failed`` (the failure policy: the worker stops, :func:`worker_table_writes`), and
from then on nothing is called back (nothing acked: a restarted worker does that work again).
One future callback per write and per ack, no round trip in series: the fan-out's acks wait for
Kafka as its audit records already do.

A write here goes to the table's data and the changelog only: Faust's own
``_on_changelog_sent`` (which keeps a persistent store's changelog offsets) is not called. The
tables are ``memory://`` (``app.py``), rebuilt from the changelog at start, so nothing reads
those offsets; a RocksDB store would need them set here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faust.types.tables import TableT

from broker.failure import StopWork
from broker.streams.audit_producer import AuditProducer, ProducerSend

if TYPE_CHECKING:
    import faust

    from broker.failure import FailurePolicy
    from broker.streams.runtime import Runtime

log = logging.getLogger(__name__)


class TableWrites:
    """Writes of one changelogged table (bytes keys and values) with their Kafka futures."""

    def __init__(self, table: TableT[bytes, bytes], producer_send: Callable[[], ProducerSend],
                 on_failed: Callable[[bytes, BaseException], None],
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.table = table
        topic = table.changelog_topic.get_topic_name()
        self._send = AuditProducer(producer_send, topic, name=f"{table.name}-writes")
        self.on_failed = on_failed
        # the worker is stopping already (the failure policy, a crash, a shutdown, whose
        # producer refuses what comes late): a write failing then is logged, not a new stop
        self.stopping = stopping
        self._pending: dict[bytes, list[asyncio.Future[Any]]] = {}  # key -> writes unanswered
        self.failed: BaseException | None = None  # the first write Kafka did not take

    def __contains__(self, key: bytes) -> bool:
        return key in self.table.data

    def put(self, key: bytes, value: bytes | None) -> None:
        """``table[key] = value`` (None: ``del table[key]``, a tombstone), its changelog record
        handed to the producer in order. ``use_partitioner=True`` tables only (the producer's
        murmur2 partition of the key, as Faust's own write would pick)."""
        if value is None:
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = value
        fut = self._send(key, value)
        self._pending.setdefault(key, []).append(fut)
        fut.add_done_callback(functools.partial(self._answered, key))

    def delete(self, key: bytes) -> None:
        """``del table[key]``: a tombstone, in order with the key's other writes."""
        self.put(key, None)

    def _answered(self, key: bytes, fut: asyncio.Future[Any]) -> None:
        writes = self._pending.get(key)
        if writes is not None:
            writes.remove(fut)
            if not writes:
                del self._pending[key]
        if fut.cancelled():
            # the worker stopping (the queue's task cancelled): nothing lost, nothing acked
            # either. Cancelled while it runs (an odd error), nothing would be acked again and
            # nothing would stop: a failure like any other
            err: BaseException | None = RuntimeError(f"{self.table.name}: a write was cancelled")
        else:
            err = fut.exception()
        if err is not None and self.failed is None:
            self.failed = err
            self._failed(key, err)

    def _failed(self, key: bytes, err: BaseException) -> None:
        """A write Kafka did not take, or an ack that raised: the worker stops (logged only
        when it is stopping already: the restarted worker writes and acks it again)."""
        if self.stopping():
            log.warning("%s: a record not written or acked while the worker stops (nothing "
                        "acked since: the restarted worker does it again): %r",
                        self.table.name, err)
            return
        try:
            self.on_failed(key, err)
        except Exception:  # the stop path itself: say so loudly, never into the loop's handler
            log.critical("%s: the failure of a write could not stop the worker", self.table.name,
                         exc_info=True)

    def pending(self, key: bytes) -> int:
        """Writes of ``key`` still without Kafka's answer."""
        return len(self._pending.get(key, ()))

    def after(self, key: bytes | None, then: Callable[[], object]) -> None:
        """Call ``then()`` once every write of ``key`` made so far is in Kafka: now when none is
        under way (or ``key`` is None: nothing written); never once a write (of any key)
        failed, that one included."""
        if self.failed is not None:
            return
        writes = None if key is None else self._pending.get(key)
        if not writes:
            then()
            return
        if len(writes) == 1:  # the common case: no closure (the fan-out calls this per alert)
            writes[0].add_done_callback(functools.partial(self._then, then))
            return
        left = len(writes)

        def answered(fut: asyncio.Future[Any]) -> None:
            nonlocal left
            left -= 1
            if left == 0 and self.failed is None:
                self._call(key, then)

        for fut in list(writes):
            fut.add_done_callback(answered)

    def _then(self, then: Callable[[], object], fut: asyncio.Future[Any]) -> None:
        if self.failed is None:  # this write's own failure was noted first (its callback's)
            self._call(None, then)

    def _call(self, key: bytes | None, then: Callable[[], object]) -> None:
        """``then()`` from a future's callback: an exception there went to the loop's handler
        (a log line) and the record was never acked, the worker going on: it stops instead."""
        try:
            then()
        except Exception as err:
            if self.failed is None:
                self.failed = err
            self._failed(key or b"", err)


def worker_table_writes(app: faust.App, rt: Runtime, table: TableT[bytes, bytes],
                        failures: FailurePolicy) -> TableWrites:
    """A worker table's writes (``delivered``: fan-out; ``active-alerts``: the ``feed-table``
    agent), through Faust's producer. A write Kafka did not take goes to ``failures`` (site
    ``settle``, always a stop) and the worker stops, nothing acked since (``TableWrites.after``);
    once the worker is stopping already, it is only logged (``Runtime.stopping``)."""
    source = table.changelog_topic.get_topic_name()

    def failed(key: bytes, err: BaseException) -> None:
        # called from a write's future callback: the stop runs as a task the runtime keeps
        error = err if isinstance(err, Exception) else RuntimeError(repr(err))
        try:
            failures.check("settle", error, key=key.decode(errors="replace"), source=source)
        except StopWork as stop:
            stopping = asyncio.get_running_loop().create_task(rt.stop_worker(app, stop))
            rt.background.add(stopping)
            stopping.add_done_callback(rt.background.discard)

    return TableWrites(table, lambda: app.producer.send, failed,
                       stopping=lambda: rt.stopping(app))
