"""Pull feeds (``GET /feeds/<partner>``): render a partner's format from the active alerts.

The worker's web server keeps a global table ``alert life -> latest AlertEvent`` (every worker
sees every alert, so any worker can answer) and calls ``serve_feed`` per request. Everything
here is pure: the caller passes the table's values and ``now``.

What a feed carries, per partner: the latest step of each alert life that has been in the
partner's feed, of a kind the partner takes; live alerts until they expire; cancelled
ones (also of a life the alert has started again since) for ``feed_keep_cancelled_s`` after
the cancel (Waze polls every few minutes and must see
the item end: its ``endtime`` becomes the cancel time).

A life has been in a partner's feed once any step of it had a zone touching the partner's
coverage (of a kind the partner takes), not only its latest step: as push delivery goes on
sending a partner the updates and the cancel of an alert it got (``adapters.fanout``), a feed
goes on showing a unit that drove out of the partner's area, up to its cancel. The table keeps
only a life's latest step, so the caller passes what it remembers (``reached``: life -> the
feed partners an earlier step reached, ``FeedReach`` where the table is written, each with the
``feed_fingerprint`` of the coverage and kinds that decided it); a life no step of which touched
the partner's coverage never shows. A remembered partner counts only while its fingerprint is
the partner's current one: after its coverage or its kinds changed (or its id went to another
organisation), what was decided under the old ones is not trusted (docs/privacy.md rule 3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TypeVar

import shapely
from shapely.errors import ShapelyError
from shapely.geometry import shape

from adapters import cap, geojson, waze_cifs
from adapters.audit import AuditRecord, AuditSink
from adapters.carried import feed_format, fields_carried
from adapters.config import Format, Partner, PartnersConfig
from adapters.policy import AlertView, view_for
from adapters.tokens import bearer_matches, same_secret
from broker.geo.coverage import CoverageIndex
from broker.model import AlertEvent

K = TypeVar("K")
# An alert life: the engine's alert id and the life's ``started_at`` (a re-created alert keeps
# its id and starts a new life)
Life = tuple[str, datetime]
# A feed partner a step reached, as remembered: its id and the ``feed_fingerprint`` it had then
Stamp = tuple[str, str]
# what a feed's caller remembers of each life: the feed partners a step of it reached
Reached = Mapping[Life, Collection[Stamp]]
NOTHING_REACHED: Reached = MappingProxyType({})


_AREAS = ("Polygon", "MultiPolygon")  # what a zone is; anything else is not shown

def feed_fingerprint(partner: Partner) -> str:
    """A short digest (16 hex digits) of what decides whether an alert step enters the partner's
    feed: its coverage (WKB, little-endian 2D) and the kinds it takes. A remembered reach counts
    only under the same fingerprint (``feed_alerts``): after a coverage moved or shrunk, kinds
    changed, or an id given to another organisation with another area, the lives decided
    before are tested anew against what the partner is now.
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(shapely.to_wkb(partner.coverage, output_dimension=2, byte_order=1,
                                 include_srid=False))
    digest.update(b"\0" + "\0".join(sorted(partner.kinds)).encode())
    return digest.hexdigest()


def life_of(event: AlertEvent) -> Life:
    """The alert life ``event`` is a step of."""
    return (event.alert_id, event.started_at)


@dataclass(frozen=True, slots=True)
class FeedReach:
    """Which pull-feed partners' feeds one step of an alert enters: those whose coverage its
    zone touches and that take its kind. The feeds' table remembers, per life, the union over
    its steps (``broker.streams.tables.keep_newest``), so a life stays in a feed after its
    zone left the partner's area; each partner with its ``feed_fingerprint`` (``stamps``), and
    the ``digest`` of the whole set of feed partners the union was computed under.
    """

    index: CoverageIndex
    kinds: Mapping[str, frozenset[str]]
    fingerprints: Mapping[str, str]  # feed partner id -> feed_fingerprint
    digest: str  # of every feed partner's id and fingerprint: what decided a stored union

    @classmethod
    def from_config(cls, config: PartnersConfig | None) -> FeedReach:
        """The feed partners of ``config`` (none without a configuration)."""
        feeds = [] if config is None else [p for p in config.partners if p.feed]
        fingerprints = {p.id: feed_fingerprint(p) for p in feeds}
        digest = hashlib.blake2b(digest_size=8)
        for pid in sorted(fingerprints):
            digest.update(f"{pid}\0{fingerprints[pid]}\0".encode())
        return cls(CoverageIndex({p.id: p.coverage for p in feeds}),
                   {p.id: p.kinds for p in feeds}, fingerprints, digest.hexdigest())

    def __call__(self, event: AlertEvent) -> frozenset[str]:
        if not self.kinds:
            return frozenset()
        try:
            touched = self.index.partners_touching(event.zone)
        except (AttributeError, KeyError, TypeError, ValueError, ShapelyError):
            return frozenset()  # not a zone: no feed shows it (``feed_alerts`` cannot either)
        return frozenset(pid for pid in touched if event.kind in self.kinds[pid])

    def taking(self, kind: str) -> frozenset[str]:
        """The feed partners that take alerts of ``kind`` (all a step of it could reach)."""
        return frozenset(pid for pid, kinds in self.kinds.items() if kind in kinds)

    def stamps(self, partner_ids: Iterable[str]) -> frozenset[Stamp]:
        """``partner_ids`` (feed partners of this configuration) with their fingerprints."""
        return frozenset((pid, self.fingerprints[pid]) for pid in partner_ids)

    def current(self, stamps: Iterable[Stamp]) -> frozenset[str]:
        """The ids of ``stamps`` whose fingerprint is their partner's in this configuration:
        a partner since removed, or whose coverage or kinds changed, drops out."""
        return frozenset(pid for pid, fp in stamps if self.fingerprints.get(pid) == fp)


