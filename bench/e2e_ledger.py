"""The end-to-end bench's ledger: what the broker side emitted and queued, and which queued
deliveries the partner never got (the zero-loss check of ``bench.e2e_bench``).

Latest wins: a version replaced in the partner's mailbox before it went out is not lost. The
webhook-ids a base revision's worker sent are read in this tree's terms
(:func:`in_this_trees_terms`), so both trees are checked by one ledger.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from adapters.fanout import Delivery, PartnerSet, ThrottleState, fan_out
from adapters.hub import DeliveryHub
from broker.model import AlertEvent


@dataclass
class Ledger:
    """What the broker side emitted and queued, for the zero-loss check."""

    engine_versions: set[tuple[str, int]] = field(default_factory=set)
    delivered_versions: set[tuple[str, int]] = field(default_factory=set)
    queued: set[tuple[str, str]] = field(default_factory=set)  # (url path, webhook-id)
    event_ts: dict[tuple[str, str], datetime] = field(default_factory=dict)  # exact, per delivery
    queued_by_partner: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    stale_cancels: int = 0
    # (alert id, version) -> wall time (UTC) the worker produced the alert (Kafka CreateTime)
    alert_produced: dict[tuple[str, int], datetime] = field(default_factory=dict)
    delivery_alert: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    # the stamps the source put on its messages, per vehicle (ms, as sent): an event stamped
    # otherwise was made by the engine's clock, not by a message of its unit: a held dispatch
    # alert (dispatch_hold_s, at its due time), a dead-reckoning step. Per vehicle: at 500
    # messages a second, a due time lands on some other unit's stamp about every other time
    stamps: set[tuple[str, datetime]] = field(default_factory=set)
    kind: dict[tuple[str, str], str] = field(default_factory=dict)  # "<action>:<cancel reason>"
    # deliveries of such events -> their stamp: timed apart (stamp -> received), since no
    # message was produced at that instant
    clock_made_ts: dict[tuple[str, str], datetime] = field(default_factory=dict)

    # (url path, webhook-id as a worker before 2026-12-05 names it) -> this tree's webhook-id:
    # the base revision's pseudonym digests the engine's id alone, this one its start as well
    pre_life_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    # (url path, webhook-id as a worker from 2026-12-05 until versions counted per life names
    # it: this tree's pseudonym, the engine's version) -> this tree's webhook-id, where they
    # differ (a life the engine began past v1). Read only for such a base (engine_count_base):
    # under per-life versions the same id may name another step of the life (P-v5: engine v5
    # in the engine's count, engine v9 in a life begun at v5)
    engine_count_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def record(self, ev: AlertEvent, deliveries: list[Delivery],
               keys: Callable[[str], bytes] | None = None) -> None:
        self.engine_versions.add((ev.alert_id, ev.version))
        self.actions[ev.action] += 1
        if ev.cancel_reason == "stale":
            self.stale_cancels += 1
        for d in deliveries:
            key = (urlparse(d.url).path, d.message_id)
            if keys is not None:
                self.pre_life_ids[(key[0], _pre_life_id(ev, keys(d.partner_id)))] = key[1]
                engine_count = f"{d.view.alert_id}-v{ev.version}"
                if engine_count != key[1]:
                    self.engine_count_ids[(key[0], engine_count)] = key[1]
            self.delivery_alert[key] = (ev.alert_id, ev.version)
            self.kind[key] = f"{ev.action}:{ev.cancel_reason or ''}"
            if ev.cancel_reason in ("stale", "expired"):
                pass  # tick-made at a timeout: no message behind it, nothing to time
            elif (ev.vehicle_id, ev.ts) in self.stamps:
                self.event_ts[key] = d.event_ts
            else:
                self.clock_made_ts[key] = d.event_ts
            if d.replace_only:  # throttled: sent only in place of an older one, never owed
                continue
            self.delivered_versions.add((ev.alert_id, ev.version))
            self.queued.add(key)
            self.queued_by_partner[d.partner_id] += 1


def _pre_life_id(ev: AlertEvent, key: bytes) -> str:
    """The webhook-id a worker before 2026-12-05 (the base revision) gives this step: its
    pseudonym was a keyed BLAKE2b of the engine's alert id alone (adapters.policy then)."""
    digest = hashlib.blake2b(ev.alert_id.encode(), key=key[:64], digest_size=8).hexdigest()
    return f"ev{digest}-v{ev.version}"


def engine_count_base(tree: Path) -> bool:
    """Whether the worker of the checkout ``tree`` sends the engine's versions under a
    pseudonym (a revision before versions counted per life, docs/privacy.md item 4)."""
    return "per_life_versions" not in (tree / "adapters" / "policy.py").read_text()


def in_this_trees_terms(rows: list[dict[str, Any]], ledger: Ledger, tree: Path) -> None:
    """The webhook-ids the base revision's worker (``tree``) sent, as this tree names them:
    a pseudonym of the engine's id alone (before 2026-12-05), the engine's versions under a
    pseudonym (before versions counted per life). Without the second, a base from 2026-12-05
    on had a re-created life's deliveries credited to the wrong versions, or lost."""
    ids = dict(ledger.pre_life_ids)
    if engine_count_base(tree):
        ids.update(ledger.engine_count_ids)
    for r in rows:
        r["message_id"] = ids.get((r["path"], r["message_id"]), r["message_id"])


def unanswered(queued: set[tuple[str, str]], received: set[tuple[str, str]]
               ) -> set[tuple[str, str]]:
    """Queued deliveries (url path, webhook-id ``<alert>-v<version>``) that the partner got
    neither themselves nor a newer version of: latest wins, so a version replaced in the
    mailbox before it was sent is not lost."""
    newest: dict[tuple[str, str], int] = {}
    for path, mid in received:
        alert, version = mid.rsplit("-v", 1)
        newest[(path, alert)] = max(newest.get((path, alert), -1), int(version))
    lost = set()
    for path, mid in queued:
        alert, version = mid.rsplit("-v", 1)
        if newest.get((path, alert), -1) < int(version):
            lost.add((path, mid))
    return lost


class FanOut:
    """fan_out + the ledger, and (in-process) the DeliveryHub; ``hub=None``: ledger only (the
    worker delivers)."""

    def __init__(self, partners: PartnerSet, hub: DeliveryHub | None, ledger: Ledger) -> None:
        self.partners, self.hub, self.ledger = partners, hub, ledger
        self.state: ThrottleState = {}
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, events: list[AlertEvent]) -> None:
        for ev in events:
            if (ev.alert_id, ev.version) in self.seen:
                continue  # an at-least-once redelivery: fan-out already counted it
            self.seen.add((ev.alert_id, ev.version))
            self.state, deliveries = fan_out(ev, self.partners, self.state, ev.ts)
            self.ledger.record(ev, deliveries, self.partners.config.key_for)
            if self.hub is not None:
                for d in deliveries:
                    self.hub.submit(d)
