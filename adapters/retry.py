"""The pure side of delivery: what to do after a failed attempt, and the partner's breaker.

Which failures are retried (docs/partners.md, "The delivery contract"): a network error, and
HTTP 408, 425, 429 and 5xx: the partner may take the message later. Any other 4xx refuses *this
message* for good (``Reject``: dead-lettered, the partner stays enabled, the breaker is not
touched: one payload a partner dislikes says nothing about its health). 410 Gone disables the
partner (``Disable``). There is no attempt limit: a live alert is retried until it expires
(``GiveUp(expired=True)``), never given up while drivers still need it.

``Retry-After`` is parsed strictly (ASCII delta-seconds or an IMF-fixdate, nothing else) and
bounded; when a partner sends one it sets both this message's next attempt and, through the
:class:`Breaker`, when the partner is next probed.

No I/O, no clock: time comes in as ``now``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

RETRYABLE_STATUS = frozenset({408, 425, 429})  # and every 5xx
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII digits only ("²".isdigit() is True)
MAX_BACKOFF_DOUBLINGS = 32  # past it the backoff is max_backoff_s anyway (2 ** 32 x base_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave: an HTTP status, or an error (timeout, refused ...)."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None
    # a network error after which the partner may have the message all the same (the request
    # began to go out on a connection: a timeout, a connection dropped before the answer); not
    # a refused or failed connection, nor a connect or TLS handshake that hung until our bound
    # (``adapters.attempts.REQUEST_WENT``); nor an answer, which says what the partner did,
    # except a gateway's 504 (``adapters.attempts.GATEWAY_STATUS``: the backend behind it may
    # have stored the message).
    may_have_arrived: bool = False

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """A failure the partner may get over: network error, 408, 425, 429, 5xx."""
        s = self.status
        return s is None or s in RETRYABLE_STATUS or 500 <= s <= 599

    def describe(self) -> str:
        """``HTTP 503`` or ``error: ConnectError ...``."""
        return f"HTTP {self.status}" if self.status is not None else f"error: {self.error}"


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again at ``at``; ``retry_after``: the partner's ``Retry-After`` set it, and the
    retry never goes sooner (``Attempts.wait_until``)."""

    at: datetime
    reason: str
    retry_after: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: the alert would expire before the next attempt (counted and audited as expired)."""

    reason: str
    expired: bool = True


@dataclass(frozen=True, slots=True)
class Reject:
    """The partner refused this message for good (a 4xx other than 408/425/429/410)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Disable:
    """410 Gone: the partner asked us to stop (kept across restarts by the shell)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff: ``base_s * factor**(attempt-1)`` capped at ``max_backoff_s``, "equal jitter"
    (half fixed, half random), so the wait is never below half the backoff. A partner's
    ``Retry-After`` replaces the backoff, capped at ``max_retry_after_s``."""

    base_s: float = 0.5
    factor: float = 2.0
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 300.0


