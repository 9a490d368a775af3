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
benchmarks); the worker and the simulator call :meth:`Driver.tick` themselves.

Failures: the engine raising on a message, or on a unit's tick, goes to the driver's
:class:`~broker.failure.FailurePolicy` (skip with a dead-letter record, or stop); the default
policy raises, as an in-process tool should. A unit whose tick is skipped is *quarantined*
(:meth:`Driver.quarantine`): its live alert is cancelled and its ticks are skipped until a new
message of the unit comes, so one bug on one state makes one dead letter, not one a tick. So is
a unit whose message is skipped when a tick was due by its time (:meth:`Driver.fence`: the
engine's catch-up inside ``engine.step`` may be what raised, and would raise on every message).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from msgspec.structs import replace

from broker import codec, engine, join
from broker.agencies import Agencies
from broker.failure import RAISE, FailurePolicy
from broker.geo.memo import GeoMemo
from broker.geo.zoning import ZoneBatch
from broker.model import AlertEvent, Fix, Position, Rejection, Route, UnitStatus, VehicleState
from broker.settings import EngineConfig
from broker.traccar import decode_traccar

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

# The topics of the wire format, defined once (the worker prefixes them: broker.streams.topics).
POSITIONS = "avl.positions"  # AVL fixes, key = vehicle id
ROUTES = "cad.routes"  # CAD routes of responding units, same key, co-partitioned
CAD_STATUS = "cad.status"  # CAD status changes of units, same key, co-partitioned
TRACCAR = "avl.traccar"  # Traccar's forwarded positions, key = Traccar device id
ALERTS = "alerts"  # alert events, key = alert id
DLQ = "avl.dlq"  # rejected input, with reason and original bytes
AUDIT = "audit"  # one record per delivery attempt or feed response (adapters.audit)
DELIVERY_DLQ = "delivery.dlq"  # deliveries that could not be made, with the reason
INPUTS = (POSITIONS, ROUTES, CAD_STATUS)  # co-partitioned: one agent sees a unit's all

log = logging.getLogger(__name__)

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)


# Units per run of a tick whose zones are built together: the gain of building zones together
# is had by a few hundred, and a drain of 10,000 units in one batch held all their zones' parts
# at once (RSS growth at the end of the 10,000-unit bench: 118 MiB, in runs of 256: 83 MiB).
TICK_RUN = 256

