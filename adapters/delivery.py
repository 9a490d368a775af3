"""Reliable push delivery to partners: at least once, one queue and worker per partner.

- The decision after a failed attempt is pure (``adapters.retry``): ``next_attempt(...)``
  returns ``Retry`` (exponential backoff with jitter from an injected ``rand``, or the
  partner's ``Retry-After`` on 429/503), ``GiveUp`` (attempts exhausted, or the alert would
  expire first) or ``Disable`` (410 Gone). 3xx counts as a failure: redirects are not followed.
- ``webhook-id`` (alert id + version) is the idempotency key: identical on every retry; the
  signature and ``webhook-timestamp`` are recomputed per attempt over the same body bytes.
- A circuit breaker per partner stops hammering a dead endpoint: after ``threshold`` failures
  in a row it opens for ``cooldown_s``; then one trial attempt decides.
- Each partner has its own queue and worker task, so a slow or dead partner only delays its
  own deliveries (in version order). An alert past its expiry is not sent (counted as expired).
- Exhausted deliveries go to a dead-letter callable with the reason (Kafka ``delivery.dlq``
  in the worker, ``JsonlDeadLetter`` in-process).
- Every attempt is audited (``adapters.audit``): no secrets, tokens, signatures or bodies there,
  and error texts are scrubbed of every configured secret.
- A delivery that raises (a bug, not a partner's answer) goes through the one failure policy
  (``broker.failure``): dead-lettered with reason ``delivery_error`` and settled, or, for an
  outage, the partner's worker stops *without* settling (its alert is never acknowledged) and
  ``on_stop`` tells the shell to stop; ``drain`` then raises :class:`~broker.failure.StopWork`.

The HTTP client is injected (pooled, TLS verified: see ``make_client``); so are the clocks,
``sleep`` and ``rand``, which makes the worker testable with ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
import numpy as np

from adapters.audit import AuditRecord, AuditSink, AuditStatus
from adapters.config import Partner
from adapters.fanout import Delivery, PartnerSet, ThrottleState, fan_out
from adapters.retry import (
    Breaker,
    Disable,
    GiveUp,
    Outcome,
    Retry,
    RetryPolicy,
    next_attempt,
    parse_retry_after,
)
from adapters.webhook import sign_headers
from broker.failure import REASONS, FailurePolicy, StopWork
from broker.model import AlertEvent

log = logging.getLogger(__name__)
USER_AGENT = "ev-alert-broker/0.1 (+delivery)"


# ---- dead letters --------------------------------------------------------------------------

class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An undeliverable message, with why. Holds the body (to re-drive it), never a secret."""

    at: datetime
    partner: str
    message_id: str
    alert_id: str
    version: int
    reason: str
    attempts: int
    content_type: str
    body: bytes


DeadLetterSink = Callable[[DeadLetter], Awaitable[None] | None]

# How a delivery ended: sent, dropped because its alert expired first, or dead-lettered.
Settled = Literal["delivered", "expired", "dead_letter"]
# Called once per delivery when it has settled (the worker acks the alert's offset then).
OnSettled = Callable[[Delivery, Settled], None]
# Called when the failure policy stops a partner's worker (the shell stops; nothing is acked).
OnStop = Callable[[StopWork], Awaitable[None] | None]


