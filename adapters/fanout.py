"""Fan-out: one alert event -> the deliveries it causes, one per push partner. Pure.

For each event: pick the push partners whose coverage touches the zone (STRtree), plus any
partner that already got this alert (so it also gets the updates and the cancel after the
zone has left its area); drop partners not interested in the alert's kind; apply the
partner's minimum update interval to updates (never to a create or a cancel); build the
partner's view (privacy policy) and render its format. Pull-feed partners get nothing here:
feeds render from the active alerts (``adapters.feeds``).

The throttle state is a value: ``(partner id, alert id) -> LastSent``; a new mapping comes
back, the input is not changed. Time comes in as ``now`` (event time in a replay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters import cap, geojson, webhook
from adapters.config import Partner, PartnersConfig
from adapters.payload import Payload
from adapters.policy import AlertView, NotAnEmergencyAlert, view_for
from broker.geo.coverage import CoverageIndex
from broker.model import AlertEvent


@dataclass(frozen=True, slots=True)
class LastSent:
    """What a partner last got about one alert (for the throttle and CAP ``references``)."""

    version: int
    at: datetime  # fan-out time (``now``) of that delivery
    message_id: str  # its idempotency key / CAP identifier
    ts: datetime  # its event time (CAP ``sent``)


ThrottleState = Mapping[tuple[str, str], LastSent]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one push partner. Webhook-style signatures are added per attempt."""

    partner_id: str
    url: str
    view: AlertView
    payload: Payload
    expires_at: datetime  # not delivered after this (the alert's expiry; a cancel's own ts + ttl)
    event_ts: datetime  # the fix that caused the event (latency is measured from it)

    @property
    def message_id(self) -> str:
        return self.payload.message_id


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


# A cancel has no expiry of its own: it stays deliverable this long after it happened.
CANCEL_TTL = timedelta(minutes=5)


def render_for(partner: Partner, view: AlertView, *, sender: str, last: LastSent | None) -> Payload:
    """The unsigned payload of one alert step in the partner's push format."""
    match partner.format:
        case "webhook":
            body = webhook.body_for(view)
            return Payload(body, webhook.CONTENT_TYPE, view.message_id)
        case "cap":
            refs = [] if last is None else [cap.Reference(last.message_id, last.ts)]
            return cap.render(view, sender=sender, references=refs)
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
        if not partner.pushes or event.kind not in partner.kinds:
            continue
        if pid not in touched and last is None:
            continue
        if last is not None and event.version <= last.version:
            continue  # a replayed or duplicated event: already sent
        if (
            event.action == "update"
            and last is not None
            and now - last.at < timedelta(seconds=partner.min_update_interval_s)
        ):
            continue
        view = view_for(event, partner.policy, key=partners.config.key_for(pid))
        payload = render_for(partner, view, sender=partners.config.cap_sender, last=last)
        expires = event.ts + CANCEL_TTL if event.action == "cancel" else event.expires_at
        assert partner.push_url is not None
        out.append(Delivery(pid, partner.push_url, view, payload, expires, event.ts))
        if event.action == "cancel":
            state.pop(key, None)
        else:
            state[key] = LastSent(event.version, now, view.message_id, event.ts)
    return state, out
