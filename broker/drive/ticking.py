"""Time: the event clock moved on, the live units ticked (their zones built together, run by
run), and a drain at the end that runs time on until every live alert has ended."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from broker import codec, engine
from broker.drive.base import K
from broker.drive.quarantine import Quarantining
from broker.drive.statuses import Restating
from broker.geo.zone_batch import ZoneBatch
from broker.model import AlertEvent, VehicleState

# Units per run of a tick whose zones are built together: the gain of building zones together
# is had by a few hundred, and a drain of 10,000 units in one batch held all their zones' parts
# at once (RSS growth at the end of the 10,000-unit bench: 118 MiB, in runs of 256: 83 MiB).
TICK_RUN = 256

# Ticks at the end of a drain, at most: the first may start a held dispatch alert, the second
# ends it (a third finds nothing; one more is a margin, never a loop without end).
DRAIN_PASSES = 4


class Ticking(Restating[K], Quarantining[K]):
    """The ticks: the statuses due restated first, a unit whose tick raises quarantined."""

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

    def pass_time(
        self, now: datetime, live: Iterable[K] | None = None, pending: Iterable[K] | None = None
    ) -> list[AlertEvent]:
        """A clock move of a shell that ticks on its own clock (the worker's tick timer, the
        simulator's step): the statuses due by ``now`` restated (:meth:`restate`, ``pending``
        or every pending unit), then the live units ticked (:meth:`tick`, ``live`` or every
        live unit), as :meth:`advance` does for a driver that ticks on its event clock. A
        status of a unit without a live alert acts here, not at the unit's next message: a
        shell that called :meth:`tick` alone missed it."""
        events = self.restate(now, pending)
        return events + self.tick(now, live)

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
                self.keep(k, old)
            # the cancels of units quarantined in this run stand: their states are stored
            new = self.quarantined - held
            kept = [e for e in events if self._key(e.vehicle_id) in new] if new else []
            return kept + self._tick(now, list(before), None)
        return events

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
                if state.cad is not None and self.timed(k, state, now):
                    new, evs = self.elapse(state, now)  # its status in time order
                else:
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
