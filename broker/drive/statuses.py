"""A unit's CAD status: kept in its state, and *restated* (its last fix stated again under
the new status, through the engine) when due: by its next message, by the clock (a tick's
:meth:`Restating.restate`), whichever comes first (``broker.join``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from msgspec.structs import replace

from broker import codec, join
from broker.drive.base import DriverBase, Handled, K
from broker.model import AlertEvent, Fix, Rejection, Route, UnitStatus, VehicleState


class Restating(DriverBase[K]):
    """The pending statuses: taken, restated when due."""

    def restate_before(self, msg: Fix | Route | UnitStatus) -> list[AlertEvent]:
        """The unit's pending status, when due by the time of ``msg`` (its next fix or route, or
        its next status, which would otherwise overwrite it unheard): what a tick would have
        done by now, the same events on either path (their state stored before ``msg`` is
        taken)."""
        k = self._key(msg.vehicle_id)
        if k not in self.pending:
            return []
        state = self._get(k)
        if state is None or not join.due(state, msg.ts, self.cfg):
            return []
        return self._restate(k, state)[1]

    def take_status(self, status: UnitStatus, raw: bytes, events: list[AlertEvent]) -> Handled:
        """A unit's new CAD status: kept in its state; the engine hears of it by the next fix,
        or by :meth:`restate` once the clock has passed the status by its grace
        (``status_grace_s``), whichever comes first."""
        k = self._key(status.vehicle_id)
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
        self.quarantined.discard(k)  # taken: a quarantined unit is ticked again from now on
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
