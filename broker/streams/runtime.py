"""In-memory bookkeeping of one worker: clocks, live-alert index, offsets, metrics.

Nothing here is durable: it is rebuilt from the tables after a rebalance or restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from aiokafka.errors import KafkaError as AioKafkaError
from faust.exceptions import NotReady
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from broker.failure import OUTAGES, DeadLetter, FailurePolicy, StopWork
from broker.settings import EngineConfig
from broker.streams.clock import PartitionClocks
from broker.streams.membership import Membership
from broker.streams.metrics import Metrics
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames

if TYPE_CHECKING:
    import faust

    from broker.drive import Driver

log = logging.getLogger(__name__)

# records the consumer never handed over are read again by seeking back to the first of them
# (docs/streams.md); this many seeks to one offset without it coming, and the gap is real
REWINDS = 3
REWIND_PATIENCE_S = 10.0  # a rewind still waiting after this long is tried again (or given up)
GapStep = Literal["seek", "wait", "stop", "gone"]

STOP_GRACE_S = 20.0  # a stopping worker that has not exited by then is exited hard
EXIT_STOPPED = 70  # EX_SOFTWARE: the failure policy stopped the worker and its exit hung
# EX_TEMPFAIL: the readiness watchdog stopped a worker not ready for too long with no progress
# (broker.streams.watchdog): start it again
EXIT_NOT_READY = 75


def exit_code_for(stop: BaseException | None) -> int | None:
    """The exit code a stop asks for: :data:`EXIT_NOT_READY` for the readiness watchdog's,
    None for any other (Faust's own: 1 after a crash)."""
    if isinstance(stop, StopWork) and stop.failure.site == "readiness":
        return EXIT_NOT_READY
    return None


def _exit_stopped(stop: StopWork) -> None:
    log.critical("the worker did not exit within %.0f s of stopping (%s): exiting hard",
                 STOP_GRACE_S, stop)
    logging.shutdown()
    os._exit(exit_code_for(stop) or EXIT_STOPPED)

# What stops the worker rather than skipping the work (broker.failure): the core's outages,
# both Kafka clients' errors, and Faust's producer not (or no longer) running (``NotReady``:
# a send while the worker starts or stops says nothing about the record)
WORKER_OUTAGES: tuple[type[BaseException], ...] = (
    *OUTAGES, KafkaError, AioKafkaError, NotReady)


def partition_for(key: bytes, partitions: int) -> int:
    """The default (Java / kafka-python / aiokafka) partitioner: murmur2 of the key bytes."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=65_536)
def _partition_cached(key: bytes, partitions: int) -> int:
    return partition_for(key, partitions)


@dataclass
class Rewind:
    """A partition read again from ``to``, the first offset never handed over."""

    to: int
    seeks: int  # seeks back to ``to`` so far
    last: int  # the highest offset left waiting since the gap was seen
    since: float  # monotonic time of the last seek


@dataclass
class Runtime:
    """Per-worker state shared by the agents, the tick timer and the web views."""

    settings: StreamSettings
    names: TopicNames
    metrics: Metrics = field(default_factory=Metrics)
    clocks: PartitionClocks = field(default_factory=PartitionClocks)
    wall: Callable[[], float] = time.monotonic  # monotonic seconds: the tick clock, rewinds
    utc: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # the wall clock
    # the worker's driver loop (broker.drive): its live index is what the tick looks at
    driver: Driver[bytes] | None = None
    outages: tuple[type[BaseException], ...] = WORKER_OUTAGES
    stopped: StopWork | None = None  # set when the failure policy stopped the worker
    background: set[asyncio.Task[None]] = field(default_factory=set)  # kept until done
    # next offset to process, per (topic, partition), from the messages this worker handled
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)
    rewinds: dict[tuple[str, int], Rewind] = field(default_factory=dict)  # gaps being re-read
    # the consumer's committed offset of (topic, partition) (the next to read), None when not
    # known: where the first message since the assignment must start (the vehicle agent wires
    # Faust's in; docs/streams.md "A record never handed over")
    committed: Callable[[str, int], int | None] = lambda topic, partition: None
    # where the consumer fetches (topic, partition) next, and the offset of the last record it
    # handed to the streams (Faust's read offset), None when not known (the vehicle agent
    # wires the consumer's in): where a backlog counts from (:meth:`backlog_from`)
    fetch_position: Callable[[str, int], int | None] = lambda topic, partition: None
    handed_over: Callable[[str, int], int | None] = lambda topic, partition: None
    owned: frozenset[int] = frozenset()  # partitions of the input topics this worker owns
    index_built_for: frozenset[int] | None = None  # owned set the live index was built for
    assigned_once: bool = False
    partial: set[int] = field(default_factory=set)  # only one of the two inputs assigned
    # the lease on the partitions the coordinator renews (broker.streams.membership): lapsed,
    # this worker may have been evicted (a stall past the session timeout) and acts for none
    membership: Membership = field(default_factory=lambda: Membership(float("inf")))

    @property
    def engine(self) -> EngineConfig:
        """The engine thresholds."""
        return self.settings.engine

    def skipped(self, topic: str, partition: int, offset: int) -> int:
        """Offsets a message leaves behind it on its partition, never handed to this worker
        (0 when it follows the last one handled or comes again after a seek back). The first
        message since the assignment follows the committed offset: a restarted worker whose
        first record came from beyond it would otherwise process it as if nothing were
        missing, and acking it would commit over the records in between, lost."""
        nxt = self.expected_offset(topic, partition)
        return 0 if nxt is None else max(0, offset - nxt)

    def expected_offset(self, topic: str, partition: int) -> int | None:
        """The offset the next message of a partition should have: after the last one handled,
        else the committed offset; None when neither is known."""
        nxt = self.next_offset.get((topic, partition))
        return self.committed(topic, partition) if nxt is None else nxt

    def gap_step(self, topic: str, partition: int, offset: int) -> GapStep:
        """What to do with a message that leaves offsets behind it (``skipped`` > 0): it waits
        (not processed, not acked: it comes again) while the partition is read again from the
        first missing offset. ``seek``: seek back there now; ``wait``: the read in hand goes
        on (records fetched before the seek, or the rest of a read again); ``stop``: ``REWINDS``
        reads from there never brought it (a real gap: Kafka has no record there); ``gone``:
        the same before the first message handled since the assignment, the gap starting at
        the committed offset: records retention may have deleted while no worker read them
        (the agent asks Kafka where the partition now starts, :meth:`pass_over`).

        A read again is told by its offsets going back (at or below the last one seen): the
        records of one read come in order, so the rest of a batch after the first one counts
        as the same read, not as another."""
        tp = (topic, partition)
        nxt = self.expected_offset(topic, partition)
        assert nxt is not None, "gap_step is for a message that skipped offsets"
        now = self.wall()
        rewind = self.rewinds.get(tp)
        if rewind is None or rewind.to != nxt:
            self.rewinds[tp] = Rewind(to=nxt, seeks=1, last=offset, since=now)
            return "seek"
        if offset > rewind.last and now - rewind.since < REWIND_PATIENCE_S:
            rewind.last = offset  # the same read goes on
            return "wait"
        # the partition was read again (its offsets went back), still without `to`
        if rewind.seeks >= REWINDS:
            return "gone" if tp not in self.next_offset else "stop"
        rewind.seeks, rewind.last, rewind.since = rewind.seeks + 1, offset, now
        return "seek"

    def pass_over(self, topic: str, partition: int, start: int) -> None:
        """Take ``start`` as where a partition's sequence begins (the first offset Kafka still
        has, beyond a committed offset whose records retention deleted): the next message is
        judged against it, and a gap after it is this worker's own (``stop``)."""
        self.rewinds.pop((topic, partition), None)
        self.next_offset[(topic, partition)] = start

    def overdue_rewinds(self) -> list[tuple[str, int]]:
        """Partitions whose rewind was last asked for ``REWIND_PATIENCE_S`` ago without its
        first missing record coming (that clears it: :meth:`processed`), to ask again. Only a
        message of the partition calls :meth:`gap_step`, so a rewind after which the consumer
        hands over nothing at all would otherwise wait, silently, for ever. Not counted as a
        seek: a consumer that hands over nothing (Kafka away, a stalled fetch) shows no gap,
        and a real gap is :meth:`gap_step`'s to find (records after it come, it never does)."""
        now = self.wall()
        overdue = [tp for tp, r in self.rewinds.items() if now - r.since >= REWIND_PATIENCE_S]
        for tp in overdue:
            self.rewinds[tp].since = now
        return overdue

    def processed(
        self, topic: str, partition: int, offset: int, ts: datetime | None,
        received_at: datetime | None = None,
    ) -> None:
        """Record one handled message (offset for lag, event time for the partition clock).
        The clock takes the event time only up to ``received_at``: a unit whose device runs
        ahead (by less than the skew the codec allows) must not move its partition's time,
        or every other unit there looks silent and is cancelled as stale at each tick."""
        if self.rewinds:  # almost always empty: a gap being read again
            self.rewinds.pop((topic, partition), None)
        self.next_offset[(topic, partition)] = offset + 1
        if ts is not None:
            if received_at is not None and received_at < ts:
                ts = received_at
            self.clocks.observe(partition, ts, self.wall())

    def received_at(self, record_ts_s: float | None) -> datetime:
        """What a message's timestamp is judged against (``max_future_skew_s`` ahead at most):
        the record's Kafka timestamp (when the producer sent it, or the broker appended it),
        never later than the wall clock. Neither depends on what the stream itself carried,
        so no fix, however dated, can move it (docs/streams.md, "Time")."""
        wall = self.utc()
        # a producer may stamp anything (CreateTime): past the wall clock it counts as the wall
        # clock, before fromtimestamp, which raises past the year 9999
        if record_ts_s is None or record_ts_s <= 0 or record_ts_s >= wall.timestamp():
            return wall
        return datetime.fromtimestamp(record_ts_s, UTC)

    def trusted_until(self) -> datetime:
        """The latest event time a fix can carry now (wall clock + the allowed skew)."""
        return self.utc() + timedelta(seconds=self.engine.max_future_skew_s)

    def partition_of(self, key: bytes) -> int:
        """The input partition of a vehicle id (memoised murmur2)."""
        return _partition_cached(key, self.settings.partitions)

    def live_in(self, partition: int) -> list[bytes]:
        """Vehicles of ``partition`` with a live alert, or a dispatch alert held (what its tick
        looks at)."""
        live = self.driver.live if self.driver is not None else set()
        return [k for k in live if self.partition_of(k) == partition]

    def pending_in(self, partition: int) -> list[bytes]:
        """Vehicles of ``partition`` whose new status awaits its restatement (broker.join)."""
        pending = self.driver.pending if self.driver is not None else set()
        return [k for k in pending if self.partition_of(k) == partition]

    @property
    def live_alerts(self) -> int:
        """How many vehicles have a live alert on this worker (or a dispatch alert held, for at
        most ``dispatch_hold_s``)."""
        return 0 if self.driver is None else len(self.driver.live)

    def failure_policy(self, dead_letter: DeadLetter | None = None) -> FailurePolicy:
        """The one failure policy (``broker.failure``) with this worker's outages, counted in
        its metrics (``broker_failures_total{site,decision}``)."""
        return FailurePolicy(
            dead_letter=dead_letter,
            count=lambda site, decision: self.metrics.failures.labels(site, decision).inc(),
            outages=self.outages,
        )

    def stopping(self, app: faust.App) -> bool:
        """The failure policy stopped the worker, Faust crashed (an exception out of a timer, a
        service) or is shutting down (its timers and agents cancelled): nothing more is written
        or acked for work under way (``states``, ``table_writes``); the next owner takes it."""
        return self.stopped is not None or bool(app.crashed) or bool(app.should_stop)

    async def stop_worker(self, app: faust.App, stop: StopWork) -> None:
        """Stop the worker loudly, without acknowledging the work that failed (see
        ``broker.failure``): Kafka hands it to the restarted worker."""
        if self.stopped is None:  # the first stop is the cause (its exit code), later ones follow
            self.stopped = stop
        log.critical("stopping the worker: %s", stop)
        self.metrics.ready.set(0)
        # Faust's shutdown has been seen to hang after the consumer left the group (a stopped
        # worker that never exits is as silent as a lost alert): exit hard if it does
        watchdog = threading.Timer(STOP_GRACE_S, _exit_stopped, args=(stop,))
        watchdog.daemon = True
        watchdog.start()
        await app.crash(stop)

    def set_owned(self, partitions: Iterable[int]) -> None:
        """Take in the current assignment; forget what moved away (the offsets of a partition
        still assigned for one input only, ``partial``, are kept: a message of it was handled
        in this generation, and forgetting would read it again for nothing)."""
        owned = frozenset(partitions)
        gone = set(self.owned - owned)
        self.clocks.forget(gone)
        if self.driver is not None:
            self.driver.live = {k for k in self.driver.live if self.partition_of(k) in owned}
            self.driver.pending = {
                k for k in self.driver.pending if self.partition_of(k) in owned
            }
        held = owned | self.partial
        self.next_offset = {tp: o for tp, o in self.next_offset.items() if tp[1] in held}
        self.rewinds = {tp: r for tp, r in self.rewinds.items() if tp[1] in held}
        self.owned = owned
        self.assigned_once = True

    def forget_progress(self) -> None:
        """Forget what processed-but-unflushed messages taught us (a rebalance dropped them and
        Faust delivers them again): clocks, offsets and the live index are rebuilt from the
        table at the next tick and from the messages as they come again."""
        self.clocks.forget(set(self.clocks.partitions()))
        self.next_offset = {}
        self.rewinds = {}
        if self.driver is not None:
            self.driver.live.clear()
            self.driver.pending.clear()
        self.index_built_for = None

    def backlog_from(self, topic: str, partition: int) -> int | None:
        """The offset an input partition's backlog counts from (its lag and clock), None when
        not known. Where the consumer fetches next (:attr:`fetch_position`), unless a record it
        handed over waits to be handled: then the next offset to process (after the last
        message handled, else the committed offset, :meth:`expected_offset`). So a restarted
        worker's backlog counts from the committed offset until its records are fetched and
        handled; a backlog retention deleted (the consumer reset to the log start, which is
        the high watermark) and commit markers after the last record (transactional inputs:
        the position passes them, no record does) count as none. A transport that does not
        say where it fetches: :meth:`expected_offset` (docs/streams.md, "What counts as a
        backlog")."""
        position = self.fetch_position(topic, partition)
        expected = self.expected_offset(topic, partition)
        if position is None:
            return expected
        last = self.handed_over(topic, partition)
        # Faust's read offset is the last record handed over, but the offset sought to after a
        # seek (the committed one at an assignment): only beyond the next offset to process
        # does it tell a record waiting (one waiting at it is not told: docs/streams.md)
        if last is not None and (expected is None or last > expected):
            return expected  # records handed over wait in the streams' buffers
        if expected is not None and (topic, partition) in self.next_offset:
            return max(expected, position)  # records handled again after a seek back
        return position

    def lag(self, topic: str, partition: int, highwater: int | None) -> int | None:
        """Messages behind the high watermark, counted from :meth:`backlog_from`, or None when
        either end is unknown."""
        start = self.backlog_from(topic, partition)
        if highwater is None or start is None:
            return None
        return max(0, highwater - start)

    def caught_up(self, topic: str, partition: int, highwater: int | None) -> bool:
        """Whether an input partition has no backlog, for its clock (``broker.streams.clock``:
        wall clock once caught up, event time before): its lag (:meth:`lag`) is 0. A high
        watermark not fetched yet counts as a backlog (the consumer's first fetch says, for an
        empty partition too; the vehicle agent logs one unknown for long). Where the
        partition's backlog starts unknown (a transport that says neither where it fetches
        nor its committed offset) is taken as caught up: nothing would ever tell it apart
        from a partition read to its end, whose clock must run on, or a silent unit is never
        cancelled as stale."""
        start = self.backlog_from(topic, partition)
        if start is None:
            return True
        return highwater is not None and highwater <= start  # lag 0, its start read once
