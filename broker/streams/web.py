"""The worker's public web server: ``/feeds/{partner}`` (and the console, ``broker.console``).

Health and metrics are on the operations port (``broker.streams.ops``), never here.

A feed request is checked first (``adapters.feeds.authorize``: 404 unknown partner, 401 without
its bearer token; 413 with a body; 429 past the partner's request rate), before any alert is
looked at. Then the partner's feed is rendered from the global ``active_alerts`` table (every
worker holds all of it, with the feed partners each life reached, so any worker answers for
every alert alike: ``tables.table_feeds``) off the event loop, in a thread,
and reused for up to :data:`FEED_FRESH_S`: a partner polling hard, or many at once, costs one
render a second each, never a stalled worker. A served response is audited (``feed_served``);
a ``HEAD`` is answered 405 (``Allow: GET``) before any check: Faust answers it with the GET
handler, which rendered the feed, took a rate-limit token and audited a feed no body carried;
a refused one sent nothing and is counted in ``broker_feed_requests`` instead.

**Not before the table is back**: until the worker has first reloaded its tables
(``readiness.is_ready`` once, :func:`reloaded_once`), an authorized request is answered 503 with
``Retry-After`` (counted, not audited): the table fills from its changelog after a start, and
a partial feed would tell Waze the missing items had ended. A later rebalance does not refuse
feeds: the table is global, every worker keeps all of it meanwhile, and a worker that died
would otherwise have every other one answer 503 until the group settled. A lapsed lease does
(a worker resumed after a stall past its session: its table is a stall behind) until the
worker has rejoined and reloaded.

**"now" of a feed** is the wall clock (:class:`FeedClock`): an alert is live until its
``expires_at`` by the wall clock, whatever the newest alert in the table says. Only with
``BROKER_FEED_CLOCK=event`` (replays of recorded incidents, demos) is it event time carried on
by the wall clock: the newest alert ``ts`` in the table, plus the wall time since this worker
first saw it, so the feed shows the replayed incident as it stood when the replay ended, then
lets it age (alerts expire, cancels drop out after ``feed_keep_cancelled_s``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import msgspec

from adapters.audit import AuditLost, AuditRecord, AuditSink
from adapters.config import Partner, PartnersConfig
from adapters.feeds import (
    FeedResponse,
    RenderedFeed,
    audit_served,
    authorize,
    prune,
    render_partner_feed,
)
from adapters.rate_limit import TokenBucket
from broker.failure import StopWork
from broker.model import AlertEvent
from broker.streams.readiness import is_ready
from broker.streams.runtime import Runtime, partition_for
from broker.streams.table_writes import TableWrites
from broker.streams.tables import Tables, table_alert, table_feeds

PRUNE_INTERVAL_S = 60.0  # how often expired / long-cancelled alerts leave the feeds' table


@dataclass
class FeedClock:
    """The feeds' "now": the wall clock; with ``event_time``, the newest alert ``ts`` seen plus
    the wall seconds since it was seen (replays of recorded incidents, whose events are old).

    Event time used to be the worker's only clock, and it failed live: after a restart or
    while working off a backlog it stood at the last alert's time, so an alert expired minutes
    ago by the wall clock was served as live; and one unit's fix dated 45 s ahead (the codec
    takes up to 60 s) moved every feed 45 s on, hiding other units' live alerts. Even with
    ``event_time`` an alert dated beyond the wall clock does not move it: it never runs ahead.
    """

    event_time: bool = False
    wall: Callable[[], float] = time.monotonic
    utc: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    newest: datetime | None = None
    seen_at: float = 0.0

    def now(self, events: Iterable[AlertEvent]) -> datetime | None:
        """Take in the table's events; the feeds' "now" (with ``event_time``: None while there
        are none)."""
        utc = self.utc()
        if not self.event_time:
            return utc
        wall = self.wall()
        for ev in events:
            if ev.ts > utc:
                continue
            if self.newest is None or ev.ts > self.newest:
                self.newest, self.seen_at = ev.ts, wall
        if self.newest is None:
            return None
        return self.newest + timedelta(seconds=max(0.0, wall - self.seen_at))


@dataclass(frozen=True, slots=True)
class WallClockAudit:
    """Stamps feed audit records with the wall clock (``serve_feed`` stamps the feed's "now",
    event time with ``BROKER_FEED_CLOCK=event``; the audit log records when a response was
    actually served)."""

    sink: AuditSink

    def write(self, record: AuditRecord) -> None:
        self.sink.write(msgspec.structs.replace(record, at=datetime.now(UTC)))


FEED_FRESH_S = 1.0  # a partner's rendered feed is reused for this long
FEED_RATE_PER_S = 5.0  # requests a partner may make per second (a burst of FEED_BURST)
FEED_BURST = 20
DENIED_RATE_PER_S = 20.0  # refused requests answered per second, all partners together
MAX_REQUEST_BYTES = 1024  # a feed request has no body


@dataclass
class FeedCache:
    """Each partner's last rendered feed, re-rendered at most every ``fresh_s``, in a thread,
    one render at a time per partner."""

    fresh_s: float = FEED_FRESH_S
    wall: Callable[[], float] = time.monotonic
    feeds: dict[str, tuple[float, RenderedFeed]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def get(self, partner_id: str, render: Callable[[], RenderedFeed]) -> RenderedFeed:
        """The partner's feed: the cached one while fresh, else ``render()`` off the loop."""
        lock = self.locks.setdefault(partner_id, asyncio.Lock())
        async with lock:
            hit = self.feeds.get(partner_id)
            if hit is not None and self.wall() - hit[0] < self.fresh_s:
                return hit[1]
            feed = await asyncio.get_running_loop().run_in_executor(None, render)
            self.feeds[partner_id] = (self.wall(), feed)
            return feed


