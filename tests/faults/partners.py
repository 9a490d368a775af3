"""Partners for the fault suite: real HTTP servers on 127.0.0.1 that misbehave by the clock.

:class:`TimedPartner` is the sample partner (``broker.sink.SinkServer``: Standard Webhooks
signatures verified with ``standardwebhooks``, one thread per connection) with a
:class:`Script` of what to do when, counted in seconds from the run's start (``begin(t0)``):

- ``refused``: windows in which the listening socket is closed (connection refused) and every
  open connection is cut; the server comes back on the same port;
- ``unavailable``: windows answered 503; ``throttled``: windows answered 429 with
  ``Retry-After``;
- ``reject_one_alert_from_s``: from then on, 400 to every request about the first alert whose
  create arrives (that alert only);
- ``gone_from_s``: 410 Gone to everything from then on;
- ``latency_s``: every answer that late (5 s: the slow partner).

Every request that reaches the partner is kept as a :class:`Request`: arrival (wall clock),
webhook-id, the partner-facing alert id, version, action, the answer and when it was given.
:func:`partners_file` writes the partners file the worker loads: three push partners on these
servers, development secrets (loopback only).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from broker.sink import SinkServer

Window = tuple[float, float]  # [start, end) in seconds from the run's start

_MSG_TYPE = re.compile(rb"<(?:\w+:)?msgType>(\w+)</")
_CAP_ACTIONS = {b"Alert": "create", b"Update": "update", b"Cancel": "cancel"}
_JSON_ACTION = re.compile(rb'"type"\s*:\s*"alert\.(created|updated|cancelled)"')
_JSON_ACTIONS = {b"created": "create", b"updated": "update", b"cancelled": "cancel"}


@dataclass(frozen=True, slots=True)
class Script:
    """What a partner does when (seconds from the run's start). Empty: a healthy partner."""

    refused: tuple[Window, ...] = ()
    unavailable: tuple[Window, ...] = ()
    throttled: tuple[Window, ...] = ()
    retry_after_s: int = 2
    reject_one_alert_from_s: float | None = None
    gone_from_s: float | None = None
    latency_s: float = 0.0

    @property
    def windows(self) -> tuple[Window, ...]:
        """Every window in which the partner refuses work (refused, 503 or 429)."""
        return tuple(sorted(self.refused + self.unavailable + self.throttled))

    def answer(self, t: float) -> tuple[int, dict[str, str]] | None:
        """The scripted answer at ``t`` seconds (None: answer normally)."""
        if self.gone_from_s is not None and t >= self.gone_from_s:
            return 410, {}
        if any(a <= t < b for a, b in self.unavailable):
            return 503, {}
        if any(a <= t < b for a, b in self.throttled):
            return 429, {"retry-after": str(self.retry_after_s)}
        return None


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One request as the partner saw it."""

    at: float  # arrival, wall clock (epoch seconds)
    answered_at: float
    webhook_id: str
    alert: str  # the partner-facing alert id (webhook-id without "-v<version>")
    # the version in the webhook-id: the partner's (per life under a pseudonym; the scorer
    # takes it back to the engine's, tests.faults.scoring.Scorer)
    version: int | None
    action: str | None
    status: int  # the answer: 200, 400, 401, 410, 429, 503 ...
    retry_after: str | None = None


def _action(body: bytes) -> str | None:
    m = _JSON_ACTION.search(body[:200])
    if m:
        return _JSON_ACTIONS[m.group(1)]
    m = _MSG_TYPE.search(body)
    return _CAP_ACTIONS.get(m.group(1)) if m else None


def _split_id(webhook_id: str) -> tuple[str, int | None]:
    alert, _, version = webhook_id.rpartition("-v")
    return (alert, int(version)) if alert and version.isdigit() else (webhook_id, None)


@dataclass
class TimedPartner(SinkServer):
    """A sample partner with a :class:`Script` by time (see the module docstring)."""

    partner_id: str = "partner"
    script: Script = field(default_factory=Script)
    log: list[Request] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)  # ("down"|"up", wall time)
    refused_alert: str | None = None  # the alert answered 400 (reject_one_alert_from_s)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._t0: float | None = None
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._timer: threading.Thread | None = None
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests being answered right now."""
        return self._in_flight

    # -- the server, and closing it for "connection refused" ------------------------------

    def start(self) -> TimedPartner:
        super().start()
        srv = self._server
        assert srv is not None
        self.port = int(srv.server_address[1])  # come back on the same port after a window
        serve = srv.finish_request

        def finish_request(request: Any, client_address: Any) -> None:
            with self._conn_lock:
                self._conns.add(request)
            try:
                serve(request, client_address)
            finally:
                with self._conn_lock:
                    self._conns.discard(request)

        srv.finish_request = finish_request  # type: ignore[method-assign]
        srv.handle_error = lambda *_: None  # type: ignore[method-assign]  # cut connections
        return self

    def go_down(self) -> None:
        """Close the listening socket and cut every open connection: connection refused."""
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.events.append(("down", time.time()))

    def come_up(self) -> None:
        """Listen again on the same port."""
        self.start()
        self.events.append(("up", time.time()))

    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (also while down)."""
        return f"http://{self.host}:{self.port}"

    # -- the script -------------------------------------------------------------------------

    def begin(self, t0: float) -> None:
        """Start the script's clock at ``t0`` (``time.monotonic()``)."""
        self._t0 = t0
        if self.script.refused:
            self._timer = threading.Thread(target=self._run_windows, daemon=True,
                                           name=f"partner-{self.partner_id}-windows")
            self._timer.start()

    def _run_windows(self) -> None:
        assert self._t0 is not None
        for start, end in sorted(self.script.refused):
            if self._stopping.wait(max(0.0, self._t0 + start - time.monotonic())):
                return
            self.go_down()
            if self._stopping.wait(max(0.0, self._t0 + end - time.monotonic())):
                return
            self.come_up()

    def _scripted(self, t: float | None, alert: str, action: str | None
                  ) -> tuple[int, dict[str, str]]:
        if t is None:
            return 200, {}
        s = self.script
        if s.reject_one_alert_from_s is not None and t >= s.reject_one_alert_from_s:
            with self._lock:
                if self.refused_alert is None and action == "create":
                    self.refused_alert = alert
                if alert == self.refused_alert:
                    return 400, {}
        return s.answer(t) or (200, {})

    def _decide(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]] | float:
        arrived_wall, arrived = time.time(), time.monotonic()
        with self._lock:
            self._in_flight += 1
        try:
            return self._answer(headers, body, arrived_wall, arrived)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, headers: dict[str, str], body: bytes, arrived_wall: float,
                arrived: float) -> tuple[int, dict[str, str]]:
        webhook_id = headers.get("webhook-id", "")
        alert, version = _split_id(webhook_id)
        action = _action(body)
        answer = super()._decide(headers, body)
        if answer == (200, {}):
            t = None if self._t0 is None else arrived - self._t0
            answer = self._scripted(t, alert, action)
        if self.script.latency_s > 0:
            self._stopping.wait(self.script.latency_s)
        assert not isinstance(answer, float)
        status, extra = answer
        with self._lock:
            self.log.append(Request(
                at=arrived_wall, answered_at=time.time(), webhook_id=webhook_id, alert=alert,
                version=version, action=action, status=status,
                retry_after=extra.get("retry-after"),
            ))
        return answer

    def stop(self) -> None:
        self._stopping.set()
        super().stop()


