"""A unit's CAD status: kept in its state, and *restated* (its last fix stated again under
the new status, through the engine) when due: by its next message, by the clock (a tick's
:meth:`Restating.restate`), whichever comes first (``broker.join``).

Time and the status in one order (:meth:`Restating.elapse`): whichever moment it comes at, the
restatement acts at the status's own instant, after what time alone did to the unit by then
(a held dispatch alert started, dead-reckoning steps, a stale or expired cancel) and before
what it did after; and when time alone changes what the status means (a dispatch alert started
or expired: ``join.restated`` looks at it), the status is looked at again right then. A tick
before the status is due goes no further than the status's instant for a unit whose status may
act (a fix of its own instant may still come, or the status act alone at it): so a unit's
events are the same whether the driver ticks every second, every few seconds, or never."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from msgspec.structs import replace

from broker import codec, engine, join
from broker.drive.base import Handled, K
from broker.drive.quarantine import Quarantining
from broker.model import AlertEvent, Fix, Position, Rejection, Route, UnitStatus, VehicleState

# times a status is looked at again in one elapse (its instant, a dispatch alert's start, its
# expiry): each turn uses one of them up, so this is a margin, never a loop without end
_TURNS = 4


class Restating(Quarantining[K]):
    """The pending statuses: taken, restated when due, in time order with the unit's ticks; a
    unit whose restatement raises quarantined."""

    def restate_before(self, msg: Fix | Route | UnitStatus) -> list[AlertEvent]:
        """The unit's pending status, when due by the time of ``msg`` (its next fix or route, or
        its next status, which would otherwise overwrite it unheard): what a tick would have
        done by now, the same events on either path (their state stored before ``msg`` is
        taken)."""
        k = self._key(msg.vehicle_id)
        if k not in self.pending and k not in self.live:
            return []  # the common case: no status to state, no alert time could change
        state = self._get(k)
        if state is None or not self._acts(k, state, msg.ts):
            return []
        new, events = self.elapse(state, msg.ts)
        self.keep(k, new)
        return events

    def _acts(self, k: K, state: VehicleState, now: datetime) -> bool:
        """Whether the unit's status is restated by ``now`` (:meth:`elapse` runs its time)."""
        return self.timed(k, state, now) and join.due(state, now, self.cfg)

    def fence(self, msg: Fix | Route | UnitStatus) -> list[AlertEvent]:
        """:meth:`Quarantining.fence`, the unit's status too: when its restatement was due by
        the message's time, it ran on the way in (:meth:`restate_before`) and may be what
        raised (its state is then as it was, the status still due). It is run again alone: if
        that raises too, the unit is quarantined (one record, the message's: the ticks after
        it skip the unit, as they would a failed tick's); if not, its state and events stand.
        Otherwise the engine's catch-up is looked at, as before."""
        k = self._key(msg.vehicle_id)
        state = self._get(k)
        if state is None or not self._acts(k, state, msg.ts):
            return super().fence(msg)
        try:
            new, events = self.elapse(state, msg.ts)
        except Exception:
            return self.quarantine(k, state, msg.ts)
        self.keep(k, new)
        return events

    def take_status(self, status: UnitStatus, raw: bytes, events: list[AlertEvent]) -> Handled:
        """A unit's new CAD status: kept in its state; the engine hears of it by the next fix,
        or by :meth:`restate` once the clock has passed the status by its grace
        (``status_grace_s``), whichever comes first."""
        k = self._key(status.vehicle_id)
        state = self._get(k)
        if not join.newer_status(state, status) or join.repeated_status(state, status):
            assert state is not None and state.cad is not None
            detail = (f"status at {status.ts.isoformat()} is older than "
                      f"{state.cad.ts.isoformat()}" if status.ts < state.cad.ts else
                      f"status at {status.ts.isoformat()} repeats one taken before the unit's "
                      f"{state.cad.status} of the same instant")
            return Handled(None, Rejection(reason="stale_status", detail=detail, raw=bytes(raw)),
                           None, events, False)
        new = replace(state, cad=status, cad_same_ts=join.same_ts_before(state, status)) if (
            state is not None) else VehicleState(vehicle_id=status.vehicle_id, cad=status)
        self.keep(k, new)
        self.quarantined.discard(k)  # taken: a quarantined unit is ticked again from now on
        if self.clock is None or status.ts > self.clock:
            self.clock = status.ts
        return Handled(status, None, new, events, False)

    def restate(self, now: datetime, keys: Iterable[K] | None = None) -> list[AlertEvent]:
        """Act on the status changes due by ``now`` (``broker.join``): a unit that goes
        available is cancelled, one that starts responding warned, without waiting for a fix
        (and the unit's time run on to ``now``: :meth:`elapse`). A restatement that raises is
        one dead letter (``tick``: the unit's state), and its unit is quarantined as a failed
        tick's is (:meth:`quarantine`: its alert cancelled, the status no longer pending), so
        the tick after it, which would run the same time on the same state, skips it."""
        events: list[AlertEvent] = []
        for k in sorted(self.pending if keys is None else keys):  # type: ignore[type-var]
            state = self.store.get(k)
            if state is None or k in self.quarantined:
                self.pending.discard(k)
            elif join.due(state, now, self.cfg):
                try:
                    new, evs = self.elapse(state, now)
                except Exception as err:
                    # one record, then the unit set aside as a failed tick's is: the tick after
                    # this would run the same time on the same state and raise again
                    self.failures("tick", err, key=state.vehicle_id, raw=codec.dump_state(state))
                    events += self.quarantine(k, state, now)
                    continue
                self.keep(k, new)
                events += evs
        return events

    def timed(self, k: K, state: VehicleState, now: datetime) -> bool:
        """Whether the unit's status may act by ``now``: it is pending (``join.restated``
        would state something), or time alone changes by then what it would state (a held
        dispatch alert starting, a dispatch alert expiring). If not, time runs for the unit as
        if it had no status (``engine.tick``, a message's catch-up): the same events."""
        if state.cad is None:
            return False
        if k in self.pending:
            return True
        turn = _turn(state)
        return turn is not None and turn <= now

    def elapse(self, state: VehicleState, now: datetime) -> tuple[VehicleState, list[AlertEvent]]:
        """Time for a unit with a CAD status up to ``now``, the status in its place: up to the
        status's instant, then the status restated (``join.restated``) and looked at again
        after each start or expiry of a dispatch alert up to ``now`` (either may change what it
        states), then up to ``now``; each event stamped at its own instant, as a tick's. Before
        the status is due (``status_grace_s``), time stops where it would act (a fix of its
        own instant may still come; if none does, what it does comes before what time does
        after it), and goes on to ``now`` where it would not."""
        cad = state.cad
        assert cad is not None
        if now <= cad.ts:
            return self._time_to(state, now)
        due = join.due(state, now, self.cfg)
        state, events = self._time_to(state, cad.ts)
        for _ in range(_TURNS):
            pos = join.restated(state, self.cfg)
            if pos is not None:
                if not due:
                    return state, events  # it acts here, once due: time waits for it
                state, stated = self._stated(state, pos)
                events += stated
            turn = _turn(state)
            if turn is None or turn > now:
                break
            state, evs = self._time_to(state, turn)
            events += evs
        state, evs = self._time_to(state, now)
        return state, events + evs if evs else events

    def _time_to(self, state: VehicleState, now: datetime) -> tuple[VehicleState, list[AlertEvent]]:
        return engine.tick(state, now=now, cfg=self.cfg, roads=self.roads, memo=self.memo,
                           batch=self._batch)

    def _stated(
        self, state: VehicleState, pos: Position
    ) -> tuple[VehicleState, list[AlertEvent]]:
        """The unit's last fix stated again under its new status, through the engine.

        A unit stood down before its first fix is stated at its dispatch alert's place
        (``join.restated``); that stand-in is no fix of the unit, so none is kept: its first
        real fix is judged (time order, jumps) against nothing, as before the status.
        """
        new, events = engine.step(state, pos, now=pos.ts, cfg=self.cfg, roads=self.roads,
                                  memo=self.memo, batch=self._batch)
        if self.clock is None or pos.ts > self.clock:
            self.clock = pos.ts
        if state.last_fix is None and new.last_fix is not None:
            new = replace(new, last_fix=None)
        return new, events


def _turn(state: VehicleState) -> datetime | None:
    """The next instant at which time alone changes what ``join.restated`` makes of the unit's
    status: a held dispatch alert's start, a dispatch alert's expiry (a stood-down unit's
    stand-in, a status older than the route: ``join``); None when there is none."""
    alert = state.alert
    if alert is None:
        return state.dispatch_due
    return alert.expires_at if alert.from_dispatch else None