class JsonlDeadLetter:
    """Dead letters as JSON lines in a file (in-process mode)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._encoder = msgspec.json.Encoder()

    def __call__(self, letter: DeadLetter) -> None:
        with self.path.open("ab") as fh:
            fh.write(self._encoder.encode(letter) + b"\n")


# ---- the worker ------------------------------------------------------------------------------

def make_client(*, max_connections: int = 100, timeout_s: float = 5.0) -> httpx.AsyncClient:
    """A pooled client for delivery: TLS verified, redirects not followed (3xx = failure)."""
    return httpx.AsyncClient(
        verify=True,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_s, connect=min(2.0, timeout_s)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
        headers={"user-agent": USER_AGENT},
    )


@dataclass
class PartnerStats:
    """Counters of one partner's deliveries (plain numbers: safe for metrics)."""

    delivered: int = 0
    failed_attempts: int = 0
    expired: int = 0
    dead_lettered: int = 0
    disabled: bool = False
    # the most recent attempts only: a worker lives for weeks, this list must not grow forever
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PartnerWorker:
    """One partner's queue and the task that drains it, strictly in submission order."""

    def __init__(
        self,
        partner: Partner,
        *,
        client: httpx.AsyncClient,
        audit: AuditSink,
        dead_letter: DeadLetterSink,
        scrub: Callable[[str], str],
        clock: Callable[[], datetime] = _utcnow,
        expiry_clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        retry: RetryPolicy | None = None,
        breaker: Breaker | None = None,
        failures: FailurePolicy | None = None,
        on_stop: OnStop | None = None,
    ) -> None:
        self.partner = partner
        self.client = client
        self.audit = audit
        self.dead_letter = dead_letter
        self.scrub = scrub
        self.clock = clock
        self.expiry_clock = expiry_clock or clock
        self.sleep = sleep
        self.rand = rand
        self.retry = retry or RetryPolicy(max_attempts=partner.max_attempts)
        self.breaker = breaker or Breaker()
        self.stats = PartnerStats()
        self.queue: asyncio.Queue[tuple[Delivery, OnSettled | None]] = asyncio.Queue()
        self.failures = failures or FailurePolicy()
        self.on_stop = on_stop
        self.stopped: StopWork | None = None  # set once the failure policy stopped this worker
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"deliver:{self.partner.id}")

    def submit(self, delivery: Delivery, on_settled: OnSettled | None = None) -> None:
        """Queue a delivery; ``on_settled(delivery, how)`` is called once it has settled."""
        self.start()
        self.queue.put_nowait((delivery, on_settled))

    async def join(self) -> None:
        await self.queue.join()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            delivery, on_settled = await self.queue.get()
            try:
                how = await self._settle(delivery)
            except StopWork as stop:  # not settled, so never acknowledged: a restart resends
                await self._stop(stop)
                return
            if on_settled is not None:
                try:
                    on_settled(delivery, how)
                except Exception:  # the ack stays undone: the alert is redelivered later
                    log.exception("on_settled callback of %s failed", self.partner.id)
            self.queue.task_done()

    async def _settle(self, d: Delivery) -> Settled:
        """Deliver ``d``; a delivery that raises goes through the failure policy."""
        try:
            return await self._deliver(d)
        except Exception as err:
            failure = self.failures.check(
                "delivery", err, key=d.message_id, raw=d.payload.body, source=self.partner.id
            )
            await self._dead(d, f"{REASONS['delivery']}: {self.scrub(failure.error)}", 0)
            return "dead_letter"

    async def _stop(self, stop: StopWork) -> None:
        """Stop this partner's worker: mark what is queued done (unsettled), tell the shell."""
        self.stopped = stop
        self.queue.task_done()
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        if self.on_stop is not None:
            result = self.on_stop(stop)
            if inspect.isawaitable(result):
                await result

    def _record(self, d: Delivery, status: AuditStatus, attempt: int, **kw: Any) -> None:
        self.audit.write(
            AuditRecord(
                at=self.clock(), partner=self.partner.id, alert_id=d.view.alert_id,
                version=d.view.version, action=d.view.action, status=status,
                fields=d.view.fields_sent, attempt=attempt, message_id=d.message_id, **kw,
            )
        )

    async def _dead(self, d: Delivery, reason: str, attempts: int) -> None:
        self.stats.dead_lettered += 1
        letter = DeadLetter(
            at=self.clock(), partner=self.partner.id, message_id=d.message_id,
            alert_id=d.view.alert_id, version=d.view.version, reason=reason, attempts=attempts,
            content_type=d.payload.content_type, body=d.payload.body,
        )
        result = self.dead_letter(letter)
        if inspect.isawaitable(result):
            await result
        self._record(d, "dead_letter", attempts, detail=reason)

    def _expired(self, d: Delivery, attempt: int, why: str) -> None:
        self.stats.expired += 1
        self._record(d, "expired", attempt, detail=why)

    async def _attempt(self, d: Delivery) -> tuple[Outcome, float]:
        headers = {"content-type": d.payload.content_type, **d.payload.headers}
        if self.partner.secret is not None:
            secret = self.partner.secret.reveal()
            headers.update(sign_headers(d.message_id, d.payload.body, secret, self.clock()))
        else:
            headers["webhook-id"] = d.message_id
        started = time.perf_counter()
        try:
            resp = await self.client.post(
                d.url, content=d.payload.body, headers=headers,
                timeout=self.partner.timeout_s, follow_redirects=False,
            )
        except httpx.HTTPError as err:
            latency = (time.perf_counter() - started) * 1000
            text = self.scrub(f"{type(err).__name__}: {err}".split(" for url")[0])
            return Outcome(status=None, error=text), latency
        latency = (time.perf_counter() - started) * 1000
        retry_after = parse_retry_after(resp.headers.get("retry-after"), self.clock())
        return Outcome(status=resp.status_code, retry_after_s=retry_after), latency

    async def _deliver(self, d: Delivery) -> Settled:  # noqa: C901 - reworked by issue 14
        attempt = 0
        while True:
            if self.stats.disabled:
                await self._dead(d, "partner disabled (410 Gone earlier)", attempt)
                return "dead_letter"
            now = self.expiry_clock()
            if now >= d.expires_at:
                self._expired(d, attempt, "alert expired before delivery")
                return "expired"
            if not self.breaker.allows(self.clock()):
                until = self.breaker.open_until()
                assert until is not None
                wait_s = (until - self.clock()).total_seconds()
                if now + timedelta(seconds=wait_s) >= d.expires_at:
                    self._record(d, "circuit_open", attempt, detail="breaker open past expiry")
                    self._expired(d, attempt, "circuit open until after the alert expires")
                    return "expired"
                await self.sleep(max(0.0, wait_s))
                continue
            attempt += 1
            outcome, latency_ms = await self._attempt(d)
            self.breaker = self.breaker.record(outcome.ok, self.clock())
            if outcome.ok:
                self.stats.delivered += 1
                self.stats.latencies_ms.append(latency_ms)
                self._record(d, "delivered", attempt, http_status=outcome.status,
                             latency_ms=round(latency_ms, 2))
                return "delivered"
            self.stats.failed_attempts += 1
            decision = next_attempt(
                outcome, attempt, self.expiry_clock(), expires_at=d.expires_at,
                policy=self.retry, rand=self.rand,
            )
            status: AuditStatus = "disabled" if isinstance(decision, Disable) else "failed"
            self._record(d, status, attempt, http_status=outcome.status,
                         latency_ms=round(latency_ms, 2), detail=decision.reason)
            match decision:
                case Disable(reason=reason):
                    self.stats.disabled = True
                    log.warning("partner %s disabled: %s", self.partner.id, reason)
                    await self._dead(d, reason, attempt)
                    return "dead_letter"
                case GiveUp(reason=reason, expired=True):
                    self._expired(d, attempt, reason)
                    return "expired"
                case GiveUp(reason=reason):
                    await self._dead(d, reason, attempt)
                    return "dead_letter"
                case Retry(at=at):
                    await self.sleep(max(0.0, (at - self.expiry_clock()).total_seconds()))


