"""Dispatch in a long-running worker: fan-out and delivery of a stream of alert events, with
the bookkeeping a restart needs and an acknowledgement once every delivery has settled.

The Faust agent (``broker.streams.fanout_agent``) feeds it the ``alerts`` partitions its worker
owns, so every alert event is fanned out once per consumer group. Per event:
``adapters.fanout.fan_out`` (pure) picks the push partners, applies throttle and privacy policy
and renders; the deliveries go to a ``DeliveryHub`` (one pooled httpx client, one queue per
partner, so a slow partner only delays itself).

**What a restart needs** (the changelogged ``delivered`` table, alert id -> partner ->
:class:`PartnerRecord`): every version up to which a partner's deliveries of the alert have
settled (delivered, expired, dead-lettered or superseded), and what the partner has actually
*received* (its last delivered message: CAP ``references`` and "is this the partner's first
message of the alert" are judged from it after a restart), and whether the partner *may* hold
the alert live though nothing of it was confirmed (``PartnerRecord.maybe_live``: its cancel is
owed, after a restart or a rebalance as before; written as soon as such an attempt failed,
before its delivery settles, with version 0 if nothing of the life had settled yet). Fan-out
also keeps a *working* throttle state in memory that runs ahead of the settled one (the next
event is throttled against the last one queued).

The ``alerts`` event is acknowledged (its offset may be committed) only once all its deliveries
have settled and the records they wrote are durable (in the worker: Kafka has their changelog
records, ``broker.streams.table_writes``; a record Kafka did not take stops the worker, the
event un-acked). After a crash, Kafka hands back exactly the events whose deliveries had not all
settled; fan-out starts from the table, so those are sent again (same ``webhook-id``: partners
de-duplicate) and versions already settled are not (``fan_out`` skips them). A record outlives
the alert's cancel by the cancel's TTL, so a late redelivery of an old version of a cancelled
alert is skipped too; then :meth:`Dispatcher.forgettable` lets the shell delete it. A record is
kept per life of the alert: the latest life's in its fields, earlier ones' in
``PartnerRecord.earlier`` until each has outlived its alert the same way (their events may
come back after a restart too).

**Which clock decides expiry.** The engine and ``fan_out`` work in event time (the fix's ``ts``).
A delivery's remaining life is taken in event time (``expires_at - ts``: the alert TTL, or the
cancel TTL) and starts when fan-out queues it, so a replay at ``--max-speed`` of an incident
recorded last week is delivered as it would have been live, and a delivery held up by retries
still expires on time. With ``BROKER_DELIVERY_MAX_AGE_S`` set (default 120 s: live traffic,
whose event time is wall time) a delivery also never outlives its own ``expires_at`` nor
``ts`` + that age in wall-clock time, so a worker catching up after an outage never pushes a
zone past its expiry as live (measured by the fault suite's Kafka restart); replays of
recorded incidents leave it unset (empty).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

import msgspec

from adapters.dead_letters import DeadLetter
from adapters.delivery_model import Settled
from adapters.fanout import Delivery, LastSent, PartnerSet, fan_out
from adapters.hub import DeliveryHub
from adapters.policy import CANCEL_TTL
from broker.model import AlertEvent

log = logging.getLogger(__name__)


class _LastSentRecord(msgspec.Struct, frozen=True):
    """``LastSent`` on the wire."""

    version: int
    at: datetime
    message_id: str
    ts: datetime


class LifeRecord(msgspec.Struct, frozen=True):
    """What one partner has settled of an earlier life of the alert (``PartnerRecord.earlier``):
    as in the ``PartnerRecord`` fields of the same names."""

    started_at: datetime
    version: int
    until: datetime
    delivered: _LastSentRecord | None = None
    maybe_live: bool = False


class PartnerRecord(msgspec.Struct, frozen=True):
    """What one partner has settled of one alert (a ``delivered`` table value holds one per
    partner): every version up to ``version`` has settled, the partner's last received message
    is ``delivered`` (None: nothing received), ``maybe_live`` says the partner may hold the
    alert live all the same (its cancel is owed), and ``until`` is when the record may go. These
    are of the alert's latest life; ``earlier`` keeps the same of earlier lives until each
    one's ``until`` (Kafka may hand their events back after a restart: what the partner got of
    them must not be sent again, nor a cancel it is owed be taken for one of nothing)."""

    version: int
    until: datetime
    delivered: _LastSentRecord | None = None
    # the life of the alert the record is of (its ``started_at``): a re-created alert is
    # another alert for the partner, and one the engine forgot counts from version 1 again;
    # None: a record written before lives were kept (taken as of any life, as it was)
    started_at: datetime | None = None
    # earlier lives' records, oldest first (additive: a record without it has none)
    earlier: tuple[LifeRecord, ...] = ()
    # nothing of the life confirmed received, but an attempt may have reached the partner (its
    # answer never came, or a gateway's 504: ``Outcome.may_have_arrived``): its cancel is
    # owed past the alert's expiry, after a restart or a rebalance too (``PartnerWorker._know``).
    # Additive: a record without it (before 2026-12-07) says False, as the worker then knew
    # it only in memory
    maybe_live: bool = False

    @property
    def last_delivered(self) -> LastSent | None:
        """``delivered`` as the ``LastSent`` the delivery code uses."""
        d = self.delivered
        return None if d is None else LastSent(d.version, d.at, d.message_id, d.ts,
                                               self.started_at)

    def of_life(self, started_at: datetime) -> bool:
        """Whether the record is of the alert's life that began at ``started_at``."""
        return self.started_at is None or self.started_at == started_at

    def for_life(self, started_at: datetime) -> PartnerRecord | None:
        """The record of the alert's life that began at ``started_at`` (None: nothing of it
        settled, or long enough ago to be forgotten)."""
        if self.of_life(started_at):
            return self
        for e in self.earlier:
            if e.started_at == started_at:
                return PartnerRecord(e.version, e.until, e.delivered, e.started_at,
                                     maybe_live=e.maybe_live)
        return None

    @property
    def last_until(self) -> datetime:
        """When the record of every life in it may go."""
        return max([self.until, *(e.until for e in self.earlier)])