@dataclass
class FeedServer:
    """The ``/feeds/{partner}`` handler's logic: checks first, then the cached render."""

    rt: Runtime
    tables: Tables
    partners: PartnersConfig
    clock: FeedClock
    audit: AuditSink | None
    ready: Callable[[], bool]  # the tables reloaded, and the lease held (``reloaded_once``)
    # the worker stops: an audit record was lost (``AuditLost``), as delivery stops on one
    on_audit_lost: Callable[[AuditLost], Awaitable[None]] | None = None
    cache: FeedCache = field(default_factory=FeedCache)
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    denied: TokenBucket = field(
        default_factory=lambda: TokenBucket(DENIED_RATE_PER_S, DENIED_RATE_PER_S)
    )

    def count(self, partner_id: str, status: int) -> FeedResponse | None:
        self.rt.metrics.feed_requests.labels(
            partner_id if status != 404 else "-", str(status)
        ).inc()
        return None

    def check(self, partner_id: str, headers: Mapping[str, str]) -> Partner | FeedResponse:
        """The partner, or the refusal: 413 with a body, 404/401, 429 past a rate."""
        if int(headers.get("content-length") or 0) > MAX_REQUEST_BYTES:
            # counted without the path's partner: any text there made a metric series of its
            # own, never freed (only a known partner's id is a label, after authorize)
            self.count("-", 413)
            if not self.denied.take():
                return TOO_MANY
            return FeedResponse(413, "text/plain", b"a feed request has no body\n", {})
        who = authorize(self.partners, partner_id, headers.get("authorization"))
        if isinstance(who, FeedResponse):
            self.count(partner_id, who.status)
            return who if self.denied.take() else TOO_MANY  # a flood of wrong tokens: slowed
        bucket = self.buckets.setdefault(partner_id, TokenBucket(FEED_RATE_PER_S, FEED_BURST))
        if not bucket.take():
            self.count(partner_id, 429)
            return TOO_MANY
        return who

    async def serve(self, partner_id: str, headers: Mapping[str, str]) -> FeedResponse:
        """One feed request, answered."""
        who = self.check(partner_id, headers)
        if isinstance(who, FeedResponse):
            return who
        if not self.ready():  # the table is still filling: a partial feed ends items at Waze
            self.count(partner_id, 503)
            return NOT_READY
        raw = list(self.tables.active_alerts.values())  # references only: decoded in the thread

        def render() -> RenderedFeed:
            alerts, reached = table_feeds(raw)
            now = self.clock.now(alerts) or datetime.now(UTC)
            return render_partner_feed(who, alerts, now, config=self.partners, reached=reached)

        rendered = await self.cache.get(partner_id, render)
        if self.audit is not None:
            # written before it goes, not waited for in Kafka (a feed stays served while
            # Kafka is away); a response the worker cannot record is not sent: the worker
            # stops, as delivery does, and the partner's next poll finds the next worker
            try:
                audit_served(self.audit, partner_id, rendered, datetime.now(UTC))
            except AuditLost as lost:
                self.count(partner_id, 503)
                if self.on_audit_lost is not None:
                    await self.on_audit_lost(lost)
                return STOPPING
        self.count(partner_id, 200)
        return rendered.response


TOO_MANY = FeedResponse(429, "text/plain", b"too many requests\n", {"retry-after": "1"})
NOT_READY_RETRY_S = 5  # the Retry-After of a feed asked for before the table is back
NOT_READY = FeedResponse(
    503, "text/plain", b"the feeds' table is still loading, retry shortly\n",
    {"retry-after": str(NOT_READY_RETRY_S), "cache-control": "no-store"},
)


