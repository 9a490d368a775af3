"""The console's HTTP side: one page and its data, on an aiohttp application.

:func:`mount` adds the routes under ``/console`` to an ``aiohttp.web.Application``: the Faust
worker's own web server (``broker.streams.console_hook``) or the small server of
``broker replay --serve`` (``broker.console.serve``). The page is the same; the *source* differs:

- :class:`~broker.console.live.LiveSource` (the worker): state folded from Kafka, pushed to the
  page as Server-Sent Events (``/console/api/events``);
- :class:`~broker.console.player.PlayerSource` (a replay): the page asks for the frame of a
  moment (``/console/api/frame?t=...``) as its player clock moves.

Routes (every ``/console/api/*`` route but the session needs the session cookie,
``broker.console.access``):

======================================  =====================================================
``GET /console/``                       the page (login form + app shell; no data in it)
``GET /console/static/<file>``          the page's script, style and vendored Leaflet
``GET|POST|DELETE /console/api/session``  am I signed in / sign in with the token / sign out
``GET /console/api/info``               mode (live or player), tiles, the player's time span
``GET /console/api/snapshot``           the whole picture now (live) or at the start (player)
``GET /console/api/events``             live deltas (SSE), resuming from ``Last-Event-ID``
``GET /console/api/frame?t=ISO``        the player's picture at ``t``
``GET /console/api/roads``              the road network as GeoJSON (404 without one)
======================================  =====================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from adapters.http_server import forwarded_https
from adapters.rate_limit import TokenBucket
from broker.console.access import (
    COOKIE,
    SECURITY_HEADERS,
    Access,
    content_security_policy,
    same_origin,
)
from broker.console.feed import Feed, encode, sse

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# the map library, vendored from npm at build time (scripts/console-assets), not committed
MAP_LIBRARY = STATIC / "vendor" / "leaflet" / "leaflet.js"


def assets_missing() -> str | None:
    """What to run when the map library was never vendored into this checkout (the page then
    loads without a map, with nothing to say why), else None."""
    if MAP_LIBRARY.is_file():
        return None
    return (f"the console's map library is not built ({MAP_LIBRARY} is missing): its page "
            "will have no map; run `make console-assets` (npm)")
PREFIX = "/console"
KEEPALIVE_S = 15.0
MAX_STREAMS = 64  # open event streams per process
SNAPSHOT_WAIT_S = 30.0  # a fresh worker reads Kafka back before its first snapshot
RETRY_MS = 2000  # what the browser waits before reconnecting
# How long one write to an event stream may wait for the page to take its bytes (aiohttp waits
# once its buffer holds 64 KiB more than the socket took). A page that has stopped reading (a
# laptop closed, a network gone without a FIN) held its slot until TCP gave up: 15 minutes and
# more. A live page reads within milliseconds; its keepalive comes every KEEPALIVE_S.
WRITE_TIMEOUT_S = 30.0  # BROKER_CONSOLE_WRITE_TIMEOUT_S (broker.console.config)
WRONG_TOKEN_WAIT_S = 0.5  # before a wrong token's 401
# wrong tokens answered (after WRONG_TOKEN_WAIT_S) per second, the rest get a 429 at once:
# unbounded, 64 clients had 400 guesses checked in 3.8 s and each one logged
REFUSALS_PER_S = 5.0
REFUSALS_BURST = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Source(Protocol):
    """What the page reads: the worker's live state, or a replay's timeline."""

    mode: str  # "live" or "player"

    def info(self) -> dict[str, Any]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def roads_geojson(self) -> bytes | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LiveFeed(Protocol):
    """A source that pushes deltas (the worker)."""

    feed: Feed

    async def ready(self, timeout_s: float) -> bool: ...

    def snapshot(self) -> dict[str, Any]: ...


class Frames(Protocol):
    """A source that answers for a moment (the player)."""

    def frame(self, t: datetime) -> dict[str, Any]: ...


class Console:
    """The handlers of one console: a source, the access check, the tiles."""

    def __init__(self, source: Source, access: Access, *, tiles: str | None = None,
                 attribution: str = "", write_timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self.source = source
        self.write_timeout_s = write_timeout_s
        self.access = access
        self.tiles = tiles
        self.attribution = attribution
        tile_origin = None
        if tiles:
            parts = urlsplit(tiles.replace("{s}", "a"))
            tile_origin = f"{parts.scheme}://{parts.netloc}"
            if "{s}" in tiles:
                tile_origin = f"{parts.scheme}://*.{parts.netloc.partition('.')[2]}"
        self.headers = {**SECURITY_HEADERS,
                        "Content-Security-Policy": content_security_policy(tile_origin)}
        self.closing = asyncio.Event()
        self.streams = 0
        self.denied = TokenBucket(REFUSALS_PER_S, REFUSALS_BURST)
        self.refusals = RefusalLog()

    # ---- plumbing ------------------------------------------------------------------------

    def guarded(self, handler: Handler) -> Handler:
        """Refuse requests without a session or from another origin."""

        async def check(request: web.Request) -> web.StreamResponse:
            refused = self.refused(request)
            if refused is not None:
                return refused
            if not self.access.session_ok(request.cookies.get(COOKIE)):
                return self.json({"error": "sign in with the operator token"}, status=401)
            return await handler(request)

        return check

    def refused(self, request: web.Request) -> web.Response | None:
        """403 for a request from another origin, or addressed to a name that is not loopback
        while the token is the public development one (DNS rebinding: ``access.host_ok``)."""
        if not same_origin(request.headers, request.host):
            return self.json({"error": "cross-origin request refused"}, status=403)
        if not self.access.host_ok(request.host):
            return self.json({"error": "the development token answers on loopback names only "
                                       "(open http://127.0.0.1:<port>/console/)"}, status=403)
        if not self.access.proxy_ok(request.headers):
            return self.json({"error": "the development token answers local clients only, not "
                                       "through a proxy (set BROKER_CONSOLE_TOKEN)"}, status=403)
        return None

    def json(self, body: Any, *, status: int = 200) -> web.Response:
        return web.Response(body=encode(body), status=status, content_type="application/json",
                            headers=self.headers)

    # ---- the page ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=self.headers)

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{PREFIX}/")

    async def static(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = (STATIC / rel).resolve()
        if not path.is_relative_to(STATIC) or not path.is_file() or path.name == "index.html":
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=self.headers)

    # ---- session -------------------------------------------------------------------------

    async def session_get(self, request: web.Request) -> web.StreamResponse:
        # 200 either way: the page asks this before it knows, and a 401 is a console error
        return self.json({"signed_in": self.access.session_ok(request.cookies.get(COOKIE))})

    async def session_post(self, request: web.Request) -> web.StreamResponse:
        refused = self.refused(request)
        if refused is not None:
            return refused
        if request.content_type != "application/json" or (request.content_length or 0) > 4096:
            return self.json({"error": "send {\"token\": ...} as JSON"}, status=400)
        # the bytes, read as JSON (UTF-8) here: request.json() decodes with the charset the
        # client names, and an unknown one ("charset=nope") raised LookupError, a 500 with a
        # traceback for anyone, signed in or not
        raw = await request.read()
        try:
            if len(raw) > 4096:  # a chunked body has no Content-Length to refuse it by
                raise ValueError("too long")
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: 1,500 nested "[" in 3 kB
            return self.json({"error": "send {\"token\": ...} as JSON"}, status=400)
        token = body.get("token") if isinstance(body, dict) else None
        if not self.access.token_ok(token):
            self.refusals.note(request.remote)
            if not self.denied.take():  # a flood of wrong tokens: refused at once, unlogged
                return self.json({"error": "too many sign-in attempts; wait"}, status=429)
            await asyncio.sleep(WRONG_TOKEN_WAIT_S)  # no fast guessing
            return self.json({"error": "wrong operator token"}, status=401)
        resp = self.json({"signed_in": True})
        # Secure behind a TLS proxy too (it speaks plain HTTP to us): the browser then never
        # sends the cookie over plain HTTP
        resp.set_cookie(COOKIE, self.access.new_session(), path=PREFIX, httponly=True,
                        samesite="Strict", max_age=int(self.access.session_s),
                        secure=request.secure or forwarded_https(request.headers))
        return resp

    async def session_delete(self, request: web.Request) -> web.StreamResponse:
        resp = self.json({"signed_in": False})
        resp.del_cookie(COOKIE, path=PREFIX)
        return resp

    # ---- data ------------------------------------------------------------------------------

    async def info(self, request: web.Request) -> web.StreamResponse:
        tiles = {"url": self.tiles, "attribution": self.attribution} if self.tiles else None
        has_roads = self.source.roads_geojson() is not None
        return self.json({**self.source.info(), "tiles": tiles, "roads": has_roads})

    async def snapshot(self, request: web.Request) -> web.StreamResponse:
        return self.json(self.source.snapshot())

    async def roads(self, request: web.Request) -> web.StreamResponse:
        body = self.source.roads_geojson()
        if body is None:
            return self.json({"error": "no road network configured"}, status=404)
        return web.Response(body=body, content_type="application/geo+json", headers=self.headers)

    async def frame(self, request: web.Request) -> web.StreamResponse:
        if not hasattr(self.source, "frame"):
            return self.json({"error": "no player here: this console is live"}, status=404)
        try:
            t = datetime.fromisoformat(request.query.get("t", "").replace("Z", "+00:00"))
        except ValueError:
            return self.json({"error": "t must be an ISO 8601 time with an offset"}, status=400)
        if t.tzinfo is None:
            return self.json({"error": "t must be an ISO 8601 time with an offset"}, status=400)
        frames: Frames = self.source  # type: ignore[assignment]
        return self.json(frames.frame(t))

    async def events(self, request: web.Request) -> web.StreamResponse:
        if getattr(self.source, "feed", None) is None:
            return self.json({"error": "no live events here: this console is a player"},
                             status=404)
        if self.streams >= MAX_STREAMS:
            return self.json({"error": "too many open consoles"}, status=503)
        self.streams += 1
        resp = web.StreamResponse(headers={**self.headers, "Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
        try:
            await self._stream(request, resp, self.source)  # type: ignore[arg-type]
        except _Stalled:
            # the page stopped reading: drop the connection (its buffered bytes too), so
            # neither this write nor aiohttp's end of the response waits on it any more; a
            # page that is still there reconnects after RETRY_MS with its Last-Event-ID
            log.warning("console: an event stream took no bytes for %g s; closed",
                        self.write_timeout_s)
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError as err:  # aiohttp's ClientConnectionResetError is one
            # the page went (a closed tab, a reload) while the stream waited for a delta: the
            # next write met the closed transport. Routine, not an error with a traceback
            log.debug("console: an event stream's page went (%s)", err)
        finally:
            self.streams -= 1
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse,
                      live: LiveFeed) -> None:
        timeout_s = self.write_timeout_s

        async def write(data: bytes) -> None:
            """One write, bounded (``WRITE_TIMEOUT_S``): raises _Stalled past it."""
            try:
                async with asyncio.timeout(timeout_s):  # no task per write, unlike wait_for
                    await resp.write(data)
            except TimeoutError:
                raise _Stalled from None

        _give_up_unacked(request, timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                await resp.prepare(request)
        except TimeoutError:
            raise _Stalled from None
        await write(f"retry: {RETRY_MS}\n\n".encode())
        feed = live.feed
        last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        cursor = feed.cursor_of(last)
        if cursor is None:
            await live.ready(SNAPSHOT_WAIT_S)
            cursor = feed.seq
            await write(sse("snapshot", encode(live.snapshot()), feed.event_id(cursor)))
        # the session is checked on every turn, not only when the stream opened: a page left open
        # read live alerts past its session's end for good. The stream ends at its first turn
        # after the expiry (a delta, or the keepalive at most KEEPALIVE_S later); the page's
        # reconnect gets a 401 and shows the login
        cookie = request.cookies.get(COOKIE)
        while not self.closing.is_set() and not _gone(request):
            await feed.wait(cursor, KEEPALIVE_S)
            if self.closing.is_set() or not self.access.session_ok(cookie):
                break
            items = feed.since(cursor)
            if items is None:  # fell behind the ring: start again from a snapshot
                cursor = feed.seq
                await write(sse("snapshot", encode(live.snapshot()), feed.event_id(cursor)))
                continue
            if not items:
                await write(b": keepalive\n\n")
                continue
            for seq, name, data in items:
                await write(sse(name, data, feed.event_id(seq)))
                cursor = seq

    def shutdown(self) -> None:
        """End every open event stream (the server is stopping)."""
        self.closing.set()
        feed: Feed | None = getattr(self.source, "feed", None)
        if feed is not None:
            feed.wake()


def _give_up_unacked(request: web.Request, timeout_s: float) -> None:
    """Have the kernel drop the connection once bytes sent on it go unacknowledged for
    ``timeout_s`` (Linux ``TCP_USER_TIMEOUT``): a page whose machine vanished (no FIN, no RST)
    sends no ACK for its keepalives, and its stream ends then instead of after TCP's own
    retransmissions (15 minutes and more), before enough bytes pile up for a write to wait."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if option is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(timeout_s * 1000)))


