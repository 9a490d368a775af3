"""The pure side of delivery: what to do after a failed attempt, and the circuit breaker.

``next_attempt(outcome, attempt, now, ...)`` returns ``Retry`` (exponential backoff with jitter
from an injected ``rand``, or the partner's ``Retry-After`` on 429/503), ``GiveUp`` (attempts
exhausted, or the alert would expire first) or ``Disable`` (410 Gone). ``Breaker`` is a value:
``record`` returns the next one. No I/O, no clock: time comes in as ``now``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave: an HTTP status, or an error (timeout, refused ...)."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else f"error: {self.error}"


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str
    expired: bool = False  # the alert would expire before the next attempt


@dataclass(frozen=True, slots=True)
class Disable:
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff: ``base_s * factor**(attempt-1)`` capped at ``max_backoff_s``, "equal jitter"
    (half fixed, half random), so the wait is never below half the backoff."""

    base_s: float = 0.5
    factor: float = 2.0
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is capped (our alerts are short-lived)
    max_attempts: int = 6


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds from ``now`` (delta-seconds or an HTTP date); None if bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_attempt(
    outcome: Outcome,
    attempt: int,
    now: datetime,
    *,
    expires_at: datetime,
    policy: RetryPolicy = RetryPolicy(),
    rand: Callable[[], float] = random.random,
) -> Retry | GiveUp | Disable:
    """What to do after failed attempt number ``attempt`` (1-based)."""
    if outcome.ok:
        raise ValueError("next_attempt is for failed attempts")
    if outcome.status == 410:
        return Disable("410 Gone: the partner asked us to stop")
    if attempt >= policy.max_attempts:
        return GiveUp(f"exhausted after {attempt} attempts, last {outcome.describe()}")
    if outcome.status in (429, 503) and outcome.retry_after_s is not None:
        delay = min(outcome.retry_after_s, policy.max_retry_after_s)
        reason = f"{outcome.describe()}, Retry-After {outcome.retry_after_s:g} s"
    else:
        backoff = min(policy.max_backoff_s, policy.base_s * policy.factor ** (attempt - 1))
        delay = backoff / 2 + rand() * backoff / 2
        reason = f"{outcome.describe()}, backoff {delay:.2f} s"
    at = now + timedelta(seconds=delay)
    if at >= expires_at:
        return GiveUp(f"alert expires before the next attempt ({reason})", expired=True)
    return Retry(at, reason)


@dataclass(frozen=True, slots=True)
class Breaker:
    """Per-partner circuit breaker as a value: closed -> open (after ``threshold`` failures in
    a row) -> half-open after ``cooldown_s`` (one trial) -> closed on success."""

    threshold: int = 5
    cooldown_s: float = 30.0
    failures: int = 0
    opened_at: datetime | None = None

    def open_until(self) -> datetime | None:
        if self.opened_at is None:
            return None
        return self.opened_at + timedelta(seconds=self.cooldown_s)

    def allows(self, now: datetime) -> bool:
        until = self.open_until()
        return until is None or now >= until

    def record(self, ok: bool, now: datetime) -> Breaker:
        if ok:
            return replace(self, failures=0, opened_at=None)
        failures = self.failures + 1
        opened = now if failures >= self.threshold else self.opened_at
        if self.opened_at is not None:  # a failed half-open trial re-opens at once
            opened = now
        return replace(self, failures=failures, opened_at=opened)