# Ticks at the end of a drain, at most: the first may start a held dispatch alert, the second
# ends it (a third finds nothing; one more is a margin, never a loop without end).
DRAIN_PASSES = 4

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

    ``failed``: the engine raised on it and the failure policy skipped it (a dead-letter record
    is on its way); ``state`` is the vehicle's new state when the engine took the message.
    """

    msg: Position | Route | UnitStatus | None = None
    rejection: Rejection | None = None
    state: VehicleState | None = None
    events: list[AlertEvent] = field(default_factory=list)
    failed: bool = False


class Driver(Generic[K]):
    """The engine over many vehicles: states in a store, the live ones indexed for ticks.

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
    ) -> None:
        self.cfg = cfg
        self.roads = roads
        self.memo = memo if memo is not None else GeoMemo()
        self.store: StateStore[K] = store if store is not None else DictStore()  # type: ignore[assignment]
        self.key: Callable[[str], K] | None = key  # None: the vehicle id itself
        # bound once: this loop runs per message, and every attribute lookup shows
        self._get, self._put = self.store.get, self.store.put
        self._skew = timedelta(seconds=cfg.max_future_skew_s)
        self.tick_every_s = tick_every_s
        self.failures = failures
        self.agencies = agencies  # None: every unit is taken as it comes (no Traccar input)
        # told the field of each "no reading" of a fix it takes that was read as unknown (codec)
        self.noted = noted
        # repair a stored fix dated past a given clock before each message (see repair): off
        # for a driver whose states are all its own, judged against a clock that never goes
        # back (the replay's: no fix it took is dated past it), where it could find none
        self.repairs = repairs
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

    # ---- one message ---------------------------------------------------------------------

    def handle(
        self, topic: str, raw: bytes, *, received_at: datetime | Literal["clock"] | None = "clock"
    ) -> Handled:
        """Decode one message and apply it (after the ticks its event time makes due).

        ``received_at``: what a future timestamp is judged against; by default this driver's
        event clock (a replay's: the newest event time so far; None: not judged). A clock given
        here is trusted: a stored fix dated beyond it is forgotten first (see :meth:`repair`;
        not with ``repairs=False``).
        """
        at: datetime | None
        if isinstance(received_at, str):  # "clock": this driver's own event clock
            at, trusted = self.clock, False
        else:
            at, trusted = received_at, True
        unknown: list[str] = []  # readings of the fix taken as unknown (codec.check_fix)
        msg: Fix | Route | UnitStatus | Rejection = self.decode(topic, raw, at, unknown)
        if not trusted:
            msg = self._after_a_quiet_spell(topic, raw, msg, unknown)
        if isinstance(msg, Rejection):
            return Handled(None, msg, None, [], False)
        if unknown:
            self._tell(unknown)
        events: list[AlertEvent] = []
        if self.tick_every_s is not None and (self.clock is None or msg.ts > self.clock):
            events = self.advance(msg.ts)
        try:
            if trusted and at is not None and self.repairs:
                events += self.repair(msg.vehicle_id, at)
            if isinstance(msg, UnitStatus):
                # the status it replaces acts first when due by now, as a tick would have had it
                events += self.restate_before(msg)
                self.release(msg.vehicle_id)
                return self.take_status(msg, raw, events)
            # a status due by now acts first, as a tick would have had it, its events kept even
            # if the message fails; what a tick would have done to the unit's alert by now is
            # the engine's own work on the way in (``engine.step``: its catch-up)
            events += self.restate_before(msg)
            taken: Position | Route
            if isinstance(msg, Fix):
                taken, state, stepped = self.take_fix(msg)
            else:
                taken = msg
                state, stepped = self.step(msg)
        except Exception as err:
            self.failures("engine", err, key=msg.vehicle_id, raw=bytes(raw), source=topic)
            return Handled(None, None, None, events + self.fence(msg), True)
        self.release(msg.vehicle_id)
        return Handled(taken, None, state, events + stepped if events else stepped, False)

    def _after_a_quiet_spell(
        self, topic: str, raw: bytes, msg: Fix | Route | UnitStatus | Rejection,
        unknown: list[str],
    ) -> Fix | Route | UnitStatus | Rejection:
        """Judged against this driver's own clock (a recording has no receive times), a message
        more than the skew past the newest event time is refused, and so was everything after
        a stream's first quiet spell longer than the skew: the clock never moved again. The
        stream has moved on when the next message agrees (within the skew of the refused one):
        that one is taken. One device's clock far ahead stays refused; the first message after
        a quiet spell is lost (a ``future_timestamp`` rejection), not the rest of the replay.
        ``unknown`` gets the readings taken as unknown of the message taken after all."""
        if not isinstance(msg, Rejection):
            self._ahead = None
            return msg
        if msg.reason != "future_timestamp":
            return msg
        again: list[str] = []
        unjudged = self.decode(topic, raw, None, again)
        if isinstance(unjudged, Rejection):  # a time past any clock
            return msg
        before, self._ahead = self._ahead, unjudged.ts
        if before is not None and abs(unjudged.ts - before) <= self._skew:
            self._ahead = None
            unknown[:] = again
            return unjudged
        return msg

    def _tell(self, unknown: list[str]) -> None:
        """``noted`` hears of the readings taken as unknown of a message taken (not of one
        refused after all: an unknown unit, a time ahead)."""
        if self.noted is not None:
            for name in unknown:
                self.noted(name)

    def decode(
        self, topic: str, raw: bytes, at: datetime | None, unknown: list[str] | None = None
    ) -> Fix | Route | UnitStatus | Rejection:
        """The message of ``topic``, or why not (including a unit the agency file lacks).
        ``unknown`` gets the field of each reading of a fix taken as unknown (``-1``: no
        heading, ...: :func:`broker.codec.check_fix`)."""
        noted = None if unknown is None else unknown.append
        cfg = self.cfg
        msg: Fix | Route | UnitStatus | Rejection
        if topic == ROUTES:
            msg = codec.decode_route(
                raw, received_at=at, max_future_skew=self._skew, area=cfg.service_area
            )
        elif topic == CAD_STATUS:
            msg = codec.decode_status(
                raw, received_at=at, max_bytes=cfg.max_message_bytes, max_future_skew=self._skew
            )
        elif topic == TRACCAR:
            return decode_traccar(
                raw, self.agencies, received_at=at, max_bytes=cfg.max_message_bytes,
                max_future_skew=self._skew, area=cfg.service_area, noted=noted,
            )
        else:
            msg = codec.decode_position(
                raw, received_at=at, max_bytes=cfg.max_message_bytes,
                max_future_skew=self._skew, area=cfg.service_area, noted=noted,
            )
        if (
            self.agencies is not None
            and not isinstance(msg, Rejection)
            and self.agencies.unit(msg.vehicle_id) is None
        ):
            detail = f"unit {msg.vehicle_id!r} is not in the agency file"
            return Rejection(reason="unknown_unit", detail=detail, raw=bytes(raw))
        return msg

    def restate_before(self, msg: Fix | Route | UnitStatus) -> list[AlertEvent]:
        """The unit's pending status, when due by the time of ``msg`` (its next fix or route, or
        its next status, which would otherwise overwrite it unheard): what a tick would have
        done by now, the same events on either path (their state stored before ``msg`` is
        taken)."""
        k: K = msg.vehicle_id if self.key is None else self.key(msg.vehicle_id)  # type: ignore[assignment]
        if k not in self.pending:
            return []
        state = self._get(k)
        if state is None or not join.due(state, msg.ts, self.cfg):
            return []
        return self._restate(k, state)[1]

    def fence(self, msg: Fix | Route | UnitStatus) -> list[AlertEvent]:
        """After the engine raised on ``msg`` (dead-lettered): when the unit was due a tick by
        the message's time, the engine's catch-up ran on the way in (``engine.step``) and may be
        what raised, and it would run, and raise, again on every later message of the unit
        (nothing in the state moves on). The unit is then quarantined as if a tick had failed
        (:meth:`quarantine`: its alert cancelled, a held dispatch alert dropped), so its next
        message is taken. Returns the cancel, if any."""
        k = self._key(msg.vehicle_id)
        state = self._get(k)
        if state is None or not engine.tick_due(state, now=msg.ts, cfg=self.cfg):
            return []  # the message's own failure: the state is as it was, and fit to go on
        return self.quarantine(k, state, msg.ts)

    def take_fix(self, fix: Fix) -> tuple[Position, VehicleState, list[AlertEvent]]:
        """A fix merged with the unit's status (``broker.join``), then the engine: the merged
        position (the state's ``last_fix`` when the engine took it), the state, the events."""
        k: K = fix.vehicle_id if self.key is None else self.key(fix.vehicle_id)  # type: ignore[assignment]
        state = self._get(k)
        unit = self.agencies.unit(fix.vehicle_id) if self.agencies is not None else None
        pos = join.merge(fix, state.cad if state is not None else None, unit,
                         lights_without_cad=self.cfg.lights_without_cad)
        if state is not None:
            state = join.remember_fix(state, fix)
        elif fix.lights_sirens is not None and fix.status is None:
            state = join.remember_fix(VehicleState(vehicle_id=fix.vehicle_id), fix)
        new, events = self._step_state(k, state, pos)
        return pos, new, events

    def take_status(self, status: UnitStatus, raw: bytes, events: list[AlertEvent]) -> Handled:
        """A unit's new CAD status: kept in its state; the engine hears of it by the next fix,
        or by :meth:`restate` once the clock has passed the status by its grace
        (``status_grace_s``), whichever comes first."""
        k: K = status.vehicle_id if self.key is None else self.key(status.vehicle_id)  # type: ignore[assignment]
        state = self._get(k)
        if not join.newer_status(state, status):
            assert state is not None and state.cad is not None
            detail = f"status at {status.ts.isoformat()} is older than {state.cad.ts.isoformat()}"
            return Handled(None, Rejection(reason="stale_status", detail=detail, raw=bytes(raw)),
                           None, events, False)
        new = replace(state, cad=status) if state is not None else VehicleState(
            vehicle_id=status.vehicle_id, cad=status
        )
        self._put(k, new)
        self.mark(k, new)
        if self.clock is None or status.ts > self.clock:
            self.clock = status.ts
        return Handled(status, None, new, events, False)

    def restate(self, now: datetime, keys: Iterable[K] | None = None) -> list[AlertEvent]:
        """Act on the status changes due by ``now`` (``broker.join``): a unit that goes
        available is cancelled, one that starts responding warned, without waiting for a fix."""
        events: list[AlertEvent] = []
        for k in sorted(self.pending if keys is None else keys):  # type: ignore[type-var]
            state = self.store.get(k)
            if state is None:
                self.pending.discard(k)
            elif join.due(state, now, self.cfg):
                try:
                    _, evs = self._restate(k, state)
                except Exception as err:
                    self.failures("tick", err, key=state.vehicle_id, raw=codec.dump_state(state))
                    self.pending.discard(k)
                    continue
                events += evs
        return events

    def _restate(self, k: K, state: VehicleState) -> tuple[VehicleState, list[AlertEvent]]:
        """The unit's last fix stated again under its new status, through the engine.

        A unit stood down before its first fix is stated at its dispatch alert's place
        (``join.restated``); that stand-in is no fix of the unit, so none is kept: its first
        real fix is judged (time order, jumps) against nothing, as before the status.
        """
        self.pending.discard(k)
        pos = join.restated(state, self.cfg)
        if pos is None:
            return state, []
        new, events = self._step_state(k, state, pos)
        if state.last_fix is None and new.last_fix is not None:
            new = replace(new, last_fix=None)
            self._put(k, new)
            self.mark(k, new)
        return new, events

    def handle_many(
        self, messages: Iterable[tuple[str, bytes]],
        *, received_at: datetime | Literal["clock"] | list[datetime | None] | None = "clock",
    ) -> list[Handled]:
        """:meth:`handle` each ``(topic, raw)`` in order, building their zones together.

        The same states and events as handling them one by one (the zones are deferred to a
        :class:`~broker.geo.zoning.ZoneBatch` and built, vectorised, before this returns); for
        drivers that have messages in hand (the replay, the benchmarks), not for a live stream
        where each message's events should leave at once. ``received_at``: as :meth:`handle`'s,
        for all of them, or a list with each message's own.
        """
        batch = list(messages)
        times: Iterable[datetime | Literal["clock"] | None]
        if isinstance(received_at, list):
            if len(received_at) != len(batch):
                raise ValueError(f"{len(received_at)} receive times for {len(batch)} messages")
            times = received_at
        else:
            times = repeat(received_at, len(batch))
        self._batch = ZoneBatch(self.cfg, self.roads, self.memo)
        try:
            out = [self.handle(topic, raw, received_at=at)
                   for (topic, raw), at in zip(batch, times, strict=True)]
            self._batch.build()
        finally:
            self._batch = None
        return out

    def step(self, msg: Position | Route) -> tuple[VehicleState, list[AlertEvent]]:
        """Apply an engine message (a merged position, a route) to its vehicle; keep the new
        state, index it if live."""
        k: K = msg.vehicle_id if self.key is None else self.key(msg.vehicle_id)  # type: ignore[assignment]
        return self._step_state(k, self._get(k), msg)

    def _step_state(
        self, k: K, state: VehicleState | None, msg: Position | Route
    ) -> tuple[VehicleState, list[AlertEvent]]:
        state, events = engine.step(
            state, msg, now=msg.ts, cfg=self.cfg, roads=self.roads, memo=self.memo,
            batch=self._batch,
        )
        self._put(k, state)
        self.mark(k, state)
        ts = msg.ts
        if self.clock is None or ts > self.clock:
            self.clock = ts
        return state, events

    def repair(self, vehicle_id: str, now: datetime) -> list[AlertEvent]:
        """Forget a stored fix dated beyond the trusted clock ``now``
        (``engine.forget_future_fix``): a unit is never silenced by a fix from its future."""
        k: K = vehicle_id if self.key is None else self.key(vehicle_id)  # type: ignore[assignment]
        state = self._get(k)
        if state is None:
            return []
        new, events = engine.forget_future_fix(state, now=now, cfg=self.cfg)
        if new is not state:
            self.store.put(k, new)
            self.mark(k, new)
        return events

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

    # ---- time ------------------------------------------------------------------------------

    def advance(self, ts: datetime) -> list[AlertEvent]:
        """Move the event clock to ``ts``: status changes now due act, and the live units are
        ticked when the clock has moved on far enough."""
        events: list[AlertEvent] = []
        if self.clock is None or ts > self.clock:
            self.clock = ts
            if self.pending:
                events = self.restate(ts)
            due = self.tick_every_s or 0.0
            if self._last_tick is None or (ts - self._last_tick).total_seconds() >= due:
                events += self.tick(ts)
                self._last_tick = ts
        return events

    def tick(self, now: datetime, keys: Iterable[K] | None = None) -> list[AlertEvent]:
        """Tick the live units (or ``keys``) at ``now``: silent units get their stale cancel,
        moving ones their dead-reckoning steps.

        The zones a tick asks for are built together, ``TICK_RUN`` units' at a time (a
        :class:`ZoneBatch` per run, built before this returns; inside :meth:`handle_many`, with
        that run's). Should a batch fail, the units of its run get their states back and are
        ticked again one zone at a time, so a unit whose zone cannot be built goes to the
        failure policy alone, as before.
        """
        todo = sorted(self.live if keys is None else keys)  # type: ignore[type-var]
        if self._batch is not None:
            return self._tick(now, todo, None)
        events: list[AlertEvent] = []
        for i in range(0, len(todo), TICK_RUN):
            events += self._tick_run(now, todo[i : i + TICK_RUN])
        return events

    def _tick_run(self, now: datetime, keys: list[K]) -> list[AlertEvent]:
        """One run of :meth:`tick`'s units, their zones built together."""
        batch = self._batch = ZoneBatch(self.cfg, self.roads, self.memo)
        before: dict[K, VehicleState] = {}
        held = set(self.quarantined)
        try:
            events = self._tick(now, keys, before)
        finally:
            self._batch = None
        if not len(batch):
            return events
        try:
            batch.build()
        except Exception:
            for k, old in before.items():
                self.store.put(k, old)
                self.mark(k, old)
            # the cancels of units quarantined in this run stand: their states are stored
            new = self.quarantined - held
            kept = [e for e in events if self._key(e.vehicle_id) in new] if new else []
            return kept + self._tick(now, list(before), None)
        return events

    def _key(self, vehicle_id: str) -> K:
        return vehicle_id if self.key is None else self.key(vehicle_id)  # type: ignore[return-value]

    def _tick(
        self, now: datetime, keys: list[K], before: dict[K, VehicleState] | None
    ) -> list[AlertEvent]:
        """:meth:`tick`'s loop over ``keys`` (in order); ``before`` collects the old state of
        each unit it changed."""
        events: list[AlertEvent] = []
        for k in keys:
            if k in self.quarantined:
                continue
            state = self.store.get(k)
            if state is None or (state.alert is None and state.dispatch_due is None):
                self.live.discard(k)
                continue
            try:
                new, evs = engine.tick(
                    state, now=now, cfg=self.cfg, roads=self.roads, memo=self.memo,
                    batch=self._batch,
                )
            except Exception as err:
                self.failures("tick", err, key=state.vehicle_id, raw=codec.dump_state(state))
                events += self.quarantine(k, state, now)
                continue
            if new is not state:  # the engine returns the state itself when nothing changed
                if before is not None:
                    before[k] = state
                self.store.put(k, new)
                events += evs
            self.mark(k, new)
        return events

    def quarantine(self, k: K, state: VehicleState, now: datetime) -> list[AlertEvent]:
        """A unit whose tick raised (and was dead-lettered), or whose message raised when a
        tick was due (:meth:`fence`): its ticks are skipped until a new message of the unit is
        taken (:meth:`release`), so the bug makes one dead letter, not one a tick; its live alert
        is cancelled at ``now`` (``engine.withdraw``: a ``stale`` cancel), since nothing would
        move or end it any more, and a held dispatch alert is dropped (its start may be what
        raised), so the next message's catch-up has nothing to redo. Should that cancel fail
        too, the alert is left to lapse at its ``expires_at`` (logged). Returns the cancel, if
        any."""
        self.quarantined.add(k)
        try:
            new, events = engine.withdraw(state, now=now)
        except Exception:
            log.exception("unit %r quarantined; its alert could not be cancelled and lapses at "
                          "its expires_at", state.vehicle_id)
            return []
        if new is not state:
            self.store.put(k, new)
            self.mark(k, new)
        log.warning("unit %r quarantined after a failed tick or catch-up: ticks skipped until "
                    "its next message%s", state.vehicle_id,
                    f"; alert {state.alert.alert_id} cancelled" if state.alert else "")
        return events

    def release(self, vehicle_id: str) -> None:
        """A message of a quarantined unit was taken: its ticks are tried again (after it, so
        the ticks and catch-up on the way to it skip the unit, as every tick since did)."""
        if self.quarantined:
            self.quarantined.discard(self._key(vehicle_id))

    def drain(self) -> list[AlertEvent]:
        """Run time on past the stale timeout (and the dead reckoning before it): every live
        alert ends with its cancel, as in a live worker once the fixes stop.

        One tick at the end is not always enough: a tick may *start* a held dispatch alert
        (a CAD route with no fix after it, ``dispatch_hold_s``), whose expiry only a later tick
        sees. The units are ticked at the end again while a tick still has events (each pass
        either ends an alert or finds nothing more to do, so this stops), at most
        ``DRAIN_PASSES`` times.
        """
        if self.clock is None:
            return []
        cfg = self.cfg
        wait_s = max(cfg.stale_timeout_s, cfg.dead_reckoning_max_s, cfg.dispatch_cover_s)
        end = self.clock + timedelta(seconds=wait_s)
        events = self.restate(end)
        for _ in range(DRAIN_PASSES):
            ticked = self.tick(end)
            if not ticked:
                break
            events += ticked
        return events

    @property
    def states(self) -> MutableMapping[K, VehicleState]:
        """The states, when the store is a mapping (replay, simulate, bench)."""
        assert isinstance(self.store, MutableMapping)
        return self.store
