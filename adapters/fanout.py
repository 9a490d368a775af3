"""Fan-out: one alert event -> the deliveries it causes, one per push partner. Pure.

For each event: pick the push partners whose coverage touches the zone (STRtree), plus any
partner that already got this alert (so it also gets the updates and the cancel after the
zone has left its area); drop partners not interested in the alert's kind; apply the
partner's minimum update interval to updates (never to a create or a cancel); build the
partner's view (privacy policy). Pull-feed partners get nothing here: feeds render from the
active alerts (``adapters.feeds``).

The payload is rendered when a delivery is *sent* (:func:`render_for`), from what the partner
has actually received of the alert: the first message a partner gets for an alert (for each
life of it: a re-created alert has a new partner-facing id) is a ``create`` carrying everything
(whatever version it is: earlier ones may have been superseded before they could go), and a CAP
``Update`` references the last message of that life the partner really got.

The throttle state is a value: ``(partner id, alert id) -> LastSent``; a new mapping comes
back, the input is not changed. Time comes in as ``now`` (event time in a replay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from adapters import cap, geojson, webhook
from adapters.config import Partner, PartnersConfig
from adapters.payload import Payload
from adapters.policy import CANCEL_TTL, AlertView, view_for
from adapters.zone_rounding import NotAnEmergencyAlert
from broker.geo.coverage import CoverageIndex
from broker.model import AlertEvent


@dataclass(frozen=True, slots=True)
class LastSent:
    """What a partner last got about one alert (for the throttle and CAP ``references``)."""

    version: int  # the engine's (ordering, lives); the partner saw it as its message id says
    at: datetime  # fan-out time (``now``) of that delivery
    message_id: str  # its idempotency key (``webhook-id``), as it was sent
    ts: datetime  # its event time (CAP ``sent``)
    # the life of the alert it belongs to (its ``started_at``); None: not known (a record
    # written before lives were kept), then the version and message id tell (received_in_life)
    started_at: datetime | None = None


ThrottleState = Mapping[tuple[str, str], LastSent]
# A partner's mailbox key: (engine alert id, partner-facing alert id). The partner-facing id is
# per life when pseudonymised (each life its own entry); a partner given the engine's id as it
# is has one id, so one entry, for all lives, its steps in order of (``started_at``, version).
Mailbox = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert step for one push partner, rendered when sent (:func:`render_for`)."""

    partner_id: str
    url: str
    view: AlertView
    expires_at: datetime  # not delivered after this (the alert's expiry; a cancel's own ts + ttl)
    event_ts: datetime  # the fix that caused the event (latency is measured from it)
    alert_id: str  # the broker's own id (the view's may be pseudonymised): the partner's queue key
    # throttled by the partner's min_update_interval_s: it only takes the place of an older
    # version of the alert not yet delivered to the partner (waiting, or being retried: that
    # costs no request) and is dropped otherwise; so the partner never gets a version older
    # than one already made
    replace_only: bool = False

    @property
    def mailbox(self) -> Mailbox:
        """The partner's mailbox key: one per partner-facing alert id (``Mailbox``)."""
        return (self.alert_id, self.view.alert_id)

    @property
    def step(self) -> tuple[datetime, int]:
        """Where this step stands among those of its partner-facing id: a later life's step
        comes after every step of an earlier one (whatever their versions: a life the engine
        started again counts from 1), within a life the higher version after the lower."""
        return (self.view.started_at, self.version)

    @property
    def message_id(self) -> str:
        """Idempotency key: the partner-facing alert id + version as the partner sees it
        (``AlertView.message_id``)."""
        return self.view.message_id

    @property
    def version(self) -> int:
        """The alert step's version: the engine's (``AlertView.version``), for ordering."""
        return self.view.version


@dataclass(frozen=True, slots=True)
class PartnerSet:
    """Partners with their coverage index, built once per configuration."""

    config: PartnersConfig
    index: CoverageIndex
    partners: Mapping[str, Partner]

    @classmethod
    def from_config(cls, config: PartnersConfig) -> PartnerSet:
        push = {p.id: p for p in config.partners}
        return cls(config, CoverageIndex({pid: p.coverage for pid, p in push.items()}), push)



def as_known(view: AlertView, known: LastSent | None) -> AlertView:
    """``view`` numbered as the partner knows its life of the alert: the one place that
    decides, for every path that renders or checks a step (``fan_out``, ``PartnerWorker.submit``
    and its attempts, ``render_for``, ``received_in_life``), so they cannot disagree.

    Under a pseudonym versions count from 1 in each life (``AlertView.per_life_versions``); the
    code before 2026-12-07 sent the engine's count (``P-v7`` for engine v7 of a life that began
    at v5). A life the partner already holds under that numbering (``known``, of this life, its
    message id ``f"{alert_id}-v{version}"`` where this life now says another) keeps the
    engine's numbering to its end: renumbering it mid-life made its versions go backwards at
    the partner (``P-v4`` after ``P-v7``), repeated webhook-ids it had de-duplicated (``P-v6``
    again, now the cancel) and lost the hold on an owed cancel (``received_in_life``). Safe: the
    pseudonym is per life, so the engine's count under it names no other life. A partner given
    the engine's id, and a life begun at version 1, number alike either way.
    """
    if not view.per_life_versions or known is None or known.version < view.first_version:
        return view
    if known.started_at is not None and known.started_at != view.started_at:
        return view
    legacy = f"{view.alert_id}-v{known.version}"
    if known.message_id != legacy or legacy == view.message_id_of(known.version):
        return view
    return replace(view, per_life_versions=False)