def supersedes(new: AlertEvent, old: AlertEvent) -> bool:
    """Whether ``new`` is a later step of the alert than ``old``: a later life (``started_at``),
    or a higher version of the same life. The feeds' table keeps an event only over one it
    supersedes, so an event read again after a restart never puts back an older step (an
    update over its cancel).
    """
    return (new.started_at, new.version) > (old.started_at, old.version)


def feed_alerts(
    partner: Partner, active_alerts: Iterable[AlertEvent], now: datetime, *,
    reached: Reached = NOTHING_REACHED,
) -> list[AlertEvent]:
    """The alert steps a partner's feed shows at ``now`` (``feed_steps``, without the live
    steps that went before the cancels)."""
    return [ev for ev, _ in feed_steps(partner, active_alerts, now, reached=reached)]


def last_live(steps: Iterable[AlertEvent]) -> AlertEvent | None:
    """The latest step of ``steps`` (one life's) that is not a cancel; None without one."""
    live: AlertEvent | None = None
    for step in steps:
        if step.action != "cancel" and (live is None or supersedes(step, live)):
            live = step
    return live


def feed_steps(
    partner: Partner, active_alerts: Iterable[AlertEvent], now: datetime, *,
    reached: Reached = NOTHING_REACHED,
) -> list[tuple[AlertEvent, AlertEvent | None]]:
    """The alert steps a partner's feed shows at ``now``, oldest first: the latest step of each
    life of an alert (``supersedes``) that has been in the partner's feed. An earlier life than
    the alert's newest shows only as its cancel, for ``feed_keep_cancelled_s`` like any cancel:
    a re-created alert (the same engine id started again, often a second after the cancel)
    must not take the cancel out of the feed before pollers saw it (formats.md section 1: keep
    a cancelled item for at least 3 poll cycles). An earlier life's live step whose cancel the
    table never got is not shown: the newer life has taken its place (as before lives were
    kept apart).

    A life has been in the partner's feed if ``reached`` names the partner for it with the
    partner's current ``feed_fingerprint`` (one remembered under another coverage or other
    kinds does not count), or if a step of it among ``active_alerts`` (of a kind the partner
    takes) has a zone touching the partner's coverage: then every later step of it, the
    cancel included, shows even outside the coverage (a unit that drove out of the area; as
    push delivery does). A life that never touched the coverage never shows.

    Each with, for a cancel, the life's last live step among ``active_alerts`` (the feeds'
    table keeps it beside the cancel: ``broker.streams.tables``), whose line a CIFS item of the
    cancel keeps (``feed_views``); None for a live step, or a cancel without one."""
    stamp = (partner.id, feed_fingerprint(partner)) if reached else None
    latest: dict[Life, AlertEvent] = {}
    steps: dict[Life, list[AlertEvent]] = {}
    newest_life: dict[str, datetime] = {}
    for ev in active_alerts:
        life = life_of(ev)
        seen = latest.get(life)
        if seen is None or supersedes(ev, seen):
            latest[life] = ev
        steps.setdefault(life, []).append(ev)
        newest_life[ev.alert_id] = max(ev.started_at, newest_life.get(ev.alert_id, ev.started_at))
    keep = timedelta(seconds=partner.feed_keep_cancelled_s)
    out = []
    for life, ev in latest.items():
        if ev.kind not in partner.kinds or ev.zone.get("type") not in _AREAS:
            continue  # a step that is no area (a bad record) would fail the partner's feed
        if ev.action != "cancel" and ev.started_at < newest_life[ev.alert_id]:
            continue
        if ev.action == "cancel":
            if now - ev.ts > keep:
                continue
        elif ev.expires_at <= now:
            continue
        if stamp not in reached.get(life, ()) and not any(
            step.kind in partner.kinds and shapely.intersects(partner.coverage, shape(step.zone))
            for step in steps[life]
        ):
            continue
        out.append((ev, last_live(steps[life]) if ev.action == "cancel" else None))
    return sorted(out, key=lambda e: (e[0].started_at, e[0].alert_id))


