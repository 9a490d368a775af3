"""In-memory bookkeeping of one worker: clocks, live-alert index, offsets, metrics.

Nothing here is durable: it is rebuilt from the tables after a rebalance or restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from kafka.partitioner.default import murmur2

from broker.settings import EngineConfig
from broker.streams.clock import PartitionClocks
from broker.streams.metrics import Metrics
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames


def partition_for(key: bytes, partitions: int) -> int:
    """The default (Java / kafka-python / aiokafka) partitioner: murmur2 of the key bytes."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class Runtime:
    """Per-worker state shared by the agents, the tick timer and the web views."""

    settings: StreamSettings
    names: TopicNames
    metrics: Metrics = field(default_factory=Metrics)
    clocks: PartitionClocks = field(default_factory=PartitionClocks)
    wall: Callable[[], float] = time.monotonic  # monotonic seconds; only the tick clock uses it
    # vehicles with a live alert, per partition: what the tick timer has to look at
    live: dict[int, set[bytes]] = field(default_factory=dict)
    # next offset to process, per (topic, partition), from the messages this worker handled
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)
    owned: frozenset[int] = frozenset()  # partitions of the input topics this worker owns
    index_built_for: frozenset[int] | None = None  # owned set the live index was built for
    assigned_once: bool = False
    partial: set[int] = field(default_factory=set)  # only one of the two inputs assigned

    @property
    def engine(self) -> EngineConfig:
        """The engine thresholds."""
        return self.settings.engine

    def processed(self, topic: str, partition: int, offset: int, ts: datetime | None) -> None:
        """Record one handled message (offset for lag, event time for the partition clock)."""
        self.next_offset[(topic, partition)] = offset + 1
        if ts is not None:
            self.clocks.observe(partition, ts, self.wall())

    def mark_live(self, partition: int, key: bytes, live: bool) -> None:
        """Keep the live-alert index in step with a vehicle's new state."""
        if live:
            self.live.setdefault(partition, set()).add(key)
        else:
            self.live.get(partition, set()).discard(key)

    def set_owned(self, partitions: Iterable[int]) -> None:
        """Take in the current assignment; forget what moved away."""
        owned = frozenset(partitions)
        gone = set(self.owned - owned)
        self.clocks.forget(gone)
        for p in gone:
            self.live.pop(p, None)
        self.next_offset = {tp: o for tp, o in self.next_offset.items() if tp[1] in owned}
        self.owned = owned
        self.assigned_once = True

    def forget_progress(self) -> None:
        """Forget what processed-but-unflushed messages taught us (a rebalance dropped them and
        Faust delivers them again): clocks, offsets and the live index are rebuilt from the
        table at the next tick and from the messages as they come again."""
        self.clocks.forget(set(self.clocks.partitions()))
        self.next_offset = {}
        self.live = {}
        self.index_built_for = None

    def lag(self, topic: str, partition: int, highwater: int | None) -> int | None:
        """Messages behind the high watermark, or None when either end is unknown."""
        nxt = self.next_offset.get((topic, partition))
        if highwater is None or nxt is None:
            return None
        return max(0, highwater - nxt)