_settled_encoder = msgspec.json.Encoder()
_settled_decoder = msgspec.json.Decoder(dict[str, PartnerRecord])
_audit_encoder = msgspec.json.Encoder()


def encode_settled(entries: Mapping[str, PartnerRecord]) -> bytes:
    """partner id -> :class:`PartnerRecord` as JSON bytes (a ``delivered`` table value)."""
    return _settled_encoder.encode(dict(entries))


def decode_settled(raw: bytes | None) -> dict[str, PartnerRecord]:
    """The inverse of :func:`encode_settled`; empty for a missing (or an older, unreadable)
    value: the worst that does is send a version again, which ``webhook-id`` de-duplicates."""
    if not raw:
        return {}
    try:
        return _settled_decoder.decode(raw)
    except msgspec.DecodeError:
        log.warning("a delivered-table value of an older shape was ignored")
        return {}


def settle(
    settled: Mapping[str, PartnerRecord],
    partner_id: str,
    version: int,
    delivered: LastSent | None,
    until: datetime,
    *,
    started_at: datetime | None = None,
    now: datetime | None = None,
    keep: Collection[datetime] = (),
    maybe_live: bool = False,
) -> dict[str, PartnerRecord]:
    """Records after one delivery of ``version`` (of the alert's life that began at
    ``started_at``) settled for ``partner_id``. Pure.

    Versions only go up within a life (deliveries of one life settle in order, but a stale
    redelivery must not move a record back); ``delivered`` keeps the newest message the
    partner received, and ``maybe_live`` (the partner may hold the life live though nothing
    of it was confirmed) once reported stays. The record's fields are of the latest life: a
    new life's first settle starts them afresh (its versions may count from 1 again) and
    keeps the earlier life's record in ``earlier``, where a late settle of an earlier life
    goes too (lives are delivered independently). An earlier life's record goes once its
    ``until`` is past ``now``, unless it is in ``keep`` (lives with deliveries still under
    way: a cancel owed is retried past its ``until``, and its event comes back after a
    restart).
    """
    out = dict(settled)
    old = out.get(partner_id)
    got = None if delivered is None else _LastSentRecord(
        delivered.version, delivered.at, delivered.message_id, delivered.ts
    )
    if old is None or started_at is None or old.of_life(started_at):
        rec = _merged(old, version, got, until, started_at, maybe_live)
        earlier = () if old is None else old.earlier
    elif old.started_at is not None and started_at > old.started_at:  # a new life
        rec = PartnerRecord(version, until, got, started_at, maybe_live=maybe_live)
        earlier = (*old.earlier, LifeRecord(old.started_at, old.version, old.until,
                                            old.delivered, old.maybe_live))
    else:  # a late settle of an earlier life: the latest life's fields stay
        was = _merged(old.for_life(started_at), version, got, until, started_at, maybe_live)
        rec = old
        earlier = (*(e for e in old.earlier if e.started_at != started_at),
                   LifeRecord(started_at, was.version, was.until, was.delivered,
                              was.maybe_live))
    if now is not None:
        earlier = tuple(e for e in earlier if e.until > now or e.started_at in keep)
    earlier = tuple(sorted(earlier, key=lambda e: e.started_at))
    out[partner_id] = msgspec.structs.replace(rec, earlier=earlier)
    return out


