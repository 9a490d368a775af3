"""The worker's web server: ``/health``, ``/metrics`` and ``/feeds/{partner}``.

Feeds: the view collects the alerts from the global ``active_alerts`` table (every worker holds
all of it, so any worker answers for every alert) and hands them to
``adapters.feeds.serve_feed``, which owns partner lookup, the bearer token (401 without it),
the privacy policy and the format. Every response is audited (``feed_served`` /
``feed_denied``).

**"now" of a feed** is event time carried on by the wall clock (:class:`FeedClock`): the newest
alert ``ts`` in the table, plus the wall time since this worker first saw it. Live, that is the
wall clock (fixes carry ~wall time); after a replay of a recorded incident, the feed shows that
incident as it stood when the replay ended, then lets it age (alerts expire, cancels drop out
after ``feed_keep_cancelled_s``), as it would have live.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import msgspec

from adapters.audit import AuditRecord, AuditSink
from adapters.config import PartnersConfig
from adapters.feeds import prune, serve_feed
from broker import codec
from broker.model import AlertEvent
from broker.streams.agents import is_ready
from broker.streams.runtime import Runtime, partition_for
from broker.streams.tables import Tables

PRUNE_INTERVAL_S = 60.0  # how often expired / long-cancelled alerts leave the feeds' table


@dataclass
class FeedClock:
    """Event time of the feeds: newest alert ``ts`` seen + wall seconds since it was seen.

    An alert dated beyond the wall clock + ``max_skew_s`` does not move it (the codec refuses
    such fixes, but an alert on the topic from an older version, or a hostile producer on the
    ``alerts`` topic, must not hide every feed until a restart).
    """

    wall: Callable[[], float] = time.monotonic
    utc: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    max_skew_s: float = 60.0
    newest: datetime | None = None
    seen_at: float = 0.0

    def now(self, events: Iterable[AlertEvent]) -> datetime | None:
        """Take in the table's events; the feeds' "now", or None while there are none."""
        wall = self.wall()
        trusted = self.utc() + timedelta(seconds=self.max_skew_s)
        for ev in events:
            if ev.ts > trusted:
                continue
            if self.newest is None or ev.ts > self.newest:
                self.newest, self.seen_at = ev.ts, wall
        if self.newest is None:
            return None
        return self.newest + timedelta(seconds=max(0.0, wall - self.seen_at))


@dataclass(frozen=True, slots=True)
class WallClockAudit:
    """Stamps feed audit records with the wall clock (``serve_feed`` stamps the feed's "now",
    which is event time; the audit log records when a response was actually served)."""

    sink: AuditSink

    def write(self, record: AuditRecord) -> None:
        self.sink.write(msgspec.structs.replace(record, at=datetime.now(UTC)))


def table_alerts(raw_values: Iterable[bytes | None]) -> list[AlertEvent]:
    """Decode the global table's values (the latest event of every alert)."""
    return [codec.decode_alert(raw) for raw in raw_values if raw]


def health_body(app: faust.App, rt: Runtime) -> tuple[int, dict[str, Any]]:
    """Readiness: 200 once assigned and recovered, else 503, with what is missing."""
    ready = is_ready(app, rt) and rt.assigned_once and not rt.partial
    rt.metrics.ready.set(1 if ready else 0)
    body = {
        "ready": ready,
        "recovered": is_ready(app, rt),
        "assigned": rt.assigned_once,
        "partitions": sorted(rt.owned),
        "half_assigned": sorted(rt.partial),
        "live_alerts": rt.live_alerts,
    }
    return (200 if ready else 503), body


def register_web(
    app: faust.App,
    rt: Runtime,
    tables: Tables,
    partners: PartnersConfig | None,
    audit: AuditSink | None,
) -> FeedClock:
    """Add the three pages to ``app``'s web server."""
    clock = FeedClock(max_skew_s=rt.engine.max_future_skew_s)
    feed_audit = WallClockAudit(audit) if audit is not None else None

    @app.page("/health")
    async def health(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        status, body = health_body(app, rt)
        return web.json(body, status=status)

    @app.page("/metrics")
    async def metrics(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway
        return web.bytes(rt.metrics.render(), content_type="text/plain; version=0.0.4")

    @app.page("/feeds/{partner}")
    async def feed(
        web: faust.web.View, request: faust.web.Request, partner: str
    ) -> faust.web.Response:
        if partners is None:
            return web.json({"error": "no partners configured (BROKER_PARTNERS)"}, status=404)
        alerts = table_alerts(tables.active_alerts.values())
        now = clock.now(alerts) or datetime.now(UTC)
        authorization = _header(request, "authorization")
        resp = serve_feed(partners, partner, authorization, alerts, now, audit=feed_audit)
        rt.metrics.feed_requests.labels(partner if resp.status != 404 else "-",
                                        str(resp.status)).inc()
        return web.bytes(
            resp.body, content_type=resp.content_type, status=resp.status,
            headers=dict(resp.headers),
        )

    if partners is not None:
        keep_s = max(p.feed_keep_cancelled_s for p in partners.partners)

        @app.timer(interval=PRUNE_INTERVAL_S, name="prune-feeds")
        async def prune_feeds() -> None:
            if is_ready(app, rt):
                prune_owned(app, rt, tables, clock, keep_s)

    return clock


def prune_owned(
    app: faust.App, rt: Runtime, tables: Tables, clock: FeedClock, keep_s: float
) -> None:
    """Drop alerts no feed will show again; each worker prunes the alerts it owns."""
    owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == rt.names.alerts}
    table = tables.active_alerts
    current = {k.decode(): codec.decode_alert(v) for k, v in table.items() if v}
    now = clock.now(current.values())
    if now is None:
        return
    keep = prune(current, now, keep_cancelled_s=keep_s)
    for aid in current.keys() - keep.keys():
        if partition_for(aid.encode(), rt.settings.partitions) in owned:
            del table[aid.encode()]


def _header(request: Any, name: str) -> str | None:
    """A request header (aiohttp request behind Faust's web view)."""
    headers = getattr(request, "headers", None)
    return None if headers is None else headers.get(name)
