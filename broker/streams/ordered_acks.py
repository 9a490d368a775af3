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

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


class Ackable(Protocol):
    """A record in hand (a Faust ``Event``): acked once its work has settled."""

    def ack(self) -> object: ...


@dataclass(slots=True)
class _Held:
    record: Ackable
    settled: bool = False


class OrderedAcks:
    """Per partition, the records in hand in offset order, each settled or not.

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

    def __init__(self) -> None:
        # partition -> offset -> record; a partition's records arrive in offset order
        self._by_partition: dict[int, OrderedDict[int, _Held]] = {}

    def track(self, partition: int, offset: int, record: Ackable) -> Callable[[], None]:
        """Take a record in hand; the callable says its work has settled (once is enough)."""
        held = self._by_partition.setdefault(partition, OrderedDict())
        held[offset] = _Held(record)

        def settled() -> None:
            entry = held.get(offset)
            if entry is None:  # acked already, or its partition went to another worker
                return
            entry.settled = True
            while held:
                first = next(iter(held.values()))
                if not first.settled:
                    return
                held.popitem(last=False)
                first.record.ack()

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
