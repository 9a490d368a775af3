"""What every part of the driver works on: the states in their store, the indexes of the live
units and of the statuses awaiting their restatement, the event clock, and one engine step.

:class:`DriverBase` holds them (its ``__init__`` is :class:`~broker.drive.Driver`'s); the
concerns built on it (decoding, statuses, ticks, quarantine) are its subclasses, which
``Driver`` brings together.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from broker import codec, engine, join
from broker.agencies import Agencies
from broker.failure import RAISE, FailurePolicy
from broker.geo.memo import GeoMemo
from broker.geo.zone_batch import ZoneBatch
from broker.model import AlertEvent, Position, Rejection, Route, UnitStatus, VehicleState
from broker.settings import EngineConfig

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)


class StateStore(Protocol[K_contra]):
    """Where a driver keeps vehicle states: a dict, or the worker's write-behind table cache."""

    def get(self, key: K_contra, /) -> VehicleState | None: ...

    def put(self, key: K_contra, state: VehicleState, /) -> None: ...


class DictStore(dict[str, VehicleState]):
    """Vehicle states in a plain dict (replay, simulate, bench): ``put`` is ``__setitem__``."""

    put = dict.__setitem__


@dataclass(slots=True)
class Handled:
    """What one input message did: the message (or why it was refused) and its alert events.

    ``failed``: decoding it or the engine raised on it and the failure policy skipped it (a
    dead-letter record is on its way); ``state`` is the vehicle's new state when the engine
    took the message.
    """

    msg: Position | Route | UnitStatus | None = None
    rejection: Rejection | None = None
    state: VehicleState | None = None
    events: list[AlertEvent] = field(default_factory=list)
    failed: bool = False


class DriverBase(Generic[K]):
    """What the parts of a :class:`~broker.drive.Driver` share: its settings, the states in a
    store, the indexes a tick and a restatement look at, the event clock, one engine step.

    ``key`` turns a vehicle id into the store's key (the worker's table is keyed by bytes).
    """

    def __init__(
        self,
        cfg: EngineConfig,
        *,
        roads: RoadNetwork | None = None,
        memo: GeoMemo | None = None,
        store: StateStore[K] | None = None,
        key: Callable[[str], K] | None = None,
        tick_every_s: float | None = None,
        failures: FailurePolicy = RAISE,
        agencies: Agencies | None = None,
        noted: codec.Noted | None = None,
        repairs: bool = True,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        self.cfg = cfg
        self.roads = roads
        self.memo = memo if memo is not None else GeoMemo()
        self.store: StateStore[K] = store if store is not None else DictStore()  # type: ignore[assignment]
        self.key: Callable[[str], K] | None = key  # None: the vehicle id itself
        # bound once: this loop runs per message, and every attribute lookup shows
        self._get, self._put = self.store.get, self.store.put
        self._skew = timedelta(seconds=cfg.max_future_skew_s)
        # a fix this far behind the clock its unit's ticks run at is refused (Driver.late)
        self._late = timedelta(seconds=cfg.stale_timeout_s)
        self.tick_every_s = tick_every_s
        self.failures = failures
        self.agencies = agencies  # None: every unit is taken as it comes (no Traccar input)
        # told the field of each "no reading" of a fix it takes that was read as unknown (codec)
        self.noted = noted
        # repair a stored fix dated past a given clock before each message (see repair): off
        # for a driver whose states are all its own, judged against a clock that never goes
        # back (the replay's: no fix it took is dated past it), where it could find none
        self.repairs = repairs
        # the input partition of a vehicle id, for a driver whose messages come on partitions
        # (the worker's): a message given with another partition is refused (``misrouted``)
        self.partition_of = partition_of
        # vehicles with a live alert or a held dispatch alert (engine: dispatch_hold_s): what a
        # tick looks at
        self.live: set[K] = set()
        self.pending: set[K] = set()  # vehicles whose new status awaits its restatement
        # vehicles whose tick failed: not ticked again until a message of theirs comes
        self.quarantined: set[K] = set()
        self.clock: datetime | None = None  # newest event time handled
        # the time of a message just refused as past that clock (see _after_a_quiet_spell)
        self._ahead: datetime | None = None
        self._last_tick: datetime | None = None
        self._batch: ZoneBatch | None = None  # set while handle_many runs

    def _key(self, vehicle_id: str) -> K:
        return vehicle_id if self.key is None else self.key(vehicle_id)  # type: ignore[return-value]

    def step(self, msg: Position | Route) -> tuple[VehicleState, list[AlertEvent]]:
        """Apply an engine message (a merged position, a route) to its vehicle; keep the new
        state, index it if live."""
        k = self._key(msg.vehicle_id)
        return self._step_state(k, self._get(k), msg)

    def _step_state(
        self, k: K, state: VehicleState | None, msg: Position | Route
    ) -> tuple[VehicleState, list[AlertEvent]]:
        state, events = engine.step(
            state, msg, now=msg.ts, cfg=self.cfg, roads=self.roads, memo=self.memo,
            batch=self._batch,
        )
        self.keep(k, state)
        ts = msg.ts
        if self.clock is None or ts > self.clock:
            self.clock = ts
        return state, events

    def keep(self, k: K, state: VehicleState) -> None:
        """Store a vehicle's new state and index it (:meth:`mark`)."""
        self._put(k, state)
        self.mark(k, state)

    def mark(self, k: K, state: VehicleState) -> None:
        """Keep the live and pending indexes in step with a vehicle's state."""
        if state.alert is not None or state.dispatch_due is not None:
            self.live.add(k)
        else:
            self.live.discard(k)
        if state.cad is not None and join.restated(state, self.cfg) is not None:
            self.pending.add(k)
        else:
            self.pending.discard(k)

    @property
    def states(self) -> MutableMapping[K, VehicleState]:
        """The states, when the store is a mapping (replay, simulate, bench)."""
        assert isinstance(self.store, MutableMapping)
        return self.store