class DeliveryHub:
    """One ``PartnerWorker`` per push partner, created on first use. Use as an async context
    manager, or call ``drain()`` then ``stop()``."""

    def __init__(
        self,
        partners: PartnerSet,
        client: httpx.AsyncClient,
        audit: AuditSink,
        dead_letter: DeadLetterSink,
        **worker_options: Any,
    ) -> None:
        self.partners = partners
        self.client = client
        self.audit = audit
        self.dead_letter = dead_letter
        self.worker_options = worker_options
        secrets = [
            s.reveal() for p in partners.config.partners for s in (p.secret, p.feed_token) if s
        ] + [partners.config.pseudonym_key.reveal()]
        self._secrets = [s for s in secrets if s]
        self.workers: dict[str, PartnerWorker] = {}

    def scrub(self, text: str) -> str:
        """Remove every configured secret from a text (belt and braces for error messages)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def worker(self, partner_id: str) -> PartnerWorker:
        if partner_id not in self.workers:
            self.workers[partner_id] = PartnerWorker(
                self.partners.partners[partner_id], client=self.client, audit=self.audit,
                dead_letter=self.dead_letter, scrub=self.scrub, **self.worker_options,
            )
        return self.workers[partner_id]

    def submit(self, delivery: Delivery, on_settled: OnSettled | None = None) -> None:
        """Queue a delivery on its partner's worker (see ``PartnerWorker.submit``)."""
        self.worker(delivery.partner_id).submit(delivery, on_settled)

    async def drain(self) -> None:
        """Wait until every queued delivery is delivered, expired or dead-lettered; raises
        :class:`~broker.failure.StopWork` if the failure policy stopped a partner's worker."""
        await asyncio.gather(*(w.join() for w in self.workers.values()))
        for w in self.workers.values():
            if w.stopped is not None:
                raise w.stopped

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers.values()))

    def stats(self) -> dict[str, PartnerStats]:
        return {pid: w.stats for pid, w in self.workers.items()}

    async def __aenter__(self) -> DeliveryHub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            await self.drain()
        await self.stop()


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    """What ``deliver_events`` did, per partner."""

    deliveries: int
    stats: dict[str, PartnerStats]
    throttle_state: ThrottleState


async def deliver_events(
    events: Iterable[AlertEvent],
    partners: PartnerSet,
    client: httpx.AsyncClient,
    audit: AuditSink,
    *,
    dead_letter: DeadLetterSink,
    clock: Callable[[], datetime] = _utcnow,
    replay_time: bool = True,
    throttle_state: ThrottleState | None = None,
    **worker_options: Any,
) -> DeliverySummary:
    """Fan out and deliver alert events in-process (``broker replay --deliver``).

    With ``replay_time`` (default), expiry is judged in the events' own time frame, shifted so
    the first event happens "now": a recorded incident replayed later is not all expired, and
    an alert still expires if its delivery is held up for longer than its life. Signatures
    and audit times always use the wall ``clock``.
    """
    events = list(events)
    state: ThrottleState = throttle_state or {}
    if not events:
        return DeliverySummary(0, {}, state)
    expiry_clock = None
    if replay_time:
        offset = clock() - events[0].ts

        def expiry_clock() -> datetime:
            return clock() - offset

    hub = DeliveryHub(partners, client, audit, dead_letter, clock=clock,
                      expiry_clock=expiry_clock, **worker_options)
    count = 0
    async with hub:
        for ev in events:
            state, deliveries = fan_out(ev, partners, state, ev.ts)
            for d in deliveries:
                hub.submit(d)
                count += 1
    return DeliverySummary(count, hub.stats(), state)


def latency_percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100, numpy's ``inverted_cdf``); nan when empty."""
    arr = np.fromiter(values, dtype=float)
    return float(np.percentile(arr, q, method="inverted_cdf")) if arr.size else math.nan