def _merged(
    old: PartnerRecord | None, version: int, got: _LastSentRecord | None, until: datetime,
    started_at: datetime | None, maybe_live: bool,
) -> PartnerRecord:
    """One life's record after a settle of ``version`` in it (``old``: its record before)."""
    if old is not None:
        version = max(version, old.version)
        until = max(until, old.until)
        if got is None or (old.delivered is not None and old.delivered.version > got.version):
            got = old.delivered
        started_at = started_at or old.started_at
        maybe_live = maybe_live or old.maybe_live
    return PartnerRecord(version, until, got, started_at, () if old is None else old.earlier,
                         maybe_live)


def working_state(
    records: Mapping[str, PartnerRecord], alert_id: str, started_at: datetime | None = None
) -> dict[tuple[str, str], LastSent]:
    """Fan-out's throttle state for one alert, rebuilt from the settled records (a restart):
    versions up to the settled one are not sent again; the throttle counts from the event time
    of the partner's last received message (nothing received: no throttle). With
    ``started_at``, only records of that life of the alert count (``PartnerRecord.for_life``):
    what a partner settled of another life says nothing of this one (whose versions may count
    from 1 again)."""
    out = {}
    for pid, whole in records.items():
        rec = whole if started_at is None else whole.for_life(started_at)
        if rec is None:
            continue
        last = rec.last_delivered
        ts = last.ts if last is not None else _LONG_AGO
        out[(pid, alert_id)] = LastSent(rec.version, ts, last.message_id if last else "", ts,
                                        rec.started_at)
    return out


_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


def in_wall_time(
    delivery: Delivery, wall_now: datetime, *, max_age_s: float | None = None
) -> Delivery:
    """The delivery with its expiry moved to wall-clock time (see the module docstring)."""
    expires = wall_now + (delivery.expires_at - delivery.event_ts)
    if max_age_s is not None:  # live traffic: event time is wall time, give no extra life
        expires = min(expires, delivery.event_ts + timedelta(seconds=max_age_s),
                      delivery.expires_at)
    return replace(delivery, expires_at=expires)


def dead_letter_value(letter: DeadLetter) -> bytes:
    """A ``delivery.dlq`` record value: the dead letter as JSON (body base64, no secret)."""
    return _audit_encoder.encode(letter)


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """Headers of a ``delivery.dlq`` record: why, and for whom."""
    return [
        ("reason", letter.reason[:500].encode()),
        ("partner", letter.partner.encode()),
        ("message_id", letter.message_id.encode()),
    ]


def _ack_now(ack: Callable[[], object]) -> None:
    ack()


class DispatchMetrics(Protocol):
    """What the dispatcher counts (the worker's Prometheus metrics implement it)."""

    def queued(self, partner_id: str) -> None:
        """One delivery queued for ``partner_id``."""

    def pending(self, n: int) -> None:
        """``n`` deliveries queued or in flight now."""


