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
from bisect import bisect_left
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
# as were acked since the last: amortised O(1) per ack)
CUT_MIN = 1024


class _Partition(Generic[R]):
    """One partition's records in hand, in offset order, and which of them have settled.

    Three arrays rather than an entry object per record (or a set of the settled offsets,
    ~100 B each): while a partner is down a partition holds every record read since the first
    one it is owed, for as long as it is down, so what each costs here is what the outage
    costs (docs/streams.md, "Acks wait in offset order"): the offset as a machine integer
    (8 B; a deque kept an int object, 32 B more once the record was let go), a reference
    (8 B), a byte. Entries before ``head`` are acked (cut off in bulk: :data:`CUT_MIN`).

    An offset is found in O(1) where the offsets in hand are contiguous (its index is its
    distance from the first), else by bisection over the array, O(log n). Deques, which the
    acked entries left from the front, were indexed in O(n) in the middle: a bisection among
    1 M records held cost ~600 us a settle (30-60 us at 100 k), a recovery that settled them
    ~5 minutes of CPU (``python -m bench.settle_cost``: now ~0.5 us, ~1 us with gaps, ~1-2 s)."""

    __slots__ = ("head", "offsets", "records", "settled")

    def __init__(self) -> None:
        self.head = 0  # the first entry in hand; those before it are acked
        self.offsets = array("q")  # ascending
        # the record of the offset at the same index (None: let go once settled, ``keep``;
        # or acked)
        self.records: list[R | None] = []
        self.settled = bytearray()  # 1 where its work has settled, at the same index

    def __len__(self) -> int:
        return len(self.offsets) - self.head

    def take(self, offset: int, record: R) -> None:
        offsets = self.offsets
        if len(offsets) == self.head or offset > offsets[-1]:  # the usual: the next offset
            offsets.append(offset)
            self.records.append(record)
            self.settled.append(0)
            return
        i = bisect_left(offsets, offset, self.head)  # read again: in its place, not settled
        if i < len(offsets) and offsets[i] == offset:
            self.records[i] = record
            self.settled[i] = 0
        else:
            offsets.insert(i, offset)
            self.records.insert(i, record)
            self.settled.insert(i, 0)

    def index(self, offset: int) -> int | None:
        """Where ``offset`` is in hand, if it is (offsets leave from the front only)."""
        offsets, head = self.offsets, self.head
        last = len(offsets) - 1
        if last < head or offset < (first := offsets[head]) or offset > offsets[last]:
            return None
        # no gap up to it: at its distance from the first (offsets are distinct, ascending,
        # so it is never further); a gap (offsets not read, or acked and read again): bisect
        i = min(head + (offset - first), last)
        if offsets[i] != offset:
            i = bisect_left(offsets, offset, head, i)
        return i if offsets[i] == offset else None

    def settle(self, i: int, partition: int, ack: Callable[[int, int, R | None], object],
               keep: Callable[[R], bool]) -> None:
        """The entry ``i`` has settled: acked with the settled run it starts, if it is the
        first in hand; else held, its record let go unless ``keep(record)``."""
        records, done = self.records, self.settled
        done[i] = 1
        if i > self.head:  # held behind an earlier record still in hand
            kept = records[i]
            if kept is not None and not keep(kept):
                records[i] = None
            return
        offsets = self.offsets
        # the head read again after each ack, which may call back into here
        while (i := self.head) < len(offsets) and done[i]:
            record, records[i] = records[i], None
            self.head = i + 1
            ack(partition, offsets[i], record)
        self._cut()

    def _cut(self) -> None:
        """Drop the acked entries from the front once they are many (all, once none is in
        hand)."""
        head = self.head
        if head == len(self.offsets):
            self.clear()
        elif head >= CUT_MIN and head >= len(self.offsets) - head:
            del self.offsets[:head]
            del self.records[:head]
            del self.settled[:head]
            self.head = 0

    def clear(self) -> None:
        self.head = 0
        del self.offsets[:]
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
            held = self._by_partition[partition] = _Partition()
        held.take(offset, record)
        ack, keep = self._ack, self._keep

        def settled() -> None:
            i = held.index(offset)
            if i is None:  # acked already, or its partition went to another worker (forget)
                return
            held.settle(i, partition, ack, keep)

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
