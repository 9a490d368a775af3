"""A console's parts for tests without Kafka: a live source with only a feed, and the console
served on a free loopback port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from broker.console.feed import Feed
from broker.console.server import Console, mount

TOKEN = "test-operator-token-0123456789abcdef"


class Live:
    """A live source with a feed and nothing else."""

    mode = "live"

    def __init__(self) -> None:
        self.feed = Feed()

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def snapshot(self) -> dict[str, Any]:
        return {}

    def roads_geojson(self) -> bytes | None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ready(self, timeout_s: float) -> bool:
        return True


@asynccontextmanager
async def serving(console: Console) -> AsyncIterator[web.AppRunner]:
    """``console`` on 127.0.0.1, a free port (``runner.addresses[0][1]``), for the length of
    the block; its runner yielded."""
    app = web.Application()
    mount(app, console)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner
    finally:
        await runner.cleanup()


async def wait_until(check: Callable[[], Any], timeout_s: float) -> bool:
    """Whether ``check()`` comes true within ``timeout_s`` (looked at every 50 ms)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return True
        await asyncio.sleep(0.05)
    return bool(check())
