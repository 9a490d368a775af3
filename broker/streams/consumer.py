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

No record of an input (a topic whose records are acked) is handed to any agent before its
assignment has been sought to the committed offsets (:meth:`HandoffConsumer.sought`). Faust
resumes the partitions before it seeks them, so its fetcher handed over records from wherever
the consumer stood (a restarted worker was handed offset 374 of a partition committed at about
170): an agent that acked one let Faust, with no committed offset known yet, commit over the
records before it. Until the seek, a poll asks the consumer thread for the other partitions
only (the tables' changelogs: their recovery goes on), and the records aiokafka fetched for
the held ones stay in its buffer, untaken: the seek drops those of the old position, and
those it fetched after the seek are handed over once it is done, in order.
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

from broker.streams import records
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
# the longest the seek asks Kafka where never-committed partitions start: Faust bounds the whole
# seek by its request timeout (90 s) and stops the recovery for good when that runs out
LOG_STARTS_TIMEOUT_S = 5.0


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
        records.install()  # a header key that is not UTF-8 stopped the worker (records.py)
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
        (:meth:`perform_seek`). Faust resumes them before it seeks, so a record taken before
        that may come from anywhere, and the committed offset to judge it by is not known yet:
        until then no record of an acked topic is handed over (:meth:`_getmany`)."""
        return self._sought

    def committed_offset(self, tp: TP) -> int | None:
        """Where ``tp``'s records start for this worker: the next offset to read as Faust last
        committed it or sought to it at the assignment, or, for a partition its group never
        committed, the first offset Kafka had then (the consumer starts at the earliest);
        None when neither is known."""
        committed = self._committed_offset.get(tp)
        return committed if committed is not None else self._log_starts.get(tp)

    async def perform_seek(self) -> None:
        """Faust's seek of every assigned partition to its committed offset, and of the
        partitions never committed to where they start (:meth:`committed_offset`; aiokafka
        seeks no partition without a commit, so one read on before the seek would have gone on
        from there): a first record beyond either is a gap the agent reads again. Asking Kafka
        may fail (it is away; asked for ``LOG_STARTS_TIMEOUT_S`` at most): then those
        partitions keep the start they had (one too low costs reads again, never a record), or
        none, and stay where the consumer stands (nothing was taken before the seek: where
        aiokafka starts them, at the earliest). A stale seek (begun for an assignment a
        rebalance has since replaced) does nothing more than Faust's own."""
        assignment = self._assignments
        await super().perform_seek()
        if assignment != self._assignments:
            return  # a stale seek (Faust's fetcher's, begun before a rebalance): nothing more
        # the inputs only (acks on: not the tables' changelogs, which no group commits); a new
        # mapping swapped in at the end, so a call cut short leaves the last one standing
        assigned = self.assignment()
        acked = self.app.topics.acks_enabled_for
        unknown = [tp for tp in assigned
                   if self._committed_offset.get(tp) is None and acked(tp.topic)]
        starts = {tp: o for tp, o in self._log_starts.items() if tp in assigned}
        if unknown:
            try:
                starts.update(await asyncio.wait_for(self.earliest_offsets(*unknown),
                                                     LOG_STARTS_TIMEOUT_S))
            except Exception as err:  # TimeoutError included
                log.warning("first offsets of %d partitions unknown: %r", len(unknown), err)
        self._log_starts = MappingProxyType(starts)
        to_start = {tp: starts[tp] for tp in unknown if tp in starts}
        if to_start and assignment == self._assignments:  # a rebalance came meanwhile
            try:
                await self.seek_wait(to_start)
            except Exception as err:  # e.g. revoked meanwhile: the next assignment seeks again
                log.warning("seek of %d partitions to their start failed: %r",
                            len(to_start), err)
        # sought only now, with the starts of the partitions never committed known (a record
        # taken between had no start to be judged by), and only if no rebalance came meanwhile
        # (Faust's fetcher seeks too, and may finish after a newer assignment). A stale seek
        # leaves the flag alone: set to False, it undid the newer assignment's own seek, done
        # first, and its inputs were held back for good (two workers, a rebalance: alerts
        # never came out)
        if assignment == self._assignments:
            self._sought = True

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
        its gap in Faust's books (the offsets it would commit over without their acks).
        Until this assignment is sought, its acked partitions are left out of the poll
        (:meth:`polled_partitions`)."""
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
        wait = min(timeout, POLL_WAIT_S)
        polled = self.polled_partitions(active_partitions)
        if active_partitions and not polled:  # all held back: an empty set would ask for all
            await asyncio.sleep(wait)
            return {}
        return await super()._getmany(polled, wait)

    def polled_partitions(self, active_partitions: set[TP] | None) -> set[TP] | None:
        """What a poll asks the consumer thread for: the active partitions, but before this
        assignment is sought not those of acked topics (module doc). Decided as the poll
        starts, so a poll begun before the seek returns none of their records, even if the
        seek ends while it waits; one begun after it returns only records aiokafka fetched
        from the sought offsets (its seek drops those it holds from before)."""
        if self._sought or not active_partitions:
            return active_partitions
        acked = self.app.topics.acks_enabled_for
        return {tp for tp in active_partitions if not acked(tp.topic)}

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
            if state is None or not state.has_valid_position:
                return None
            # inside the try: the consumer thread may ask for a reset between the two reads
            # (an offset out of range), and aiokafka's ``position`` then asserts; out of the
            # try that stopped the worker from its tick (a review's finding)
            position = state.position
        except Exception:  # not started, no assignment (a rebalance), a reset pending, ...
            return None
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
