"""What every aiohttp server of the broker sets: idle-connection timeout, no version banner,
public secrets refused through a proxy, and the open-file limit of the process.

- **Idle connections.** aiohttp keeps a connection that has not finished sending a request for
  ``keepalive_timeout`` seconds, 3,630 by default: a few hundred clients that open a socket and
  send half a request held that many file descriptors for an hour, until ``accept()`` failed
  with EMFILE and the worker's own webhook client could not open a socket either.
  :data:`HANDLER_ARGS` (``Application(handler_args=...)``, so it holds whatever runner serves
  the application: Faust's, ``ops.py``'s, ``broker replay --serve``'s) closes such a connection
  after :data:`KEEPALIVE_TIMEOUT_S`. A request being answered (an event stream) is not idle.
- **Banner.** aiohttp sends ``Server: Python/3.11 aiohttp/3.x`` on every answer;
  :func:`hide_server_version` sends :data:`SERVER` instead.
- **Proxies and public secrets.** The development secrets and operator token are public, so
  they are only good where only this machine can reach the port. A loopback bind published by a
  reverse proxy on the same machine is not that: a request that came through one (it carries
  ``Forwarded``, ``X-Forwarded-For`` or ``Via``, :func:`proxied`) is refused while they are in
  use (:func:`refuse_proxied`).
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT_S = 15.0  # an idle connection (or an unfinished request) is closed after this
HANDLER_ARGS: Mapping[str, Any] = {"keepalive_timeout": KEEPALIVE_TIMEOUT_S}
SERVER = "ev-alert-broker"
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "Via")
PROXIED_REFUSAL = (
    "this server uses public development secrets and answers local clients only, not through a "
    "proxy (set real secrets: docs/partners.md, docs/console.md)"
)


def proxied(headers: Mapping[str, str]) -> bool:
    """Whether a request says it came through a proxy (``Forwarded``, ``X-Forwarded-For``,
    ``Via``; any value).

    >>> proxied({"Host": "127.0.0.1:6066"}), proxied({"X-Forwarded-For": "203.0.113.9"})
    (False, True)
    """
    return any(name in headers for name in PROXY_HEADERS)


def forwarded_https(headers: Mapping[str, str]) -> bool:
    """Whether a proxy says the client spoke HTTPS to it (``X-Forwarded-Proto: https`` or
    ``Forwarded: ...;proto=https``).

    >>> forwarded_https({"X-Forwarded-Proto": "https"})
    True
    >>> forwarded_https({"Forwarded": "for=192.0.2.7;proto=https"})
    True
    >>> forwarded_https({"X-Forwarded-Proto": "http"}), forwarded_https({})
    (False, False)
    """
    if headers.get("X-Forwarded-Proto", "").strip().lower() == "https":
        return True
    first = headers.get("Forwarded", "").partition(",")[0]
    pairs = (part.strip().lower().replace('"', "") for part in first.split(";"))
    return "proto=https" in pairs


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def refuse_proxied(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An aiohttp middleware for a server that uses public secrets: 403 through a proxy."""
    if proxied(request.headers):
        return web.json_response({"error": PROXIED_REFUSAL}, status=403)
    return await handler(request)


def application_options(*, public_secrets: bool) -> dict[str, Any]:
    """``web.Application(**options)``: the idle timeout, and :func:`refuse_proxied` while
    public secrets are in use (Faust passes its ``web_application_options`` setting so)."""
    return {"handler_args": dict(HANDLER_ARGS),
            "middlewares": [refuse_proxied] if public_secrets else []}


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER  # aiohttp fills in its own only when none is set


def hide_server_version(app: web.Application) -> None:
    """Send ``Server: ev-alert-broker`` instead of the Python and aiohttp versions."""
    app.on_response_prepare.append(_server_header)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one (Linux's 1,024 soft against 524,288
    hard is usual): each client connection, Kafka socket and webhook takes one. Returns the
    ``(before, after)`` soft limits; unchanged where the platform refuses."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as err:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, err)
        return soft, soft
    return soft, hard
