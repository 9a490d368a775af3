"""``broker transparency``: a plain-language report per partner, from config + audit log.

For each partner: who it is, why it gets data (purpose), which categories of data it gets
(from its policy, in words), how many alerts it was sent and how those deliveries went (from
the audit log), and how long data is kept.

Counts are of distinct messages (``webhook-id`` and the alert's life, ``started_at``), never of
records: a message re-sent after a restart is one message, and a later life of an alert
under the same id (a partner given the engine's id) is another alert. A message is
*delivered* if one attempt was answered 2xx; else it *may have been received* if an attempt
went without an outcome on record (``sending`` with nothing after it: a send cut short by a
rebalance, a shutdown or a crash; an attempt held back after its ``sending``, marked
``not_sent``, is an outcome); else it ended as its last record says (expired, refused ...).
Records of schema 1 (no ``started_at``, no ``sending``) still count, lives merged.

Rendered as text and as HTML; pure functions (``format_text``/``format_html``) do the
rendering; ``broker transparency`` (``broker.cli``) reads the files and prints.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from adapters.audit import AuditRecord
from adapters.config import Partner, PartnersConfig
from adapters.zone_rounding import COARSE_DECIMALS

ALWAYS = (
    "the warning area (a polygon on the map, around the vehicle and the road ahead of it) where "
    "drivers should expect an emergency vehicle",
    "whether the vehicle is approaching or stopped on scene, and when the warning starts and ends",
    # the dispatch zone (broker.reckoning.dispatch_start): a warning, so it goes out, and it
    # begins where the dispatched unit stands; the unit's own place, speed and heading do not
    # (adapters.policy.view_for)
    "when a vehicle has just been dispatched and is not yet responding with lights and sirens: "
    "a warning area over the first stretch of its planned route, which begins where the vehicle "
    "stands (usually its station)",
)
CATEGORY_TEXT = {
    "alert_id": "the broker's internal alert identifier",
    "vehicle_id": "the identifier of the emergency vehicle",
    "incident_id": "the dispatch incident number",
    "agency": "the responding agency",
    "unit_type": "the type of vehicle (for example 'engine' or 'ambulance')",
    "position": "the vehicle's current location while it is responding",
    "speed": "the vehicle's speed while it is responding",
    "heading": "the vehicle's direction of travel while it is responding",
    "path": "the stretch of road the vehicle is about to use, from where it is",
    "segments": "the roads the warning covers, which way drivers on them must be going to meet "
    "the vehicle, and when it will have passed",
    "street": "the name of the street the warning is about: the one the vehicle is on or about "
    "to turn onto, or where it stands on scene (never for a vehicle just dispatched, whose "
    "street would say where its station is)",
    "cancel_reason": "why a warning ended",
}
NEVER = (
    "the location, speed or direction of any vehicle that is not responding with lights and "
    "sirens or on scene (beyond where the warning area of a vehicle just dispatched begins)",
)


@dataclass
class PartnerReport:
    """What the report says about one partner."""

    partner: Partner
    shares: list[str]
    withheld: list[str]
    alerts_sent: int = 0  # distinct alerts (per life) at least one message of was delivered
    messages_delivered: int = 0  # distinct messages answered 2xx
    # distinct messages not known delivered whose send went without an outcome on record:
    # the partner may have them (and the alerts they are of, not counted in alerts_sent)
    messages_uncertain: int = 0
    alerts_uncertain: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # records, by status
    # distinct messages neither delivered nor uncertain, by how they ended (their last
    # outcome record: expired, dead_letter, superseded, circuit_open, failed)
    undelivered: Counter[str] = field(default_factory=Counter)
    feed_requests: int = 0
    alerts_served: int = 0  # distinct alerts its feed responses carried
    first: str | None = None
    last: str | None = None


def build_reports(config: PartnersConfig, records: Iterable[AuditRecord]) -> list[PartnerReport]:
    """One report per partner, counting its audit records."""
    reports = {p.id: _describe(p) for p in config.partners}
    _count(reports, records)
    return list(reports.values())


# The warning area is drawn around the vehicle (its circle, the road ahead from where it is),
# so every partner can tell where the vehicle is from the area alone: the report says so, and
# never lists the location as withheld (a privacy review found it told the public that
# partners given only the area, or the street, never received it).
LOCATION_FROM_AREA = (
    "where the vehicle is while it is responding or on scene, to within a few metres: the "
    "warning area is drawn around it (the vehicle's coordinates themselves are not sent)"
)


def coarse_area_text(decimals: int) -> str:
    """What a coarse partner's squares say, measured (docs/privacy.md): on scene the square,
    while moving much more."""
    size = 10 ** (5 - decimals)
    return (f"locations rounded to about {size} metres; the warning area as squares of about "
            f"{size} metres (or larger) that cover all of it. On scene the squares say only "
            f"which {size}-metre square the vehicle is in; while it moves, which squares are "
            "given changes with where it is within them, and can place it (and a dispatched "
            "vehicle's station) within a few metres")


def _describe(p: Partner) -> PartnerReport:
    """What the partner's policy says it gets, in words."""
    fields = sorted(p.policy.fields)
    # the path and the warning segments begin at the vehicle: a partner given either has
    # its location, "position" field or not
    located = "position" in p.policy.fields or bool({"path", "segments"} & p.policy.fields)
    withheld = [CATEGORY_TEXT[f] for f in ("vehicle_id", "incident_id") if f not in fields]
    shares = list(ALWAYS) + [CATEGORY_TEXT[f] for f in fields]
    coarse = (p.policy.coordinate_decimals is not None
              and p.policy.coordinate_decimals <= COARSE_DECIMALS)
    if located and "position" not in p.policy.fields:
        shares.append(f"{CATEGORY_TEXT['position']}, as the place where the road ahead "
                      "and the warning segments begin")
    elif not located and not coarse:
        shares.append(LOCATION_FROM_AREA)
    if coarse:
        shares.append(coarse_area_text(p.policy.coordinate_decimals or 0))
    return PartnerReport(partner=p, shares=shares, withheld=withheld)


