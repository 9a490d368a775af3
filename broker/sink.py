"""A sample partner endpoint (``broker sink``): verifies, de-duplicates and records webhooks.

An HTTP server on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a thread, so a hanging request
does not block others; a connection idle for ``REQUEST_TIMEOUT_S`` is closed, a body over
``MAX_BODY_BYTES`` is refused with 413 before it is read, a ``Content-Length`` that is no
length with 400) that:

- verifies Standard Webhooks signatures with the ``standardwebhooks`` package against one or
  more secrets (a bad or missing signature gets 401);
- de-duplicates on ``webhook-id`` for ``dedupe_window_s`` (a retry of something already
  received gets 200, is counted as a duplicate, and is not recorded twice; a partner given the
  raw alert id gets ``-v1`` again when the engine re-creates an alert it forgot, hours later);
- records each received alert with the delay since the position's timestamp (the ``ts`` of a
  JSON webhook, ``<sent>`` of a CAP message): in memory and as JSON lines.

Partners that misbehave on purpose (fail, throttle, answer 410, hang) are test doubles: they
live with the tests (``tests/partner_double.py``) and subclass :class:`SinkServer` there.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from cachetools import TTLCache
from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 1024 * 1024  # a webhook is a few KiB; a larger body gets 413 unread
REQUEST_TIMEOUT_S = 10.0  # a connection that sends nothing for this long is closed
MAX_ATTEMPTS_KEPT = 100_000  # the newest attempts kept in memory (any request, any answer)
DEDUPE_WINDOW_S = 3600.0  # a webhook-id received is a duplicate for this long (SinkServer)
DEDUPE_MAX = 1_000_000  # webhook-ids remembered at most (the oldest forgotten first)
_SENT = re.compile(rb"<(?:\w+:)?sent>([^<]+)</(?:\w+:)?sent>")


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted, first-time delivery."""

    message_id: str
    path: str
    received_at: datetime
    event_ts: datetime | None
    delay_ms: float | None  # received_at - event_ts (position timestamp -> received here)
    content_type: str
    alert_id: str | None = None
    version: int | None = None
    action: str | None = None
    body: Any = None  # parsed JSON body, or None for XML


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """Any request, whatever the answer."""

    message_id: str
    path: str
    at: datetime
    status: int