# a HEAD of a feed (Faust's views answer HEAD with GET): it got the whole render, a rate-limit
# token and a ``feed_served`` audit record though no body went out (until 2026-12-08)
HEAD_REFUSED = FeedResponse(
    405, "text/plain", b"a feed is read with GET\n", {"allow": "GET"},
)


STOPPING = FeedResponse(
    503, "text/plain", b"this worker is stopping, retry shortly\n",
    {"retry-after": str(NOT_READY_RETRY_S), "cache-control": "no-store"},
)


def reloaded_once(ready: Callable[[], bool], leased: Callable[[], bool]) -> Callable[[], bool]:
    """False until ``ready`` first holds, then True through rebalances (the feeds' table is
    global: every worker keeps all of it meanwhile), but False again from a lapse of the
    worker's lease (``broker.streams.membership``) until ``ready`` holds once more: a worker
    thawed after a stall past its session has a table a whole stall behind (alerts made
    meanwhile missing, ended at Waze; cancels undone) until it has rejoined and reloaded."""
    held = False

    def check() -> bool:
        nonlocal held
        if not leased():
            held = False
            return False
        held = held or ready()
        return held

    return check


def register_web(
    app: faust.App,
    rt: Runtime,
    tables: Tables,
    partners: PartnersConfig | None,
    audit: AuditSink | None,
    feed_writes: TableWrites,
) -> FeedClock:
    """Add ``/feeds/{partner}`` to ``app``'s (public) web server. The prune deletes through
    ``feed_writes`` (the ``feed-table`` agent's writes: one queue, per key in order)."""
    clock = FeedClock(event_time=rt.settings.feed_clock == "event", utc=rt.utc)
    failures = rt.failure_policy()

    async def stop_on_audit_lost(lost: AuditLost) -> None:
        # already stopped (by another request, or delivery), or shutting down: not a fault
        if rt.stopped is not None or app.should_stop:
            return
        try:
            failures.check("audit", lost, key="feeds", source="feeds")
        except StopWork as stop:  # site "audit" always stops
            await rt.stop_worker(app, stop)

    server = None if partners is None else FeedServer(
        rt, tables, partners, clock, WallClockAudit(audit) if audit is not None else None,
        ready=reloaded_once(lambda: is_ready(app, rt), rt.membership.held),
        on_audit_lost=stop_on_audit_lost,
    )

    @app.page("/feeds/{partner}")
    async def feed(
        web: faust.web.View, request: faust.web.Request, partner: str
    ) -> faust.web.Response:
        if request.method == "HEAD":  # Faust answers HEAD with the GET handler: no body goes
            # out, so nothing is rendered, rate-limited or audited as served
            return web.bytes(HEAD_REFUSED.body, content_type=HEAD_REFUSED.content_type,
                             status=HEAD_REFUSED.status, headers=dict(HEAD_REFUSED.headers))
        if server is None:
            return web.json({"error": "no partners configured (BROKER_PARTNERS)"}, status=404)
        headers = getattr(request, "headers", None) or {}
        resp = await server.serve(partner, headers)
        return web.bytes(resp.body, content_type=resp.content_type, status=resp.status,
                         headers=dict(resp.headers))

    if partners is not None:
        keep_s = max(p.feed_keep_cancelled_s for p in partners.partners)

        @app.timer(interval=PRUNE_INTERVAL_S, name="prune-feeds")
        async def prune_feeds() -> None:
            if is_ready(app, rt):
                prune_owned(app, rt, tables, clock, keep_s, delete=feed_writes.delete)

    return clock


def prune_owned(
    app: faust.App, rt: Runtime, tables: Tables, clock: FeedClock, keep_s: float,
    delete: Callable[[bytes], None],
) -> None:
    """Drop alerts no feed will show again; each worker prunes the alerts it owns (through
    ``delete``, the table's ordered writes)."""
    owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == rt.names.alerts}
    table = tables.active_alerts
    current: dict[bytes, AlertEvent] = {}
    for key, value in list(table.items()):
        ev = table_alert(value)
        if ev is not None:
            current[key] = ev
        elif partition_for(key, rt.settings.partitions) in owned:
            delete(key)  # not an alert event: no feed shows it, the table forgets it
    now = clock.now(current.values())
    if now is None:
        return
    keep = prune(current, now, keep_cancelled_s=keep_s)
    for key in current.keys() - keep.keys():
        # owned by the alert's partition of ``alerts`` (the key is the life's: ``life_key``)
        if partition_for(current[key].alert_id.encode(), rt.settings.partitions) in owned:
            delete(key)


def _header(request: Any, name: str) -> str | None:
    """A request header (aiohttp request behind Faust's web view)."""
    headers = getattr(request, "headers", None)
    return None if headers is None else headers.get(name)
