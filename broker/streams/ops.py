"""The worker's operations port: ``/health`` and ``/metrics``, apart from the public feeds.

What an operator's probes and Prometheus read says a lot about the deployment (partitions,
lag, partners, delivery outcomes), so it never shares the port partners and the internet reach:
it listens on ``BROKER_OPS_HOST`` (127.0.0.1 by default) and ``BROKER_OPS_PORT`` (6067), on an
aiohttp server of its own started with the worker. Faust's own debugging routes (``/router``,
``/table``, ``/graph``, statistics) are switched off on the public port (``create_app``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import faust
from aiohttp import web

from adapters.http_server import HANDLER_ARGS, hide_server_version
from broker.streams.readiness import is_ready
from broker.streams.runtime import Runtime

log = logging.getLogger(__name__)


def health_body(app: faust.App, rt: Runtime) -> tuple[int, dict[str, Any]]:
    """Readiness: 200 once assigned and recovered and not stopping, else 503, with what is
    missing."""
    recovered = is_ready(app, rt)
    ready = recovered and rt.assigned_once and not rt.partial and rt.stopped is None
    rt.metrics.ready.set(1 if ready else 0)
    body = {
        "ready": ready,
        "recovered": recovered,
        "assigned": rt.assigned_once,
        "partitions": sorted(rt.owned),
        "half_assigned": sorted(rt.partial),
        "live_alerts": rt.live_alerts,
        "stopping": None if rt.stopped is None else str(rt.stopped),
    }
    return (200 if ready else 503), body


def ops_app(app: faust.App, rt: Runtime) -> web.Application:
    """The aiohttp application of the operations port."""

    async def health(request: web.Request) -> web.Response:
        status, body = health_body(app, rt)
        return web.Response(body=json.dumps(body), status=status,
                            content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=rt.metrics.render(),
            headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    webapp = web.Application(client_max_size=1024, handler_args=HANDLER_ARGS)
    hide_server_version(webapp)
    webapp.router.add_get("/health", health)
    webapp.router.add_get("/metrics", metrics)
    return webapp


def register_ops(app: faust.App, rt: Runtime) -> None:
    """Start the operations server with the worker and stop it at shutdown."""
    runners: list[web.AppRunner] = []

    @app.task
    async def ops_server() -> None:
        runner = web.AppRunner(ops_app(app, rt), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, rt.settings.ops_host, rt.settings.ops_port)
        await site.start()
        runners.append(runner)
        log.info("health and metrics on http://%s:%d", rt.settings.ops_host, rt.settings.ops_port)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # Faust types want *args
    async def stop_ops(sender: Any, **kwargs: Any) -> None:
        for runner in runners:
            await runner.cleanup()