def body_length(header: str | None) -> int | None:
    """A request's ``Content-Length`` (none: 0), or None when it is no length: negative, not a
    number (``int()`` took ``-1``, read to EOF, and raised on ``abc``, a traceback).

    >>> body_length("42"), body_length(None), body_length("-1"), body_length("abc")
    (42, 0, None, None)
    """
    if header is None:
        return 0
    text = header.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _event_time(body: bytes, parsed: Any) -> datetime | None:
    text: str | None = None
    if isinstance(parsed, dict):
        data = parsed.get("data", parsed)
        text = data.get("ts") if isinstance(data, dict) else None
    else:
        m = _SENT.search(body)
        text = m.group(1).decode() if m else None
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class SinkServer:
    """The sink as an object: ``start()``, ``url``, ``received``, ``stop()``."""

    secrets: list[str]
    host: str = "127.0.0.1"
    port: int = 0
    out: Path | None = None
    received: list[Received] = field(default_factory=list)
    attempts: deque[Attempt] = field(default_factory=lambda: deque(maxlen=MAX_ATTEMPTS_KEPT))
    duplicates: int = 0
    rejected: int = 0
    connections: int = 0  # TCP connections accepted: a client that reuses them opens few
    # how long a webhook-id counts as received: a retry comes within the alert's expiry or an
    # owed cancel's outage; the engine re-uses a raw id's versions only after forgetting the
    # unit (``vehicle_idle_expiry_s``, 6 h by default)
    dedupe_window_s: float = DEDUPE_WINDOW_S

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("the sink needs at least one webhook secret to verify with")
        self._hooks = [Webhook(s) for s in self.secrets]
        # (path, webhook-id) -> received; expired after the window (and at most DEDUPE_MAX)
        self._seen: TTLCache[tuple[str, str], bool] = TTLCache(
            maxsize=DEDUPE_MAX, ttl=self.dedupe_window_s, timer=time.monotonic)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._encoder = msgspec.json.Encoder()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SinkServer:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: no header dumps
                return

            timeout = REQUEST_TIMEOUT_S  # on each read and write of the socket

            def do_POST(self) -> None:
                length = body_length(self.headers.get("content-length"))
                if length is None or length > MAX_BODY_BYTES:  # refused before reading it
                    self.close_connection = True  # its unread body must not pass as a request
                    self.send_response(400 if length is None else 413)
                    self.send_header("content-length", "0")
                    self.send_header("connection", "close")
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                status, extra = sink._handle(self.path, dict(self.headers.items()), body)
                if status is None:
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                payload = sink.summary_json()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            # socketserver's listen backlog is 5: a sender opening a dozen connections at once
            # (a burst with many requests in flight) overflowed it, the kernel dropped the
            # SYNs and each of those requests waited the 1 s SYN retransmit (make bench saw
            # 0.4-1.3 s p99s from it). A web server's is hundreds.
            request_queue_size = 1024

            def process_request(self, request: Any, client_address: Any) -> None:
                with sink._lock:
                    sink.connections += 1
                super().process_request(request, client_address)

        self._server = Server((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="broker-sink")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _verify(self, headers: dict[str, str], body: bytes) -> bool:
        for hook in self._hooks:
            try:
                hook.verify(body, headers, json_parse=False)
                return True
            except (WebhookVerificationError, ValueError, TypeError):
                continue
        return False

    def _handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int | None, dict[str, str]]:
        lower = {k.lower(): v for k, v in headers.items()}
        message_id = lower.get("webhook-id", "")
        now = datetime.now(UTC)
        answer = self._decide(lower, body)
        if isinstance(answer, float):  # hang: never answer
            self._stopping.wait(answer)
            with self._lock:
                self.attempts.append(Attempt(message_id=message_id, path=path, at=now, status=0))
            return None, {}
        status, extra = answer
        with self._lock:
            self.attempts.append(Attempt(message_id=message_id, path=path, at=now, status=status))
        if status != 200:
            return status, extra
        with self._lock:
            if (path, message_id) in self._seen:  # webhook-ids are unique per endpoint
                self.duplicates += 1
                return 200, {}
            self._seen[path, message_id] = True
        content_type = lower.get("content-type", "")
        parsed: Any = None
        if "json" in content_type:
            try:
                parsed = json.loads(body)
            except ValueError:
                return 400, {}
        event_ts = _event_time(body, parsed)
        data = parsed.get("data", {}) if isinstance(parsed, dict) else {}
        if not data and "-v" in message_id:  # XML (CAP): alert id and version from webhook-id
            alert_id, _, version = message_id.rpartition("-v")
            data = {"alert_id": alert_id, "version": int(version) if version.isdigit() else None}
        rec = Received(
            message_id=message_id, path=path, received_at=now, event_ts=event_ts,
            delay_ms=None if event_ts is None else (now - event_ts).total_seconds() * 1000,
            content_type=content_type, alert_id=data.get("alert_id"),
            version=data.get("version"), action=data.get("action"), body=parsed,
        )
        with self._lock:
            self.received.append(rec)
            if self.out is not None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                with self.out.open("ab") as fh:
                    fh.write(self._encoder.encode(rec) + b"\n")
        return 200, {}

    def _decide(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]] | float:
        """The answer before recording: 401 for a bad signature, else 200 (a subclass may
        answer otherwise, or return seconds to hang without answering)."""
        if not self._verify(headers, body):
            with self._lock:
                self.rejected += 1
            return 401, {}
        return 200, {}

    def summary_json(self) -> bytes:
        with self._lock:
            delays = sorted(r.delay_ms for r in self.received if r.delay_ms is not None)
            summary = {
                "received": len(self.received), "duplicates": self.duplicates,
                "rejected": self.rejected, "attempts": len(self.attempts),
                "connections": self.connections,
                "delay_ms_p50": delays[len(delays) // 2] if delays else None,
                "delay_ms_max": delays[-1] if delays else None,
            }
        return self._encoder.encode(summary)


def secrets_from_partners(
    path: Path, env: dict[str, str], allow_dev_defaults: bool, host: str = "127.0.0.1"
) -> list[str]:
    """The signing secrets of every push partner in a partners file. Development secrets are
    refused (a ValueError) unless the sink listens on loopback: anyone could forge them."""
    from adapters.config import dev_secrets_check
    from adapters.partners_file import load_partners

    try:
        config = load_partners(path, env=env, allow_dev_defaults=allow_dev_defaults)
    except ValueError as err:
        raise SinkSetupError("--partners", str(err)) from err
    problem, _warning = dev_secrets_check(config, [host])
    if problem:
        raise SinkSetupError("--host", problem)
    return [s for p in config.partners for s in p.signing_secrets()]  # a rotation's both


def _env_secrets(names: list[str], env: dict[str, str]) -> list[str]:
    """The signing secrets of ``--secret-env NAME``s, each checked as the partners file's are
    (a non-base64 one was a binascii traceback); BadParameter naming --secret-env."""
    from adapters.config import Secret
    from adapters.partners_file import PartnerConfigError, check_signing_secret

    for name in names:
        if not env.get(name):
            raise typer.BadParameter(f"env var {name} is not set", param_hint="--secret-env")
        try:
            check_signing_secret(Secret(f"env:{name}", env[name]), f"env var {name}")
        except PartnerConfigError as err:
            raise typer.BadParameter(str(err), param_hint="--secret-env") from None
    return [env[name] for name in names]


class SinkSetupError(ValueError):
    """What the sink cannot start with, and the option to change (``option``)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def sink(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).")] = 8088,
    partners: Annotated[
        Path, typer.Option(help="Partners file: verify with every push partner's secret.")
    ] = Path("fixtures/partners.toml"),
    secret_env: Annotated[
        list[str] | None, typer.Option(help="Also verify with the secret in this env var.")
    ] = None,
    dev_defaults: Annotated[
        bool, typer.Option(help="Allow the documented development secrets.")
    ] = True,
    out: Annotated[Path, typer.Option(help="JSON lines of received alerts.")] = Path(
        "out/sink.jsonl"
    ),
) -> None:
    """Run a sample partner endpoint that verifies and records signed alert webhooks."""
    if not 0 <= port <= 65535:
        typer.echo(f"error: --port {port}: want 0 (any free port) to 65535", err=True)
        raise typer.Exit(2)
    env = dict(os.environ)
    if not partners.exists() and not secret_env:
        # run from elsewhere than the repository's root, the default path is not there: it
        # started with no secret and stopped with a traceback
        raise typer.BadParameter(f"{partners}: no such file; give a partners file, or the "
                                 "secret to verify with in an env var (--secret-env NAME)",
                                 param_hint="--partners")
    try:
        secrets = (
            secrets_from_partners(partners, env, dev_defaults, host) if partners.exists() else []
        )
    except SinkSetupError as err:
        raise typer.BadParameter(str(err), param_hint=err.option) from err
    secrets += _env_secrets(secret_env or [], env)
    if not secrets:
        raise typer.BadParameter(f"{partners} has no push partner with a secret to verify "
                                 "with; give --secret-env NAME", param_hint="--partners")
    try:  # before it listens: it said "recording to" a path it could not write, and each
        # alert then got a traceback and no answer
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("ab"):
            pass
    except OSError as err:
        typer.echo(f"error: --out {out}: cannot append to it ({err.strerror or err}): give a "
                   "file path that can be written", err=True)
        raise typer.Exit(2) from None
    server = SinkServer(secrets=secrets, host=host, port=port, out=out)
    try:
        server.start()
    except OSError as err:  # the port is taken, or below 1024 without the right
        typer.echo(f"error: --port {port}: cannot listen on {host} ({err.strerror})", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"sink listening on {server.url} (verifying {len(secrets)} secrets), "
               f"recording to {out}; Ctrl-C to stop")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        typer.echo(server.summary_json().decode())