def parse_retry_after(value: str | None, now: datetime, *, cap_s: float = 86_400.0) -> float | None:
    """``Retry-After`` in seconds from ``now``: ASCII delta-seconds or an HTTP date, at most
    ``cap_s``; None when absent or not one of those (a malformed value is ignored, never an
    error).

    Examples
    --------
    >>> now = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    >>> parse_retry_after("120", now), parse_retry_after("²", now), parse_retry_after("1e3", now)
    (120.0, None, None)
    >>> parse_retry_after("Wed, 25 Nov 2026 14:00:30 GMT", now)
    30.0
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), cap_s)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), cap_s)


def next_attempt(
    outcome: Outcome,
    attempt: int,
    now: datetime,
    *,
    expires_at: datetime,
    policy: RetryPolicy = RetryPolicy(),
    rand: Callable[[], float] = random.random,
) -> Retry | GiveUp | Reject | Disable:
    """What to do after failed attempt number ``attempt`` (1-based)."""
    if outcome.ok:
        raise ValueError("next_attempt is for failed attempts")
    if outcome.status == 410:
        return Disable("410 Gone: the partner asked us to stop")
    if not outcome.retryable:
        return Reject(f"{outcome.describe()}: refused by the partner, not retried")
    if outcome.retry_after_s is not None:
        delay = min(outcome.retry_after_s, policy.max_retry_after_s)
        reason = f"{outcome.describe()}, Retry-After {outcome.retry_after_s:g} s"
    else:
        # the exponent capped: a cancel owed is retried without end, and 2.0 ** 1025 overflows
        backoff = min(policy.max_backoff_s,
                      policy.base_s * policy.factor ** min(attempt - 1, MAX_BACKOFF_DOUBLINGS))
        delay = backoff / 2 + rand() * backoff / 2
        reason = f"{outcome.describe()}, backoff {delay:.2f} s"
    at = now + timedelta(seconds=delay)
    if at >= expires_at:
        return GiveUp(f"the alert expires before the next attempt ({reason})")
    return Retry(at, reason, retry_after=outcome.retry_after_s is not None)


@dataclass(frozen=True, slots=True)
class Breaker:
    """A partner's health as a value: closed, or open until ``next_probe``.

    ``threshold`` retryable failures in a row open it; a ``Retry-After`` opens it at once (the
    partner said when to come back). While open, one request (the probe) goes at
    ``next_probe``: every ``probe_interval_s``, or later when the partner's Retry-After says
    so. A success closes it; a failed probe moves ``next_probe`` on, and no failure brings it
    nearer (a Retry-After already given holds). A refused message (4xx) changes nothing.

    ``opened`` counts its openings: a request notes it as it goes (``record``'s ``sent_in``).
    A success of a request sent before the breaker's current opening (one in flight when
    another's 429 came back) says nothing of the partner since, and leaves it open: only a
    request sent while it is open, the probe, closes it. Until 2026-12-07 any success did, and
    a ``Retry-After`` was ignored whenever an older request was answered 200 after it.

    Examples
    --------
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> b = Breaker(threshold=2)
    >>> b = b.record(Outcome(503), t).record(Outcome(503), t)
    >>> b.allows(t), b.allows(t + timedelta(seconds=1))
    (False, True)
    >>> b.record(Outcome(429, retry_after_s=20), t).next_probe == t + timedelta(seconds=20)
    True
    >>> limited = Breaker().record(Outcome(429, retry_after_s=60), t)
    >>> limited.record(Outcome(200), t, sent_in=0).closed  # sent before the 429 came back
    False
    >>> limited.record(Outcome(200), t, sent_in=limited.opened).closed  # the probe
    True
    """

    threshold: int = 3
    probe_interval_s: float = 1.0
    max_retry_after_s: float = 300.0
    failures: int = 0
    next_probe: datetime | None = None
    opened: int = 0  # times it opened (closed to open): the epoch a request is sent in

    @property
    def closed(self) -> bool:
        """Requests go out freely."""
        return self.next_probe is None

    def allows(self, now: datetime) -> bool:
        """Closed, or open with its probe due."""
        return self.next_probe is None or now >= self.next_probe

    def record(self, outcome: Outcome, now: datetime, sent_in: int | None = None) -> Breaker:
        """The breaker after ``outcome`` of an attempt answered at ``now``; ``sent_in``: the
        breaker's ``opened`` when the request went (None: sent as it is now)."""
        if outcome.ok:
            if self.next_probe is not None and sent_in is not None and sent_in < self.opened:
                return self  # sent before it opened: the probe decides
            return replace(self, failures=0, next_probe=None)
        if not outcome.retryable:
            return self
        failures = self.failures + 1
        wait = self.probe_interval_s
        if outcome.retry_after_s is not None:
            wait = max(wait, min(outcome.retry_after_s, self.max_retry_after_s))
        elif failures < self.threshold and self.next_probe is None:
            return replace(self, failures=failures)
        probe = now + timedelta(seconds=wait)
        if self.next_probe is None:
            return replace(self, failures=failures, next_probe=probe, opened=self.opened + 1)
        # already open: moved on, never nearer (an older request's 503 after a Retry-After)
        return replace(self, failures=failures, next_probe=max(probe, self.next_probe))
