"""The input partitions' backlog: whether a partition is caught up, and the consumer-lag gauge.

The tick's clock of a partition runs on the wall clock only once nothing is waiting on either
input topic there (:meth:`InputLag.caught_up`); before that it holds at the event time of the
newest record read, so a backlog's units are not cancelled as stale ahead of their own fixes.
"""

from __future__ import annotations

import logging

import faust

from broker.streams.runtime import Runtime
from broker.streams.topics import TopicNames

log = logging.getLogger(__name__)

# an input partition whose high watermark is still not fetched after this long (its leader
# offline, say) holds its clock at event time, as a backlog might be there: logged, once
HIGHWATER_UNKNOWN_WARN_S = 60.0


class InputLag:
    """One worker's view of its input partitions' high watermarks against what it processed."""

    def __init__(self, app: faust.App, names: TopicNames, rt: Runtime) -> None:
        self.app, self.names, self.rt = app, names, rt
        # input partitions whose high watermark is not fetched yet: since when, and logged yet
        # (each stretch within one assignment: a rebalance starts them again, at this count)
        self.unknown: dict[tuple[str, int], tuple[float, bool]] = {}
        self.rebalance = app.rebalancing_count
        # input partitions (topic, partition) the lag gauge shows a figure for
        self.shown: set[tuple[str, int]] = set()

    def caught_up(self, partition: int) -> bool:
        """No backlog on either input topic at this partition (:meth:`Runtime.caught_up`)."""
        rt = self.rt
        return all(rt.caught_up(topic, partition, self.highwater(topic, partition))
                   for topic in self.names.inputs)

    def highwater(self, topic: str, partition: int) -> int | None:
        """The partition's high watermark, once the consumer has fetched it."""
        try:
            hw = self.app.consumer.highwater(faust.types.TP(topic, partition))
        except Exception:  # consumer not started / partition not fetched yet
            return None
        return hw if isinstance(hw, int) else None

    def update(self) -> None:
        """The consumer-lag gauge of every input partition this worker owns, and a warning for
        one whose high watermark stays unknown (:meth:`missing`). A partition whose lag is not
        known now (its high watermark unknown) or that is no longer assigned has its figure
        removed: a stale one would show a lag that is not there (or hide one)."""
        inputs, gauge = self.names.inputs, self.rt.metrics.consumer_lag
        if self.app.rebalancing_count != self.rebalance:
            # a new assignment (the partition kept, or moved away and back, with no tick in
            # between): one still unknown is warned of again, once, its stretch counted from
            # when it was first seen unknown (restarting it would keep a partition unknown
            # through rebalances under a minute apart silent for good)
            self.rebalance = self.app.rebalancing_count
            self.unknown = {tp: (since, False) for tp, (since, _) in self.unknown.items()}
        unknown = {}
        shown: set[tuple[str, int]] = set()
        for tp in self.app.consumer.assignment():
            if tp.topic not in inputs:
                continue
            hw = self.highwater(tp.topic, tp.partition)
            if hw is None:
                unknown[(tp.topic, tp.partition)] = self.missing(tp.topic, tp.partition)
                continue
            lag = self.rt.lag(tp.topic, tp.partition, hw)
            if lag is not None:
                gauge.labels(tp.topic, str(tp.partition)).set(lag)
                shown.add((tp.topic, tp.partition))
        for topic, partition in self.shown - shown:
            gauge.remove(topic, str(partition))
        self.unknown = unknown
        self.shown = shown

    def missing(self, topic: str, partition: int) -> tuple[float, bool]:
        """Since when a partition's high watermark is unknown, and whether that was logged: a
        partition never fetched (its leader offline, say) holds its clock at event time, as a
        backlog may be there; past ``HIGHWATER_UNKNOWN_WARN_S`` a warning says so, once."""
        now = self.rt.wall()
        since, logged = self.unknown.get((topic, partition), (now, False))
        if not logged and now - since >= HIGHWATER_UNKNOWN_WARN_S:
            log.warning("%s[%d]: high watermark not fetched for %.0f s: its partition's clock "
                        "waits at event time (no lag known)", topic, partition, now - since)
            logged = True
        return since, logged