class RefusalLog:
    """Wrong sign-in tokens, logged at most once every ``every_s`` with how many came
    (400 wrong tokens wrote 400 warnings; a line a second says as much)."""

    def __init__(self, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self.held = 0
        self.logged_at: float | None = None

    def note(self, remote: str | None) -> None:
        """One refused sign-in from ``remote``."""
        now = self.clock()
        if self.logged_at is not None and now - self.logged_at < self.every_s:
            self.held += 1
            return
        if self.held and self.logged_at is not None:
            log.warning("console: sign-in refused (wrong token) from %s, and %d more since "
                        "the last such line %.0f s ago", remote, self.held, now - self.logged_at)
        else:
            log.warning("console: sign-in refused (wrong token) from %s", remote)
        self.logged_at, self.held = now, 0


class _Stalled(Exception):
    """A write to an event stream did not finish within the console's write timeout."""


def _gone(request: web.Request) -> bool:
    """Whether the page has closed its stream."""
    transport = request.transport
    return transport is None or transport.is_closing()


def mount(app: web.Application, console: Console) -> None:
    """Add the console's routes and lifecycle to an aiohttp application."""
    if (missing := assets_missing()) is not None:
        log.warning(missing)
    r = app.router
    r.add_get(PREFIX, console.redirect)
    r.add_get(f"{PREFIX}/", console.index)
    r.add_get(PREFIX + "/static/{path:.+}", console.static)
    r.add_get(f"{PREFIX}/api/session", console.session_get)
    r.add_post(f"{PREFIX}/api/session", console.session_post)
    r.add_delete(f"{PREFIX}/api/session", console.guarded(console.session_delete))
    for name, handler in (("info", console.info), ("snapshot", console.snapshot),
                          ("events", console.events), ("frame", console.frame),
                          ("roads", console.roads)):
        r.add_get(f"{PREFIX}/api/{name}", console.guarded(handler))

    async def start(_: web.Application) -> None:
        await console.source.start()

    async def shutdown(_: web.Application) -> None:
        console.shutdown()

    async def cleanup(_: web.Application) -> None:
        await console.source.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
