"""The partners file: ``fixtures/partners.toml`` -> validated, frozen ``Partner`` objects
(``adapters.config``).

Loaded once at start (by ``broker.cli``), which passes the process environment in: nothing
here reads ``os.environ`` itself. Two steps:

1. decode: msgspec turns the TOML data into frozen Structs that describe the *file*
   (:class:`PartnersFile`, :class:`PartnerEntry`, :class:`Coverage`, :class:`SecretRef`, ...):
   types, bounds and choices are their field types; rules across fields are small checks run
   by ``__post_init__`` (``_PARTNER_RULES``).
2. build: secrets are resolved from the environment or files, coverage becomes a shapely
   geometry, and each entry becomes a runtime :class:`~adapters.config.Partner`.

Errors are :class:`PartnerConfigError` naming the file (when loaded from one), the partner and
the field, e.g. ``fixtures/partners.toml: partner 'navapp': policy.fields: a navigation partner
may not get ['vehicle_id']`` or ``partner 'opendata': policy.coordinate_decimals: want a whole
number, got '3'``.

Secrets (webhook signing secrets, feed tokens, the pseudonymisation key) are never literal in
the file. Each is a reference: ``{ env = "NAME" }`` or ``{ file = "/abs/path/outside/repo" }``.
With ``dev_default = true`` and ``allow_dev_defaults=True`` a missing env var falls back to a
secret derived from the partner id (documented in docs/partners.md): good for the demo and
tests on 127.0.0.1, useless as a real secret, which is why the loader must be asked for it.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msgspec
from msgspec import Meta

from adapters.config import (
    DEV_DEFAULT,
    KINDS,
    LOOPBACK,
    Category,
    Format,
    Kind,
    Partner,
    PartnersConfig,
    Secret,
    dev_secret,
)
from adapters.coverage_entry import Coverage, coverage_problem
from adapters.policy import IDENTIFYING_FIELDS, OptionalField, Policy
from adapters.zone_rounding import COARSE_DECIMALS
from broker.model import WORLD, Area
from broker.validation import NOTHING, Invalid, explain, locate, read_toml, type_at, value_at
from broker.validation import Path as FieldPath

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
log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET_KEYS = frozenset({"secret", "feed_token", "pseudonym_key"})  # values never shown
MIN_TOKEN_CHARS = 24  # a feed's bearer token: ~144 bits as base64
MIN_KEY_CHARS = 32  # the pseudonymisation key


# logged at load for a Waze CIFS feed that takes approaching alerts (allowed, as before
# 2026-12-08, when it was the default): design.md, "Partners"
STALE_CORRIDOR = (
    "a waze_cifs feed with 'approaching' (kinds default to both): Waze fetches every few "
    "minutes and shows an item minutes later, when a moving unit's stretch ahead is about 1 km "
    "behind it; the moving corridor goes out by push (design.md): set kinds = [\"on_scene\"]"
)


class PartnerConfigError(ValueError):
    """The partner file is wrong; the message names the partner and the field."""


# --- the file, as msgspec decodes it -----------------------------------------------------------


class SecretRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a secret is: ``{ env = "NAME" }`` and/or ``{ file = "/abs/path" }``, tried in
    that order, then (with ``dev_default = true``, if the loader allows it) the dev default."""

    env: str | None = None
    file: str | None = None
    dev_default: bool = False

    def __post_init__(self) -> None:
        if self.file is None:
            return
        path = Path(self.file).expanduser()
        if not path.is_absolute():
            raise Invalid("file", "must be an absolute path")
        if path.resolve().is_relative_to(REPO_ROOT):
            raise Invalid("file", "secrets must live outside the repository")


def _no_literal(key: str, ref: SecretRef | str | None) -> None:
    """A secret written into the file is refused (its type allows ``str`` to say so)."""
    if isinstance(ref, str):
        raise Invalid(key, 'must be a reference like { env = "NAME" }, never a literal secret')


class PolicyEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[partner.policy]``: which optional fields, how many coordinate decimals."""

    fields: frozenset[OptionalField] = frozenset()
    coordinate_decimals: Annotated[int, Meta(ge=0, le=7)] | None = None


class PartnerEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[partner]]`` table as written (docs/partners.md has the keys)."""

    id: str
    name: str
    category: Category
    format: Format
    purpose: str
    retention_days: Annotated[int, Meta(ge=0)]
    coverage: Coverage
    policy: PolicyEntry = msgspec.field(default_factory=PolicyEntry)
    push_url: str | None = None
    feed: bool = False
    secret: SecretRef | str | None = None
    # the secret that will replace ``secret``: while set, every request carries a signature
    # with each (Standard Webhooks' rotation without downtime, docs/partners.md)
    next_secret: SecretRef | str | None = None
    feed_token: SecretRef | str | None = None
    kinds: Annotated[frozenset[Kind], Meta(min_length=1)] = KINDS  # type: ignore[assignment]
    min_update_interval_s: Annotated[float, Meta(ge=0)] = 0.0
    cifs_subtype: str = "HAZARD_ON_ROAD"
    cifs_wrap_items: bool = False
    # 60 s to a day: 0 ended no item at a poller (a cancel never seen), inf or 1e15 overflowed
    # every feed request and the prune (timedelta), for every partner
    feed_keep_cancelled_s: Annotated[float, Meta(ge=60, le=86400)] = 900.0
    cifs_end_grace_s: Annotated[float, Meta(ge=0, le=3600)] = 600.0
    cap_feed_expires_grace_s: Annotated[float, Meta(ge=0, le=3600)] = 300.0
    timezone: str = "America/New_York"
    timeout_s: Annotated[float, Meta(ge=0.1)] = 5.0
    max_in_flight: Annotated[int, Meta(ge=1, le=64)] = 16

    def __post_init__(self) -> None:
        for rule in _PARTNER_RULES:
            rule(self)


_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")  # ASCII only: str.isalnum() takes 'ä' and '٣'


def _plain_id(p: PartnerEntry) -> None:
    # the id names metric labels, audit records, /feeds/<id> and the dev secrets
    if not _PLAIN_ID.fullmatch(p.id):
        raise Invalid("id", "must be ASCII letters, digits, '-' or '_'")


def _said_in_words(p: PartnerEntry) -> None:
    # the transparency report prints both: an empty one read "Why: " with nothing after it
    for key in ("name", "purpose"):
        if not getattr(p, key).strip():
            raise Invalid(key, "empty: the transparency report shows it (say who, or why)")


def _no_identifying_fields(p: PartnerEntry) -> None:
    leak = p.policy.fields & IDENTIFYING_FIELDS
    if p.category in ("navigation", "open_data") and leak:
        raise Invalid("policy.fields", f"a {p.category} partner may not get {sorted(leak)}")


def _raw_alert_id_with_what_it_reveals(p: PartnerEntry) -> None:
    # the engine's id is an unkeyed hash of (vehicle, incident, kind): with a fleet list the
    # vehicle and incident are found again from it, so the raw id is for a partner that gets
    # them anyway; the transparency report would otherwise say they are withheld
    missing = {"vehicle_id", "incident_id"} - p.policy.fields
    if "alert_id" in p.policy.fields and missing:
        raise Invalid(
            "policy.fields",
            f"the raw alert_id reveals {sorted(missing)} (the engine derives it from vehicle and "
            "incident): list them too, or leave alert_id out for a pseudonymous id",
        )


def _open_data_is_coarse(p: PartnerEntry) -> None:
    decimals = p.policy.coordinate_decimals
    if p.category == "open_data" and (decimals is None or decimals > 4):
        raise Invalid("policy.coordinate_decimals", "open data needs <= 4")


def _coarse_gets_no_street(p: PartnerEntry) -> None:
    # the road's name says which street crosses the partner's ~100 m cell: more than its cells
    decimals = p.policy.coordinate_decimals
    coarse = decimals is not None and decimals <= COARSE_DECIMALS
    if "street" in p.policy.fields and (coarse or p.category == "open_data"):
        why = "open data" if p.category == "open_data" else f"coordinate_decimals = {decimals}"
        raise Invalid(
            "policy.fields",
            f"'street' names the road the unit is on, finer than a coarse partner's cells "
            f"({why}; coarse: open data, or <= {COARSE_DECIMALS} decimals): leave street out"
            + ("" if p.category == "open_data" else f", or give >= {COARSE_DECIMALS + 1} decimals"),
        )


