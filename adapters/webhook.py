"""Standard Webhooks (v1.0.0): a JSON body plus ``webhook-id``/``-timestamp``/``-signature``.

The body is serialised once and the signature is computed over those exact bytes (never
re-serialise). ``webhook-id`` is the alert id + version (as the partner sees it,
``AlertView.partner_version``: from 1 in each life under a pseudonym): the same on every retry,
so the receiver can de-duplicate. ``webhook-timestamp`` is the time of *this attempt*, so
delivery re-signs on each retry with ``sign_headers``.

Signing goes through the ``standardwebhooks`` package, with two pitfalls handled (formats.md
section 3): its ``sign`` relabels a non-UTC datetime instead of converting it, so we pass UTC;
and it wants the body as ``str`` (bytes would sign the text ``b'...'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from standardwebhooks import Webhook

from adapters.payload import Payload
from adapters.policy import AlertView, view_as_dict

CONTENT_TYPE = "application/json"
EVENT_TYPES = {"create": "alert.created", "update": "alert.updated", "cancel": "alert.cancelled"}
_encoder = msgspec.json.Encoder()


def body_for(view: AlertView) -> bytes:
    """The JSON body: ``{"type": "alert.updated", "timestamp": ..., "data": {...view}}``."""
    data = view_as_dict(view)
    envelope = {"type": EVENT_TYPES[view.action], "timestamp": data["ts"], "data": data}
    return _encoder.encode(envelope)


CAP_EVENT_TYPES = {"create": "cap.alert", "update": "cap.update", "cancel": "cap.cancel"}


def cap_body(view: AlertView, cap_xml: bytes) -> bytes:
    """A CAP 1.2 message in a JSON envelope: ``{"type": "cap.update", "timestamp": ...,
    "data": {"alert_id", "version", "action", "content_type": "application/cap+xml",
    "cap": "<?xml ...>"}}``. Standard Webhooks receivers (the reference implementations parse
    the payload as JSON after verifying) get a JSON body; the CAP XML is byte for byte what a
    CAP consumer validates, in ``data.cap``."""
    data = view_as_dict(view)
    envelope = {
        "type": CAP_EVENT_TYPES[view.action],
        "timestamp": data["ts"],
        "data": {
            "alert_id": view.alert_id,
            "version": view.partner_version,
            "action": view.action,
            "content_type": "application/cap+xml",
            "cap": cap_xml.decode("utf-8"),
        },
    }
    return _encoder.encode(envelope)


def sign_headers(
    message_id: str, body: bytes, secret: str | Sequence[str], at: datetime
) -> dict[str, str]:
    """Standard Webhooks headers for one attempt at time ``at`` (any tz-aware datetime).

    Several secrets (a partner's secret and the one rotating in) give one ``v1,`` signature
    each, space-separated: a receiver that knows either verifies (Standard Webhooks' rotation
    without downtime)."""
    at_utc = at.astimezone(UTC)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("sign_headers needs at least one secret")
    text = body.decode("utf-8")
    signature = " ".join(Webhook(s).sign(message_id, at_utc, text) for s in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at_utc.timestamp())),
        "webhook-signature": signature,
    }


def render(view: AlertView, *, secret: str, at: datetime) -> Payload:
    """A signed webhook for one alert step; ``at`` is the attempt time (wall clock, UTC)."""
    body = body_for(view)
    return Payload(
        body=body,
        content_type=CONTENT_TYPE,
        message_id=view.message_id,
        headers=sign_headers(view.message_id, body, secret, at),
    )
