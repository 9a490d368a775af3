"""Decoded vehicle states in front of the changelogged ``vehicles`` table, written back in batches.

Why: writing the table on every fix produced one changelog record per position, and decoding
the state from bytes on every fix cost as much again; the worker spent most of its time in
Kafka's produce path, not in the engine (docs/profiles/). Here the agent reads and writes
decoded states in a dict and the table sees each changed vehicle once per *flush*.

Theory of operation (what a ``kill -9`` or a rebalance at any point can and cannot lose):

1. The agent processes messages synchronously against this cache: ``get`` -> engine -> ``put``.
   Alert events are handed to the producer at once (``sent``: their latency does not wait for a
   flush) and the Faust event is parked, un-acked (``processed``).
2. ``flush`` (every ``max_pending`` events or ``max_age_s`` seconds in the background, and on
   every tick) takes a snapshot, awaits every alert produced up to it (and produces and awaits
   what its ``outboxes`` gathered up to it: dead letters, alert updates held while catching up),
   *then* writes each dirty vehicle's state to the table and awaits those changelog records,
   and only *then* acks the parked events. The agent keeps processing meanwhile (a blocking
   flush showed as a 100-300 ms tail in the end-to-end latency). Faust commits acked
   offsets only, so a committed offset never runs ahead of the states in the changelog, and a
   state in the changelog never runs ahead of its alerts in Kafka.
3. A crash anywhere before the acks loses nothing: the restarted worker reloads the states of
   the last flush (or newer ones, whose messages it then ignores as duplicates), Kafka delivers
   the un-acked messages again, and the deterministic engine emits the same alert ids and
   versions again: at most a duplicate of ``(alert_id, version)``, never a lost or different one.
4. A rebalance ends the *epoch* (Faust's rebalance count and the group generation): Faust seeks
   every assigned partition back to its committed offset, so whatever this cache holds that was
   not flushed is dropped, never written (a partition may have moved to another worker) and
   never acked; the messages come again and are processed from the table's states. While a
   rebalance is under way (``paused``) a flush writes and acks nothing.

Nothing here is durable on its own; the table is the truth after a restart or a rebalance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from broker import codec
from broker.model import VehicleState

Read = Callable[[bytes], bytes | None]  # table value of a vehicle id (None: unknown vehicle)
# table write (None: delete, a tombstone in the changelog): awaiting it queues the changelog
# record; the awaitable it returns resolves once Kafka has the record
Write = Callable[[bytes, bytes | None], Awaitable[Awaitable[Any]]]
WRITE_CHUNK = 64  # writes queued between two yields to the event loop
LEASE_RECHECK_S = 0.05  # how often a flush whose lease lapsed looks again (only then)


class Outbox(Protocol):
    """Records gathered beside the states (dead letters, alert updates held while catching
    up) that a flush produces and awaits before it writes states and acks, like the alerts."""

    def take(self) -> list[Any]: ...

    async def produce(self, taken: list[Any]) -> list[Awaitable[Any]]: ...

    def clear(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What one flush makes durable, taken as it starts (:meth:`VehicleStates.flush`): the
    alerts sent, the acks of the messages processed, what the outboxes gathered, and the
    dirty vehicles' states (frozen: a reference is a snapshot), the forgotten ones among them."""

    sends: list[Awaitable[Any]]
    acks: list[Callable[[], Any]]
    gathered: list[tuple[Outbox, list[Any]]]
    states: list[tuple[bytes, VehicleState | None]]
    forgotten: set[bytes]


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush did (for metrics and tests)."""

    alerts_awaited: int
    states_written: int
    events_acked: int
    dropped: bool  # a rebalance started meanwhile: nothing written, nothing acked
    deferred: bool = False  # a rebalance is under way: kept for later (or for the drop)
    encode_s: float = 0.0  # time spent encoding and queueing the writes (blocks the loop)


class VehicleStates:
    """Decoded states per vehicle id (bytes key), dirty tracking, and the flush that makes them
    durable before their messages are acked. One instance per worker, used from its event loop
    only (``epoch`` may be advanced from the consumer thread: it is only read here)."""

    def __init__(
        self,
        *,
        read: Read,
        write: Write,
        epoch: Callable[[], object],
        paused: Callable[[], bool] = lambda: False,
        leased: Callable[[], bool] = lambda: True,
        stopping: Callable[[], bool] = lambda: False,
        max_pending: int = 2000,
        max_age_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        on_drop: Callable[[], None] | None = None,
        outboxes: Sequence[Outbox] = (),
    ) -> None:
        self._read = read
        self._outboxes = tuple(outboxes)
        self._on_drop = on_drop
        self._write = write
        self._epoch = epoch
        self._paused = paused
        # the lease on the partitions (broker.streams.membership): lapsed, a flush does not
        # start (deferred); one under way goes on, its acks must not be lost
        self._leased = leased
        # the worker is stopping (the failure policy stopped it): no flush starts (deferred).
        # A stop comes from work that failed part-way, its unit's states put and its events
        # dropped with the exception: written, the restarted worker never made those events
        self._stopping = stopping
        self.max_pending = max_pending
        self.max_age_s = max_age_s
        self._clock = clock
        self._seen_epoch = epoch()
        self._states: dict[bytes, VehicleState | None] = {}
        self._dirty: set[bytes] = set()
        self._forgotten: set[bytes] = set()  # dirty keys to delete from the table
        self._sends: list[Awaitable[Any]] = []
        self._acks: list[Callable[[], Any]] = []
        self._oldest: float | None = None  # clock() of the oldest un-flushed change
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[FlushResult]] = set()
        self._failed: BaseException | None = None  # what the first flush that raised raised
        self.dropped_epochs = 0

    # --- reading and changing states ------------------------------------------------------------

    def begin(self) -> bool:
        """Start processing in the current epoch; drops the cache if a rebalance came between.

        Returns False while the epoch is unchanged, True when the cache was just dropped.
        """
        current = self._epoch()
        if current == self._seen_epoch:
            return False
        self.drop()
        self._seen_epoch = current
        return True

    def get(self, key: bytes) -> VehicleState | None:
        """The vehicle's latest state: the cache, else the table (decoded once, then cached)."""
        try:
            return self._states[key]
        except KeyError:
            state = codec.load_state(self._read(key))
            self._states[key] = state
            return state

    def put(self, key: bytes, state: VehicleState) -> None:
        """The vehicle's new state; written to the table by the next flush."""
        self._states[key] = state
        self._dirty.add(key)
        self._forgotten.discard(key)
        self._touch()

    def forget(self, key: bytes) -> None:
        """The vehicle leaves the table (idle for long, no live alert): the next flush writes a
        tombstone, so the changelog forgets it too. A later message brings it back."""
        self._states[key] = None
        self._dirty.add(key)
        self._forgotten.add(key)
        self._touch()

    def sent(self, fut: Awaitable[Any]) -> None:
        """An alert handed to the producer; the next flush awaits it before writing states."""
        self._sends.append(fut)
        self._touch()

    def processed(self, ack: Callable[[], Any]) -> None:
        """A message fully processed; ``ack`` is called once its effects are durable."""
        self._acks.append(ack)
        self._touch()

    def cached_keys(self) -> Iterable[bytes]:
        """Vehicle ids with a cached state (the table may not have the newest yet)."""
        return list(self._states)

    @property
    def pending(self) -> int:
        """Messages processed and not yet acked."""
        return len(self._acks)

    def due(self) -> bool:
        """Whether the caller should flush now (enough pending, or the oldest is old enough)."""
        if self._oldest is None:
            return False
        return (
            len(self._acks) >= self.max_pending
            or self._clock() - self._oldest >= self.max_age_s
        )

    def drop(self) -> None:
        """Forget everything not flushed (a rebalance: the messages will come again).

        ``on_drop`` lets the owner forget what it derived from those messages too (partition
        clocks, offsets, the live index): a clock left ahead of the states would make a tick
        cancel as stale an alert whose fixes are only about to be processed again.
        """
        self._states.clear()
        self._dirty.clear()
        self._forgotten.clear()
        self._sends = []
        self._acks = []
        for outbox in self._outboxes:
            outbox.clear()
        self._oldest = None
        self.dropped_epochs += 1
        if self._on_drop is not None:
            self._on_drop()

    def _touch(self) -> None:
        if self._oldest is None:
            self._oldest = self._clock()

    # --- making them durable ----------------------------------------------------------------

    @property
    def flushing(self) -> bool:
        """A flush is under way (in the background or awaited)."""
        return self._lock.locked()

    def flush_soon(self) -> asyncio.Task[FlushResult] | None:
        """Start a flush in the background unless one is under way (the agent goes on
        processing meanwhile: the flush works on a snapshot, see :meth:`flush`)."""
        if self.flushing:
            return None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def flush(self) -> FlushResult:
        """Make everything processed so far durable: await its alerts, write and await the
        changed states, then ack its messages (see the module doc).

        Works on a snapshot taken when the flush starts: the sends, the acks and the *state
        objects* (frozen, so a reference is a snapshot) of the vehicles changed so far. Every
        state in it was computed from messages whose alerts are in the snapshot's sends, so the
        agent can go on processing while the flush waits; what it changes meanwhile belongs to
        the next flush. Flushes run one at a time, so a vehicle's writes keep their order.

        A flush that raised lost its snapshot, whose alerts or dead letters may not be in
        Kafka: every later one raises too, writing and acking nothing (never reset, a
        rebalance's drop included: the worker is stopping). The cache's states were computed
        from that snapshot's messages: a later flush wrote them to the changelog and acked the
        messages after them, and the restarted worker never made the lost alerts again.
        """
        async with self._lock:  # one at a time: a vehicle's writes keep their order
            if self._stopping():  # before the check below: the stop for that failure made
                return FlushResult(0, 0, 0, dropped=False, deferred=True)
            if self._failed is not None:
                raise RuntimeError("an earlier flush failed: nothing is written or acked any "
                                   "more") from self._failed
            epoch = self._seen_epoch
            if self._paused() or self._epoch() != epoch or not self._leased():
                # mid-rebalance, or the lease lapsed (a stall past the session): a partition may
                # be on its way to another worker, or be its already; write nothing (the epoch
                # ends with the new assignment and this work is dropped then; a lease renewed
                # without one lets the next flush write it)
                return FlushResult(0, 0, 0, dropped=False, deferred=True)
            snapshot = self._take()
            try:
                return await self._make_durable(snapshot, epoch)
            except BaseException as err:  # the snapshot is lost (a cancellation too); one
                if self._failed is None:  # cancelled while it waited for the lock lost none
                    self._failed = err
                raise

    def _take(self) -> _Snapshot:
        """The snapshot a flush makes durable; the cache's next changes go to the next one."""
        sends, self._sends = self._sends, []
        acks, self._acks = self._acks, []
        gathered = [(outbox, outbox.take()) for outbox in self._outboxes]
        states = [(key, self._states.get(key)) for key in self._dirty]
        forgotten, self._forgotten = self._forgotten & self._dirty, set()
        self._dirty = set()
        self._oldest = None
        return _Snapshot(sends, acks, gathered, states, forgotten)

    async def _make_durable(  # noqa: C901 - five steps
        self, snapshot: _Snapshot, epoch: object,
    ) -> FlushResult:
        """:meth:`flush` once its snapshot is taken: alerts and outboxes awaited, then the
        states written and awaited, then the acks (unless a rebalance began meanwhile)."""
        sends = snapshot.sends
        for outbox, taken in snapshot.gathered:
            if taken:
                sends = sends + await outbox.produce(taken)
        if sends:
            await asyncio.gather(*sends)
        if not await self._still_ours(epoch):
            return self._abandon(len(sends))
        encode_s = 0.0
        writes: list[Awaitable[Any]] = []
        forgotten = snapshot.forgotten
        for n, (key, state) in enumerate(snapshot.states, start=1):
            if state is None and key not in forgotten:
                continue  # looked up, never there: nothing to write
            started = time.perf_counter()
            raw = None if state is None else codec.dump_state(state)
            writes.append(await self._write(key, raw))
            encode_s += time.perf_counter() - started
            if n % WRITE_CHUNK == 0:
                # let the agent and its alerts through: hundreds of writes in one go held
                # the loop for tens of ms (the tail of the end-to-end latency)
                await asyncio.sleep(0)
                if not await self._still_ours(epoch):
                    return self._abandon(len(sends))
        if writes:
            await asyncio.gather(*writes)
        if self._epoch() != epoch or not await self._still_ours(epoch, rebalancing_ok=True):
            return self._abandon(len(sends))
        for ack in snapshot.acks:
            ack()
        for key in forgotten:  # its tombstone is written: the cache lets go of it too
            if key not in self._dirty and key in self._states and self._states[key] is None:
                del self._states[key]
        return FlushResult(len(sends), len(writes), len(snapshot.acks), dropped=False,
                           encode_s=encode_s)

    async def _still_ours(self, epoch: object, *, rebalancing_ok: bool = False) -> bool:
        """Between a flush's steps: False when a rebalance began (``rebalancing_ok``: only a
        new epoch counts); while the lease is lapsed (the worker stalled mid-flush, past its
        session), wait until it is held again or a rebalance begins: a worker resumed after
        such a stall must not write states of partitions another worker may own by now."""
        def rebalanced() -> bool:
            return self._epoch() != epoch or (not rebalancing_ok and self._paused())

        while not self._leased():
            if rebalanced() or self._paused():
                return False
            await asyncio.sleep(LEASE_RECHECK_S)
        return not rebalanced()

    def _abandon(self, awaited: int) -> FlushResult:
        """A rebalance started during the flush: the snapshot is dropped, not acked (its
        messages come again after the seek), and so is the cache once the new epoch begins."""
        self.begin()
        return FlushResult(awaited, 0, 0, dropped=True)


