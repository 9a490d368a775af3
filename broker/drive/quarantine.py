"""A unit whose tick, or whose message's catch-up, raised: its alert cancelled, its ticks
skipped until a new message of it is taken, so one bug on one state makes one dead letter, not
one a tick."""

from __future__ import annotations

import logging
from datetime import datetime

from broker import codec, engine
from broker.drive.base import DriverBase, K
from broker.model import AlertEvent, Fix, Route, UnitStatus, VehicleState

log = logging.getLogger("broker.drive")  # the driver's one logger, as before its split


class Quarantining(DriverBase[K]):
    """The quarantined units: put in (:meth:`quarantine`, :meth:`fence`), let out
    (:meth:`release`)."""

    def quarantine(self, k: K, state: VehicleState, now: datetime) -> list[AlertEvent]:
        """A unit whose tick raised (and was dead-lettered), or whose message raised when a
        tick was due (:meth:`fence`): its ticks are skipped until a new message of the unit is
        taken (:meth:`release`), so the bug makes one dead letter, not one a tick; its live alert
        is cancelled at ``now`` (``engine.withdraw``: a ``stale`` cancel), since nothing would
        move or end it any more, and a held dispatch alert is dropped (its start may be what
        raised), so the next message's catch-up has nothing to redo; its status is no longer
        pending (its restatement would run the time that raised), so the unit's next message
        merges it. Should that cancel raise too while the alert is still on partners' maps
        (before its ``expires_at``), the driver stops: the failure policy's ``cancel`` site
        always stops (:class:`~broker.failure.StopWork`; the worker stops loudly without
        committing) rather than go on with a cancel never sent. The state is unchanged, so a
        restarted worker meets the same failure, until the alert has expired: from then on
        the partners have dropped it, nothing is lost by going on, and the unit stays
        quarantined (logged) instead of stopping every restart for good. Returns the cancel,
        if any."""
        self.quarantined.add(k)
        # its status is not restated while it is quarantined (the restatement runs the time that
        # raised): the unit's next message, which releases it, finds what the status means then
        self.pending.discard(k)
        try:
            new, events = engine.withdraw(state, now=now)
        except Exception as err:
            if state.alert is not None and now < state.alert.expires_at:
                # the cancel cannot go out: stop (StopWork, or ``err`` itself for in-process
                # tools) rather than go on, and ack, with an alert left on the partners' maps
                self.failures.check("cancel", err, key=state.vehicle_id,
                                    raw=codec.dump_state(state))
                raise  # not reached: "cancel" always stops (broker.failure.ALWAYS_STOP)
            log.exception("unit %r quarantined; its cancel raised, but no partner shows its "
                          "alert any more (none, or expired): going on", state.vehicle_id)
            return []
        if new is not state:
            self.keep(k, new)
        log.warning("unit %r quarantined after a failed tick or catch-up: ticks skipped until "
                    "its next message%s", state.vehicle_id,
                    f"; alert {state.alert.alert_id} cancelled" if state.alert else "")
        return events

    def release(self, vehicle_id: str) -> None:
        """A message of a quarantined unit was taken: its ticks are tried again (after it, so
        the ticks and catch-up on the way to it skip the unit, as every tick since did)."""
        if self.quarantined:
            self.quarantined.discard(self._key(vehicle_id))

    def fence(self, msg: Fix | Route | UnitStatus) -> list[AlertEvent]:
        """After the engine raised on ``msg`` (dead-lettered): when the unit was due a tick by
        the message's time, the engine's catch-up ran on the way in (``engine.step``) and may be
        what raised; it would run, and raise, again on every later message of the unit
        (nothing in the state moves on). It is run again alone (``engine.tick`` at the
        message's time): if that raises too, the unit is quarantined as if a tick had failed
        (:meth:`quarantine`: its alert cancelled, a held dispatch alert dropped), so its next
        message is taken; if not, the message's own processing was at fault, and the catch-up's
        state and events stand (the alert lives on, as it would have with a tick before the
        message). Returns the events, if any."""
        k = self._key(msg.vehicle_id)
        state = self._get(k)
        if state is None or not engine.tick_due(state, now=msg.ts, cfg=self.cfg):
            return []  # the message's own failure: the state is as it was, and fit to go on
        try:
            new, events = engine.tick(state, now=msg.ts, cfg=self.cfg, roads=self.roads,
                                      memo=self.memo)
        except Exception:
            return self.quarantine(k, state, msg.ts)
        if new is not state:
            self.keep(k, new)
        return events
