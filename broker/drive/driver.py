"""The :class:`Driver`: one message decoded, the ticks its time makes due, the message taken."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import repeat
from typing import Literal, TypeVar

from broker import engine, join
from broker.drive.base import Handled, K
from broker.drive.ticking import Ticking
from broker.drive.wire import Decoding
from broker.geo.zone_batch import ZoneBatch
from broker.model import AlertEvent, Fix, Position, Rejection, Route, UnitStatus, VehicleState

M = TypeVar("M", bound=Fix | Route | UnitStatus)  # a message decoded
ZERO = timedelta(0)


class Driver(Decoding[K], Ticking[K]):
    """The engine over many vehicles: states in a store, the live ones indexed for ticks.

    ``key`` turns a vehicle id into the store's key (the worker's table is keyed by bytes).
    The parts: :class:`~broker.drive.base.DriverBase` (the states, indexes, clock, one step),
    :class:`~broker.drive.wire.Decoding`, :class:`~broker.drive.statuses.Restating`,
    :class:`~broker.drive.ticking.Ticking`, :class:`~broker.drive.quarantine.Quarantining`.
    """

    def handle(
        self, topic: str, raw: bytes, *, received_at: datetime | Literal["clock"] | None = "clock",
        partition: int | None = None,
        clock: datetime | Literal["clock"] | None = "clock", key: str = "",
    ) -> Handled:
        """Decode one message and apply it (after the ticks its event time makes due).

        ``received_at``: what a future timestamp is judged against; by default this driver's
        event clock (a replay's: the newest event time so far; None: not judged). A clock given
        here is trusted: a stored fix dated beyond it is forgotten first (see :meth:`repair`;
        not with ``repairs=False``). ``partition``: the input partition it came on, for a
        driver given ``partition_of``: a message of a vehicle whose partition is another is
        refused as ``misrouted`` (:func:`misrouted`), before it touches any state.

        ``clock``: the time the unit's ticks run at, what a fix's lateness is judged against
        (:meth:`late`): by default this driver's event clock (a driver that ticks on it, or
        whose shell's clock follows the newest fix); the worker's is the partition's clock
        (a worker's driver serves many partitions); None: not judged. ``key``: the record's
        key as it came (the worker's Kafka key), kept on a ``decode_error`` dead letter.
        """
        at: datetime | None
        if isinstance(received_at, str):  # "clock": this driver's own event clock
            at, trusted = self.clock, False
        else:
            at, trusted = received_at, True
        unknown: list[str] = []  # readings of the fix taken as unknown (codec.check_fix)
        try:
            msg = self._read(topic, raw, at, unknown, trusted=trusted, partition=partition,
                             clock=clock)
        except Exception as err:  # junk is a Rejection: this is a bug of ours on these bytes
            # the failure policy, as the engine's: parked (decode_error) or a stop, not out of
            # the worker's loop (Faust restarted the agent, the message un-acked: the
            # partition's commits frozen behind it, nothing stopping); raised in the tools
            self.failures("decode", err, key=key, raw=bytes(raw), source=topic)
            return Handled(None, None, None, [], True)
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
                return self._status(msg, raw, events)
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

    def _status(self, status: UnitStatus, raw: bytes, events: list[AlertEvent]) -> Handled:
        """A CAD status: the one it replaces acts first when due by now, as a tick would have
        had it; then it is taken (:meth:`~Restating.take_status`, which releases the unit).

        One taken already past its grace by this driver's event clock (a later fix or route of
        any unit came first) acts at once, as the tick that passed its grace would have had it
        (``join.due``; its time order kept: :meth:`~Restating.elapse`): for a driver that ticks
        on its event clock, whose next tick only comes with a newer message. A shell that ticks
        on its own clock (the worker, the simulator) has it restated at its next tick."""
        events += self.restate_before(status)
        handled = self.take_status(status, raw, events)
        k, state, now = self._key(status.vehicle_id), handled.state, self.clock
        if (self.tick_every_s is not None and now is not None and state is not None
                and k in self.pending and join.due(state, now, self.cfg)):  # fmt: skip
            handled.events += self.restate(now, [k])
            handled.state = self.store.get(k)
        return handled

    def _read(
        self, topic: str, raw: bytes, at: datetime | None, unknown: list[str], *, trusted: bool,
        partition: int | None, clock: datetime | Literal["clock"] | None,
    ) -> Fix | Route | UnitStatus | Rejection:
        """The message decoded and judged (a time ahead, its partition, its lateness): what
        :meth:`handle` takes, or the rejection it dead-letters."""
        msg = self.decode(topic, raw, at, unknown)
        if not trusted:
            msg = self._after_a_quiet_spell(topic, raw, msg, unknown)
        msg = self._routed(msg, raw, partition)
        return self.late(msg, raw, clock, at)

    def _routed(
        self, msg: Fix | Route | UnitStatus | Rejection, raw: bytes, partition: int | None
    ) -> Fix | Route | UnitStatus | Rejection:
        """``msg``, or refused as ``misrouted`` when it came on another partition than its
        vehicle id's (only with a ``partition`` given, and this driver's ``partition_of``)."""
        if partition is None or self.partition_of is None or isinstance(msg, Rejection):
            return msg
        return misrouted(msg, raw, partition, self.partition_of(msg.vehicle_id))

    def late(
        self, msg: Fix | Route | UnitStatus | Rejection, raw: bytes,
        clock: datetime | Literal["clock"] | None = "clock", received_at: datetime | None = None,
    ) -> Fix | Route | UnitStatus | Rejection:
        """``msg``, or a fix's ``late`` rejection when it is ``stale_timeout_s`` or more behind
        ``clock``, the time its unit's ticks run at ("clock": this driver's own, never past
        ``received_at``, as the worker's partition clock never runs past a receive time: a unit
        ahead within the skew, or a stored fix from a device clock years ahead, must not make
        every other unit's fixes late).

        A tick at that time would cancel as stale the alert such a fix made or moved, and the
        unit's next fix, as late, make it again: a new life each second, a new pseudonymous id
        for partners (a device clock behind, or a delayed or store-and-forward feed sharing the
        stream with real-time units). Refused, the unit stays as it was, its live alert ending
        as any silent unit's does; its first fix within the timeout again is taken at once
        (docs/streams.md, "Time"). Routes and statuses are not judged here: a route is kept
        for the unit's next fixes, a status restated in time order with them (``broker.join``).
        """
        if isinstance(clock, str):
            clock = self.clock
            if clock is not None and received_at is not None and received_at < clock:
                clock = received_at
        if clock is None or not isinstance(msg, Fix):
            return msg
        behind = clock - msg.ts
        if behind < self._late or behind <= ZERO:  # a fix at the clock itself is never late
            return msg
        detail = (f"{behind.total_seconds():.1f} s behind its stream's clock ({clock.isoformat()};"
                  f" stale_timeout_s {self.cfg.stale_timeout_s:g}): a device clock behind, or"
                  " a delayed feed")
        return Rejection(reason="late", detail=detail, raw=bytes(raw))

    def take_fix(self, fix: Fix) -> tuple[Position, VehicleState, list[AlertEvent]]:
        """A fix merged with the unit's status (``broker.join``), then the engine: the merged
        position (the state's ``last_fix`` when the engine took it), the state, the events."""
        k = self._key(fix.vehicle_id)
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

    def handle_many(
        self, messages: Iterable[tuple[str, bytes]],
        *, received_at: datetime | Literal["clock"] | list[datetime | None] | None = "clock",
    ) -> list[Handled]:
        """:meth:`handle` each ``(topic, raw)`` in order, building their zones together.

        The same states and events as handling them one by one (the zones are deferred to a
        :class:`~broker.geo.zone_batch.ZoneBatch` and built, vectorised, before this returns); for
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

    def repair(self, vehicle_id: str, now: datetime) -> list[AlertEvent]:
        """Forget a stored fix dated beyond the trusted clock ``now``
        (``engine.forget_future_fix``): a unit is never silenced by a fix from its future."""
        k = self._key(vehicle_id)
        state = self._get(k)
        if state is None:
            return []
        new, events = engine.forget_future_fix(state, now=now, cfg=self.cfg)
        if new is not state:
            self.keep(k, new)
        return events


def misrouted(msg: M, raw: bytes, partition: int, expected: int) -> M | Rejection:
    """``msg`` as it is, or refused (``misrouted``) when it came on ``partition`` but its
    vehicle id's partition is ``expected``: a producer that did not key it by the vehicle id
    (the default partitioner's murmur2). Taken, it was processed by whichever worker owns that
    partition, against a state of the unit it does not own: a second ``create`` of the unit's
    alert id, and the unit's state written into the owner's changelog partition.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> s = UnitStatus(vehicle_id="E1", ts=datetime(2026, 1, 1, tzinfo=UTC), status="available")
    >>> misrouted(s, b"{}", 3, 3) is s
    True
    >>> misrouted(s, b"{}", 1, 3).detail
    "vehicle 'E1' belongs to input partition 3 (murmur2 of its id); came on partition 1"
    """
    if partition == expected:
        return msg
    detail = (f"vehicle {msg.vehicle_id!r} belongs to input partition {expected} (murmur2 of its "
              f"id); came on partition {partition}")
    return Rejection(reason="misrouted", detail=detail, raw=bytes(raw), vehicle_id=msg.vehicle_id)
