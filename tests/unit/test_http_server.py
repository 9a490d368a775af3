"""What every aiohttp server of the broker sets (adapters.http_server): the idle-connection
timeout on the worker's public port, its operations port and ``broker replay --serve``; no
version banner; public secrets refused through a proxy; the open-file limit."""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_server import (
    KEEPALIVE_TIMEOUT_S,
    SERVER,
    application_options,
    forwarded_https,
    proxied,
    raise_open_file_limit,
    refuse_proxied,
)
from broker.console.access import Access, dev_token
from broker.console.config import ConsoleConfig, console_from_env
from broker.console.player import PlayerSource
from broker.console.serve import console_app
from broker.replay import ReplayResult
from broker.streams.app import create_app
from broker.streams.ops import ops_app
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings, from_env
from broker.streams.topics import TopicNames

HALF_REQUEST = b"GET /console/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: never ends


def player_app(access: Access | None = None) -> web.Application:
    source = PlayerSource(ReplayResult(), [], [], {})
    return console_app(source, ConsoleConfig(access or Access(dev_token(), source="dev-default")))


def worker_app(tmp_path: Any, **env: str) -> Any:
    """The Faust app of a worker, with its console (built, not started: nothing connects)."""
    full = {"BROKER_PARTNERS": "", "BROKER_DATA_DIR": str(tmp_path), **env}
    settings = from_env(full)
    console = console_from_env(full, host=settings.web_host, allow_dev=settings.allow_dev_defaults)
    return create_app(settings, console=console)


@asynccontextmanager
async def half_sent(app: web.Application) -> AsyncIterator[tuple[web.AppRunner, socket.socket]]:
    """``app`` served on 127.0.0.1 (a runner with aiohttp's defaults, as Faust's is) and a
    client that sent half a request."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(HALF_REQUEST)
    try:
        for _ in range(200):  # until the server has taken the connection
            if runner.server is not None and runner.server.connections:
                break
            await asyncio.sleep(0.01)
        yield runner, sock
    finally:
        sock.close()
        await runner.cleanup()


def worker_web_app(tmp_path: Any) -> web.Application:
    async def build() -> web.Application:
        return worker_app(tmp_path).web.web_app  # type: ignore[no-any-return]

    return asyncio.run(build())


@pytest.mark.parametrize("which", ["worker", "ops", "replay"])
def test_every_server_closes_an_unfinished_request_after_the_idle_timeout(
    tmp_path: Any, which: str
) -> None:
    """Found in review: aiohttp's default keeps a half-sent request 3,630 s, so a few hundred
    of them held the process's file descriptors until accept() failed (and the webhook client
    could not open a socket)."""
    if which == "worker":
        app = worker_web_app(tmp_path)
    elif which == "ops":
        rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
        app = ops_app(None, rt)  # type: ignore[arg-type]  # the handlers are not called
    else:
        app = player_app()

    async def run() -> float:
        async with half_sent(app) as (runner, _sock):
            assert runner.server is not None
            (handler,) = runner.server.connections
            return handler.keepalive_timeout

    assert asyncio.run(run()) == KEEPALIVE_TIMEOUT_S


def test_a_half_sent_request_is_closed_by_the_server(monkeypatch: Any) -> None:
    """The timeout acts: the server closes the connection (the client reads EOF), well
    before the generous bound, with a short timeout for the test."""
    monkeypatch.setattr("broker.console.serve.HANDLER_ARGS", {"keepalive_timeout": 0.2})

    async def run() -> bytes:
        async with half_sent(player_app()) as (_runner, sock):
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            return await asyncio.wait_for(loop.sock_recv(sock, 1024), timeout=60)

    assert asyncio.run(run()) == b""


async def test_no_python_or_aiohttp_version_in_the_server_header() -> None:
    async with TestClient(TestServer(player_app(), host="127.0.0.1")) as c:
        for path in ("/console/", "/no-such-page"):
            r = await c.get(path)
            assert r.headers["Server"] == SERVER, path


def test_the_worker_refuses_requests_through_a_proxy_only_with_public_secrets(
    tmp_path: Any,
) -> None:
    """Found in review: a loopback bind published by nginx on the same machine took the public
    development token from anyone (the loopback checks look at binds and Host, which a proxy
    sends as 127.0.0.1)."""

    def middlewares(**env: str) -> list[Any]:
        async def build() -> list[Any]:
            return list(worker_app(tmp_path, **env).web.web_app.middlewares)

        return asyncio.run(build())

    assert middlewares(BROKER_ALLOW_DEV_SECRETS="true") == [refuse_proxied]
    assert middlewares(BROKER_CONSOLE_TOKEN="a-real-operator-token-0123456789") == []
    assert middlewares() == []


async def test_with_public_secrets_a_request_through_a_proxy_is_refused() -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(**application_options(public_secrets=True))
    app.router.add_get("/", hello)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        assert (await c.get("/")).status == 200
        for header in ({"X-Forwarded-For": "203.0.113.9"}, {"Via": "1.1 nginx"},
                       {"Forwarded": "for=203.0.113.9"}):
            r = await c.get("/", headers=header)
            assert r.status == 403 and "development secrets" in await r.text(), header


def test_proxy_headers() -> None:
    assert not proxied({}) and proxied({"Via": "1.1 proxy"})
    assert forwarded_https({"Forwarded": 'for=1.2.3.4;Proto="HTTPS"'})
    assert not forwarded_https({"Forwarded": "proto=http, proto=https"})  # the client's hop
    assert application_options(public_secrets=False)["middlewares"] == []


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("nothing to raise here")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        before, after = raise_open_file_limit()
        assert (before, after) == (min(soft, 256), hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
