"""Partner configuration: ``fixtures/partners.toml`` -> validated, frozen ``Partner`` objects.

Loaded once at start (by ``broker.cli``), which passes the process environment in: nothing
here reads ``os.environ`` itself. Errors name the partner and the field, e.g.
``partner 'navapp': policy.fields: a navigation partner may not get vehicle_id``.

Secrets (webhook signing secrets, feed tokens, the pseudonymisation key) are never literal in
the file. Each is a reference: ``{ env = "NAME" }`` or ``{ file = "/abs/path/outside/repo" }``.
With ``dev_default = true`` and ``allow_dev_defaults=True`` a missing env var falls back to a
secret derived from the partner id (documented in docs/partners.md): good for the demo and
tests on 127.0.0.1, useless as a real secret, which is why the loader must be asked for it.
"""

from __future__ import annotations

import base64
import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import shapely
from shapely.geometry import shape

from adapters.policy import IDENTIFYING_FIELDS, OPTIONAL_FIELDS, Policy

Format = Literal["webhook", "waze_cifs", "cap", "geojson"]
Category = Literal["navigation", "public_agency", "open_data"]
FORMATS: frozenset[str] = frozenset({"webhook", "waze_cifs", "cap", "geojson"})
CATEGORIES: frozenset[str] = frozenset({"navigation", "public_agency", "open_data"})
KINDS: frozenset[str] = frozenset({"approaching", "on_scene"})
CIFS_SUBTYPES: frozenset[str] = frozenset(
    {
        "", "HAZARD_ON_ROAD", "HAZARD_ON_ROAD_CAR_STOPPED",
        "HAZARD_ON_ROAD_CONSTRUCTION", "HAZARD_ON_ROAD_ICE", "HAZARD_ON_ROAD_LANE_CLOSED",
        "HAZARD_ON_ROAD_OBJECT", "HAZARD_ON_ROAD_OIL", "HAZARD_ON_ROAD_POT_HOLE",
        "HAZARD_ON_ROAD_ROAD_KILL", "HAZARD_ON_ROAD_TRAFFIC_LIGHT_FAULT", "HAZARD_ON_SHOULDER",
        "HAZARD_ON_SHOULDER_ANIMALS", "HAZARD_ON_SHOULDER_CAR_STOPPED",
        "HAZARD_ON_SHOULDER_MISSING_SIGN",
        # not in cifsv2.xsd: only after the Waze partner team accepts it (formats.md section 1)
        "HAZARD_ON_ROAD_EMERGENCY_VEHICLE",
    }
)
REPO_ROOT = Path(__file__).resolve().parents[1]


class PartnerConfigError(ValueError):
    """The partner file is wrong; the message names the partner and the field."""


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
    coverage: shapely.Geometry
    policy: Policy
    push_url: str | None = None
    feed: bool = False
    secret: Secret | None = None  # Standard Webhooks signing secret (push partners)
    feed_token: Secret | None = None  # bearer token of the pull feed
    kinds: frozenset[str] = KINDS
    min_update_interval_s: float = 0.0
    cifs_subtype: str = "HAZARD_ON_ROAD"
    cifs_wrap_items: bool = False  # {"incidents":[{"incident":{...}}]} instead of flat items
    feed_keep_cancelled_s: float = 900.0  # a cancelled item stays in a pull feed this long
    timezone: str = "America/New_York"  # local time for CIFS start/end times
    timeout_s: float = 5.0
    max_attempts: int = 6

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
    def key(self) -> bytes:
        """The key that pseudonymises alert ids (adapters.policy.public_alert_id)."""
        return self.pseudonym_key.reveal().encode()

    def key_for(self, partner_id: str) -> bytes:
        """A per-partner pseudonymisation key: two partners cannot join their data on alert id."""
        return hashlib.sha256(self.key + b"\x00" + partner_id.encode()).digest()


def dev_secret(name: str, kind: str) -> str:
    """The documented development default of a secret: derived, so never literal in the repo.

    Webhook secrets come out as ``whsec_`` + base64 of 32 bytes, as Standard Webhooks expects.
    """
    raw = hashlib.sha256(f"ev-alert-broker development {kind}: {name}".encode()).digest()
    if kind == "webhook secret":
        return "whsec_" + base64.b64encode(raw).decode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _resolve_secret(
    ref: Any, *, where: str, name: str, kind: str, env: Mapping[str, str], allow_dev: bool
) -> Secret:
    if isinstance(ref, str):
        raise PartnerConfigError(
            f"{where}: must be a reference like {{ env = \"NAME\" }}, never a literal secret"
        )
    if not isinstance(ref, Mapping):
        raise PartnerConfigError(f"{where}: must be a table with 'env' or 'file'")
    unknown = set(ref) - {"env", "file", "dev_default"}
    if unknown:
        raise PartnerConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if "env" in ref:
        var = ref["env"]
        if env.get(var):
            return Secret(f"env:{var}", env[var])
    if "file" in ref:
        path = Path(ref["file"]).expanduser()
        if not path.is_absolute():
            raise PartnerConfigError(f"{where}.file: must be an absolute path")
        if path.resolve().is_relative_to(REPO_ROOT):
            raise PartnerConfigError(f"{where}.file: secrets must live outside the repository")
        if path.exists():
            return Secret(f"file:{path}", path.read_text().strip())
    if ref.get("dev_default") and allow_dev:
        return Secret("dev-default", dev_secret(name, kind))
    looked = ", ".join(f"{k} {ref[k]!r}" for k in ("env", "file") if k in ref) or "nothing"
    raise PartnerConfigError(f"{where}: not found (looked at {looked})")