def _count(reports: dict[str, PartnerReport], records: Iterable[AuditRecord]) -> None:
    """The reports' counts, from the audit records (see the module docstring)."""
    messages: dict[tuple[str, MessageKey], _Message] = {}
    served: dict[str, set[str]] = {pid: set() for pid in reports}
    for rec in records:
        report = reports.get(rec.partner)
        if report is None:
            continue
        report.statuses[rec.status] += 1
        if rec.status == "feed_served":
            report.feed_requests += 1
            served[rec.partner].update(alert_of(mid) for mid in rec.served)
        elif rec.action != "feed":
            key = (rec.partner, message_key(rec))
            messages.setdefault(key, _Message(alert=(rec.alert_id, rec.started_at))).add(rec)
        stamp = rec.at.isoformat(timespec="seconds")
        report.first = min(report.first or stamp, stamp)
        report.last = max(report.last or stamp, stamp)
    sent: dict[str, set[AlertKey]] = {pid: set() for pid in reports}
    maybe: dict[str, set[AlertKey]] = {pid: set() for pid in reports}
    for (pid, _), msg in messages.items():
        report = reports[pid]
        if msg.delivered:
            report.messages_delivered += 1
            sent[pid].add(msg.alert)
        elif msg.sends > msg.outcomes:
            report.messages_uncertain += 1
            maybe[pid].add(msg.alert)
        elif msg.last is not None:
            report.undelivered[msg.last] += 1
    for pid, report in reports.items():
        report.alerts_sent = len(sent[pid])
        report.alerts_uncertain = len(maybe[pid] - sent[pid])
        report.alerts_served = len(served[pid])


MessageKey = tuple[str, datetime | None, int]  # (webhook-id, started_at, engine version)
AlertKey = tuple[str, datetime | None]  # (partner-facing alert id, started_at)
# each follows a ``sending`` (attempt > 0); so does a record marked ``not_sent`` (the attempt
# held back after its record was written, adapters.delivery_loop), whatever its status: those
# were counted as cut short, and the public report said a restart or a fault had cut them off
# when nothing had (an operator review). Not every ``superseded`` or ``expired`` of an attempt
# number: one after an answered attempt (a retry's turn, a breaker open) follows no new
# ``sending``, and counted, it could hide another owner's send cut short under the same key.
ATTEMPT_OUTCOMES = frozenset({"delivered", "failed", "disabled"})


def message_key(rec: AuditRecord) -> MessageKey:
    """Which message a delivery record is of: its ``webhook-id`` (alert id + version) in the
    alert's life; a record without one (none written so) by its alert id and version. With
    the engine's version beside it: a life live across the deploy of per-life versions
    (2026-12-07) may have begun ``P-v5`` for engine v5 before it (cut short, nothing of the
    life delivered, so it is counted from 1 after it: ``fanout.as_known``) and sent ``P-v5``
    for engine v9 after it: two messages under one id (docs/privacy.md, item 4)."""
    return (rec.message_id or f"{rec.alert_id}-v{rec.version}", rec.started_at, rec.version)


