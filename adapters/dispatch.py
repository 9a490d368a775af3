"""Dispatch in a long-running worker: fan-out and delivery of a stream of alert events, with
the bookkeeping a restart needs and an acknowledgement once every delivery has settled.

The Faust agent (``broker.streams.fanout_agent``) feeds it the ``alerts`` partitions its worker
owns, so every alert event is fanned out once per consumer group. Per event:
``adapters.fanout.fan_out`` (pure) picks the push partners, applies throttle and privacy policy
and renders; the deliveries go to a ``DeliveryHub`` (one pooled httpx client, one queue per
partner, so a slow partner only delays itself).

**What a restart needs.** Two pieces of state, kept apart:

- *working* throttle state (in memory): what fan-out has queued per (partner, alert). It runs
  ahead of what has been delivered, so the next event of the alert is throttled and referenced
  against the last one queued, as the in-process ``deliver_events`` does.
- *settled* state (the changelogged ``delivered`` table, alert id -> partner -> ``LastSent``):
  updated when a delivery settles (delivered, expired or dead-lettered).

The ``alerts`` event is acknowledged (its offset may be committed) only once all its deliveries
have settled. After a crash, Kafka hands back exactly the events whose deliveries had not all
settled; fan-out starts from the settled table, so those are sent again (same ``webhook-id``:
partners de-duplicate) and the settled ones are not (``fan_out`` skips versions a partner
already got). At least once, with the throttle and CAP ``references`` carried across restarts.

**Which clock decides expiry.** The engine and ``fan_out`` work in event time (the fix's ``ts``).
A delivery's remaining life is taken in event time (``expires_at - ts``: the alert TTL, or the
cancel TTL) and starts when fan-out queues it, so a replay at ``--max-speed`` of an incident
recorded last week is delivered as it would have been live, and a delivery held up by retries
still expires on time. ``BROKER_DELIVERY_MAX_AGE_S`` also drops (counts as expired) events whose
``ts`` is older than that in wall-clock time: use it in production so a worker catching up after
an outage does not push stale zones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import msgspec

from adapters.delivery import DeadLetter, DeliveryHub, Settled
from adapters.fanout import Delivery, LastSent, PartnerSet, fan_out
from broker.model import AlertEvent

log = logging.getLogger(__name__)


class _LastSentRecord(msgspec.Struct, frozen=True):
    """``LastSent`` on the wire (the ``delivered`` table's values)."""

    version: int
    at: datetime
    message_id: str
    ts: datetime


_settled_encoder = msgspec.json.Encoder()
_settled_decoder = msgspec.json.Decoder(dict[str, _LastSentRecord])
_audit_encoder = msgspec.json.Encoder()


def encode_settled(entries: Mapping[str, LastSent]) -> bytes:
    """partner id -> ``LastSent`` as JSON bytes (a ``delivered`` table value)."""
    records = {
        pid: _LastSentRecord(ls.version, ls.at, ls.message_id, ls.ts)
        for pid, ls in entries.items()
    }
    return _settled_encoder.encode(records)


def decode_settled(raw: bytes | None) -> dict[str, LastSent]:
    """The inverse of :func:`encode_settled`; empty for a missing value."""
    if not raw:
        return {}
    return {
        pid: LastSent(r.version, r.at, r.message_id, r.ts)
        for pid, r in _settled_decoder.decode(raw).items()
    }


def settle(
    settled: Mapping[str, LastSent], partner_id: str, last: LastSent | None, *, cancel: bool
) -> dict[str, LastSent]:
    """Settled state after one delivery settled. Pure.

    A cancel ends the partner's entry (as ``fan_out`` does); otherwise the newer version wins
    (deliveries of one partner settle in order, but a stale redelivery must not go back).
    """
    out = dict(settled)
    if cancel:
        out.pop(partner_id, None)
    elif last is not None:
        seen = out.get(partner_id)
        if seen is None or last.version > seen.version:
            out[partner_id] = last
    return out


def in_wall_time(
    delivery: Delivery, wall_now: datetime, *, max_age_s: float | None = None
) -> Delivery:
    """The delivery with its expiry moved to wall-clock time (see the module docstring)."""
    expires = wall_now + (delivery.expires_at - delivery.event_ts)
    if max_age_s is not None:
        expires = min(expires, delivery.event_ts + timedelta(seconds=max_age_s))
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


class DispatchMetrics(Protocol):
    """What the dispatcher counts (the worker's Prometheus metrics implement it)."""

    def queued(self, partner_id: str) -> None:
        """One delivery queued for ``partner_id``."""

    def pending(self, n: int) -> None:
        """``n`` deliveries queued or in flight now."""


@dataclass
class Dispatcher:
    """Fan-out of one worker: working and settled throttle state, deliveries, acks.

    ``settled_get``/``settled_put`` read and write the ``delivered`` table (``put(key, None)``
    deletes); ``owns(alert_id)`` says whether this worker owns the alert's ``alerts``
    partition (a delivery that settles after its partition moved away leaves the table alone).
    """

    partners: PartnerSet
    hub: DeliveryHub
    metrics: DispatchMetrics
    settled_get: Callable[[str], bytes | None]
    settled_put: Callable[[str, bytes | None], None]
    owns: Callable[[str], bool]
    max_age_s: float | None = None
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    working: dict[str, dict[str, LastSent]] = field(default_factory=dict)
    pending: int = 0

    def handle(self, event: AlertEvent, ack: Callable[[], object]) -> int:
        """Fan one alert event out and queue its deliveries; ``ack()`` once all settled.

        Returns how many deliveries were queued.
        """
        aid = event.alert_id
        current = self.working.get(aid)
        if current is None:
            current = decode_settled(self.settled_get(aid))
        state_in = {(pid, aid): ls for pid, ls in current.items()}
        state_out, deliveries = fan_out(event, self.partners, state_in, event.ts)
        mine = {pid: ls for (pid, a), ls in state_out.items() if a == aid}
        if mine:
            self.working[aid] = mine
        else:
            self.working.pop(aid, None)
        if not deliveries:
            ack()
            return 0
        remaining = len(deliveries)
        cancel = event.action == "cancel"
        wall_now = self.wall()

        def settled(d: Delivery, how: Settled) -> None:
            nonlocal remaining
            self._settle(aid, d.partner_id, mine.get(d.partner_id), cancel=cancel)
            self.pending -= 1
            self.metrics.pending(self.pending)
            remaining -= 1
            if remaining == 0:
                ack()

        for d in deliveries:
            self.pending += 1
            self.metrics.queued(d.partner_id)
            self.hub.submit(in_wall_time(d, wall_now, max_age_s=self.max_age_s), settled)
        self.metrics.pending(self.pending)
        return len(deliveries)

    def _settle(self, aid: str, pid: str, last: LastSent | None, *, cancel: bool) -> None:
        if not self.owns(aid):
            return
        before = decode_settled(self.settled_get(aid))
        after = settle(before, pid, last, cancel=cancel)
        if after != before:
            self.settled_put(aid, encode_settled(after) if after else None)

    def forget(self, owned: Callable[[str], bool]) -> None:
        """Drop working state of alerts whose partition this worker no longer owns."""
        self.working = {aid: s for aid, s in self.working.items() if owned(aid)}
