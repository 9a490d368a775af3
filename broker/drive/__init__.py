"""The one driver loop: decode by topic, step the engine, keep the states, tick the live units.

Every shell runs the engine through a :class:`Driver`: the Faust agent (one per partition it
owns, over its write-behind state cache), the in-process replay, the simulator and the
benchmarks. A bug fixed here is fixed for all of them, and "the replay is the worker's twin"
rests on the same lines of code, not on copies.

Time: the engine works in event time. ``received_at`` (what a fix's future timestamp is judged
against) is the caller's: the worker's partition clock, the simulator's clock, the recording's
clock of a replay (``broker.replay.received_times``); by default the newest event time this
driver has seen. With ``tick_every_s`` the driver
also ticks its live units whenever its event clock has moved on that far (the replay and the
benchmarks); the worker and the simulator move its clock themselves (:meth:`Driver.pass_time`:
the statuses due restated, then the live units ticked).

Failures: the engine raising on a message, or on a unit's tick, goes to the driver's
:class:`~broker.failure.FailurePolicy` (skip with a dead-letter record, or stop); the default
policy raises, as an in-process tool should. A unit whose tick is skipped is *quarantined*
(:meth:`Driver.quarantine`): its live alert is cancelled and its ticks are skipped until a new
message of the unit comes, so one bug on one state makes one dead letter, not one a tick. So is
a unit whose message is skipped when a tick was due by its time (:meth:`Driver.fence`: the
engine's catch-up inside ``engine.step`` may be what raised, and would raise on every message).

One concern a module; :class:`Driver` brings them together, and every name a caller needs is
imported from here (``from broker.drive import Driver, POSITIONS``):

- ``base``: the states in their store, the live and pending indexes, the event clock, one
  engine step (:class:`~broker.drive.base.DriverBase`, which holds ``Driver.__init__``);
- ``wire``: the topics, and a message decoded by its topic (``Decoding``);
- ``statuses``: a unit's CAD status kept, and restated when due, in time order with its ticks
  (``Restating``);
- ``ticking``: the event clock moved on, the live units ticked in runs, the drain (``Ticking``);
- ``quarantine``: a unit whose tick or catch-up raised, set aside (``Quarantining``);
- ``driver``: one message handled (:class:`Driver`: ``handle``, ``handle_many``);
- ``gc_settings``: the garbage collector tuned for a process of many states (``settle_gc``).
"""

from __future__ import annotations

from broker.drive.base import DictStore, Handled, StateStore
from broker.drive.driver import Driver, misrouted
from broker.drive.gc_settings import FULL_GC_AFTER, settle_gc
from broker.drive.ticking import DRAIN_PASSES, TICK_RUN
from broker.drive.wire import (
    ALERTS,
    AUDIT,
    CAD_STATUS,
    DELIVERY_DLQ,
    DLQ,
    INPUTS,
    POSITIONS,
    ROUTES,
    TRACCAR,
)

__all__ = [
    "ALERTS",
    "AUDIT",
    "CAD_STATUS",
    "DELIVERY_DLQ",
    "DLQ",
    "DRAIN_PASSES",
    "FULL_GC_AFTER",
    "INPUTS",
    "POSITIONS",
    "ROUTES",
    "TICK_RUN",
    "TRACCAR",
    "DictStore",
    "Driver",
    "Handled",
    "StateStore",
    "misrouted",
    "settle_gc",
]