@dataclass
class _Message:
    """What the records of one message say."""

    alert: AlertKey
    delivered: bool = False
    sends: int = 0  # ``sending`` records: attempts begun (over every worker and restart)
    outcomes: int = 0  # attempts' outcome records
    last: str | None = None  # the last outcome other than ``sending``, in log order

    def add(self, rec: AuditRecord) -> None:
        if rec.status == "sending":
            self.sends += 1
            return
        if rec.attempt > 0 and (rec.status in ATTEMPT_OUTCOMES or rec.not_sent):
            self.outcomes += 1
        self.delivered = self.delivered or rec.status == "delivered"
        self.last = rec.status


def alert_of(message_id: str) -> str:
    """The partner-facing alert id of a message id (``AlertView.message_id``: id + ``-v`` +
    version)."""
    return message_id.rsplit("-v", 1)[0]


def _delivery_line(r: PartnerReport) -> str:
    p = r.partner
    how = []
    if p.pushes:
        how.append("we send it each warning as it happens")
    if p.feed:
        how.append("it collects current warnings from a protected feed")
    return " and ".join(how).capitalize() + f" ({p.format.replace('_', ' ')} format)."


UNDELIVERED = {  # how a message that did not reach the partner ended, in words
    "expired": "messages dropped because the warning had already ended",
    "dead_letter": "messages that could not be delivered",
    "superseded": "messages replaced by a newer one before they went",
}


def _activity_line(r: PartnerReport) -> str:
    parts = [f"{r.alerts_sent} warnings sent in {r.messages_delivered} messages"]
    if r.messages_uncertain:
        also = f", about {r.alerts_uncertain} more warnings" if r.alerts_uncertain else ""
        parts.append(f"{r.messages_uncertain} more messages may have been received{also} (we "
                     "started sending them, then the sending was cut off before the partner "
                     "answered, by a restart or a fault on our side: we count them as possibly "
                     "received)")
    if r.partner.feed:
        parts.append(f"{r.feed_requests} feed requests answered, showing {r.alerts_served} "
                     "warnings")
    for status, label in UNDELIVERED.items():
        if r.undelivered[status]:
            parts.append(f"{r.undelivered[status]} {label}")
    for status, label in (("disabled", "times the partner asked us to stop"),
                          ("feed_denied", "feed requests refused (no valid token)")):
        if r.statuses[status]:
            parts.append(f"{r.statuses[status]} {label}")
    when = f" between {r.first} and {r.last}" if r.first else ""
    return "; ".join(parts) + when + "."


def format_text(reports: list[PartnerReport]) -> str:
    """The report as plain text."""
    lines = ["Emergency vehicle alerts: what we share, with whom, and why", ""]
    for r in reports:
        p = r.partner
        lines += [f"{p.name} ({p.id})", f"  Why: {p.purpose}", f"  How: {_delivery_line(r)}",
                  "  What they receive:"]
        lines += [f"    - {s}" for s in r.shares]
        lines += ["  What they never receive:"]
        lines += [f"    - {s}" for s in r.withheld + list(NEVER)]
        lines += [f"  Activity: {_activity_line(r)}",
                  f"  Retention: the partner keeps this data for at most {p.retention_days} days.",
                  ""]
    return "\n".join(lines)


def format_html(reports: list[PartnerReport]) -> str:
    """The report as a standalone HTML page (every value escaped)."""
    e = html.escape
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           "<title>Emergency vehicle alerts: transparency report</title></head><body>",
           "<h1>Emergency vehicle alerts: what we share, with whom, and why</h1>"]
    for r in reports:
        p = r.partner
        out += [f"<section id='{e(p.id)}'><h2>{e(p.name)}</h2>",
                f"<p><strong>Why:</strong> {e(p.purpose)}</p>",
                f"<p><strong>How:</strong> {e(_delivery_line(r))}</p>",
                "<h3>What they receive</h3><ul>"]
        out += [f"<li>{e(s)}</li>" for s in r.shares]
        out += ["</ul><h3>What they never receive</h3><ul>"]
        out += [f"<li>{e(s)}</li>" for s in r.withheld + list(NEVER)]
        out += ["</ul>", f"<p><strong>Activity:</strong> {e(_activity_line(r))}</p>",
                f"<p><strong>Retention:</strong> at most {p.retention_days} days.</p></section>"]
    out.append("</body></html>")
    return "\n".join(out)