def render_feed(
    partner: Partner, active_alerts: Iterable[AlertEvent], now: datetime, *,
    config: PartnersConfig, reached: Reached = NOTHING_REACHED,
) -> tuple[str, bytes]:
    """``(content_type, body)`` of the partner's feed at ``now``, after its privacy policy."""
    steps = feed_view_steps(partner, active_alerts, now, config=config, reached=reached)
    return _render_views(partner, steps, now, config=config)


def feed_views(
    partner: Partner, active_alerts: Iterable[AlertEvent], now: datetime, *,
    config: PartnersConfig, reached: Reached = NOTHING_REACHED,
) -> list[AlertView]:
    """The partner's views of the alert steps its feed shows at ``now`` (see ``feed_alerts``).

    A Waze CIFS partner's cancelled item keeps the line of the life's last live step
    (``ended_on``): a cancel's view has no path or segments, so its item was the zone's ring,
    ``BOTH_DIRECTIONS``, under the id of a live ``ONE_DIRECTION`` line; Waze may match that
    anew, or refuse it and keep the item to its old ``endtime`` (until 2026-12-08)."""
    return [view for view, _ in feed_view_steps(partner, active_alerts, now, config=config,
                                                reached=reached)]


def feed_view_steps(
    partner: Partner, active_alerts: Iterable[AlertEvent], now: datetime, *,
    config: PartnersConfig, reached: Reached = NOTHING_REACHED,
) -> list[tuple[AlertView, AlertView | None]]:
    """``feed_views``, each with the partner's view of the life's last live step for a cancel
    (``feed_steps``; None for a live step or when unknown): a CAP feed's Cancel expires no
    earlier than that step's copy and references it (``cap.render_feed``)."""
    key = config.key_for(partner.id)
    out: list[tuple[AlertView, AlertView | None]] = []
    for ev, live in feed_steps(partner, active_alerts, now, reached=reached):
        view = view_for(ev, partner.policy, key=key)
        live_view = None if live is None else view_for(live, partner.policy, key=key)
        if live_view is not None and partner.format == "waze_cifs":
            view = ended_on(view, live_view)
        out.append((view, live_view))
    return out


def ended_on(cancel: AlertView, live: AlertView) -> AlertView:
    """The view of a cancel with the path and segments of the life's last live step
    (``live``, seen by the partner already under the same policy: nothing new goes out), for
    the line of its CIFS item; the audit names them as carried (``fields_sent``)."""
    kept = tuple(f for f in ("path", "segments") if f in live.fields_sent)
    return replace(cancel, path=live.path, segments=live.segments,
                   fields_sent=cancel.fields_sent + kept)


def fields_sent(views: Iterable[AlertView], fmt: Format) -> tuple[str, ...]:
    """Names of every field any of ``views`` carries in format ``fmt``, in first-seen order
    (for the audit log: ``adapters.carried``).

    A feed mixes steps whose views differ (a cancel drops position and path), so the audit
    records the union, never the fields of one item only.
    """
    return tuple(dict.fromkeys(name for view in views for name in fields_carried(fmt, view)))


def _render_views(
    partner: Partner, steps: list[tuple[AlertView, AlertView | None]], now: datetime, *,
    config: PartnersConfig,
) -> tuple[str, bytes]:
    views = [view for view, _ in steps]
    raw_id = "alert_id" in partner.policy.fields  # the engine's id: the same for every life
    match partner.format:
        case "waze_cifs":
            payload = waze_cifs.render(
                views, subtype=partner.cifs_subtype, timezone=partner.timezone,
                wrap_items=partner.cifs_wrap_items, feed_name=partner.id,
                end_grace_s=partner.cifs_end_grace_s,
                life_in_id=raw_id,  # else the id is per life already (pseudonymous)
            )
        case "cap":
            payload = cap.render_feed(views, sender=config.cap_sender, feed_id=partner.id,
                                      now=now, expires_grace_s=partner.cap_feed_expires_grace_s,
                                      last_live=[live for _, live in steps],
                                      keep_cancelled_s=partner.feed_keep_cancelled_s)
        case "geojson" | "webhook":  # a webhook partner's feed is its views as GeoJSON
            payload = geojson.render(views, feed_name=partner.id, life_in_id=raw_id)
    return payload.content_type, payload.body