def received_in_life(view: AlertView, delivered: LastSent | None) -> LastSent | None:
    """``delivered`` if it is a message of the same life of the alert as ``view``, else None.

    The throttle state and the shell's settled records are kept per engine alert id, which a
    re-created alert keeps (and whose version count it continues, or starts again at 1 once
    the engine forgot it). The partner-facing id is per life
    (``policy.public_alert_id``): a message of an earlier life carries another identifier,
    or, when the policy passes the engine's id on, a version before this life's create.
    Referencing it from this life would name a message of another alert to the partner.
    ``delivered.started_at``, where known, names its life outright (a life the engine started
    again at version 1 has the same versions and, with the engine's id passed on, the same
    message ids as the one before). ``delivered.version`` is the engine's, its message id the
    one sent: this life names that version ``view.message_id_of(delivered.version)`` (counted
    per life under a pseudonym, ``AlertView.partner_version_of``, unless the partner has the
    life under the engine's count: ``as_known``).
    """
    if delivered is None or delivered.version < view.first_version:
        return None
    if delivered.started_at is not None and delivered.started_at != view.started_at:
        return None
    if delivered.message_id != as_known(view, delivered).message_id_of(delivered.version):
        return None
    return delivered


def first_or_as_is(view: AlertView, delivered: LastSent | None) -> AlertView:
    """The view to send: a partner that has received nothing of this life of the alert gets it
    as a ``create`` (earlier versions were superseded before they went); a cancel stays a
    cancel. Its version is not changed: counted from the life's create (under a pseudonym,
    ``AlertView.partner_version``), such a create may be above 1, as any gap a superseded
    version leaves; it never shows the engine's count."""
    if received_in_life(view, delivered) is None and view.action == "update":
        return replace(view, action="create")
    return view


def render_for(
    partner: Partner, view: AlertView, *, sender: str, delivered: LastSent | None
) -> Payload:
    """The unsigned payload of one alert step in the partner's push format, given what the
    partner has received of the alert so far (``delivered``; None: nothing).

    Every push body is JSON for Standard Webhooks receivers: CAP 1.2 XML travels inside a JSON
    envelope (``webhook.cap_body``), because the reference receivers parse the payload as JSON
    after verifying the signature (docs/partners.md, "CAP by push").
    """
    view = as_known(view, delivered)
    delivered = received_in_life(view, delivered)
    view = first_or_as_is(view, delivered)
    match partner.format:
        case "webhook":
            return Payload(webhook.body_for(view), webhook.CONTENT_TYPE, view.message_id)
        case "cap":
            # ``delivered`` is of this life (received_in_life): its identifier has this start,
            # and its version as the partner saw it (``delivered.version`` is the engine's)
            refs = [] if delivered is None else [cap.Reference(
                cap.identifier(view.alert_id, view.started_at,
                               view.partner_version_of(delivered.version)), delivered.ts)]
            xml = cap.render(view, sender=sender, references=refs).body
            return Payload(webhook.cap_body(view, xml), webhook.CONTENT_TYPE, view.message_id)
        case "geojson":
            out = geojson.render([view], feed_name=view.message_id)
            return Payload(out.body, out.content_type, view.message_id)
        case _:
            raise ValueError(f"partner {partner.id!r}: format {partner.format} is pull-only")


def fan_out(
    event: AlertEvent, partners: PartnerSet, throttle_state: ThrottleState, now: datetime
) -> tuple[ThrottleState, list[Delivery]]:
    """Deliveries for one alert event and the new throttle state.

    Raises ``NotAnEmergencyAlert`` for anything that is not an alert event of an emergency
    kind (a bug upstream: positions of units not in emergency mode never leave the broker).
    """
    if not isinstance(event, AlertEvent):
        raise NotAnEmergencyAlert(f"fan-out takes AlertEvents, not {type(event).__name__}")
    touched = set(partners.index.partners_touching(event.zone))
    state = dict(throttle_state)
    out: list[Delivery] = []
    for pid, partner in partners.partners.items():
        key = (pid, event.alert_id)
        last = state.get(key)
        earlier_life = False  # an event of a life before the one the state is of
        life = None if last is None else last.started_at
        if last is not None and life is not None and life != event.started_at:
            # another life of the alert: the partner has nothing of this one (a new life), or
            # this is a late redelivery of an earlier life's event: it is sent as if nothing
            # were known, and the state stays the later life's
            earlier_life = life > event.started_at
            last = None
        if not partner.pushes or event.kind not in partner.kinds:
            continue
        if pid not in touched and last is None:
            continue
        if last is not None and event.version <= last.version:
            continue  # a replayed or duplicated event: already sent
        throttled = (
            event.action == "update"
            and last is not None
            # at most half the alert's TTL (the engine's refresh of its expiry): a throttle
            # past that let the partner's alert expire while the unit still ran
            and now - last.at < min(timedelta(seconds=partner.min_update_interval_s),
                                    (event.expires_at - event.ts) / 2)
        )
        # numbered as the partner knows this life (``as_known``; the worker decides again
        # from what it knows was delivered, ``PartnerWorker.submit``)
        view = as_known(view_for(event, partner.policy, key=partners.config.key_for(pid)), last)
        expires = event.ts + CANCEL_TTL if event.action == "cancel" else event.expires_at
        assert partner.push_url is not None
        out.append(Delivery(pid, partner.push_url, view, expires, event.ts, event.alert_id,
                            replace_only=throttled))
        if earlier_life:
            continue
        if event.action == "cancel":
            state.pop(key, None)
        else:  # a throttled update leaves the interval counting from the last one offered
            at = last.at if throttled and last is not None else now
            state[key] = LastSent(event.version, at, view.message_id, event.ts, event.started_at)
    return state, out
