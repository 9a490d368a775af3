"""OrderedAcks: Faust gets a partition's acks in offset order, whatever order work settles in."""

from __future__ import annotations

import sys
import tracemalloc
import weakref
from typing import Any
from unittest.mock import patch

from hypothesis import given
from hypothesis import strategies as st

from broker.streams import ordered_acks
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


def test_a_settled_record_held_behind_costs_no_int_object() -> None:
    """Held behind a record owed to a partner that is down, a settled record let go is kept as
    its offset only, a machine integer in an array: a deque of offsets kept the int object
    alive, 32 B of the ~60 B each held record cost (``bench.outage_memory``)."""
    acked: list[tuple[int, int]] = []
    acks = OrderedAcks(keep=lambda record: False, ack=lambda p, o, r: acked.append((p, o)))
    offset = int("1000000000007")  # an int object of its own, as a message's offset
    owed = acks.track(0, offset - 1, Record(acked, 0, offset - 1))
    before = sys.getrefcount(offset)
    settled = acks.track(0, offset, Record(acked, 0, offset))
    settled()
    del settled  # the fan-out lets go of it once called
    assert sys.getrefcount(offset) == before and acks.in_hand() == 2
    owed()
    assert acked == [(0, offset - 1), (0, offset)]


class Model:
    """What OrderedAcks promises, the slow way: per partition a dict offset -> settled."""

    def __init__(self) -> None:
        self.held: dict[int, dict[int, bool]] = {}
        self.acked: list[tuple[int, int]] = []
        self.forgotten = {0: 0, 1: 0}  # times each partition was

    def track(self, p: int, o: int) -> int:
        self.held.setdefault(p, {})[o] = False
        return self.forgotten[p]

    def forget(self, p: int) -> None:
        self.held.pop(p, None)
        self.forgotten[p] += 1

    def settle(self, p: int, o: int, since: int) -> None:
        """A settle of ``o``, read when ``p`` had been forgotten ``since`` times: none if it
        was forgotten since (its partition moved away after it was read)."""
        held = self.held.get(p, {})
        if o not in held or since != self.forgotten[p]:
            return
        held[o] = True
        while held and held[first := min(held)]:
            del held[first]
            self.acked.append((p, first))


# (what, partition, offset): read the next offset (skipping some: a gap), read one again,
# settle one that was read, forget a partition
_steps = st.lists(st.tuples(st.sampled_from(["next", "again", "settle", "settle", "forget"]),
                            st.integers(0, 1), st.integers(0, 5)), max_size=120)


# which settled records are kept (their record acked) rather than let go (acked as None, and
# merged into runs of offsets): all (the default), none (the fan-out's when the ``feed-table``
# agent keeps up), or some (those of even offsets: a ``feed-table`` agent lagging behind)
_keeps = st.sampled_from(["all", "none", "even"])


@given(steps=_steps, keeping=_keeps)
def test_any_reads_settles_and_forgets_ack_as_the_plain_model_does(
    steps: list[tuple[str, int, int]], keeping: str,
) -> None:
    """Gaps, offsets read again (in hand, acked already, or inside a run of settled ones),
    settles in any order, twice, partitions forgotten: the acks and what is in hand are the
    model's. Past a few thousand entries the acked front is cut off and settled records are
    merged into runs (``CUT_MIN``), lowered here so that they are."""
    with patch.object(ordered_acks, "CUT_MIN", 2):
        _run_against_the_model(steps, keeping)


def _run_against_the_model(steps: list[tuple[str, int, int]], keeping: str = "all") -> None:
    acked: list[tuple[int, int]] = []
    if keeping == "all":
        acks: OrderedAcks[Any] = OrderedAcks()
    else:
        acks = OrderedAcks(ack=lambda p, o, r: acked.append((p, o)),
                           keep=lambda r: keeping == "even" and r.at[1] % 2 == 0)
    model = Model()
    next_offset = {0: 100, 1: 100}
    read: dict[int, list[int]] = {0: [], 1: []}
    settles: list[tuple[int, int, int, Any]] = []
    for what, p, n in steps:
        if what == "next":
            o = next_offset[p] + n // 4  # now and then a gap
            next_offset[p] = o + 1
        elif what == "again" and read[p]:
            o = read[p][-1 - n % len(read[p])]
        elif what == "settle" and settles:
            q, o, since, done = settles[-1 - (n * 7 + p) % len(settles)]
            done()
            model.settle(q, o, since)
            assert acked == model.acked
            continue
        elif what == "forget":
            acks.forget([p])
            model.forget(p)
            continue
        else:
            continue
        settles.append((p, o, model.track(p, o), acks.track(p, o, Record(acked, p, o))))
        read[p].append(o)
    assert acked == model.acked
    assert acks.in_hand() == sum(len(h) for h in model.held.values())


def test_the_acked_front_cut_off_over_a_gap_keeps_the_rest_in_step() -> None:
    """A cut of the acked front (``CUT_MIN`` lowered so that three acks make one) leaves the
    offsets, records and settled flags in step: the later records ack in order, past a gap."""
    acked: list[int] = []
    acks: OrderedAcks[None] = OrderedAcks(ack=lambda p, o, r: acked.append(o),
                                          keep=lambda r: False)
    with patch.object(ordered_acks, "CUT_MIN", 2):
        done = {o: acks.track(0, o, None) for o in (100, 101, 102, 104, 105)}  # 103 missing
        for o in (100, 101, 102):
            done[o]()
        assert acked == [100, 101, 102] and acks.in_hand() == 2
        done[105]()  # held behind 104
        assert acked == [100, 101, 102] and acks.in_hand() == 2
        done[104]()
    assert acked == [100, 101, 102, 104, 105] and acks.in_hand() == 0


def test_a_settled_record_held_behind_and_read_again_must_settle_again() -> None:
    """A record settled but held behind an earlier one, then read again (a seek back): its
    new reading is not settled, so the earlier record's ack stops before it."""
    acked: list[int] = []
    acks: OrderedAcks[None] = OrderedAcks(ack=lambda p, o, r: acked.append(o),
                                          keep=lambda r: False)
    first, second = acks.track(0, 10, None), acks.track(0, 11, None)
    second()  # held behind 10
    again = acks.track(0, 11, None)
    first()
    assert acked == [10] and acks.in_hand() == 1
    again()
    assert acked == [10, 11] and acks.in_hand() == 0


def test_records_settled_behind_one_owed_cost_nothing_more_however_many() -> None:
    """A partner down: one record owed, every later one settled and let go at once. What the
    partition holds stops growing (runs of offsets, not an entry per record): 80,000 more
    records held grow the heap by a few KB, not the ~1.7 MB (21 B each) of an entry per
    record. Then the owed one settles and every record is acked, in order."""
    acked: list[int] = []
    acks: OrderedAcks[None] = OrderedAcks(ack=lambda p, o, r: acked.append(o),
                                          keep=lambda r: False)
    owed = acks.track(0, 10**9, None)

    def read(offsets: range) -> None:
        for o in offsets:
            acks.track(0, o, None)()

    read(range(10**9 + 1, 10**9 + 20_001))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        read(range(10**9 + 20_001, 10**9 + 100_001))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert acks.in_hand() == 100_001 and acked == []
    assert grown < 100_000, f"{grown} B for 80,000 records held"
    owed()
    assert acked == list(range(10**9, 10**9 + 100_001)) and acks.in_hand() == 0


def test_a_record_read_again_inside_a_run_of_settled_ones_must_settle_again() -> None:
    """Settled records merged into a run (``CUT_MIN`` lowered so that they are), one of them
    read again (a seek back): the run is cut around it, the acks stop before it until it
    settles again, and the rest of the run follows it."""
    acked: list[int] = []
    acks: OrderedAcks[None] = OrderedAcks(ack=lambda p, o, r: acked.append(o),
                                          keep=lambda r: False)
    with patch.object(ordered_acks, "CUT_MIN", 2):
        first = acks.track(0, 10, None)
        for o in range(11, 20):
            acks.track(0, o, None)()  # merged into runs as later records come
        acks.track(0, 20, None)()
        again = acks.track(0, 15, None)
        assert acks.in_hand() == 11
        first()
        assert acked == [10, 11, 12, 13, 14] and acks.in_hand() == 6
        again()
    assert acked == list(range(10, 21)) and acks.in_hand() == 0


def test_settled_records_either_side_of_a_gap_stay_apart_in_their_runs() -> None:
    """Offsets not read (a gap: compaction, a transaction's marker) are never acked: settled
    records on either side of one are merged into two runs, not one across it."""
    acked: list[int] = []
    acks: OrderedAcks[None] = OrderedAcks(ack=lambda p, o, r: acked.append(o),
                                          keep=lambda r: False)
    with patch.object(ordered_acks, "CUT_MIN", 2):
        owed = acks.track(0, 10, None)
        for o in (11, 12, 14, 15, 16, 17):  # 13 missing
            acks.track(0, o, None)()
        owed()
    assert acked == [10, 11, 12, 14, 15, 16, 17] and acks.in_hand() == 0


def test_a_record_kept_while_another_stream_acks_it_is_let_go_once_that_one_has() -> None:
    """A settled record kept for the other agent of its topic (``keep``: the ``feed-table``
    agent lagging) is let go at the next merge once it needs keeping no longer, so records
    that stream acked late do not stay held for the rest of the outage."""
    acked: list[tuple[int, int]] = []
    lagging = True
    acks = OrderedAcks(ack=lambda p, o, r: acked.append((p, o)), keep=lambda r: lagging)
    with patch.object(ordered_acks, "CUT_MIN", 2):
        owed = acks.track(0, 0, Record(acked, 0, 0))
        early = [Record(acked, 0, o) for o in range(1, 6)]
        for o, record in enumerate(early, 1):
            acks.track(0, o, record)()
        seen = [weakref.ref(r) for r in early]
        del early, record
        lagging = False
        for o in range(6, 12):
            acks.track(0, o, Record(acked, 0, o))()
        assert [r() for r in seen] == [None] * 5  # let go: only their offsets are held
        owed()
    assert acked == [(0, o) for o in range(12)]


def test_a_settle_from_inside_an_ack_of_a_run_keeps_the_acks_in_offset_order() -> None:
    """An ``ack`` that calls back in, settling the record after a run (``CUT_MIN`` lowered
    so that runs form) or forgetting the partition, while the run's offsets are being acked:
    the rest of the run is acked first, in order; after a forget, nothing more is."""
    acked: list[int] = []
    hooks: dict[int, Any] = {}

    def ack(p: int, o: int, r: object) -> None:
        acked.append(o)
        if (hook := hooks.pop(o, None)) is not None:
            hook()

    acks: OrderedAcks[None] = OrderedAcks(ack, keep=lambda r: False)
    with patch.object(ordered_acks, "CUT_MIN", 2):
        owed = acks.track(0, 10, None)
        for o in range(11, 20):
            acks.track(0, o, None)()
        after_the_run = acks.track(0, 20, None)
        for o in range(21, 26):
            acks.track(0, o, None)()
        acks.track(0, 26, None)
        hooks[11] = after_the_run  # acking 11, of the run 11-19, settles 20
        owed()
    assert acked == list(range(10, 26)) and acks.in_hand() == 1

    acked.clear()
    acks = OrderedAcks(ack, keep=lambda r: False)
    with patch.object(ordered_acks, "CUT_MIN", 2):
        owed = acks.track(0, 10, None)
        for o in range(11, 20):
            acks.track(0, o, None)()
        acks.track(0, 20, None)
        hooks[12] = lambda: acks.forget([0])  # the partition moves away while 12 is acked
        owed()
    assert acked == [10, 11, 12] and acks.in_hand() == 0
