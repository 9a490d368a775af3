"""The garbage collector tuned for a process that keeps many vehicle states."""

from __future__ import annotations

import gc

# Full collections: examined after this many young-generation ones (CPython's default is 10).
FULL_GC_AFTER = 1_000


def settle_gc() -> None:
    """Garbage-collector settings for a process that keeps many vehicle states (the worker, a
    replay): call once, after start-up.

    Every live alert holds its zone as GeoJSON lists (about 35 tracked lists per zone), and a
    full collection walks all of them: with 10,000 units, 100-450 ms each, ~15 times a minute
    of traffic, which showed as a p99 ten times the median in zone builds and as stalls in the
    worker. The broker's own objects form no reference cycles (the model's Structs are not even
    tracked: ``gc=False``), so those walks find nothing; they now run a hundred times less often.
    What start-up made (imports, settings, the road network) is frozen out of them for good.
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_AFTER)
