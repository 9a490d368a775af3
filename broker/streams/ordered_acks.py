"""Acks of records whose work settles out of order, given to Faust in offset order.

Faust commits the first run of acked offsets of a partition *wherever that run starts*
(``Consumer._new_offset``): with offset 10 still in hand and 11 acked, it commits 12, and a
restarted worker never reads 10 again. The fan-out settles each ``alerts`` record when its
own deliveries do, so a record waiting on a partner that is down sits among records that
settled at once. :class:`OrderedAcks` holds each settled record back until every earlier
record of its partition has settled too, then acks them in order: the committed offset never
passes a record whose deliveries are still being made.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar


class Ackable(Protocol):
    """A record in hand (a Faust ``Event``): acked once its work has settled."""

    def ack(self) -> object: ...


R = TypeVar("R")


def _ack_itself(partition: int, offset: int, record: Ackable | None) -> object:
    assert record is not None  # never let go: _keep_all
    return record.ack()


def _keep_all(record: object) -> bool:
    return True


# acked entries left at the front of a partition's arrays before they are cut off: at least
# this many, and at least as many as are still in hand (each cut moves at most as many entries
# as were acked since the last: amortised O(1) per ack). Also the fewest settles behind the
# first record in hand that make a merge of the settled runs worth its pass (``_merge``).
CUT_MIN = 1024


class _Partition(Generic[R]):
    """One partition's records in hand, in offset order, and which of them have settled.

    An *entry* is a record, or a run of settled records let go whose offsets follow one
    another: while a partner is down a partition holds every record read since the first one
    it is owed, for as long as it is down, and almost all of them settle at once and are let
    go, so what they cost here is what the outage costs (docs/streams.md, "Acks wait in offset
    order"). Merged into runs (:meth:`_merge`), they cost two machine integers per stretch
    between records still in hand, however long the outage: memory grows with the records
    whose work is under way (a cancel owed, a delivery being retried), not with time. Until
    2026-12-07 each held record was an entry of its own, ~21 B (60 B before that): ~0.5 GB a
    day of outage.

    Four arrays in step, from ``head`` on (entries before it are acked, cut off in bulk:
    :data:`CUT_MIN`): the entry's first offset and its end (exclusive), its record (None once
    let go) and whether it has settled. An offset is found by its distance from the first
    entry's where every entry is one offset and they follow one another (O(1)), else by
    bisection over the entries' first offsets (O(log n))."""

    __slots__ = ("count", "ends", "head", "keep", "loose", "records", "settled", "starts")

    def __init__(self, keep: Callable[[R], bool]) -> None:
        self.keep = keep  # a settled record that is not kept is let go: its offset is enough
        self.head = 0  # the first entry in hand; those before it are acked
        self.starts = array("q")  # ascending; entries never overlap
        self.ends = array("q")  # one past the entry's last offset
        self.records: list[R | None] = []
        self.settled = bytearray()  # 1 where the entry's work has settled
        self.count = 0  # records in hand (a run is as many as its offsets)
        self.loose = 0  # settles behind the head since the last merge

    def __len__(self) -> int:
        return self.count

    def take(self, offset: int, record: R) -> None:
        starts, ends = self.starts, self.ends
        if len(starts) == self.head or offset >= ends[-1]:  # the usual: the next offset
            if self.loose >= CUT_MIN and 2 * self.loose >= len(starts) - self.head:
                self._merge()
                starts, ends = self.starts, self.ends
            starts.append(offset)
            ends.append(offset + 1)
            self.records.append(record)
            self.settled.append(0)
            self.count += 1
            return
        # read again, or below the last in hand: in its place, not settled
        i = bisect_right(starts, offset, self.head) - 1
        if i < self.head or offset >= ends[i]:  # not in hand
            self._put(i + 1, [(offset, offset + 1, record, 0)])
            self.count += 1
        elif ends[i] - starts[i] == 1:
            self.records[i] = record
            self.settled[i] = 0
        else:  # inside a settled run: the run is cut around it
            s, e = starts[i], ends[i]
            pieces: list[tuple[int, int, R | None, int]] = []
            if offset > s:
                pieces.append((s, offset, None, 1))
            pieces.append((offset, offset + 1, record, 0))
            if offset + 1 < e:
                pieces.append((offset + 1, e, None, 1))
            del starts[i], ends[i], self.records[i], self.settled[i]
            self._put(i, pieces)

    def _put(self, i: int, entries: list[tuple[int, int, R | None, int]]) -> None:
        """Insert ``entries`` (first offset, end, record, settled) before entry ``i``."""
        for k, (s, e, record, done) in enumerate(entries, i):
            self.starts.insert(k, s)
            self.ends.insert(k, e)
            self.records.insert(k, record)
            self.settled.insert(k, done)

    def index(self, offset: int) -> int | None:
        """The entry ``offset`` is in, if it is in hand (entries leave from the front only)."""
        starts, head = self.starts, self.head
        last = len(starts) - 1
        if last < head or offset < (first := starts[head]) or offset >= self.ends[last]:
            return None
        # one offset per entry and no gap up to it: at its distance from the first (offsets
        # are distinct, ascending, so it is never further); a run or a gap: bisect
        i = min(head + (offset - first), last)
        if starts[i] != offset:
            i = bisect_right(starts, offset, head, i + 1) - 1
        return i if offset < self.ends[i] else None

    def settle(self, i: int, partition: int, ack: Callable[[int, int, R | None], object]) -> None:
        """The entry ``i`` has settled: acked with the settled entries it starts, if it is the
        first in hand; else held, its record let go unless ``keep(record)``."""
        if self.settled[i]:  # settled already (a second call, or a run)
            return
        self.settled[i] = 1
        if i > self.head:  # held behind an earlier record still in hand
            kept = self.records[i]
            if kept is not None and not self.keep(kept):
                self.records[i] = None
            self.loose += 1
            return
        # the head read again after each ack, which may call back into here: one offset a
        # pass, a run shrunk from its front in place, so that a settle (or a forget) from
        # inside an ack finds the partition as it is, its acks still in offset order
        while (i := self.head) < len(self.starts) and self.settled[i]:
            record, self.records[i] = self.records[i], None  # a run's records: None
            offset = self.starts[i]
            if offset + 1 < self.ends[i]:
                self.starts[i] = offset + 1
            else:
                self.head = i + 1
            self.count -= 1
            ack(partition, offset, record)
        self._cut()

    def _merge(self) -> None:
        """Settled entries in hand whose records are let go (or, kept before, need keeping no
        longer) and whose offsets follow one another become one run; the acked front goes.
        One pass over the entries, after at least half as many settles behind the head
        (amortised O(1) per settle); afterwards at most about two entries per record whose
        work is under way, plus one per gap in the offsets."""
        starts, ends, records, done = self.starts, self.ends, self.records, self.settled
        keep = self.keep
        new_records: list[R | None] = []
        new_starts, new_ends, new_done = array("q"), array("q"), bytearray()
        for i in range(self.head, len(starts)):
            record, settled = records[i], done[i]
            if settled and record is not None and not keep(record):
                record = None
            if (settled and record is None and new_done and new_done[-1]
                    and new_records[-1] is None and new_ends[-1] == starts[i]):
                new_ends[-1] = ends[i]  # runs on from the run before it
                continue
            new_starts.append(starts[i])
            new_ends.append(ends[i])
            new_records.append(record)
            new_done.append(settled)
        self.starts, self.ends, self.records, self.settled = (new_starts, new_ends,
                                                              new_records, new_done)
        self.head = self.loose = 0

    def _cut(self) -> None:
        """Drop the acked entries from the front once they are many (all, once none is in
        hand)."""
        head = self.head
        if head == len(self.starts):
            self.clear()
        elif head >= CUT_MIN and head >= len(self.starts) - head:
            del self.starts[:head]
            del self.ends[:head]
            del self.records[:head]
            del self.settled[:head]
            self.head = 0

    def clear(self) -> None:
        self.head = self.count = self.loose = 0
        del self.starts[:]
        del self.ends[:]
        self.records.clear()
        self.settled.clear()


