"""The delivery client's connections: kept per origin, the newest idle one taken in O(1).

httpcore 1.0's pool (under ``httpx.AsyncHTTPTransport``) walks every connection it holds on
each request and again on each response's close, asking each whether it has expired, which
polls its socket: with the 20-40 connections a burst to two partners keeps open, that was
~1.4 ms of CPU per webhook on these machines against ~0.5 ms with this pool
(encode/httpcore#928 proposes the same; docs/partners.md, "Connections"). Here a request
takes the most recently used idle connection of its origin (the one least likely to have
been closed by the partner), checks that one alone, and gives it back when its response is
closed. httpcore still speaks HTTP/1.1 on each connection (``httpcore.AsyncHTTPConnection``)
and httpx still builds the requests and maps the errors: this module only chooses which
connection a request goes on.

Limits, as httpx's: at most ``max_connections`` requests at once (a request waits up to
the ``pool`` timeout for a slot, then ``httpx.PoolTimeout``), at most ``max_connections``
sockets open (an idle one of another origin is closed to make room), idle connections closed
once ``keepalive_expiry`` has passed (checked when one is taken or given back).

:func:`make_client` builds the delivery's client on it (moved here from ``adapters.delivery``:
how connections are made is this module's concern, what is sent on them that one's).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, cast

import httpcore
import httpx

# (scheme, host, port): httpcore's Origin is not hashable
OriginKey = tuple[bytes, bytes, int]

# a connection that is no longer available when its request starts (closed between being
# taken and used) is replaced by a new one this many times before the error is raised
NEW_CONNECTION_TRIES = 3


class _GivesBack:
    """A response body that returns its connection to the pool when it is closed."""

    def __init__(
        self, pool: OriginPool, key: OriginKey, conn: httpcore.AsyncHTTPConnection,
        stream: AsyncIterator[bytes],
    ) -> None:
        self._pool, self._key, self._conn, self._stream = pool, key, conn, stream
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()
        finally:
            await self._pool.give_back(self._key, self._conn)


# a request's bytes are held until its answer is read, up to this much (then written at once)
WRITE_COALESCE_BYTES = 64 * 1024


class _OneWrite(httpcore.AsyncNetworkStream):
    """A connection's stream that writes a request in one piece: httpcore writes its head and
    its body separately, two sends (two TCP segments, two TLS records, two wake-ups of the
    partner) per webhook. Writes are held until the answer is read (HTTP/1.1: the request is
    whole by then), or until ``WRITE_COALESCE_BYTES`` are held, and go out as one."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._held: list[bytes] = []
        self._held_bytes = 0

    async def _flush(self, timeout: float | None) -> None:  # noqa: ASYNC109 - httpcore's interface
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            self._held_bytes = 0
            await self._stream.write(data, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore's interface
        if buffer:
            self._held.append(buffer)
            self._held_bytes += len(buffer)
            if self._held_bytes >= WRITE_COALESCE_BYTES:
                await self._flush(timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore's interface
        await self._flush(timeout)
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._held.clear()
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        await self._flush(timeout)
        return _OneWrite(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _OneWriteBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio (anyio) backend, its streams wrapped in :class:`_OneWrite`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None, socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return _OneWrite(await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        return _OneWrite(await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class OriginPool:
    """HTTP/1.1 connections per origin for ``httpx.AsyncHTTPTransport`` (see the module)."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, max_connections: int, keepalive_expiry: float,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[OriginKey, deque[httpcore.AsyncHTTPConnection]] = {}
        self._open = 0  # sockets this pool made and has not closed (idle or in use)
        self._closed = False  # aclose() ran: a connection given back after it is closed
        # sockets (httpcore's asyncio backend unless given: tests), each request one write
        self._backend = _OneWriteBackend(network_backend)

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return sum(len(q) for q in self._idle.values())

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on an idle connection of its origin, or a new one."""
        origin = request.url.origin
        key: OriginKey = (origin.scheme, origin.host, origin.port)
        timeouts = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpcore.PoolTimeout("no connection slot free within the pool timeout") from None
        try:
            conn, response = await self._send(key, origin, request)
        except BaseException:
            self._slots.release()
            raise
        stream = cast(AsyncIterator[bytes], response.stream)  # an async connection's body
        return httpcore.Response(
            status=response.status, headers=response.headers,
            content=_GivesBack(self, key, conn, stream), extensions=response.extensions,
        )

    async def _send(
        self, key: OriginKey, origin: httpcore.Origin, request: httpcore.Request
    ) -> tuple[httpcore.AsyncHTTPConnection, httpcore.Response]:
        for _ in range(NEW_CONNECTION_TRIES):
            conn = await self._take(key) or await self._connection(origin)
            try:
                return conn, await conn.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                await self._close(conn)  # closed under us: another one
            except BaseException:
                await self._close(conn)
                raise
        raise httpcore.ConnectError(f"no usable connection after {NEW_CONNECTION_TRIES} tries")

    async def _take(self, key: OriginKey) -> httpcore.AsyncHTTPConnection | None:
        """The newest idle connection of ``key`` still fit to use (older unfit ones closed)."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.is_idle() and not conn.has_expired():
                return conn
            await self._close(conn)
        return None

    async def _connection(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        """A new connection (not yet connected: it connects on its first request)."""
        self._open += 1  # counted before any await: another request must see it
        if self._open > self._max:  # every socket is open: an idle one somewhere makes room
            # (there is one: each request in flight holds a slot and at most one connection)
            victim = next((idle.popleft() for idle in self._idle.values() if idle), None)
            if victim is not None:
                await self._close(victim)
        return httpcore.AsyncHTTPConnection(
            origin, ssl_context=self._ssl_context, keepalive_expiry=self._expiry,
            network_backend=self._backend,
        )

    async def give_back(self, key: OriginKey, conn: httpcore.AsyncHTTPConnection) -> None:
        """A response was closed: its connection is idle again (or closed if it cannot be)."""
        self._slots.release()
        if self._closed or not conn.is_idle() or conn.has_expired():
            await self._close(conn)
            return
        idle = self._idle.setdefault(key, deque())
        idle.append(conn)
        while len(idle) > 1 and idle[0].has_expired():  # the oldest idle one, once past expiry
            await self._close(idle.popleft())

    async def _close(self, conn: httpcore.AsyncHTTPConnection) -> None:
        self._open -= 1
        await conn.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await self._close(conn)

    async def __aenter__(self) -> OriginPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None, traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


class OriginPoolTransport(httpx.AsyncHTTPTransport):
    """httpx's HTTP transport with :class:`OriginPool` in place of httpcore's pool."""

    def __init__(self, *, limits: httpx.Limits, verify: bool | ssl.SSLContext = True) -> None:
        super().__init__(verify=verify, limits=limits)
        # the one private name used: httpx 0.28's transport keeps its pool here and sends
        # through ``self._pool.handle_async_request`` (tests/integration/test_http_pool.py)
        if not isinstance(self._pool, httpcore.AsyncConnectionPool):
            raise TypeError(f"httpx changed its transport: found {type(self._pool).__name__}")
        self._pool = OriginPool(  # type: ignore[assignment]
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections or 100,
            keepalive_expiry=limits.keepalive_expiry if limits.keepalive_expiry is not None
            else 5.0,
        )

    @property
    def pool(self) -> OriginPool:
        return cast(OriginPool, self._pool)


USER_AGENT = "ev-alert-broker/0.1 (+delivery)"


class _NullJar(http.cookiejar.CookieJar):
    """A ``CookieJar`` that stores nothing, whoever sets a cookie in it."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class _NoCookies(httpx.Cookies):
    """An empty cookie jar that keeps nothing: a webhook is stateless, so a partner's
    ``Set-Cookie`` is neither parsed nor sent back (httpx's jar parsed every answer through
    ``urllib``'s cookie code, and kept what a partner set for its later requests), and a
    cookie set by hand (``client.cookies.set``) is not kept either."""

    def __init__(self) -> None:
        super().__init__()
        self.jar = _NullJar()

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class DeliveryClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` without a cookie jar (:class:`_NoCookies`, one per client)."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("cookies") is not None:
            raise TypeError("the delivery client keeps no cookies")
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the delivery client keeps no cookies")


def make_client(*, max_connections: int = 100, timeout_s: float = 5.0) -> httpx.AsyncClient:
    """A pooled client for delivery: TLS verified, redirects not followed (3xx = failure).

    Connections are kept per partner origin by :class:`~adapters.http_pool.OriginPool`
    (a third of the CPU per webhook of httpcore's pool), unless the environment names a
    proxy (``HTTPS_PROXY`` and friends), which httpx's own transport honours.
    """
    # every connection may stay open between requests: with fewer kept than the partners'
    # requests in flight (16 each by default), a burst closed connections after each
    # request and opened new ones for the next, each a handshake and a partner's accept
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections)
    # NO_PROXY alone names no proxy, though getproxies() then holds {"no": ...}
    proxies = {scheme for scheme in urllib.request.getproxies() if scheme != "no"}
    transport = None if proxies else OriginPoolTransport(limits=limits)
    return DeliveryClient(
        verify=True,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_s, connect=min(2.0, timeout_s)),
        limits=limits,
        transport=transport,
        headers={"user-agent": USER_AGENT},
    )