def _coverage(raw: Any, where: str) -> shapely.Geometry:
    """``{bbox = [w, s, e, n]}`` or ``{polygon = [[lon, lat], ...]}`` or ``{geojson = {...}}``."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise PartnerConfigError(f"{where}: give exactly one of bbox, polygon, geojson")
    try:
        if "bbox" in raw:
            w, s, e, n = (float(v) for v in raw["bbox"])
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ValueError("want [west, south, east, north] in lon/lat degrees, w<e, s<n")
            geom = shapely.box(w, s, e, n)
        elif "polygon" in raw:
            geom = shapely.Polygon([(float(lon), float(lat)) for lon, lat in raw["polygon"]])
        elif "geojson" in raw:
            geom = shape(raw["geojson"])
        else:
            raise ValueError(f"unknown coverage kind {next(iter(raw))!r}")
    except (TypeError, ValueError, KeyError, shapely.errors.GEOSException) as err:
        raise PartnerConfigError(f"{where}: {err}") from err
    if geom.is_empty or not geom.is_valid or geom.area == 0:
        raise PartnerConfigError(f"{where}: not a valid area ({shapely.is_valid_reason(geom)})")
    x0, y0, x1, y1 = geom.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise PartnerConfigError(f"{where}: coordinates must be [lon, lat] degrees")
    return geom


def _partner(
    raw: Mapping[str, Any], *, env: Mapping[str, str], allow_dev: bool, seen: set[str]
) -> Partner:
    pid = raw.get("id")
    if not isinstance(pid, str) or not pid.replace("-", "").replace("_", "").isalnum():
        raise PartnerConfigError(f"partner {pid!r}: id must be letters, digits, '-' or '_'")
    if pid in seen:
        raise PartnerConfigError(f"partner {pid!r}: id is used twice")
    seen.add(pid)
    where = f"partner {pid!r}"

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in raw:
            raise PartnerConfigError(f"{where}: {key}: missing")
        if not isinstance(raw[key], kind):
            raise PartnerConfigError(f"{where}: {key}: wrong type {type(raw[key]).__name__}")
        return raw[key]

    known = {
        "id", "name", "category", "format", "purpose", "retention_days", "coverage", "policy",
        "push_url", "feed", "secret", "feed_token", "kinds", "min_update_interval_s",
        "cifs_subtype", "cifs_wrap_items", "feed_keep_cancelled_s", "timezone", "timeout_s",
        "max_attempts",
    }
    unknown = set(raw) - known
    if unknown:
        raise PartnerConfigError(f"{where}: unknown keys {sorted(unknown)}")
    fmt = need("format", str)
    if fmt not in FORMATS:
        raise PartnerConfigError(f"{where}: format: {fmt!r} is not one of {sorted(FORMATS)}")
    category = need("category", str)
    if category not in CATEGORIES:
        raise PartnerConfigError(f"{where}: category: {category!r} not in {sorted(CATEGORIES)}")

    policy_raw = raw.get("policy", {})
    fields = frozenset(policy_raw.get("fields", []))
    bad = fields - OPTIONAL_FIELDS
    if bad:
        raise PartnerConfigError(f"{where}: policy.fields: unknown {sorted(bad)}")
    if category in ("navigation", "open_data") and fields & IDENTIFYING_FIELDS:
        leak = sorted(fields & IDENTIFYING_FIELDS)
        raise PartnerConfigError(f"{where}: policy.fields: a {category} partner may not get {leak}")
    decimals = policy_raw.get("coordinate_decimals")
    if decimals is not None and (not isinstance(decimals, int) or isinstance(decimals, bool)):
        raise PartnerConfigError(f"{where}: policy.coordinate_decimals: want a whole number")
    if category == "open_data" and (decimals is None or decimals > 4):
        raise PartnerConfigError(f"{where}: policy.coordinate_decimals: open data needs <= 4")
    try:
        policy = Policy(fields=fields, coordinate_decimals=decimals)
    except ValueError as err:
        raise PartnerConfigError(f"{where}: policy: {err}") from err

    push_url = raw.get("push_url")
    feed = bool(raw.get("feed", False))
    if push_url is None and not feed:
        raise PartnerConfigError(f"{where}: give push_url, or feed = true (or both)")
    if push_url is not None:
        parts = urlsplit(push_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise PartnerConfigError(f"{where}: push_url: want an http(s) URL")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise PartnerConfigError(f"{where}: push_url: plain http only to loopback; use https")
        if parts.username or parts.password or parts.query:
            raise PartnerConfigError(f"{where}: push_url: no credentials or query in the URL")
    if fmt == "waze_cifs" and push_url is not None:
        raise PartnerConfigError(f"{where}: push_url: Waze pulls CIFS feeds; use feed = true")

    def secret(key: str, kind: str) -> Secret | None:
        if key not in raw:
            return None
        return _resolve_secret(
            raw[key], where=f"{where}: {key}", name=pid, kind=kind, env=env, allow_dev=allow_dev
        )

    signing = secret("secret", "webhook secret")
    token = secret("feed_token", "feed token")
    if push_url is not None and signing is None:
        raise PartnerConfigError(f"{where}: secret: a push partner needs a signing secret")
    if feed and token is None:
        raise PartnerConfigError(f"{where}: feed_token: a pull feed needs a bearer token")
    if signing is not None:
        reveal = signing.reveal()
        body = reveal.removeprefix("whsec_")
        try:
            # validate=True: a stray non-base64 character is an error, not silently dropped
            padded = body + "=" * (-len(body) % 4)
            if len(base64.b64decode(padded, validate=True)) < 24:
                raise ValueError
        except ValueError as err:
            raise PartnerConfigError(
                f"{where}: secret: want whsec_ + base64 of >= 24 bytes ({signing.source})"
            ) from err

    kinds = frozenset(raw.get("kinds", sorted(KINDS)))
    if not kinds or kinds - KINDS:
        raise PartnerConfigError(f"{where}: kinds: want a subset of {sorted(KINDS)}")
    subtype = raw.get("cifs_subtype", "HAZARD_ON_ROAD")
    if subtype not in CIFS_SUBTYPES:
        raise PartnerConfigError(f"{where}: cifs_subtype: {subtype!r} is not a HAZARD subtype")
    tz = raw.get("timezone", "America/New_York")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise PartnerConfigError(f"{where}: timezone: unknown {tz!r}") from err
    numbers = {}
    for key, default, low in (
        ("min_update_interval_s", 0.0, 0.0),
        ("feed_keep_cancelled_s", 900.0, 0.0),
        ("timeout_s", 5.0, 0.1),
        ("max_attempts", 6, 1),
        ("retention_days", None, 0),
    ):
        value = raw.get(key, default)
        if value is None:
            raise PartnerConfigError(f"{where}: {key}: missing")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise PartnerConfigError(f"{where}: {key}: want a number >= {low}, got {value!r}")
        numbers[key] = value

    return Partner(
        id=pid,
        name=need("name", str),
        category=category,
        format=fmt,
        purpose=need("purpose", str),
        retention_days=int(numbers["retention_days"]),
        coverage=_coverage(need("coverage", Mapping), f"{where}: coverage"),
        policy=policy,
        push_url=push_url,
        feed=feed,
        secret=signing,
        feed_token=token,
        kinds=kinds,
        min_update_interval_s=float(numbers["min_update_interval_s"]),
        cifs_subtype=subtype,
        cifs_wrap_items=bool(raw.get("cifs_wrap_items", False)),
        feed_keep_cancelled_s=float(numbers["feed_keep_cancelled_s"]),
        timezone=tz,
        timeout_s=float(numbers["timeout_s"]),
        max_attempts=int(numbers["max_attempts"]),
    )


def parse_partners(
    data: Mapping[str, Any], *, env: Mapping[str, str], allow_dev_defaults: bool = False
) -> PartnersConfig:
    """Validate already-parsed TOML data (see ``load_partners``)."""
    unknown = set(data) - {"broker", "partner"}
    if unknown:
        raise PartnerConfigError(f"partners file: unknown top-level keys {sorted(unknown)}")
    broker = data.get("broker", {})
    if "pseudonym_key" not in broker:
        raise PartnerConfigError("[broker]: pseudonym_key: missing")
    key = _resolve_secret(
        broker["pseudonym_key"], where="[broker]: pseudonym_key", name="broker",
        kind="pseudonym key", env=env, allow_dev=allow_dev_defaults,
    )
    sender = broker.get("cap_sender", "alerts@broker.example.org")
    if not isinstance(sender, str) or any(c in sender for c in " ,<&"):
        raise PartnerConfigError("[broker]: cap_sender: no spaces, commas, '<' or '&' (CAP 1.2)")
    raw_partners = data.get("partner", [])
    if not isinstance(raw_partners, list) or not raw_partners:
        raise PartnerConfigError("partners file: no [[partner]] entries")
    seen: set[str] = set()
    partners = tuple(
        _partner(p, env=env, allow_dev=allow_dev_defaults, seen=seen) for p in raw_partners
    )
    return PartnersConfig(partners=partners, pseudonym_key=key, cap_sender=sender)


def load_partners(
    path: Path, *, env: Mapping[str, str], allow_dev_defaults: bool = False
) -> PartnersConfig:
    """Load and validate a partners file. ``env`` is the process environment (from the CLI)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise PartnerConfigError(f"{path}: not valid TOML: {err}") from err
    return parse_partners(data, env=env, allow_dev_defaults=allow_dev_defaults)
