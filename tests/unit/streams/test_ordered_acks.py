"""OrderedAcks: Faust gets a partition's acks in offset order, whatever order work settles in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.streams.ordered_acks import OrderedAcks


class Record:
    def __init__(self, log: list[tuple[int, int]], partition: int, offset: int) -> None:
        self.log, self.at = log, (partition, offset)

    def ack(self) -> None:
        self.log.append(self.at)


def test_a_record_still_in_hand_holds_back_the_acks_of_later_ones() -> None:
    """The fan-out case: record 10 waits on a partner that is down, 11 and 12 settle."""
    acked: list[tuple[int, int]] = []
    acks = OrderedAcks()
    done = {o: acks.track(0, o, Record(acked, 0, o)) for o in (10, 11, 12)}
    other = acks.track(1, 5, Record(acked, 1, 5))
    done[11]()
    done[12]()
    other()  # another partition is not held back
    assert acked == [(1, 5)] and acks.in_hand() == 3
    done[10]()
    assert acked == [(1, 5), (0, 10), (0, 11), (0, 12)] and acks.in_hand() == 0
    done[10]()  # settling twice acks nothing twice
    assert len(acked) == 4


def test_a_partition_that_moved_away_is_not_acked_here() -> None:
    acked: list[tuple[int, int]] = []
    acks = OrderedAcks()
    first = acks.track(0, 1, Record(acked, 0, 1))
    second = acks.track(0, 2, Record(acked, 0, 2))
    second()
    acks.forget([0])
    first()  # its deliveries were stopped; the new owner reads 1 and 2 again
    assert acked == [] and acks.in_hand() == 0
    again = acks.track(0, 1, Record(acked, 0, 1))  # assigned back: read from the commit
    again()
    assert acked == [(0, 1)]


@given(
    counts=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    data=st.data(),
)
def test_acks_are_always_a_prefix_in_offset_order(counts: list[int], data: st.DataObject) -> None:
    acked: list[tuple[int, int]] = []
    acks = OrderedAcks()
    done = {
        (p, o): acks.track(p, o, Record(acked, p, o))
        for p, n in enumerate(counts) for o in range(100, 100 + n)
    }  # fmt: skip
    order = data.draw(st.permutations(sorted(done)))
    settled: set[tuple[int, int]] = set()
    for at in order:
        done[at]()
        settled.add(at)
        for p, n in enumerate(counts):
            mine = [o for q, o in acked if q == p]
            # what is acked is exactly the settled run from the partition's first offset
            run = 0
            while (p, 100 + run) in settled and run < n:
                run += 1
            assert mine == list(range(100, 100 + run))
    assert sorted(acked) == sorted(done) and acks.in_hand() == 0


def test_a_record_read_again_takes_its_place_unsettled() -> None:
    """An offset in hand read again (its new record replaces the old, and must settle again);
    one below the last in hand goes in its place in offset order, not at the end."""
    acked: list[tuple[int, int]] = []
    acks = OrderedAcks()
    first = acks.track(0, 10, Record(acked, 0, 10))
    later = acks.track(0, 12, Record(acked, 0, 12))
    first()  # 10 acked: 12 is the first in hand
    again = acks.track(0, 12, Record(acked, 0, 1200))  # 12 read again, unsettled
    between = acks.track(0, 11, Record(acked, 0, 11))
    later()  # 12 settles (its newer record), 11 still in hand
    assert acked == [(0, 10)] and acks.in_hand() == 2
    between()
    assert acked == [(0, 10), (0, 11), (0, 1200)] and acks.in_hand() == 0
    again()  # acked already
    assert len(acked) == 3
