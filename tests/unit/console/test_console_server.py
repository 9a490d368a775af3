"""The console's HTTP side (broker/console/server.py) on an in-process aiohttp server."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from broker.console.access import Access, dev_token
from broker.console.config import ConsoleConfig
from broker.console.player import PlayerSource
from broker.console.serve import console_app
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
