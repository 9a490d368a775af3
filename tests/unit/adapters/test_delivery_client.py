"""The delivery client's own choices (adapters.http_pool): one write per request, no cookies."""

from __future__ import annotations

import ssl
from typing import Any

import httpcore
import httpx
import pytest

from adapters.http_pool import (
    WRITE_COALESCE_BYTES,
    DeliveryClient,
    OriginPool,
    OriginPoolTransport,
    _OneWrite,
    make_client,
)

ANSWER = b"HTTP/1.1 204 No Content\r\n\r\n"


class FakeStream(httpcore.AsyncNetworkStream):
    """A socket that records each write and answers every request with a 204."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.reads = 0

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.writes.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        self.reads += 1
        return ANSWER

    async def aclose(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return False if info == "is_readable" else None


class FakeBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.streams.append(FakeStream())
        return self.streams[-1]


def request(body: bytes) -> httpcore.Request:
    return httpcore.Request(
        "POST", "http://partner.test/hook", content=body,
        headers=[(b"host", b"partner.test"), (b"content-length", str(len(body)).encode())],
    )


async def test_a_request_goes_to_the_socket_in_one_write() -> None:
    backend = FakeBackend()
    pool = OriginPool(ssl_context=ssl.create_default_context(), max_connections=4,
                      keepalive_expiry=5.0, network_backend=backend)
    for body in (b'{"a": 1}', b'{"b": 2}'):
        resp = await pool.handle_async_request(request(body))
        assert resp.status == 204
        await resp.aread()
        await resp.aclose()
    (stream,) = backend.streams  # kept alive and reused
    # head and body of each request in one write (httpcore writes them apart)
    assert len(stream.writes) == 2
    for write, body in zip(stream.writes, (b'{"a": 1}', b'{"b": 2}'), strict=True):
        assert write.startswith(b"POST /hook HTTP/1.1\r\n") and write.endswith(b"\r\n\r\n" + body)


async def test_held_bytes_go_before_the_answer_is_read_or_once_there_are_enough() -> None:
    inner = FakeStream()
    stream = _OneWrite(inner)
    await stream.write(b"head")
    await stream.write(b"")
    await stream.write(b"body")
    assert inner.writes == []
    assert await stream.read(1024) == ANSWER
    assert inner.writes == [b"headbody"]  # flushed before the read, in order
    big = b"x" * WRITE_COALESCE_BYTES
    await stream.write(b"a")
    await stream.write(big)  # past the bound: written without waiting for a read
    assert inner.writes == [b"headbody", b"a" + big]
    await stream.read(1024)
    assert len(inner.writes) == 2  # nothing held, nothing more written


async def test_a_partners_cookies_are_never_kept_nor_sent_back() -> None:
    seen: list[httpx.Request] = []

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"})

    async with DeliveryClient(transport=httpx.MockTransport(answer)) as c:
        for _ in range(2):
            resp = await c.post("http://partner.test/hook", content=b"{}")
            assert resp.status_code == 200
        assert len(c.cookies) == 0
    assert all("cookie" not in r.headers for r in seen)
    # the same answer through a plain httpx client: the cookie goes back (what this avoids)
    seen.clear()
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as plain:
        for _ in range(2):
            await plain.post("http://partner.test/hook", content=b"{}")
    assert seen[1].headers.get("cookie") == "session=abc"


def test_the_delivery_client_is_the_one_without_cookies() -> None:
    assert isinstance(make_client(), DeliveryClient)


async def test_a_cookie_set_by_hand_is_not_kept_nor_shared_between_clients() -> None:
    # found in review: the jar was one object shared by every client, and only a partner's
    # Set-Cookie was ignored; a cookie set through one client went to every partner of all
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    a = make_client()
    a.cookies.set("session", "partner-A-secret")
    a.cookies["other"] = "x"
    assert len(a.cookies) == 0
    async with DeliveryClient(transport=httpx.MockTransport(answer)) as b:
        assert b.cookies is not a.cookies
        b.cookies.set("session", "y")
        await b.post("https://partner.example/hook", content=b"{}")
    assert all("cookie" not in r.headers for r in seen)
    await a.aclose()
    with pytest.raises(TypeError, match="no cookies"):
        DeliveryClient(cookies={"session": "z"})


@pytest.mark.parametrize(("env", "pooled"), [
    ({"NO_PROXY": "localhost,127.0.0.1"}, True),  # found in review: {"no": ...} read as a proxy
    ({}, True),
    ({"HTTPS_PROXY": "http://proxy.example:3128"}, False),  # httpx's transport honours it
])
async def test_only_a_named_proxy_trades_the_origin_pool_for_httpx_transport(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], pooled: bool
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                 "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = make_client()
    assert isinstance(client._transport, OriginPoolTransport) is pooled
    await client.aclose()
