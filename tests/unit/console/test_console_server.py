"""The console's HTTP side (broker/console/server.py) on an in-process aiohttp server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.rate_limit import TokenBucket
from broker.console.access import Access, dev_token
from broker.console.config import ConsoleConfig
from broker.console.player import PlayerSource
from broker.console.serve import console_app
from broker.console.server import REFUSALS_BURST, REFUSALS_PER_S, Console, RefusalLog, mount
from broker.replay import ReplayResult

TOKEN = "test-operator-token-0123456789abcdef"


def client(access: Access) -> TestClient:
    source = PlayerSource(ReplayResult(), [], [], {})  # an empty recording
    return TestClient(TestServer(console_app(source, ConsoleConfig(access)), host="127.0.0.1"))


def as_page_of(host: str) -> dict[str, str]:
    """What a browser sends for a same-origin request of a page at http://<host>/."""
    return {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}


async def test_the_dev_token_is_refused_on_a_name_that_is_not_loopback() -> None:
    """DNS rebinding: a web page at http://rebound.evil.example:PORT/ whose name is made to
    resolve to 127.0.0.1 is, to the browser, same-origin with the player on loopback. The
    development token is public, so that page could sign in and read the incident. With the
    development token the console answers only requests addressed to a loopback host."""
    async with client(Access(dev_token(), source="dev-default")) as c:
        port = c.server.port
        evil = as_page_of(f"rebound.evil.example:{port}")
        r = await c.post("/console/api/session", json={"token": dev_token()}, headers=evil)
        assert r.status == 403 and "Set-Cookie" not in r.headers
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1"):
            ok = await c.post("/console/api/session", json={"token": dev_token()},
                              headers=as_page_of(host))
            assert ok.status == 200, host
        # a session made on loopback is no key to the rebound name either
        cookie = ok.cookies["ev_console"].value
        r = await c.get("/console/api/info", headers={**evil, "Cookie": f"ev_console={cookie}"})
        assert r.status == 403
        r = await c.get("/console/api/info", headers={**as_page_of(f"localhost:{port}"),
                                                      "Cookie": f"ev_console={cookie}"})
        assert r.status == 200


async def test_a_real_token_is_accepted_on_any_host_name() -> None:
    """BROKER_CONSOLE_TOKEN (a secret) on a worker behind a proxy: any Host is fine."""
    async with client(Access(TOKEN)) as c:
        r = await c.post("/console/api/session", json={"token": TOKEN},
                         headers=as_page_of("console.city.example"))
        assert r.status == 200


def test_the_dev_token_is_refused_through_a_proxy() -> None:
    """Found in review: nginx on the same machine publishing a loopback console sends
    ``Host: 127.0.0.1:...`` and took the public development token from anyone."""

    async def run() -> list[int]:
        statuses = []
        for access in (Access(dev_token(), source="dev-default"), Access(TOKEN)):
            async with client(access) as c:
                for header in ({}, {"X-Forwarded-For": "203.0.113.9"}, {"Via": "1.1 nginx"},
                               {"Forwarded": "for=203.0.113.9;proto=https"}):
                    r = await c.post("/console/api/session", json={"token": access.token},
                                     headers={**as_page_of(f"127.0.0.1:{c.server.port}"),
                                              **header})
                    statuses.append(r.status)
        return statuses

    assert asyncio.run(run()) == [200, 403, 403, 403, 200, 200, 200, 200]


async def test_the_cookie_is_secure_behind_a_tls_proxy() -> None:
    async with client(Access(TOKEN)) as c:
        page = as_page_of("console.city.example")
        plain = await c.post("/console/api/session", json={"token": TOKEN}, headers=page)
        assert not plain.cookies["ev_console"]["secure"]
        for proxy in ({"X-Forwarded-Proto": "https"}, {"Forwarded": "for=192.0.2.7;proto=https"}):
            r = await c.post("/console/api/session", json={"token": TOKEN},
                             headers={**page, **proxy})
            assert r.status == 200 and r.cookies["ev_console"]["secure"], proxy


async def test_wrong_tokens_past_the_rate_get_429_and_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in review: 400 wrong tokens from 64 threads were all checked (3.8 s) and each one
    wrote a warning. Past REFUSALS_BURST (the clock stands still here) they get a 429 at once,
    and the log says how many there were."""
    monkeypatch.setattr("broker.console.server.WRONG_TOKEN_WAIT_S", 0.0)
    source = PlayerSource(ReplayResult(), [], [], {})
    console = Console(source, Access(TOKEN))
    console.denied = TokenBucket(REFUSALS_PER_S, REFUSALS_BURST, wall=lambda: 0.0)
    now = [0.0]
    console.refusals = RefusalLog(clock=lambda: now[0])
    app = web.Application()
    mount(app, console)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        page = as_page_of(f"127.0.0.1:{c.server.port}")
        with caplog.at_level(logging.WARNING, logger="broker.console.server"):
            statuses = [(await c.post("/console/api/session", json={"token": f"wrong-{i}"},
                                      headers=page)).status for i in range(15)]
            now[0] = 5.0
            await c.post("/console/api/session", json={"token": "wrong"}, headers=page)
        right = await c.post("/console/api/session", json={"token": TOKEN}, headers=page)
    burst = int(REFUSALS_BURST)
    assert statuses == [401] * burst + [429] * (15 - burst)
    assert right.status == 200  # the operator still gets in
    lines = [r.getMessage() for r in caplog.records if "sign-in refused" in r.getMessage()]
    assert len(lines) == 2 and "14 more" in lines[1], lines


def test_a_console_without_its_map_library_says_what_to_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """After `make run` or a plain install the page loaded with no map and no word of why
    (the library is vendored by `make console-assets`; an operator review)."""
    import logging

    from aiohttp import web

    from broker.console import server

    monkeypatch.setattr(server, "MAP_LIBRARY", tmp_path / "leaflet.js")
    assert "make console-assets" in (server.assets_missing() or "")
    caplog.set_level(logging.WARNING, logger=server.log.name)
    server.mount(web.Application(), server.Console.__new__(server.Console))
    assert any("make console-assets" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(server, "MAP_LIBRARY", server.STATIC / "index.html")
    assert server.assets_missing() is None


async def test_a_sign_in_with_an_unknown_charset_is_no_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found in review: ``Content-Type: application/json; charset=nope`` made request.json()
    raise LookupError: a 500 and a traceback in the log, for anyone, with no rate limit. The
    body is read as JSON (UTF-8, RFC 8259) whatever charset the client names."""
    monkeypatch.setattr("broker.console.server.WRONG_TOKEN_WAIT_S", 0.0)
    async with client(Access(TOKEN)) as c:
        page = as_page_of(f"127.0.0.1:{c.server.port}")
        statuses = []
        for charset, body in (("nope", b'{"token": "x"}'), ("utf-8", b'{"token": "\xff"}'),
                              ("nope", b"[" * 1_500)):
            r = await c.post("/console/api/session", data=body, headers={
                **page, "Content-Type": f"application/json; charset={charset}"})
            statuses.append(r.status)
        assert statuses == [401, 400, 400]
        r = await c.post("/console/api/session", data=f'{{"token": "{TOKEN}"}}'.encode(),
                         headers={**page, "Content-Type": "application/json; charset=nope"})
        assert r.status == 200