# ---- the partners file --------------------------------------------------------------------

CHARLOTTE = "[-81.30, 34.90, -80.40, 35.60]"
SUBJECT = "navapp"  # the partner the faults are applied to
CONTROLS = ("mapco", "county")  # healthy partners beside it


def _webhook_partner(pid: str, name: str, url: str) -> str:
    return f"""
[[partner]]
id = "{pid}"
name = "{name}"
category = "navigation"
format = "webhook"
purpose = "Fault suite: warn drivers ahead of a responding emergency vehicle."
retention_days = 1
push_url = "{url}/hooks/{pid}"
secret = {{ env = "FAULTS_{pid.upper()}_SECRET", dev_default = true }}
coverage = {{ bbox = {CHARLOTTE} }}
min_update_interval_s = 2.0
timeout_s = 10.0
[partner.policy]
fields = ["unit_type", "position", "heading", "speed", "path", "street"]
coordinate_decimals = 5
"""


def partners_file(path: Path, urls: dict[str, str]) -> Path:
    """The partners file of a run: ``navapp`` (the subject of partner faults) and ``mapco``
    (webhooks, as the sample navigation partner), ``county`` (CAP, as the sample county).
    Timeouts are 10 s, so the 5 s partner is slow, not failing."""
    text = f"""# Written by tests/faults: partners on the fault suite's local doubles.
[broker]
cap_sender = "alerts@faults.example"
pseudonym_key = {{ env = "FAULTS_PSEUDONYM_KEY", dev_default = true }}
{_webhook_partner("navapp", "Navigation app under faults", urls["navapp"])}
{_webhook_partner("mapco", "Navigation app beside it", urls["mapco"])}
[[partner]]
id = "county"
name = "County emergency management (CAP 1.2)"
category = "public_agency"
format = "cap"
purpose = "Fault suite: keep the county aware of live responses."
retention_days = 365
push_url = "{urls["county"]}/hooks/county"
secret = {{ env = "FAULTS_COUNTY_SECRET", dev_default = true }}
coverage = {{ bbox = {CHARLOTTE} }}
min_update_interval_s = 10.0
timeout_s = 10.0
[partner.policy]
fields = ["incident_id", "agency", "unit_type", "position", "street", "cancel_reason"]
"""
    path.write_text(text)
    return path
