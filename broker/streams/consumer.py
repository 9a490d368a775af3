"""The Kafka transport of the worker: Faust's aiokafka one, with a cheaper hand-off per record.

Faust's fetcher hands every record to the streams through
``wait_first(callback(message), suspend_flow.wait())``: four tasks (the callback, the flow,
``stopped`` and ``crashed`` events) and an ``asyncio.wait`` per record, about a fifth of a
worker's CPU at a few thousand records a second (py-spy, docs/benchmarks.md). Almost every
callback finishes without ever waiting: it puts the event on a stream buffer that has room.
:class:`HandoffConsumer` runs the callback's first step in place; only a callback that has to
wait (a full buffer) goes through Faust's race with the flow, so a rebalance still abandons a
blocked hand-off exactly as before.

Two waits of Faust's fetch path also made a worker behind a backlog sit idle about half the time
(a py-spy profile and timings of each poll while one worker refused 100,000 bad lines; docs/
streams.md "Fetching"):

- Faust hands the consumer thread its set of active partitions for each poll and takes a
  partition out of that set while its stream buffer is full, putting it back once the buffer
  has drained to half. A poll already waiting in the thread does not look again until *new*
  records arrive or its timeout (a second) ends, although the partition put back has its
  records fetched already: one poll in eight or so waited that second for nothing.
  :meth:`HandoffConsumer._getmany` waits at most ``POLL_WAIT_S``.
- aiokafka keeps one fetch request in flight per broker, for the partitions it holds no
  records of; with Faust's ``fetch_max_wait_ms`` of 1,500 a request for partitions that are
  all caught up sat at the broker 1.5 s, and partitions whose records had been handed over
  meanwhile could not be fetched until it returned. :class:`FetchThread` sets the worker's
  ``fetch_max_wait_ms`` (``BROKER_FETCH_MAX_WAIT_MS``, 100 by default).

A third made every record of a burst wait about 0.1 s, twice on its way (fix -> alert, alert ->
fan-out): aiokafka sends no fetch to a broker while a record it fetched from there is younger
than its ``prefetch_backoff`` (0.1 s, not a consumer option) and not yet taken, so a record
Faust had not taken yet (a partition out of the active set, or a poll still to come) held back
every partition of that broker, the ``alerts`` ones included. Traced in a worker with
LogAppendTime topics, the start of ``bench.e2e_bench`` spent 60-100 ms per hop there.
:meth:`FetchThread.on_start` sets it to ``prefetch_backoff_ms`` (``BROKER_PREFETCH_BACKOFF_MS``,
10 by default).

While Kafka is away, aiokafka's producer and fetcher ask for a metadata update whenever a
leader is unknown and wait for it, and a failed update (connection refused) returns at once:
a worker spun through ~7,000 failed updates a second, a core and ~27 MB of log per 30 s
outage (``make faults``, ``kafka_restart``). :func:`pace_metadata_retries` makes a failed
update wait before it returns, 50 ms doubling to ``METADATA_RETRY_MAX_S``; a successful one
resets the wait, so a worker finds Kafka back within that.

Only between rebalances: from a rebalance's start to the end of its recovery, records go
through Faust's own path. Handed over in place during recovery, a few hundred records reached
the stream buffer that Faust clears at the end of recovery and were never handed over again
(a kill -9 test lost 177 fixes; the agent now reads such a gap again, docs/streams.md).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from types import MappingProxyType
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds

from broker.streams.membership import Membership, watch_coordinator

log = logging.getLogger(__name__)


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

POLL_WAIT_S = 0.05  # the longest one poll for records waits in the consumer thread


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


METADATA_RETRY_FIRST_S = 0.05  # the wait after a first failed metadata update
METADATA_RETRY_MAX_S = 0.25  # the longest: how late a worker may find Kafka back


def pace_metadata_retries(
    client: Any, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """Make ``client`` (an ``aiokafka.AIOKafkaClient``) wait after a failed metadata update,
    50 ms doubling to ``METADATA_RETRY_MAX_S``, before it says so (module doc)."""
    update = client._metadata_update
    wait = 0.0

    async def paced(cluster: Any, topics: Any) -> bool:
        nonlocal wait
        updated = bool(await update(cluster, topics))
        if updated:
            wait = 0.0
        else:
            wait = min(max(METADATA_RETRY_FIRST_S, 2 * wait), METADATA_RETRY_MAX_S)
            await sleep(wait)
        return updated

    client._metadata_update = paced


class FetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; its aiokafka consumer long-polls the broker for the
    transport's ``fetch_max_wait_ms`` (Faust's 1,500 when that is None)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(transport, "fetch_max_wait_ms", None)
        if wait is not None:
            # what AIOKafkaConsumer(fetch_max_wait_ms=...) keeps; its Fetcher, made by start(),
            # reads it there (Faust passes a literal 1500 and no way to change it)
            consumer._fetch_max_wait_ms = wait
        pace_metadata_retries(consumer._client)
        return consumer

    async def on_start(self) -> None:
        """Faust's start (the aiokafka consumer and its fetcher), then the fetcher's backoff
        behind records not yet taken set to the transport's ``prefetch_backoff_ms`` (module
        doc; aiokafka's 100 when that is None), and the group coordinator's answers watched for
        the transport's ``membership`` lease."""
        await super().on_start()
        backoff = getattr(self.transport, "prefetch_backoff_ms", None)
        if backoff is not None and self._consumer is not None:
            # read by the fetcher for each partition's records as they arrive (FetchResult)
            self._consumer._fetcher._prefetch_backoff = backoff / 1000
        membership = getattr(self.transport, "membership", None)
        coordinator = getattr(self._consumer, "_coordinator", None)
        if membership is not None and coordinator is not None:
            # the lease on the partitions (broker.streams.membership): heartbeats renew it
            watch_coordinator(coordinator, membership)
        elif membership is not None:  # an aiokafka without it: the lease is held for ever
            log.warning("no group coordinator found on the consumer: a worker resumed after a "
                        "stall past its session is not held back (broker.streams.membership)")


class HandoffConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; a record's hand-off to the streams runs in place when it
    does not have to wait, and a poll for records waits a short while, not a second."""

    _rewinds: dict[TP, int] | None = None  # partitions to read again from an offset
    _sought = False  # this assignment's partitions sought to their committed offsets yet
    _assignments = 0  # assignments and revocations so far: a seek counts for its own only
    # first offsets of the partitions never committed (set at each seek to committed offsets)
    _log_starts: Mapping[TP, int] = MappingProxyType({})

    def _new_consumer_thread(self) -> FetchThread:
        return FetchThread(self, loop=self.loop, beacon=self.beacon)

    def rewind(self, tp: TP, offset: int) -> None:
        """Read ``tp`` again from ``offset`` (a record never handed over, docs/streams.md), from
        the next poll on. Not a seek now: Faust goes on handing over the rest of the batch in
        hand, each record moving its read offset back past ``offset`` (its filter drops what
        is below), and a seek from this thread races the consumer thread's own update of the
        position; both were seen to leave a partition with no record of it again. Asked for
        during a rebalance it is dropped, until the assignment is sought (:meth:`sought`): the
        agent forgets what it had read then, and Faust seeks every partition it is given to
        its committed offset. After that seek the rebalance still runs (the recovery ends
        later), and records of the old position still come from Faust's batch in hand: a gap
        found then must be read again now (dropped, it waited the tick's 10 s patience; seen
        in ``make faults``, partner_down_kill9: recovered in 9 s, not 1)."""
        if self.app.rebalancing and not self._sought:
            return
        if self._rewinds is None:
            self._rewinds = {}
        self._rewinds[tp] = offset

    def sought(self) -> bool:
        """Whether this assignment's partitions have been sought to their committed offsets
        (:meth:`perform_seek`). Faust resumes them before it seeks, so a record handed over
        before that may come from anywhere (a restarted worker was handed offset 374 of a
        partition committed at about 170), and the committed offset to judge it by is not
        known yet: such a record is not processed; the seek reads it again in its turn."""
        return self._sought

    def committed_offset(self, tp: TP) -> int | None:
        """Where ``tp``'s records start for this worker: the next offset to read as Faust last
        committed it or sought to it at the assignment, or, for a partition its group never
        committed, the first offset Kafka had then (the consumer starts at the earliest);
        None when neither is known."""
        committed = self._committed_offset.get(tp)
        return committed if committed is not None else self._log_starts.get(tp)

    async def perform_seek(self) -> None:
        """Faust's seek of every assigned partition to its committed offset, and where the
        partitions never committed start (:meth:`committed_offset`): a first record beyond
        either is a gap the agent reads again. Asking Kafka may fail (it is away): then those
        partitions keep the start they had (one too low costs reads again, never a record), or
        none, and their first records are taken as their start, as Faust does."""
        assignment = self._assignments
        await super().perform_seek()
        # the inputs only (acks on: not the tables' changelogs, which no group commits); a new
        # mapping swapped in at the end, so a call cut short leaves the last one standing
        assigned = self.assignment()
        acked = self.app.topics.acks_enabled_for
        unknown = [tp for tp in assigned
                   if self._committed_offset.get(tp) is None and acked(tp.topic)]
        starts = {tp: o for tp, o in self._log_starts.items() if tp in assigned}
        if unknown:
            try:
                starts.update(await self.earliest_offsets(*unknown))
            except Exception as err:
                log.warning("first offsets of %d partitions unknown: %r", len(unknown), err)
        self._log_starts = MappingProxyType(starts)
        # sought only now, with the starts of the partitions never committed known (a record
        # taken between had no start to be judged by), and only if no rebalance came meanwhile
        # (Faust's fetcher seeks too, and may finish after a newer assignment)
        self._sought = assignment == self._assignments

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Faust's, the rewinds asked for dropped (see :meth:`rewind`); the next assignment is
        not sought yet (:meth:`sought`)."""
        self._rewinds = None
        self._sought = False
        self._assignments += 1
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Faust's, the rewinds asked for dropped (see :meth:`rewind`); its partitions are not
        sought yet (:meth:`sought`)."""
        self._rewinds = None
        self._sought = False
        self._assignments += 1
        await super().on_partitions_assigned(assigned, generation_id)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:  # noqa: ASYNC109  # Faust's
        """Faust's poll of the consumer thread, waiting at most ``POLL_WAIT_S`` (module doc):
        the next poll sees the partitions Faust has put back meanwhile. The rewinds asked for
        since the last poll are made first, in the consumer thread (``seek_wait``, which also
        sets Faust's read offset), between two batches, one partition at a time: one that
        fails (revoked meanwhile) leaves the others' standing. A partition read again loses
        its gap in Faust's books (the offsets it would commit over without their acks)."""
        if self._rewinds:
            pending, self._rewinds = self._rewinds, None
            assigned = set() if self.app.rebalancing else self.assignment()
            for tp, offset in pending.items():
                if tp not in assigned:
                    log.warning("rewind of %s to %d dropped: not assigned now", tp, offset)
                    continue
                try:
                    await self.seek_wait({tp: offset})
                except Exception as err:  # e.g. revoked meanwhile: a rebalance reads it again
                    log.warning("seek of %s to %d failed: %r", tp, offset, err)
                    continue
                # Faust took the jump to the record beyond the gap for offsets it may commit
                # over (its "gap", meant for commit markers): those from ``offset`` on are read
                # again now; below it (records retention deleted) they stay passed over
                if (booked := self._gap.get(tp)) is not None:
                    booked.chop(offset, sys.maxsize)
        return await super()._getmany(active_partitions, min(timeout, POLL_WAIT_S))

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

    def fetch_position(self, tp: TP) -> int | None:
        """Where the consumer fetches ``tp`` next (aiokafka's position: after the last record
        it handed to Faust, commit markers passed; the committed offset after the seek; the
        first offset Kafka has after a reset, e.g. of a backlog retention deleted), None before
        the consumer knows (a reset pending) or when ``tp`` is not assigned. Read as Faust's
        ``highwater(tp)`` reads the consumer thread's state: one attribute, no call into it."""
        try:
            consumer = self._thread._ensure_consumer()
            state = consumer._subscription.subscription.assignment.state_value(tp)
        except Exception:  # not started, no assignment (a rebalance), ...
            return None
        if state is None or not state.has_valid_position:
            return None
        position = state.position
        return position if isinstance(position, int) else None


class PacedProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, its metadata retries paced (:func:`pace_metadata_retries`)."""

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = super()._new_producer(transactional_id)
        pace_metadata_retries(producer.client)
        return producer


class KafkaTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`HandoffConsumer` and :class:`PacedProducer`."""

    Consumer = HandoffConsumer
    Producer = PacedProducer
    fetch_max_wait_ms: int | None = None  # the worker's consumer's; None: Faust's 1,500
    membership: Membership | None = None  # the lease its group coordinator renews
    prefetch_backoff_ms: int | None = None  # its fetcher's (module doc); None: aiokafka's 100
