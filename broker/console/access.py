"""Who may read the console: one operator token, exchanged for a signed session cookie.

- **Token.** The operator token comes from the environment (``BROKER_CONSOLE_TOKEN``), like the
  partners' secrets. Its documented development default (:func:`dev_token`) is used only where
  everything is loopback: ``broker replay --serve`` on 127.0.0.1, or a worker with
  ``BROKER_ALLOW_DEV_SECRETS=true`` bound to loopback (``broker.console.config``).
- **Login.** The page posts the token in a JSON body to ``/console/api/session`` (never in a URL,
  so never in an access log, a proxy log or the browser history). The answer sets a session
  cookie: ``HttpOnly``, ``SameSite=Strict``, ``Path=/console``. Every data path needs it; without
  it only the login page and the static files (no data) are served.
- **Session cookie.** ``<expiry>.<nonce>.<HMAC-SHA256>`` under a key derived from the token, so
  it needs no server-side store: it survives a worker restart (the open page reconnects with it)
  and works on every worker that has the same token. Changing the token ends every session.
  The key is derived once, with scrypt (:data:`KEY_SCRYPT_N`, ~0.1 s): a leaked cookie lets anyone
  test guesses of the token offline, and a SHA-256 key let one core test ~260,000 a second (a
  16-character token of words fell at once); the token has at least :data:`MIN_TOKEN_CHARS`.
- **Same origin.** A request that a browser marks as cross-site (``Sec-Fetch-Site``) or whose
  ``Origin`` is not this host is refused; no CORS header is ever sent; pages may not be framed.
- **Not through a proxy with the development token.** A loopback bind published by a reverse
  proxy on the same machine reaches everyone, and the proxy sends ``Host: 127.0.0.1``: with the
  development token a request carrying ``Forwarded``, ``X-Forwarded-For`` or ``Via`` is refused
  (:meth:`Access.proxy_ok`).
- **Loopback names with the development token.** Anyone can compute that token, so it is only
  good where only this machine can reach the console. A page on any web site can, though, if
  its DNS name is made to resolve to 127.0.0.1 (DNS rebinding): to the browser that page and
  the console are then the same origin. With the development token, a request whose ``Host``
  is not a loopback name (``localhost``, 127.0.0.0/8, ``[::1]``) is refused (:meth:`host_ok`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from adapters.http_server import proxied
from adapters.tokens import same_secret

COOKIE = "ev_console"
SESSION_S = 12 * 3600.0
DEV_TOKEN_NAME = "console"
DEV_SOURCE = "dev-default"
MIN_TOKEN_CHARS = 24  # as the Traccar ingest token (docs/settings-env.md)
KEY_SCRYPT_N = 2**14  # with r=8: 16 MiB and ~0.1 s per guess of the token (SHA-256: ~4 us)


def dev_token() -> str:
    """The documented development operator token (loopback only; anyone can compute it)."""
    raw = hashlib.sha256(b"ev-alert-broker development operator token: console").digest()
    return raw.hex()[:32]


@dataclass(frozen=True)
class Access:
    """Checks tokens and session cookies; holds the token, never shows it."""

    token: str = field(repr=False)
    source: str = "env:BROKER_CONSOLE_TOKEN"  # or DEV_SOURCE
    session_s: float = SESSION_S
    clock: Callable[[], float] = field(default=time.time, repr=False)
    _key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the operator token must be at least {MIN_TOKEN_CHARS} characters")
        key = hashlib.scrypt(self.token.encode("utf-8", "surrogatepass"),
                             salt=b"ev-console-session", n=KEY_SCRYPT_N, r=8, p=1, dklen=32)
        object.__setattr__(self, "_key", key)  # frozen: derived once, here

    def host_ok(self, host: str | None) -> bool:
        """Whether a request addressed to ``host`` (its ``Host`` header) may be answered: any
        host with a real token; only a loopback one with the public development token."""
        return self.source != DEV_SOURCE or loopback_host(host)

    def proxy_ok(self, headers: Mapping[str, str]) -> bool:
        """Whether a request may be answered as far as proxies go: any with a real token; with
        the public development token, only one that came through no proxy."""
        return self.source != DEV_SOURCE or not proxied(headers)

    def token_ok(self, given: object) -> bool:
        """Whether ``given`` is the operator token (constant-time)."""
        return isinstance(given, str) and same_secret(given, self.token)

    def new_session(self) -> str:
        """A fresh session cookie value."""
        body = f"{int(self.clock() + self.session_s)}.{secrets.token_hex(8)}"
        return f"{body}.{self._sign(body)}"

    def session_ok(self, value: str | None) -> bool:
        """Whether a cookie value is a session of this token that has not expired."""
        if not value or not value.isascii() or value.count(".") != 2:
            return False  # a session this console made is ASCII ("1.2.é" raised in the compare)
        body, _, sig = value.rpartition(".")
        expiry = body.partition(".")[0]
        if not same_secret(sig, self._sign(body)) or not expiry.isdigit():
            return False
        return int(expiry) > self.clock()

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


def loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header names loopback (``localhost``, 127.0.0.0/8, ``[::1]``; any port).

    >>> loopback_host("127.0.0.1:8765"), loopback_host("[::1]:1"), loopback_host("localhost")
    (True, True, True)
    >>> loopback_host("rebound.evil.example:8765"), loopback_host("127.0.0.1.nip.io")
    (False, False)
    """
    if not host:
        return False
    try:
        name = urlsplit("//" + host).hostname
    except ValueError:  # "[::1" and the like: a client's header, never an exception
        return False
    return name is not None and is_loopback(name)


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name is loopback only (``localhost``, 127.0.0.0/8,
    ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_origin(headers: Mapping[str, str], host: str | None) -> bool:
    """Whether a request comes from a page of this origin (or from no browser page at all)."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("Origin")
    if origin is None:
        return True
    return host is not None and origin.partition("://")[2] == host


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def content_security_policy(tile_origin: str | None) -> str:
    """Scripts, styles, data and images from this origin only (plus the configured tiles)."""
    img = "'self' data:" + (f" {tile_origin}" if tile_origin else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {img}; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )
