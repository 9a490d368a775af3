"""What a settle costs ``OrderedAcks`` with many records held (a partner outage), in process.

``python -m bench.settle_cost [--held N ...]``: one partition holds ``N`` records behind its
first (unsettled, as behind a cancel owed to a partner that is down); then 1,000 records in
the middle settle (each held: nothing is acked), then the rest, last first, and the first
(the recovery: all acked in order). Twice: offsets contiguous, and every other offset missing
(a transactional producer's commit markers: the lookup bisects). Records let go once settled
(``keep`` False), as the fan-out's are when the ``feed-table`` agent keeps up. Printed: the
time of one settle in the middle (µs) and of the whole recovery (s). No Kafka.
"""

from __future__ import annotations

import argparse
import time

from broker.streams.ordered_acks import OrderedAcks

BASE = 1_000_000_000  # an offset past the small ints CPython caches, as a topic's are soon
MIDDLE = 1_000


def run(held: int, step: int) -> tuple[float, float]:
    """(µs per settle in the middle, s for the recovery) with ``held`` records, offsets
    ``step`` apart."""
    acks: OrderedAcks[None] = OrderedAcks(ack=lambda p, o, r: None, keep=lambda r: False)
    done = [acks.track(0, BASE + i * step, None) for i in range(held)]
    middle = range(held // 2 - MIDDLE // 2, held // 2 + MIDDLE // 2)
    started = time.perf_counter()
    for i in middle:
        done[i]()
    per_settle = (time.perf_counter() - started) / len(middle)
    started = time.perf_counter()
    for i in range(held - 1, -1, -1):
        done[i]()
    recovery = time.perf_counter() - started
    assert acks.in_hand() == 0
    return per_settle * 1e6, recovery


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--held", type=int, nargs="+", default=[100_000, 1_000_000])
    args = p.parse_args()
    for held in args.held:
        for step, offsets in ((1, "contiguous"), (2, "every other")):
            per_settle, recovery = run(held, step)
            print(f"{held:>9,} held, offsets {offsets:<11}: a settle in the middle "
                  f"{per_settle:8.2f} µs, the recovery {recovery:7.2f} s")


if __name__ == "__main__":
    main()
