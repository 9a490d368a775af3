"""The worker's notion of "now" for ticks: event time per partition, advanced by the wall clock
only once the partition is caught up.

Why: the engine works in event time (a fix's ``ts``). A replay at ``--max-speed`` pushes an hour
of fixes through in seconds, so the wall clock says nothing about event time there; but in live
operation a unit whose fixes stop must still be cancelled ~``stale_timeout_s`` later, even when
nothing else arrives on its partition. So, per partition (a vehicle's fixes all live on one):

    now = max_event_ts                              while the partition has a backlog (lag > 0)
    now = max_event_ts + (wall - wall_when_seen)    once it is caught up

where ``wall_when_seen`` is the monotonic time at which ``max_event_ts`` last advanced. During a
fast replay the partition keeps being fed, so ``now`` stays at the newest event time and the ticks
cancel exactly what the in-process replay's event-time ticks cancel (the engine stamps a stale
cancel at last fix + timeout, not at ``now``, so tick timing cannot change an event). When the
fixes stop, the wall clock takes over and the cancel follows ~30 s later. Clocks are per
partition, never per worker: another partition may be read far ahead (two workers, uneven
fetches), and its time must not make this partition's units look stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(slots=True)
class PartitionClock:
    """Event-time clock of one partition (mutable: owned by one worker's event loop)."""

    event_ts: datetime | None = None  # newest event time seen on the partition
    wall_seen_s: float = 0.0  # monotonic seconds when event_ts last advanced

    def observe(self, ts: datetime, wall_s: float) -> None:
        """Take in the event time of a message just processed (older times don't move it)."""
        if self.event_ts is None or ts > self.event_ts:
            self.event_ts = ts
            self.wall_seen_s = wall_s

    def now(self, wall_s: float, *, caught_up: bool) -> datetime | None:
        """The tick's "now", or None when the partition has no time yet (nothing to tick)."""
        if self.event_ts is None:
            return None
        if not caught_up:
            return self.event_ts
        return self.event_ts + timedelta(seconds=max(0.0, wall_s - self.wall_seen_s))


class PartitionClocks:
    """Clocks of the partitions a worker owns, keyed by partition number.

    Positions and routes are co-partitioned, so one clock serves partition ``p`` of both.
    """

    def __init__(self) -> None:
        self._clocks: dict[int, PartitionClock] = {}

    def observe(self, partition: int, ts: datetime, wall_s: float) -> None:
        """Take in one processed message's event time."""
        self._clocks.setdefault(partition, PartitionClock()).observe(ts, wall_s)

    def now(self, partition: int, wall_s: float, *, caught_up: bool) -> datetime | None:
        """Tick time of a partition (None before any time is known)."""
        clock = self._clocks.get(partition)
        return None if clock is None else clock.now(wall_s, caught_up=caught_up)

    def event_time(self, partition: int) -> datetime | None:
        """Newest event time seen on a partition (the codec's future-timestamp reference)."""
        clock = self._clocks.get(partition)
        return None if clock is None else clock.event_ts

    def forget(self, partitions: set[int]) -> None:
        """Drop clocks of partitions this worker no longer owns."""
        for p in partitions:
            self._clocks.pop(p, None)

    def partitions(self) -> list[int]:
        """Partitions that have a clock."""
        return sorted(self._clocks)