def check_bearer(partner: Partner, authorization: str | None) -> bool:
    """True if ``authorization`` carries the partner's feed token (constant time): as
    ``Bearer <token>``, or as HTTP Basic credentials whose password is the token (any user
    name). Waze fetches a CIFS feed with Basic auth, the one scheme its feed setup offers
    (formats.md section 1): with Bearer only, Waze could never read its feed."""
    if partner.feed_token is None:
        return False
    token = partner.feed_token.reveal()
    if bearer_matches(authorization, token):
        return True
    password = basic_password(authorization)
    return password is not None and same_secret(password, token)


def basic_password(authorization: str | None) -> str | None:
    """The password of ``Basic <base64(user:password)>`` credentials; None for anything else.

    >>> basic_password("Basic " + base64.b64encode(b"waze:s3cret").decode())
    's3cret'
    >>> basic_password("Bearer abc"), basic_password("Basic !!"), basic_password(None)
    (None, None, None)
    """
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:  # a header that is not ASCII, not base64 or not UTF-8 is just not the token
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon and password else None


@dataclass(frozen=True, slots=True)
class FeedResponse:
    """What the web handler sends back."""

    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str]


NOT_FOUND = FeedResponse(404, "text/plain", b"no such feed\n", {})
UNAUTHORIZED = FeedResponse(
    401, "text/plain", b"the partner's feed token is required (Bearer, or Basic password)\n",
    {"www-authenticate": 'Bearer realm="feeds", Basic realm="feeds", charset="UTF-8"'},
)


def authorize(
    config: PartnersConfig, partner_id: str, authorization: str | None
) -> Partner | FeedResponse:
    """The partner whose feed the request may read, or the answer to give instead (404 unknown
    or push-only partner, 401 without its token: ``check_bearer``). Cheap: asked before any
    alert is looked at."""
    partner = config.by_id().get(partner_id)
    if partner is None or not partner.feed:
        return NOT_FOUND
    if not check_bearer(partner, authorization):
        return UNAUTHORIZED
    return partner


@dataclass(frozen=True, slots=True)
class RenderedFeed:
    """A partner's feed as rendered at ``now``, with what the audit log needs to know of it."""

    response: FeedResponse
    fields: tuple[str, ...]
    alerts: int
    served: tuple[str, ...] = ()  # message ids (partner-facing alert id + version) of the items
    # each item's life (``started_at``), in ``served``'s order: a partner given the engine's id
    # has the same message id in two lives of an alert, which the report merged
    served_started: tuple[datetime, ...] = ()


def render_partner_feed(
    partner: Partner, active_alerts: Iterable[AlertEvent], now: datetime, *,
    config: PartnersConfig, reached: Reached = NOTHING_REACHED,
) -> RenderedFeed:
    """The partner's feed at ``now`` after its privacy policy (CPU work: the worker runs it off
    its event loop and reuses it for a second); ``reached``: see ``feed_alerts``."""
    steps = feed_view_steps(partner, active_alerts, now, config=config, reached=reached)
    views = [view for view, _ in steps]
    content_type, body = _render_views(partner, steps, now, config=config)
    response = FeedResponse(200, content_type, body, {"cache-control": "no-store"})
    return RenderedFeed(response, fields_sent(views, feed_format(partner.format)), len(views),
                        tuple(view.message_id for view in views),
                        tuple(view.started_at for view in views))


def audit_served(audit: AuditSink, partner_id: str, feed: RenderedFeed, at: datetime) -> None:
    """One audit record for a feed response that carried data, naming the alert steps it
    carried (a refused request sent nothing: it is counted in metrics, not audited)."""
    audit.write(AuditRecord(at=at, partner=partner_id, alert_id="", version=0, action="feed",
                            status="feed_served", http_status=200, fields=feed.fields,
                            alerts=feed.alerts, served=feed.served,
                            served_started=feed.served_started))


def serve_feed(
    config: PartnersConfig,
    partner_id: str,
    authorization: str | None,
    active_alerts: Iterable[AlertEvent],
    now: datetime,
    *,
    audit: AuditSink | None = None,
    reached: Reached = NOTHING_REACHED,
) -> FeedResponse:
    """One ``GET /feeds/<partner_id>`` in one go (tests, tools): 404, 401, or 200 + the feed."""
    partner = authorize(config, partner_id, authorization)
    if isinstance(partner, FeedResponse):
        return partner
    feed = render_partner_feed(partner, active_alerts, now, config=config, reached=reached)
    if audit is not None:
        audit_served(audit, partner_id, feed, now)
    return feed.response


def prune(
    active: Mapping[K, AlertEvent], now: datetime, *, keep_cancelled_s: float = 900.0
) -> dict[K, AlertEvent]:
    """The table without alert steps no feed will show again (expired, or cancelled long ago),
    whatever its keys (the worker's are per life: ``broker.streams.tables.life_key``)."""
    keep = timedelta(seconds=keep_cancelled_s)
    return {
        aid: ev for aid, ev in active.items()
        if (now - ev.ts <= keep if ev.action == "cancel" else ev.expires_at + keep > now)
    }
