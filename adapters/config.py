"""Partner configuration as the broker uses it: validated, frozen :class:`Partner` objects in a
:class:`PartnersConfig`, with their resolved :class:`Secret` values, and the checks on the
documented development secrets.

``adapters.partners_file`` builds it from ``fixtures/partners.toml`` (``load_partners``, once at
start, by ``broker.cli``): the file's schema, its rules and its error messages are there.

A documented development secret (:func:`dev_secret`: derived from the partner id, so anyone can
compute it) is good for the demo and tests on 127.0.0.1, useless as a real secret:
:func:`dev_secrets_check` tells a shell whether it may start with the ones in use.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from shapely.geometry.base import BaseGeometry

from adapters.policy import Policy

Format = Literal["webhook", "waze_cifs", "cap", "geojson"]
Category = Literal["navigation", "public_agency", "open_data"]
Kind = Literal["approaching", "on_scene"]
KINDS: frozenset[str] = frozenset({"approaching", "on_scene"})
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class Secret:
    """A resolved secret. Its ``repr``/``str`` show only where it came from, never the value."""

    source: str  # e.g. "env:NAVAPP_WEBHOOK_SECRET" or "dev-default"
    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The secret itself: call only where it is used (signing, comparing)."""
        return self._value

    def __str__(self) -> str:
        return f"<secret from {self.source}>"


@dataclass(frozen=True, slots=True)
class Partner:
    """One partner: where its alerts go, in what format, about which area, with which fields.

    ``coverage`` is a shapely geometry in lon/lat degrees (x = lon, y = lat).
    """

    id: str
    name: str
    category: Category
    format: Format
    purpose: str
    retention_days: int
    coverage: BaseGeometry
    policy: Policy
    push_url: str | None = None
    feed: bool = False
    secret: Secret | None = None  # Standard Webhooks signing secret (push partners)
    next_secret: Secret | None = None  # its successor while it rotates: both sign each request
    feed_token: Secret | None = None  # bearer token of the pull feed
    kinds: frozenset[str] = KINDS
    min_update_interval_s: float = 0.0
    cifs_subtype: str = "HAZARD_ON_ROAD"
    cifs_wrap_items: bool = False  # {"incidents":[{"incident":{...}}]} instead of flat items
    feed_keep_cancelled_s: float = 900.0  # a cancelled item stays in a pull feed this long
    cifs_end_grace_s: float = 600.0  # a live CIFS item's endtime: the alert expiry + this
    cap_feed_expires_grace_s: float = 300.0  # a CAP feed's live copies: expires = expiry + this
    timezone: str = "America/New_York"  # local time for CIFS start/end times
    timeout_s: float = 5.0
    max_in_flight: int = 16  # requests in flight at once (never two of one alert)

    def signing_secrets(self) -> list[str]:
        """The secrets each request is signed with: ``secret``, then ``next_secret`` while it
        rotates (empty: an unsigned partner). Call only where signing or verifying."""
        return [s.reveal() for s in (self.secret, self.next_secret) if s is not None]

    @property
    def pushes(self) -> bool:
        return self.push_url is not None


@dataclass(frozen=True, slots=True)
class PartnersConfig:
    """Everything from partners.toml: broker-wide settings and the partners, in file order."""

    partners: tuple[Partner, ...]
    pseudonym_key: Secret
    cap_sender: str = "alerts@broker.example.org"

    def by_id(self) -> dict[str, Partner]:
        return {p.id: p for p in self.partners}

    @property
    def wants_segments(self) -> bool:
        """Whether any partner's policy takes the warning segments (the engine builds them
        only then: ``EngineConfig.warning_segments``)."""
        return any("segments" in p.policy.fields for p in self.partners)

    @property
    def key(self) -> bytes:
        """The key that pseudonymises alert ids (adapters.policy.public_alert_id)."""
        return self.pseudonym_key.reveal().encode()

    def key_for(self, partner_id: str) -> bytes:
        """A per-partner pseudonymisation key: two partners cannot join their data on alert id."""
        return hashlib.sha256(self.key + b"\x00" + partner_id.encode()).digest()


DEV_DEFAULT = "dev-default"  # the source of a documented development secret


def dev_secrets_in(config: PartnersConfig) -> list[str]:
    """Where the documented development secrets are used (empty in a real deployment)."""
    found = ["[broker] pseudonym_key"] if config.pseudonym_key.source == DEV_DEFAULT else []
    for p in config.partners:
        named = (("secret", p.secret), ("next_secret", p.next_secret),
                 ("feed_token", p.feed_token))
        found += [f"partner {p.id!r}: {what}" for what, s in named
                  if s is not None and s.source == DEV_DEFAULT]
    return found


def off_loopback_urls(config: PartnersConfig) -> list[str]:
    """Push URLs that leave this machine (dev secrets must never sign a request to one)."""
    return [p.push_url for p in config.partners
            if p.push_url is not None and urlsplit(p.push_url).hostname not in LOOPBACK]


def dev_secrets_check(config: PartnersConfig, bind_hosts: list[str]) -> tuple[str, str]:
    """``(problem, warning)`` of the documented development secrets in ``config``.

    They are public: with any in use, every push URL and every address the process listens on
    (``bind_hosts``) must be loopback, else ``problem`` says what to fix and the shell must not
    start; on loopback, ``warning`` is what to log loudly. Both empty without dev secrets.
    """
    used = dev_secrets_in(config)
    if not used:
        return "", ""
    exposed = off_loopback_urls(config) + [h for h in bind_hosts if h not in LOOPBACK]
    if exposed:
        return (
            f"development secrets ({', '.join(used)}) with non-loopback addresses {exposed}: "
            "set real secrets (docs/partners.md), or keep every push URL and bind address on "
            "127.0.0.1"
        ), ""
    return "", (
        f"DEVELOPMENT SECRETS IN USE ({', '.join(used)}): anyone can compute them; "
        "for a demo on 127.0.0.1 only, never in production"
    )


def dev_secret(name: str, kind: str) -> str:
    """The documented development default of a secret: derived, so never literal in the repo.

    Webhook secrets come out as ``whsec_`` + base64 of 32 bytes, as Standard Webhooks expects.
    """
    raw = hashlib.sha256(f"ev-alert-broker development {kind}: {name}".encode()).digest()
    if kind == "webhook secret":
        return "whsec_" + base64.b64encode(raw).decode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")