@dataclass
class Dispatcher:
    """Fan-out of one worker: working and settled state, deliveries, acks.

    ``settled_get``/``settled_put`` read and write the ``delivered`` table (``put(key, None)``
    deletes); ``owns(alert_id)`` says whether this worker owns the alert's ``alerts``
    partition (a delivery that settles after its partition moved away leaves the table alone).
    ``after_written(alert_id, ack)`` acks an event once the table writes of its alert made so
    far are durable (the worker: once Kafka has their changelog records, never if one was
    lost: ``broker.streams.table_writes``); the default acks at once (a table in memory).
    """

    partners: PartnerSet
    hub: DeliveryHub
    metrics: DispatchMetrics
    settled_get: Callable[[str], bytes | None]
    settled_put: Callable[[str, bytes | None], None]
    owns: Callable[[str], bool]
    max_age_s: float | None = None
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    after_written: Callable[[str, Callable[[], object]], None] = field(
        default=lambda alert_id, ack: _ack_now(ack))
    working: dict[str, dict[str, LastSent]] = field(default_factory=dict)
    pending: int = 0
    # alert id -> life (started_at) -> its deliveries queued here and not settled yet
    unsettled: dict[str, dict[datetime, int]] = field(default_factory=dict)

    def handle(self, event: AlertEvent, ack: Callable[[], object]) -> int:
        """Fan one alert event out and queue its deliveries; ``ack()`` once all settled and
        their records are durable (``after_written``).

        Returns how many deliveries were queued.
        """
        aid, life = event.alert_id, event.started_at
        records = decode_settled(self.settled_get(aid))
        current = self.working.get(aid)
        earlier = False  # an event of a life before the one the working state is of
        lives = {ls.started_at for ls in (current or {}).values()} - {None, life}
        if lives:  # the working state is another life's (one at a time: the newest)
            earlier = any(t is not None and t > life for t in lives)
            current = None
        state_in = (
            {(pid, aid): ls for pid, ls in current.items()}
            if current is not None else working_state(records, aid, life)
        )
        state_out, deliveries = fan_out(event, self.partners, state_in, event.ts)
        mine = {pid: ls for (pid, a), ls in state_out.items() if a == aid}
        if earlier:  # a late redelivery: the later life's working state stays
            pass
        elif mine:
            self.working[aid] = mine
        else:
            self.working.pop(aid, None)
        if not deliveries:
            self.after_written(aid, ack)  # a write still under way may be what skipped them
            return 0
        remaining = len(deliveries)
        wall_now = self.wall()

        def settled(
            d: Delivery, how: Settled, delivered: LastSent | None, maybe_live: bool = False
        ) -> None:
            nonlocal remaining
            until = d.expires_at + CANCEL_TTL  # d's expiry is in wall time (in_wall_time)
            self._settle(aid, d.partner_id, d.version, delivered, until, life, maybe_live)
            lives = self.unsettled.get(aid, {})
            lives[life] = lives.get(life, 1) - 1
            if lives[life] <= 0:
                del lives[life]
            if not lives:
                self.unsettled.pop(aid, None)
            self.pending -= 1
            self.metrics.pending(self.pending)
            remaining -= 1
            if remaining == 0:  # acked once its record (and any before it) is durable
                self.after_written(aid, ack)

        under_way = self.unsettled.setdefault(aid, {})
        under_way[life] = under_way.get(life, 0) + len(deliveries)
        for d in deliveries:
            self.pending += 1
            self.metrics.queued(d.partner_id)
            record = records.get(d.partner_id)
            of_life = None if record is None else record.for_life(life)
            seen = None if of_life is None else of_life.last_delivered
            self.hub.submit(
                in_wall_time(d, wall_now, max_age_s=self.max_age_s), settled, delivered=seen,
                maybe_live=of_life is not None and of_life.maybe_live,
                on_maybe_live=partial(self._maybe_live, aid, life),
            )
        self.metrics.pending(self.pending)
        return len(deliveries)

    def _maybe_live(self, aid: str, started_at: datetime, d: Delivery) -> None:
        """An attempt of ``d`` may have reached the partner with nothing of the life confirmed,
        before ``d`` settles (it is retried): kept now, so a restart or a rebalance before it
        settles still owes the cancel. Version 0: nothing is settled by it."""
        until = d.expires_at + CANCEL_TTL
        self._settle(aid, d.partner_id, 0, None, until, started_at, True)

    def _settle(
        self, aid: str, pid: str, version: int, delivered: LastSent | None, until: datetime,
        started_at: datetime, maybe_live: bool,
    ) -> None:
        if not self.owns(aid):
            return
        before = decode_settled(self.settled_get(aid))
        after = settle(before, pid, version, delivered, until, started_at=started_at,
                       now=self.wall(), keep=frozenset(self.unsettled.get(aid, ())),
                       maybe_live=maybe_live)
        if after != before:
            self.settled_put(aid, encode_settled(after))

    def forgettable(self, raw: bytes | None, now: datetime, alert_id: str | None = None) -> bool:
        """Whether a ``delivered`` table value may be deleted at ``now``: every partner's record
        has outlived its alert (the alert's expiry, or its cancel's TTL), and no delivery of
        ``alert_id`` is under way here (a cancel owed is retried past that: after a restart it
        must still be known that the partner got the alert)."""
        if alert_id is not None and self.unsettled.get(alert_id):
            return False
        records = decode_settled(raw)
        return all(rec.last_until <= now for rec in records.values())

    def forget(self, owned: Callable[[str], bool]) -> None:
        """Drop working state of alerts whose partition this worker no longer owns."""
        self.working = {aid: s for aid, s in self.working.items() if owned(aid)}
        self.unsettled = {aid: n for aid, n in self.unsettled.items() if owned(aid)}