def _pushed_or_pulled(p: PartnerEntry) -> None:
    if p.push_url is None and not p.feed:
        raise Invalid("", "give push_url, or feed = true (or both)")


def _safe_push_url(p: PartnerEntry) -> None:
    if p.push_url is None:
        return
    # urlsplit strips a leading space and keeps one inside the host; httpx, which sends, does
    # neither: " http://..." failed every delivery (UnsupportedProtocol) until it dead-lettered
    bad = [c for c in p.push_url if c.isspace() or not c.isprintable()]
    if bad:
        raise Invalid("push_url", f"{p.push_url!r} holds {bad[0]!r}: no whitespace or control "
                      "characters in the URL (in its path, percent-encode them: %20)")
    parts = urlsplit(p.push_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid("push_url", "want an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise Invalid("push_url", "plain http only to loopback; use https")
    if parts.username or parts.password or parts.query:
        raise Invalid("push_url", "no credentials or query in the URL")
    _valid_port(p.push_url)
    try:  # the client that sends it parses it too
        httpx.URL(p.push_url)
    except (httpx.InvalidURL, TypeError, ValueError) as err:
        raise Invalid("push_url", f"{p.push_url!r}: not a URL httpx can send to ({err})") from err
    if p.format == "waze_cifs":
        raise Invalid("push_url", "Waze pulls CIFS feeds; use feed = true")


def _valid_port(url: str) -> None:
    """A port, if the URL gives one, is 1-65535 (urlsplit checks it only when asked)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # out of range or not a number
        port = None
    else:
        if port is None or port >= 1:
            return
    given = parts.netloc.rpartition("]")[2].partition(":")[2]  # after an IPv6 literal
    raise Invalid("push_url", f"port {given!r}: want 1 to 65535")


def _secrets_where_needed(p: PartnerEntry) -> None:
    _no_literal("secret", p.secret)
    _no_literal("next_secret", p.next_secret)
    _no_literal("feed_token", p.feed_token)
    if p.push_url is not None and p.secret is None:
        raise Invalid("secret", "a push partner needs a signing secret")
    if p.next_secret is not None and p.secret is None:
        raise Invalid("next_secret", "rotates a signing secret: set `secret` too")
    if p.feed and p.feed_token is None:
        raise Invalid("feed_token", "a pull feed needs a bearer token")


def _known_cifs_subtype(p: PartnerEntry) -> None:
    if p.cifs_subtype not in CIFS_SUBTYPES:
        raise Invalid("cifs_subtype", f"{p.cifs_subtype!r} is not a HAZARD subtype")


def _known_timezone(p: PartnerEntry) -> None:
    try:
        ZoneInfo(p.timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise Invalid("timezone", f"unknown {p.timezone!r}") from err


# in this order: the first broken rule is the one reported
_PARTNER_RULES: tuple[Callable[[PartnerEntry], None], ...] = (
    _plain_id,
    _said_in_words,
    _no_identifying_fields,
    _raw_alert_id_with_what_it_reveals,
    _open_data_is_coarse,
    _coarse_gets_no_street,
    _pushed_or_pulled,
    _safe_push_url,
    _secrets_where_needed,
    _known_cifs_subtype,
    _known_timezone,
)


class BrokerEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[broker]``: the pseudonymisation key and the CAP sender."""

    pseudonym_key: SecretRef | str
    cap_sender: str = "alerts@broker.example.org"

    def __post_init__(self) -> None:
        _no_literal("pseudonym_key", self.pseudonym_key)
        _cap_sender(self.cap_sender)


def _cap_sender(sender: str) -> None:
    """CAP 1.2 sender: globally unique (e.g. an address at a domain you hold), no spaces,
    commas or restricted characters; it goes into every ``references`` triple, where a
    comma or whitespace would split it."""
    if not sender:
        raise Invalid("cap_sender", "empty: want e.g. alerts@your-domain (CAP 1.2 sender)")
    bad = [c for c in sender if c.isspace() or not c.isprintable() or c in ",<&"]
    if bad:
        raise Invalid("cap_sender", f"{sender!r} holds {bad[0]!r}: no whitespace, control "
                      "characters, commas, '<' or '&' (CAP 1.2 sender)")


class PartnersFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The whole file: ``[broker]`` and the ``[[partner]]`` tables, in file order."""

    broker: BrokerEntry
    partner: list[PartnerEntry] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.partner:
            raise Invalid("", "no [[partner]] entries")
        seen: set[str] = set()
        for i, p in enumerate(self.partner):
            if p.id in seen:
                raise Invalid(f"partner[{i}].id", f"{p.id!r} is used twice")
            seen.add(p.id)


# --- errors: msgspec's path -> "partner 'navapp': policy.fields" ---------------------------


def _place(path: FieldPath, data: Any, source: str | None) -> str:
    """``fixtures/partners.toml: partner 'navapp': policy.fields`` for ``path``."""
    head = f"{source}: " if source else ""
    if len(path) >= 2 and path[0] == "partner" and isinstance(path[1], int):
        pid = value_at(data, (*path[:2], "id"))
        label = f"partner {pid!r}" if pid is not NOTHING else f"partner #{path[1] + 1}"
        head, path = f"{head}{label}", path[2:]
    elif path[:1] == ("broker",):
        head, path = f"{head}[broker]", path[1:]
    else:
        head = head.removesuffix(": ") if source else "partners file"
    return f"{head}: {_dotted(path)}" if path else head


def _dotted(path: FieldPath) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")


def _describe(err: msgspec.ValidationError, data: Any, source: str | None) -> str:
    """A decoding error in the file's terms: where, what was wanted, what was there."""
    path, message = locate(err)
    if SECRET_KEYS.intersection(map(str, path)):
        if path[-1] in SECRET_KEYS and message.startswith("Expected"):
            message = "must be a table with 'env' or 'file'"
        why = explain(message, type_at(PartnersFile, path))  # never show a secret's value
    else:
        why = explain(message, type_at(PartnersFile, path), value_at(data, path))
    return f"{_place(path, data, source)}: {why}"


# --- the runtime objects -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Secrets:
    """Resolves secret references against the environment given to the loader."""

    env: Mapping[str, str]
    allow_dev: bool

    def resolve(
        self, ref: SecretRef | str, *, where: str, name: str, kind: str, min_length: int = 0
    ) -> Secret:
        """The secret ``ref`` points at; at least ``min_length`` characters (a short token
        or key can be guessed)."""
        secret = self._find(ref, where=where, name=name, kind=kind)
        if len(secret.reveal()) < min_length:
            raise PartnerConfigError(
                f"{where}: too short ({len(secret.reveal())} characters from {secret.source}; "
                f"want at least {min_length})"
            )
        return secret

    def _find(self, ref: SecretRef | str, *, where: str, name: str, kind: str) -> Secret:
        assert isinstance(ref, SecretRef)  # a literal is refused when decoding
        if ref.env is not None and self.env.get(ref.env):
            return Secret(f"env:{ref.env}", self.env[ref.env])
        if ref.file is not None:
            path = Path(ref.file).expanduser()
            if path.exists():
                try:
                    return Secret(f"file:{path}", path.read_text(encoding="utf-8-sig").strip())
                except (OSError, UnicodeDecodeError) as err:  # a binary key file, a directory
                    raise PartnerConfigError(
                        f"{where}: {path} is not a readable text file ({type(err).__name__}): "
                        "a secret file holds the secret as text (e.g. from `openssl rand -hex 32`)"
                    ) from err
        if ref.dev_default and self.allow_dev:
            return Secret(DEV_DEFAULT, dev_secret(name, kind))
        looked = [f"{k} {v!r}" for k, v in (("env", ref.env), ("file", ref.file)) if v is not None]
        raise PartnerConfigError(f"{where}: not found (looked at {', '.join(looked) or 'nothing'})")


def check_signing_secret(secret: Secret, where: str) -> None:
    """Standard Webhooks: ``whsec_`` + base64 of at least 24 bytes."""
    body = secret.reveal().removeprefix("whsec_")
    try:
        # validate=True: a stray non-base64 character is an error, not silently dropped
        padded = body + "=" * (-len(body) % 4)
        long_enough = len(base64.b64decode(padded, validate=True)) >= 24
    except ValueError:  # binascii.Error, or a non-ASCII character (a bare ValueError)
        long_enough = False
    if not long_enough:
        raise PartnerConfigError(
            f"{where}: want whsec_ + base64 of >= 24 bytes ({secret.source})"
        )


def _partner(entry: PartnerEntry, where: str, secrets: _Secrets) -> Partner:
    signing = token = None
    if entry.secret is not None:
        signing = secrets.resolve(
            entry.secret, where=f"{where}: secret", name=entry.id, kind="webhook secret"
        )
        check_signing_secret(signing, f"{where}: secret")
    next_signing = None
    if entry.next_secret is not None:
        next_signing = secrets.resolve(
            entry.next_secret, where=f"{where}: next_secret", name=entry.id,
            kind="next webhook secret",
        )
        check_signing_secret(next_signing, f"{where}: next_secret")
    if entry.feed_token is not None:
        token = secrets.resolve(
            entry.feed_token, where=f"{where}: feed_token", name=entry.id, kind="feed token",
            min_length=MIN_TOKEN_CHARS,
        )
    return Partner(
        id=entry.id,
        name=entry.name,
        category=entry.category,
        format=entry.format,
        purpose=entry.purpose,
        retention_days=entry.retention_days,
        coverage=entry.coverage.area(),
        policy=Policy(
            fields=frozenset(entry.policy.fields),
            coordinate_decimals=entry.policy.coordinate_decimals,
        ),
        push_url=entry.push_url,
        feed=entry.feed,
        secret=signing,
        next_secret=next_signing,
        feed_token=token,
        kinds=frozenset(entry.kinds),
        min_update_interval_s=entry.min_update_interval_s,
        cifs_subtype=entry.cifs_subtype,
        cifs_wrap_items=entry.cifs_wrap_items,
        feed_keep_cancelled_s=entry.feed_keep_cancelled_s,
        cifs_end_grace_s=entry.cifs_end_grace_s,
        cap_feed_expires_grace_s=entry.cap_feed_expires_grace_s,
        timezone=entry.timezone,
        timeout_s=entry.timeout_s,
        max_in_flight=entry.max_in_flight,
    )


def _in_service_area(entry: PartnerEntry, where: str, service_area: Area) -> None:
    """Refuse a coverage no zone of the service area reaches (:func:`coverage_problem`)."""
    problem = coverage_problem(entry.coverage, service_area)
    if problem is not None:
        raise PartnerConfigError(f"{where}: coverage: {problem}")


def parse_partners(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    allow_dev_defaults: bool = False,
    source: str | Path | None = None,
    service_area: Area = WORLD,
) -> PartnersConfig:
    """Validate already-parsed TOML data (see ``load_partners``); ``source`` names the file
    in error messages. Each coverage must overlap ``service_area`` (the engine's)."""
    src = str(source) if source is not None else None
    try:
        file = msgspec.convert(data, PartnersFile)
    except msgspec.ValidationError as err:
        raise PartnerConfigError(_describe(err, data, src)) from err
    for i, entry in enumerate(file.partner):
        _in_service_area(entry, _place(("partner", i), data, src), service_area)
    secrets = _Secrets(env, allow_dev_defaults)
    key = secrets.resolve(
        file.broker.pseudonym_key,
        where=_place(("broker", "pseudonym_key"), data, src),
        name="broker",
        kind="pseudonym key",
        min_length=MIN_KEY_CHARS,
    )
    partners = tuple(
        _partner(entry, _place(("partner", i), data, src), secrets)
        for i, entry in enumerate(file.partner)
    )
    for i, entry in enumerate(file.partner):
        if entry.format == "waze_cifs" and entry.feed and "approaching" in entry.kinds:
            log.warning("%s: %s", _place(("partner", i, "kinds"), data, src), STALE_CORRIDOR)
    return PartnersConfig(partners=partners, pseudonym_key=key, cap_sender=file.broker.cap_sender)


def load_partners(
    path: Path, *, env: Mapping[str, str], allow_dev_defaults: bool = False,
    service_area: Area = WORLD,
) -> PartnersConfig:
    """Load and validate a partners file. ``env`` is the process environment (from the CLI);
    ``service_area`` the engine's (a coverage outside it is refused)."""
    data = read_toml(path, PartnerConfigError)
    return parse_partners(data, env=env, allow_dev_defaults=allow_dev_defaults, source=path,
                          service_area=service_area)
