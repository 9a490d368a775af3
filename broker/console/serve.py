"""``broker replay PATH --serve``: the incident player on a local port (aiohttp, no Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from aiohttp import web

from adapters.http_server import HANDLER_ARGS, hide_server_version
from broker.console.config import ConsoleConfig
from broker.console.server import PREFIX, Console, Source, mount


def console_app(source: Source, config: ConsoleConfig) -> web.Application:
    """An aiohttp application serving only the console."""
    app = web.Application(client_max_size=64 * 1024, handler_args=HANDLER_ARGS)
    hide_server_version(app)
    mount(app, Console(source, config.access, tiles=config.tiles,
                       attribution=config.attribution, write_timeout_s=config.write_timeout_s))

    async def root(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{PREFIX}/")

    app.router.add_get("/", root)
    return app


async def _serve(app: web.Application, host: str, port: int,
                 on_ready: Callable[[str], None]) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
    on_ready(f"http://{shown}:{bound[1]}{PREFIX}/")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(app: web.Application, *, host: str, port: int,
          on_ready: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready`` gets the console's URL once it answers."""
    asyncio.run(_serve(app, host, port, on_ready))
