"""The worker's web server: ``/health``, ``/metrics`` and the ``/feeds/{partner}`` seam.

Feeds: the web view only collects the alerts to show (from the global ``active_alerts`` table)
and hands them to a :data:`FeedRenderer`; formats, privacy policy and partner lookup belong to
``adapters/``. Pass one to ``create_app(settings, feed_renderer=...)``; without one, the
default looks for ``adapters.feeds.render_partner_feed`` with this same signature.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from broker import codec
from broker.model import AlertEvent
from broker.streams.agents import is_ready
from broker.streams.runtime import Runtime
from broker.streams.tables import Tables

# A cancelled alert stays in what feeds get for this long (Waze polls every few minutes).
KEEP_CANCELLED = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class FeedResponse:
    """A rendered feed: body bytes and their content type."""

    body: bytes
    content_type: str


# (partner id, alert events to show, now) -> the rendered feed, or None for an unknown partner.
FeedRenderer = Callable[[str, Sequence[AlertEvent], datetime], FeedResponse | None]


def default_feed_renderer() -> FeedRenderer | None:
    """``adapters.feeds.render_partner_feed`` if the adapters package provides it."""
    try:
        module = importlib.import_module("adapters.feeds")
    except ImportError:
        return None
    return getattr(module, "render_partner_feed", None)


def alerts_for_feeds(raw_values: Sequence[bytes], now: datetime) -> list[AlertEvent]:
    """Live alerts, plus cancels younger than :data:`KEEP_CANCELLED`, oldest first.

    Expired alerts (``expires_at`` in the past) are left out: their unit went quiet.
    """
    out: list[AlertEvent] = []
    for raw in raw_values:
        ev = codec.decode_alert(raw)
        if ev.action == "cancel":
            if now - ev.ts <= KEEP_CANCELLED:
                out.append(ev)
        elif ev.expires_at >= now:
            out.append(ev)
    return sorted(out, key=lambda e: (e.started_at, e.alert_id))


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
        "live_alerts": sum(len(v) for v in rt.live.values()),
    }
    return (200 if ready else 503), body


def register_web(
    app: faust.App, rt: Runtime, tables: Tables, feed_renderer: FeedRenderer | None
) -> None:
    """Add the three pages to ``app``'s web server."""

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
        if feed_renderer is None:
            return web.json({"error": "no feed renderer is wired into this worker"}, status=501)
        now = datetime.now(UTC)  # the edge: feeds are served in wall-clock time
        alerts = alerts_for_feeds([v for v in tables.active_alerts.values() if v], now)
        rendered = feed_renderer(partner, alerts, now)
        if rendered is None:
            return web.json({"error": f"no pull feed for partner {partner!r}"}, status=404)
        return web.bytes(rendered.body, content_type=rendered.content_type)
