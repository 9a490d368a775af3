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

from bisect import bisect_left
from collections import deque
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


class _Partition(Generic[R]):
    """One partition's records in hand, in offset order, and which of them have settled.

    Three deques rather than an entry object per record (or a set of the settled offsets,
    ~100 B each): while a partner is down a partition holds every record read since the first
    one it is owed, for as long as it is down, so what each costs here is what the outage
    costs (docs/streams.md, "Acks wait in offset order")."""

    __slots__ = ("offsets", "records", "settled")

    def __init__(self) -> None:
        self.offsets: deque[int] = deque()  # ascending
        # the record of the offset at the same index (None: let go once settled, ``keep``)
        self.records: deque[R | None] = deque()
        self.settled: deque[bool] = deque()  # whether its work has settled, at the same index

    def take(self, offset: int, record: R) -> None:
        if not self.offsets or offset > self.offsets[-1]:  # the usual case: the next offset
            self.offsets.append(offset)
            self.records.append(record)
            self.settled.append(False)
            return
        i = bisect_left(self.offsets, offset)  # read again: in its place, not settled
        if self.offsets[i] == offset:
            self.records[i] = record
            self.settled[i] = False
        else:
            self.offsets.insert(i, offset)
            self.records.insert(i, record)
            self.settled.insert(i, False)

    def index(self, offset: int) -> int | None:
        """Where ``offset`` is in hand, if it is (offsets leave from the front only)."""
        offsets = self.offsets
        if not offsets or offset < offsets[0] or offset > offsets[-1]:
            return None
        # a record settles most often near the end (just read) or the front (long owed)
        i = len(offsets) - 1 if offset == offsets[-1] else bisect_left(offsets, offset)
        return i if offsets[i] == offset else None

    def clear(self) -> None:
        self.offsets.clear()
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
            offsets, records, done = held.offsets, held.records, held.settled
            done[i] = True
            if i > 0:  # held behind an earlier record still in hand
                kept = records[i]
                if kept is not None and not keep(kept):
                    records[i] = None
                return
            while done and done[0]:
                done.popleft()
                ack(partition, offsets.popleft(), records.popleft())

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
        return sum(len(held.records) for held in self._by_partition.values())
