"""Each input partition's records handled in offset order, none passed over unseen.

Faust commits the longest run of acked offsets *wherever that run starts*: a record the
consumer never handed to the vehicle agent, followed by one that was acked, would be committed
over and lost without a trace. So the agent checks each message against the offset it expects
on its partition (:meth:`Runtime.expected_offset`: after the last one handled, else where the
consumer resumed it) and, when records before it never came, leaves it un-acked and has the
partition read again from the first missing offset (docs/streams.md, "A record never handed
over is never acked past"). The bookkeeping is :class:`~broker.streams.runtime.Runtime`'s; the
reads again are the consumer's (:meth:`HandoffConsumer.rewind`).
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from broker.failure import FailurePolicy
from broker.streams.consumer import HandoffConsumer
from broker.streams.runtime import REWIND_PATIENCE_S, REWINDS, Runtime

log = logging.getLogger(__name__)


class OffsetGap(Exception):
    """Input records the consumer never handed to the vehicle agent, and not there when the
    partition is read again (see :meth:`InputSequence.check`)."""


class InputSequence:
    """The vehicle agent's watch over its inputs' offsets: gaps read again, rewinds that bring
    nothing asked for again, and where a partition's records start for this worker."""

    def __init__(self, app: faust.App, rt: Runtime, failures: FailurePolicy) -> None:
        self.app, self.rt, self.failures = app, rt, failures
        self.metrics = rt.metrics
        rt.committed = self.committed_offset
        rt.fetch_position, rt.handed_over = self.fetch_position, self.handed_over

    async def check(self, message: Any) -> bool:
        """Whether ``message`` follows the last one handled on its partition (or comes again
        after a seek back). Records before it that the consumer never handed over (seen while
        Faust recovers after a restart) would be lost once it is acked - Faust commits the run
        of acked offsets wherever that run starts - so it is left un-acked and the partition is
        read again from the first missing offset. Seeks that never bring that offset stop the
        worker (Raises StopWork), unless ``input_offset_gaps`` is "count" (topics written by
        transactional producers, whose commit markers take offsets of their own). The first
        message since the assignment must follow the committed offset; a gap from there that
        Kafka no longer holds (retention: it starts beyond it) is counted and passed over."""
        rt = self.rt
        topic, partition, offset = message.topic, message.partition, message.offset
        if not (skipped := rt.skipped(topic, partition, offset)):
            return True
        first = offset - skipped
        detail = f"{topic}[{partition}]: offsets {first}..{offset - 1} never handed over"
        if rt.settings.input_offset_gaps == "count":
            self.metrics.offset_gaps.labels(topic).inc(skipped)
            # expected there (a transactional producer leaves one per commit, perhaps per
            # message): the metric says how many; a line each would flood the log
            log.debug("%s (counted, going on: input_offset_gaps = count)", detail)
            return True
        step = rt.gap_step(topic, partition, offset)
        if step == "wait":
            return False
        if step == "gone":
            if (start := await self.log_start(topic, partition)) is not None and start > first:
                start = min(start, offset)  # retention may have passed this one meanwhile
                self.metrics.offset_gaps.labels(topic).inc(start - first)
                log.error("%s[%d]: offsets %d..%d were deleted (retention) before any worker "
                          "read them: going on from %d", topic, partition, first, start - 1,
                          start)
                rt.pass_over(topic, partition, start)
                return await self.check(message)  # judged against where Kafka starts
            step = "stop"  # Kafka still has them and never hands them over: unexplained
        if step == "stop":
            self.metrics.offset_gaps.labels(topic).inc(skipped)
            self.failures.check("offsets", OffsetGap(f"{detail}, not there after {REWINDS} reads"),
                                key=f"{topic}[{partition}]", source=topic)
        self.metrics.offset_rewinds.labels(topic).inc()
        log.warning("%s: reading the partition again from offset %d", detail, first)
        await self.read_again(topic, partition, first)
        return False

    async def log_start(self, topic: str, partition: int) -> int | None:
        """The first offset Kafka still has on a partition (None when it cannot say)."""
        tp = faust.types.TP(topic, partition)
        try:
            return (await self.app.consumer.earliest_offsets(tp)).get(tp)
        except Exception as err:  # Kafka away: the gap is then judged a gap (the worker stops)
            log.warning("first offset of %s[%d] unknown: %r", topic, partition, err)
            return None

    def committed_offset(self, topic: str, partition: int) -> int | None:
        """Where the consumer resumes a partition it was given (the committed offset), when it
        says (:meth:`HandoffConsumer.committed_offset`; another transport: not known)."""
        consumer = self.app.consumer
        if isinstance(consumer, HandoffConsumer):
            return consumer.committed_offset(faust.types.TP(topic, partition))
        return None

    def fetch_position(self, topic: str, partition: int) -> int | None:
        """Where the consumer fetches a partition next, when it says
        (:meth:`HandoffConsumer.fetch_position`; another transport: not known)."""
        consumer = self.app.consumer
        if isinstance(consumer, HandoffConsumer):
            return consumer.fetch_position(faust.types.TP(topic, partition))
        return None

    def handed_over(self, topic: str, partition: int) -> int | None:
        """The offset of the last record of a partition the consumer handed to the streams
        (Faust's read offset: the committed one at the seek, a rewind's at a read again),
        None when not known."""
        read = getattr(self.app.consumer, "_read_offset", None)
        offset = read.get(faust.types.TP(topic, partition)) if read is not None else None
        return offset if isinstance(offset, int) else None

    async def read_again(self, topic: str, partition: int, offset: int) -> None:
        """Have the consumer read a partition again from ``offset``: at its next poll, in its
        thread (:meth:`HandoffConsumer.rewind`); a seek now on another transport."""
        tp = faust.types.TP(topic, partition)
        consumer = self.app.consumer
        if isinstance(consumer, HandoffConsumer):
            consumer.rewind(tp, offset)
            return
        try:
            await consumer.seek(tp, offset)
        except Exception as err:  # e.g. no longer assigned: a rebalance hands them over again
            log.warning("seek of %s[%d] to %d failed: %r", topic, partition, offset, err)

    async def rewind_overdue(self) -> None:
        """Ask again for the rewinds that have brought nothing for ``REWIND_PATIENCE_S``
        (:meth:`Runtime.overdue_rewinds`), each with a warning: a partition waiting for a
        record never handed over is never silent."""
        rt = self.rt
        for topic, partition in rt.overdue_rewinds():
            to = rt.rewinds[(topic, partition)].to
            self.metrics.offset_rewinds.labels(topic).inc()
            log.warning("%s[%d]: offset %d not read again within %.0f s of asking for it: "
                        "asking again", topic, partition, to, REWIND_PATIENCE_S)
            await self.read_again(topic, partition, to)
