"""The attempts at one push partner: one HTTP attempt, its outcome, the breaker, the retry's wait.

:class:`~adapters.delivery.PartnerWorker` keeps the contract (a mailbox per partner, what is
settled how, audit and dead letters: ``adapters.delivery_loop``); this is how it calls the
partner, attempt by attempt:

- **One attempt** is one POST of a rendered payload, signed per attempt (``webhook-id`` is the
  idempotency key; signatures and ``webhook-timestamp`` over the same body each time), bounded
  as a whole (:meth:`Attempts.bound_s`: the partner's ``timeout_s``, or less when the
  delivery's deadline comes sooner; past it, a ``ReadTimeout`` like httpx's own).
- **Its outcome** is the answer's status and a strictly parsed ``Retry-After``, or a network
  error (text scrubbed of every secret): an :class:`~adapters.retry.Outcome`, which
  :meth:`Attempts.decide` classifies (``adapters.retry.next_attempt``: retry with backoff and
  jitter, refuse, disable, give up). Response bodies are never kept: up to
  ``DRAIN_BODY_BYTES`` of one are read and thrown away, so the connection goes back to the pool
  (an unread answer closes it, and every delivery paid a new TCP connection).
- **The breaker** (:class:`~adapters.retry.Breaker`) records every outcome; while it is open,
  one attempt at a time goes as its probe (:meth:`Attempts.permit`), the rest wait for it. A
  permit notes the breaker's opening it was given in: the request goes under that number, and
  a ``free`` one whose breaker opened before its request went (:meth:`Attempts.lapsed`: its
  ``sending`` record was on its way to Kafka) goes back to wait for the probe.
- **A retry waits** until its time (:meth:`Attempts.wait_until`), and goes early once a newer
  version of its alert waits or the partner has just come back (its breaker closed again),
  never before a time the partner's ``Retry-After`` set. The breaker closes again on the
  answer of a request sent while it was open (its probe), not of one that was in flight when
  it opened (``Breaker.opened``).

The client, clocks, ``sleep`` and ``rand`` are injected (``httpx.MockTransport`` in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx

from adapters.config import Partner
from adapters.payload import Payload
from adapters.retry import (
    Breaker,
    Disable,
    GiveUp,
    Outcome,
    Reject,
    Retry,
    RetryPolicy,
    next_attempt,
    parse_retry_after,
)
from adapters.webhook import sign_headers

PROBE_POLL_S = 0.05  # how often a waiting alert looks whether the breaker's probe has come back
WAKE_CHECK_S = 0.25  # a retry's wait looks this often whether it should go at once
# Whether a failed attempt's request may have reached the partner (``Outcome.may_have_arrived``):
# only once httpcore began to write it on a connection (its trace event REQUEST_WENT: connected,
# TLS done), and not after an error that says no connection was made. Our own bound, a
# ``ReadTimeout``, also trips in a hanging connect or TLS handshake: then nothing went.
REQUEST_WENT = "http11.send_request_headers.started"
NEVER_LEFT: tuple[type[Exception], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
# Answers that are a gateway's, not the partner's: 504 Gateway Timeout says the proxy in front of
# it passed the request on and gave up waiting for the backend's answer, so the backend may have
# stored the message all the same: it counts as ``may_have_arrived`` too. Not 503 (a service
# that is unavailable took nothing), nor 502: nginx answers it when it cannot reach the backend
# at all, and a partner whose backend is down for a while would have every alert of the outage
# owe its cancel past its expiry (until 2026-12-07 it counted, and filled every slot with them).
GATEWAY_STATUS = frozenset({504})
# An answer's body is read this far (and discarded) so its keep-alive connection is reused; a
# longer body closes the connection instead of being read on.
DRAIN_BODY_BYTES = 64 * 1024
DRAIN_BODY_S = 1.0  # ... and for this long at most: a body that trickles closes it too



@dataclass(frozen=True, slots=True)
class Permit:
    """Leave for one attempt: ``free`` (the breaker is closed) or ``probe`` (it is open and this
    attempt is its one probe), given while the breaker's ``opened`` was ``opened``: the
    opening the request goes under (``Breaker.record``'s ``sent_in``), however long it then
    waits before it goes (its ``sending`` record on its way to Kafka)."""

    kind: Literal["free", "probe"]
    opened: int


async def _drain(resp: httpx.Response) -> None:
    """Read and drop the answer's body, up to ``DRAIN_BODY_BYTES`` and ``DRAIN_BODY_S``, so
    httpx can put the connection back in its pool; an answer that is longer, slower or breaks
    off just closes it (the outcome was already decided by the status line)."""
    seen = 0
    # StreamError: a body already read (a test's mock transport) has nothing left to drain
    with contextlib.suppress(httpx.HTTPError, httpx.StreamError, TimeoutError):
        async with asyncio.timeout(DRAIN_BODY_S):
            async for chunk in resp.aiter_raw():
                seen += len(chunk)
                if seen > DRAIN_BODY_BYTES:
                    return


class Attempts:
    """One partner's attempts: its breaker, whether a probe is out, and how often the partner
    came back (``recoveries``: a retry's wait ends early when it grows).

    ``deadline`` (a callable: asked each time, as what the partner has received may change
    while an alert waits) is when the delivery is given up; ``superseded`` whether a newer
    version of its alert waits. ``clock`` stamps signatures and the breaker's records,
    ``expiry_clock`` is the one deadlines are measured by."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        scrub: Callable[[str], str],
        clock: Callable[[], datetime],
        expiry_clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[Any]],
        rand: Callable[[], float],
        retry: RetryPolicy,
        breaker: Breaker,
    ) -> None:
        self.client = client
        self.scrub = scrub
        self.clock = clock
        self.expiry_clock = expiry_clock
        self.sleep = sleep
        self.rand = rand
        self.retry = retry
        self.breaker = breaker
        self.probing = False  # the breaker's probe is out: the others wait for its answer
        self.recoveries = 0  # times the breaker closed again (wakes waiting retries)

    async def permit(
        self, deadline: Callable[[], datetime], superseded: Callable[[], bool]
    ) -> Permit | None:
        """Wait until the partner may be called: its breaker closed (``free``), or open with
        this attempt as its one probe (``probe``: :meth:`release` it once it has the answer).
        None if the alert expires (or is superseded) first."""
        while True:
            now = self.clock()
            if self.breaker.closed and not self.probing:
                return Permit("free", self.breaker.opened)
            due = self.breaker.next_probe
            if due is not None and now >= due and not self.probing:
                self.probing = True  # this attempt is the probe; the rest wait for its answer
                return Permit("probe", self.breaker.opened)
            if self.expiry_clock() >= deadline() or superseded():
                return None
            wait = (due - now).total_seconds() if due is not None and now < due else PROBE_POLL_S
            await self.sleep(max(min(wait, 1.0), PROBE_POLL_S))

    def release(self, permit: Permit) -> None:
        """The attempt ``permit`` let go has its answer (or none will come)."""
        if permit.kind == "probe":
            self.probing = False

    def lapsed(self, permit: Permit) -> bool:
        """Whether ``permit`` no longer lets its request go: a ``free`` one given before the
        breaker opened (another alert's answer, a 429 or the third failure, came back while
        this attempt waited for its ``sending`` record to be durable): it waits for the probe
        like every other alert. Until 2026-12-07 it went, against the partner's
        ``Retry-After``, under the opening read as it went, so it counted as the probe: its 200
        closed the breaker and woke every retry."""
        return permit.kind == "free" and (
            not self.breaker.closed or self.breaker.opened != permit.opened)

    def bound_s(self, partner: Partner, deadline: datetime) -> float:
        """How long one attempt may take until its answer's headers are in: the partner's
        ``timeout_s``, or less when the delivery's deadline comes sooner."""
        left_s = (deadline - self.expiry_clock()).total_seconds()
        return max(0.0, min(partner.timeout_s, left_s))

    async def send(
        self, partner: Partner, url: str, payload: Payload, deadline: Callable[[], datetime],
        permit: Permit | None = None,
    ) -> tuple[Outcome, float]:
        """One POST, bounded as a whole (:meth:`bound_s`; past it, a ``ReadTimeout`` like
        httpx's own); the answer's status and headers only (the body is drained, not kept).
        The outcome is recorded in the breaker under the opening ``permit`` was given in (None:
        the breaker's as it is now); returned with the attempt's latency (ms)."""
        headers = {"content-type": payload.content_type, **payload.headers}
        if partner.secret is not None:
            secrets = partner.signing_secrets()  # and the next one while it rotates
            headers.update(sign_headers(payload.message_id, payload.body, secrets, self.clock()))
        else:
            headers["webhook-id"] = payload.message_id
        bound_s = self.bound_s(partner, deadline())
        # an answer to a request older than an opening is stale
        sent_in = self.breaker.opened if permit is None else permit.opened
        went = False  # the request began to go out (connected, TLS done): the partner may have it

        async def trace(event: str, info: dict[str, Any]) -> None:  # httpcore's trace extension
            nonlocal went
            # through a proxy, the CONNECT's own headers fire it too, before the target's TLS
            if event == REQUEST_WENT and getattr(info.get("request"), "method", b"") != b"CONNECT":
                went = True

        started = time.perf_counter()
        try:
            async with contextlib.AsyncExitStack() as opened:
                # httpx's timeout is per socket operation: a partner trickling its headers or
                # sending endless "100 Continue" never trips it, so the attempt is bounded too
                try:
                    async with asyncio.timeout(bound_s):
                        resp = await opened.enter_async_context(self.client.stream(
                            "POST", url, content=payload.body, headers=headers,
                            timeout=partner.timeout_s, follow_redirects=False,
                            extensions={"trace": trace},
                        ))
                except TimeoutError:
                    raise httpx.ReadTimeout(f"no answer within {bound_s:.3g} s") from None
                retry_after = parse_retry_after(resp.headers.get("retry-after"), self.clock())
                outcome = Outcome(status=resp.status_code, retry_after_s=retry_after,
                                  may_have_arrived=resp.status_code in GATEWAY_STATUS)
                await _drain(resp)  # bounded on its own (DRAIN_BODY_S): the status counts
        except httpx.HTTPError as err:
            text = self.scrub(f"{type(err).__name__}: {err}".split(" for url")[0])
            outcome = Outcome(status=None, error=text,
                              may_have_arrived=went and not isinstance(err, NEVER_LEFT))
        latency = (time.perf_counter() - started) * 1000
        was_open = not self.breaker.closed
        self.breaker = self.breaker.record(outcome, self.clock(), sent_in)
        if was_open and self.breaker.closed:
            self.recoveries += 1
        return outcome, latency

    def decide(
        self, outcome: Outcome, attempt: int, deadline: Callable[[], datetime]
    ) -> Retry | GiveUp | Reject | Disable:
        """What follows a failed attempt (``adapters.retry.next_attempt``): a retry and when,
        or the end of the delivery (refused, partner disabled, given up at ``deadline``)."""
        return next_attempt(
            outcome, attempt, self.expiry_clock(), expires_at=deadline(),
            policy=self.retry, rand=self.rand,
        )

    async def wait_until(
        self, at: datetime, superseded: Callable[[], bool], *, retry_after: bool = False
    ) -> None:
        """Sleep until ``at`` (expiry clock); wake early if a newer version of the alert
        arrives, or if the partner has just come back (its breaker closed since the wait
        began): every live alert goes at once then, not at the end of its own backoff. Not
        a wait the partner's ``Retry-After`` set (``retry_after``): that one is the partner's
        word for this message, and only a newer version ends it sooner (which itself waits
        for the breaker, open until the Retry-After)."""
        recoveries = self.recoveries
        while not superseded() and (retry_after or self.recoveries == recoveries):
            left = (at - self.expiry_clock()).total_seconds()
            if left <= 0:
                return
            await self.sleep(min(left, WAKE_CHECK_S))