class OrderedAcks(Generic[R]):
    """Per partition, the records in hand in offset order, each settled or not.

    ``ack(partition, offset, record)`` acks one (default: ``record.ack()``). A record that
    settles behind one still in hand is kept only if ``keep(record)`` (default: always); if
    not, only its offset is, and ``ack`` gets None for it: what acking a settled record needs
    may be less than the record (the fan-out's: ``broker.streams.fanout_agent.message_acks``).

    Examples
    --------
    >>> class Rec:
    ...     def __init__(self): self.acked = False
    ...     def ack(self): self.acked = True
    >>> acks, recs = OrderedAcks(), [Rec(), Rec()]
    >>> done = [acks.track(0, 10 + i, r) for i, r in enumerate(recs)]
    >>> done[1]()  # 11 settles first: held, 10 is still in hand
    >>> [r.acked for r in recs]
    [False, False]
    >>> done[0]()  # 10 settles: both go, in order
    >>> [r.acked for r in recs], acks.in_hand()
    ([True, True], 0)
    """

    def __init__(
        self,
        ack: Callable[[int, int, R | None], object] = _ack_itself,  # type: ignore[assignment]
        keep: Callable[[R], bool] = _keep_all,
    ) -> None:
        self._ack, self._keep = ack, keep
        # partition -> its records in hand; a partition's records arrive in offset order
        self._by_partition: dict[int, _Partition[R]] = {}

    def track(self, partition: int, offset: int, record: R) -> Callable[[], None]:
        """Take a record in hand; the callable says its work has settled (once is enough)."""
        held = self._by_partition.get(partition)
        if held is None:
            held = self._by_partition[partition] = _Partition(self._keep)
        held.take(offset, record)
        ack = self._ack

        def settled() -> None:
            i = held.index(offset)
            if i is None:  # acked already, or its partition went to another worker (forget)
                return
            held.settle(i, partition, ack)

        return settled

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions that moved away: their records are not acked here (the new owner reads
        them again from the committed offset)."""
        for p in partitions:
            held = self._by_partition.pop(p, None)
            if held is not None:
                held.clear()

    def in_hand(self) -> int:
        """Records taken and not acked yet, over every partition."""
        return sum(len(held) for held in self._by_partition.values())