def is_idle(state: VehicleState, now: datetime, expiry: timedelta) -> bool:
    """No live alert, and nothing heard of the unit (fix, route or status) for ``expiry``
    before ``now``.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> is_idle(VehicleState(vehicle_id="E1"), t, timedelta(hours=6))  # nothing heard at all
    True
    """
    if state.alert is not None:
        return False
    heard = [m.ts for m in (state.last_fix, state.route, state.cad) if m is not None]
    return not heard or now - max(heard) >= expiry


def newest_fixes(
    states: Mapping[bytes, VehicleState], partition_of: Callable[[bytes], int], trusted: datetime,
    *, upto: datetime | None = None,
) -> dict[int, datetime]:
    """Per partition, the newest fix its vehicles remember that is not dated beyond ``trusted``
    (a partition clock seeded from it can never run ahead of the wall clock), each taken as
    ``upto`` at most (the wall clock: a fix of a device running ahead within the skew moves
    no partition clock past its receive time, ``Runtime.processed``; seeded from it, every
    other unit's fixes looked that far behind, cancelled as stale or refused as late)."""
    newest: dict[int, datetime] = {}
    for key, state in states.items():
        fix = state.last_fix
        if fix is None or fix.ts > trusted:
            continue
        ts = fix.ts if upto is None or fix.ts <= upto else upto
        p = partition_of(key)
        newest[p] = max(newest.get(p, ts), ts)
    return newest
