"""``broker transparency``: a plain-language report per partner, from config + audit log.

For each partner: who it is, why it gets data (purpose), which categories of data it gets
(in words: those its policy shares today and those the audit log shows it was sent, which a
policy narrowed since no longer shares), how many alerts it was sent and how those deliveries
went (from the audit log), and how long data is kept. A partner of the log that is no longer in
the partners file gets a section too: what the log shows it received, and when.

Counts are of distinct messages (``webhook-id`` and the alert's life, ``started_at``), never of
records: a message re-sent after a restart is one message, and a later life of an alert
under the same id (a partner given the engine's id) is another alert. A message is
*delivered* if one attempt was answered 2xx; else it *may have been received* if an attempt
went without an outcome on record (``sending`` with nothing after it: a send cut short by a
rebalance, a shutdown or a crash; or a ``failed`` one marked ``may_have_arrived``, no answer
after the request went; an attempt held back after its ``sending``, marked ``not_sent``, is an
outcome); else *refused* if an attempt was answered (not 2xx: the partner had the request);
else it ended as its last record says (expired, dead letter ...).
Records of schema 1 (no ``started_at``, no ``sending``) still count, lives merged.

Rendered as text and as HTML; pure functions (``format_text``/``format_html``) do the
rendering; ``broker transparency`` (``broker.cli``) reads the files and prints.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat

from adapters.audit import AuditRecord
from adapters.config import Partner, PartnersConfig
from adapters.policy import OPTIONAL_FIELDS
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


# the optional fields the log's ``fields`` can name as sent: every one but ``alert_id``, which
# every message carries (a pseudonym, unless the policy gives the engine's id: the log's name
# for it is the same either way)
LOGGED_CATEGORIES = OPTIONAL_FIELDS - {"alert_id"}
# records of data that went, or may have gone, to the partner: their ``fields`` are what it got
CARRIES_DATA = frozenset({"sending", "delivered", "feed_served"})


@dataclass
class PartnerReport:
    """What the report says about one partner."""

    id: str
    partner: Partner | None  # None: in the audit log, no longer in the partners file
    shares: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    # optional fields the log shows were sent (``LOGGED_CATEGORIES``), each with the date of
    # the last record naming it
    logged: dict[str, str] = field(default_factory=dict)
    received_first: str | None = None  # the first and last record of data sent (CARRIES_DATA)
    received_last: str | None = None
    alerts_sent: int = 0  # distinct alerts (per life) at least one message of was delivered
    messages_delivered: int = 0  # distinct messages answered 2xx
    # distinct messages not known delivered whose send went without an outcome on record:
    # the partner may have them (and the alerts they are of, not counted in alerts_sent)
    messages_uncertain: int = 0
    alerts_uncertain: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # records, by status
    # distinct messages neither delivered nor uncertain, by how they ended: ``refused`` if an
    # attempt was answered (not 2xx), else their last outcome record (expired, dead_letter,
    # superseded, circuit_open, failed)
    undelivered: Counter[str] = field(default_factory=Counter)
    feed_requests: int = 0
    alerts_served: int = 0  # distinct alerts (per life) its feed responses carried
    first: str | None = None
    last: str | None = None


def build_reports(config: PartnersConfig, records: Iterable[AuditRecord]) -> list[PartnerReport]:
    """One report per partner of the partners file, then one per partner id found only in the
    audit log (in the log's order), counting its audit records. What each receives is what its
    policy shares or the log shows it was sent: a report from today's file alone told the
    public a partner never received a field the log it counted showed it had (a privacy
    review: a policy narrowed since), and left out a partner removed from the file."""
    reports = {p.id: PartnerReport(id=p.id, partner=p) for p in config.partners}
    _count(reports, records)
    for report in reports.values():
        _describe(report)
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


def _describe(r: PartnerReport) -> None:
    """What the partner gets, in words: what its policy shares today, and what the log shows
    it was sent (a field sent under an older policy is listed, and said to be no longer
    shared); "never receives" only what neither has."""
    p = r.partner
    policy = p.policy.fields if p is not None else frozenset()
    if p is None and r.received_first is None:
        r.withheld = []  # nothing sent that the log shows: the section says so
        return
    fields = sorted(set(policy) | set(r.logged))
    # the path and the warning segments begin at the vehicle: a partner given either has
    # its location, "position" field or not
    located = "position" in fields or bool({"path", "segments"} & set(fields))
    r.withheld = [CATEGORY_TEXT[f] for f in ("vehicle_id", "incident_id") if f not in fields]
    r.shares = list(ALWAYS) + [_category(f, r) for f in fields]
    coarse = (p is not None and p.policy.coordinate_decimals is not None
              and p.policy.coordinate_decimals <= COARSE_DECIMALS)
    if located and "position" not in fields:
        r.shares.append(f"{CATEGORY_TEXT['position']}, as the place where the road ahead "
                        "and the warning segments begin")
    elif not located and not coarse:
        r.shares.append(LOCATION_FROM_AREA)
    if coarse and p is not None:
        r.shares.append(coarse_area_text(p.policy.coordinate_decimals or 0))


def _category(name: str, r: PartnerReport) -> str:
    """One category in words; one the log shows was sent but today's policy no longer
    shares says so (a partner no longer in the file: its section says all is from the log)."""
    text = CATEGORY_TEXT[name]
    if r.partner is None or name in r.partner.policy.fields:
        return text
    return f"{text} (sent until {r.logged[name]}; no longer shared since our policy changed)"


def _count(reports: dict[str, PartnerReport], records: Iterable[AuditRecord]) -> None:
    """The reports' counts, from the audit records (see the module docstring)."""
    messages: dict[tuple[str, MessageKey], _Message] = {}
    served: dict[str, set[AlertKey]] = defaultdict(set)
    for rec in records:
        report = reports.get(rec.partner) or _removed(reports, rec.partner)
        report.statuses[rec.status] += 1
        stamp = rec.at.isoformat(timespec="seconds")
        if rec.status in CARRIES_DATA:
            _note_sent(report, rec.fields, stamp)
        if rec.status == "feed_served":
            report.feed_requests += 1
            served[rec.partner].update(served_alerts(rec))
        elif rec.action != "feed":
            key = (rec.partner, message_key(rec))
            messages.setdefault(key, _Message(alert=(rec.alert_id, rec.started_at))).add(rec)
        report.first = min(report.first or stamp, stamp)
        report.last = max(report.last or stamp, stamp)
    sent: dict[str, set[AlertKey]] = defaultdict(set)
    maybe: dict[str, set[AlertKey]] = defaultdict(set)
    for (pid, _), msg in messages.items():
        report = reports[pid]
        if msg.delivered:
            report.messages_delivered += 1
            sent[pid].add(msg.alert)
        elif msg.sends > msg.outcomes:
            report.messages_uncertain += 1
            maybe[pid].add(msg.alert)
        elif msg.ended is not None:
            report.undelivered[msg.ended] += 1
    for pid, report in reports.items():
        report.alerts_sent = len(sent[pid])
        report.alerts_uncertain = len(maybe[pid] - sent[pid])
        report.alerts_served = len(served[pid])


def _removed(reports: dict[str, PartnerReport], pid: str) -> PartnerReport:
    """The report of a partner no longer in the partners file: counted all the same."""
    report = reports[pid] = PartnerReport(id=pid, partner=None)
    return report


def _note_sent(report: PartnerReport, fields: Iterable[str], stamp: str) -> None:
    """A record of data sent (``CARRIES_DATA``) at ``stamp``: which fields, and when."""
    day = stamp[:10]
    for name in LOGGED_CATEGORIES.intersection(fields):
        report.logged[name] = max(report.logged.get(name, day), day)
    report.received_first = min(report.received_first or stamp, stamp)
    report.received_last = max(report.received_last or stamp, stamp)


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
    refused: bool = False  # an attempt was answered, not 2xx: the partner had the request

    def add(self, rec: AuditRecord) -> None:
        if rec.status == "sending":
            self.sends += 1
            return
        # a failure without an answer after the request went says nothing of whether the
        # partner has it: counted as a send without an outcome, it may have been received
        # (counted as an outcome, a message a partner read 7 times without answering was
        # reported to the public as dropped: a privacy review)
        if (rec.attempt > 0 and (rec.status in ATTEMPT_OUTCOMES or rec.not_sent)
                and not rec.may_have_arrived):
            self.outcomes += 1
        if rec.status in ("failed", "disabled") and rec.http_status is not None:
            self.refused = True
        self.delivered = self.delivered or rec.status == "delivered"
        self.last = rec.status

    @property
    def ended(self) -> str | None:
        """How a message neither delivered nor uncertain ended (``PartnerReport.undelivered``)."""
        return "refused" if self.refused else self.last


def served_alerts(rec: AuditRecord) -> Iterator[AlertKey]:
    """The alerts (partner-facing id and life) a feed response carried; a record written before
    ``served_started`` (2026-12-07, session 7) gives no life: lives merged."""
    lives = chain(rec.served_started, repeat(None))
    return ((alert_of(mid), life) for mid, life in zip(rec.served, lives, strict=False))


def alert_of(message_id: str) -> str:
    """The partner-facing alert id of a message id (``AlertView.message_id``: id + ``-v`` +
    version)."""
    return message_id.rsplit("-v", 1)[0]


def _delivery_line(p: Partner) -> str:
    how = []
    if p.pushes:
        how.append("we send it each warning as it happens")
    if p.feed:
        how.append("it collects current warnings from a protected feed")
    return " and ".join(how).capitalize() + f" ({p.format.replace('_', ' ')} format)."


UNDELIVERED = {  # how a message not delivered ended, in words
    # an attempt was answered, not 2xx (503 until the warning ended, a 4xx): it reached the
    # partner, which has the data; "dropped" or "could not be delivered" said it had not
    "refused": "messages that reached the partner, which refused them",
    "expired": "messages dropped because the warning had already ended",
    "dead_letter": "messages that could not be delivered",
    "superseded": "messages replaced by a newer one before they went",
}


def _activity_line(r: PartnerReport) -> str:
    parts = [f"{r.alerts_sent} warnings sent in {r.messages_delivered} messages"]
    if r.messages_uncertain:
        also = f", about {r.alerts_uncertain} more warnings" if r.alerts_uncertain else ""
        parts.append(f"{r.messages_uncertain} more messages may have been received{also} (we "
                     "started sending them and got no answer: the partner did not answer in "
                     "time, or the sending was cut off by a restart or a fault on our side; we "
                     "count them as possibly received)")
    if r.feed_requests or (r.partner is not None and r.partner.feed):
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


def _sections(r: PartnerReport) -> list[tuple[str, list[str]]]:
    """The report's body about one partner: (heading, lines) where lines are a list's items,
    or (label, [sentence]) for a one-line paragraph (``format_text``, ``format_html``)."""
    p = r.partner
    never = r.withheld + list(NEVER)
    if p is None:
        if r.received_first is None:
            gone = ("No longer a partner: it is not in our partners file, and the audit log "
                    "shows no data sent to it.")
            return [("Status", [gone]), ("Activity", [_activity_line(r)])]
        gone = (f"No longer a partner: it is not in our partners file. The audit log shows it "
                f"received the data below between {r.received_first} and {r.received_last}.")
        return [("Status", [gone]), ("What they received", r.shares),
                ("What they never received", never), ("Activity", [_activity_line(r)])]
    return [("Why", [p.purpose]), ("How", [_delivery_line(p)]),
            ("What they receive", r.shares), ("What they never receive", never),
            ("Activity", [_activity_line(r)]),
            ("Retention", [f"the partner keeps this data for at most {p.retention_days} days."])]


PARAGRAPHS = frozenset({"Status", "Why", "How", "Activity", "Retention"})


def _title(r: PartnerReport) -> str:
    return f"{r.partner.name} ({r.id})" if r.partner is not None else r.id


def format_text(reports: list[PartnerReport]) -> str:
    """The report as plain text."""
    lines = ["Emergency vehicle alerts: what we share, with whom, and why", ""]
    for r in reports:
        lines.append(_title(r))
        for heading, items in _sections(r):
            if heading in PARAGRAPHS:
                lines.append(f"  {heading}: {items[0]}")
            else:
                lines.append(f"  {heading}:")
                lines += [f"    - {s}" for s in items]
        lines.append("")
    return "\n".join(lines)


def format_html(reports: list[PartnerReport]) -> str:
    """The report as a standalone HTML page (every value escaped)."""
    e = html.escape
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           "<title>Emergency vehicle alerts: transparency report</title></head><body>",
           "<h1>Emergency vehicle alerts: what we share, with whom, and why</h1>"]
    for r in reports:
        out.append(f"<section id='{e(r.id)}'><h2>{e(_title(r))}</h2>")
        for heading, items in _sections(r):
            if heading in PARAGRAPHS:
                out.append(f"<p><strong>{e(heading)}:</strong> {e(items[0])}</p>")
            else:
                out.append(f"<h3>{e(heading)}</h3><ul>")
                out += [f"<li>{e(s)}</li>" for s in items]
                out.append("</ul>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
