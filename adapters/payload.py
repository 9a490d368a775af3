"""What a renderer returns: the exact bytes to send, their media type and any extra headers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Payload:
    """A rendered partner message. ``body`` is final: signatures are computed over these bytes.

    ``message_id`` is the idempotency key (alert id + version) for one alert step, or the feed
    name for a pull feed. ``headers`` never hold secrets except a webhook signature.
    """

    body: bytes
    content_type: str
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
