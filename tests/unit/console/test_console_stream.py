"""The live event stream's ends: a page that goes, a session that runs out."""

from __future__ import annotations

import asyncio
import logging

import pytest

from broker.console.access import Access
from broker.console.server import Console
from tests.unit.console.fakes import TOKEN, Live, serving, wait_until


async def open_stream(port: int, cookie: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /console/api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Cookie: ev_console={cookie}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"event: snapshot"), 5.0)
    assert head.startswith(b"HTTP/1.1 200")
    return reader, writer


async def test_a_page_that_closes_its_stream_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found in review: a page closed (a tab, a reload) while its stream waited for a delta
    made the next write raise ClientConnectionResetError, uncaught: aiohttp logged an ERROR
    with a traceback for every closed tab."""
    live = Live()
    access = Access(TOKEN)
    console = Console(live, access)
    caplog.set_level(logging.DEBUG)
    async with serving(console) as runner:
        port = runner.addresses[0][1]
        _, writer = await open_stream(port, access.new_session())
        assert console.streams == 1
        writer.close()
        await asyncio.sleep(0.2)
        for i in range(3):
            live.feed.publish("alert", {"alert": {"alert_id": f"A{i}"}})
            await asyncio.sleep(0.1)
        assert await wait_until(lambda: console.streams == 0, 5.0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_stream_ends_when_its_session_expires() -> None:
    """Found in review: the session cookie was checked only when the stream opened, so a page
    left open read live alerts for good past its session's 12 h. The stream now ends at its
    first turn after the expiry; the page's reconnect gets a 401 and shows the login."""
    live = Live()
    now = [1_000.0]
    access = Access(TOKEN, clock=lambda: now[0], session_s=60.0)
    console = Console(live, access)
    async with serving(console) as runner:
        port = runner.addresses[0][1]
        reader, _ = await open_stream(port, access.new_session())
        live.feed.publish("alert", {"alert": {"alert_id": "before"}})
        await asyncio.wait_for(reader.readuntil(b'"before"'), 5.0)
        now[0] += 61.0
        live.feed.publish("alert", {"alert": {"alert_id": "after"}})
        # the server ends the response (its last chunk; the connection may stay for another)
        rest = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5.0)
        assert b"after" not in rest
        assert await wait_until(lambda: console.streams == 0, 5.0)
