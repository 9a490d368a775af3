"""Push delivery to partners, as a contract they can rely on (docs/partners.md).

- **Latest state wins, per (partner, alert).** Each partner has a mailbox keyed by alert: a
  newer version of an alert replaces the one still waiting (the older is settled as
  ``superseded`` and never sent), also while an attempt is being retried; so does a throttled
  update (``replace_only``), which is dropped (settled ``throttled``, not audited: nothing was
  attempted) only when no older version waits or the one being sent is accepted. Memory is
  one entry per live alert, however long the partner is down. An alert is one *life* of it
  (engine id, ``started_at``): a re-created alert, whose versions go on or count from 1
  again, is another alert for the partner, never superseded by, queued behind or judged by
  another life.
  The mailbox is keyed by the partner-facing id (``Delivery.mailbox``), which is per life when
  pseudonymised; a partner given the engine's id as it is has one entry for all lives, its
  steps in order of (``started_at``, version) (``Delivery.step``), so it never gets a step
  after a later one under that id: a newer life's step takes the place of a waiting one of
  an earlier life, as a newer version does.
- **The first message carries everything.** A payload is rendered when it is sent, from what
  the partner has actually received of the alert (``fanout.render_for``): its first message
  is a ``create`` whatever the version, and a CAP ``Update`` references the last message it got.
- **Order per alert; several alerts at once.** Up to ``max_in_flight`` requests per partner,
  never two of the same alert, and a version is never sent after a higher one of its alert.
  Alerts the partner has received nothing of go before updates of those it has: on a slow
  partner a new alert's create does not queue behind every other alert's update.
- **What is retried** (``adapters.retry`` decides; ``adapters.attempts`` makes each attempt,
  keeps the breaker and waits before a retry): network errors (an attempt without its answer's
  headers within the partner's ``timeout_s``, or by the deadline, is one), 408, 425, 429 and
  5xx, with backoff and jitter, until the alert expires (a live alert is never given up);
  another 4xx dead-letters that message only; 410 disables the partner (``on_disable`` lets
  the shell keep that across restarts). A strictly parsed ``Retry-After`` sets when the next
  attempt, and the partner's next probe, go.
- **A breaker per partner** stops every queued alert hammering a dead endpoint: while it is
  open one probe goes every ``probe_interval_s`` (1 s), so once the partner is back every live
  alert is current within about a second plus the time to send them.
- **A cancel always goes out** to a partner that received the alert: it is retried until it is
  accepted (or the partner is disabled), past the alert's expiry and the worker's maximum age,
  so a partner's picture ends right after an outage of any length, even one that ignores
  ``expires_at``. A cancel of an alert the partner never received keeps the alert's expiry:
  once that is past there is nothing at the partner to cancel.
- **Nothing stale goes out as live.** An alert past its expiry is not sent: counted, audited
  (``expired``). ``webhook-id`` (alert id + version) is the idempotency key; signatures and
  ``webhook-timestamp`` are computed per attempt over the same body.
- **One slow partner never delays another**: every partner has its own tasks.
- **Every attempt is audited** (``adapters.audit``), *before* it goes: a ``sending`` record
  (attempt n, ``webhook-id``) is written, and durable (``audit.durable``: Kafka has it), before
  the request; its outcome's record follows. A send cancelled (a rebalance, a shutdown) or cut
  short by a crash leaves its ``sending`` record without an outcome: the partner may have it,
  and the transparency report says so. A delivery settles (its alert may be acknowledged) only
  once all its records are durable. A record that cannot be written stops the partner's
  worker (``broker.failure`` site ``audit``, always a stop) before anything more is sent or
  settled. No secrets, tokens, signatures or bodies in the records; error texts are scrubbed
  of every configured secret. Response bodies are never kept:
  up to ``adapters.attempts.DRAIN_BODY_BYTES`` of one are read and thrown away, so the
  connection goes back to the pool (an unread answer closes it, and every delivery paid a new
  TCP connection).
- A delivery that raises (a bug, not a partner's answer) goes through the one failure policy
  (``broker.failure``): dead-lettered as ``delivery_error`` and settled, or, for an outage, the
  partner's worker stops *without* settling (its alert is never acknowledged) and ``on_stop``
  tells the shell to stop; ``drain`` then raises :class:`~broker.failure.StopWork`.

The HTTP client is injected (pooled, TLS verified: see ``adapters.http_pool.make_client``); so
are the clocks, ``sleep`` and ``rand``, which makes the worker testable with
``httpx.MockTransport``. The worker hands them to its :class:`~adapters.attempts.Attempts`,
which calls the partner; what is settled how, audited and dead-lettered stays here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from adapters.attempts import Attempts
from adapters.audit import AuditRecord, AuditSink, AuditStatus, durable
from adapters.config import Partner
from adapters.dead_letters import DeadLetter, DeadLetterSink
from adapters.fanout import (
    CANCEL_TTL,
    Delivery,
    LastSent,
    Mailbox,
    first_or_as_is,
    received_in_life,
)
from adapters.payload import Payload
from adapters.policy import AlertView
from adapters.retry import (
    Breaker,
    Disable,
    GiveUp,
    Outcome,
    Reject,
    Retry,
    RetryPolicy,
)
from broker.failure import REASONS, FailurePolicy, StopWork

log = logging.getLogger(__name__)
NEVER = datetime.max.replace(tzinfo=UTC)  # the deadline of a cancel the partner must get
# how often a worker whose shell may not send (``may_send``: its lease on the alerts lapsed)
# looks again; only while it may not
MAY_SEND_RECHECK_S = 0.05


# How a delivery ended: sent; dropped because its alert expired first; dead-lettered; or
# superseded by a newer version of its alert before it could go (the newer one goes instead).
Settled = Literal["delivered", "expired", "dead_letter", "superseded", "throttled"]
# Called once per delivery when it has settled, with what the partner now has of the alert
# (the shell acks the alert's offset once all its deliveries have settled).
OnSettled = Callable[[Delivery, Settled, LastSent | None], None]
# Called when the failure policy stops a partner's worker (the shell stops; nothing is acked).
OnStop = Callable[[StopWork], Awaitable[None] | None]
# Called when a partner answers 410 Gone (the shell keeps it disabled across restarts).
OnDisable = Callable[[str, str], Awaitable[None] | None]
Render = Callable[[Partner, AlertView, LastSent | None], Payload]


# ---- the worker ------------------------------------------------------------------------------

def _step(seen: LastSent) -> tuple[datetime, int]:
    """Where a received message stands among its partner-facing id's steps (``Delivery.step``;
    ``started_at`` is always known in the worker's memory: ``PartnerWorker._know``)."""
    assert seen.started_at is not None
    return (seen.started_at, seen.version)


@dataclass
class PartnerStats:
    """Counters of one partner's deliveries (plain numbers: safe for metrics)."""

    delivered: int = 0
    failed_attempts: int = 0
    expired: int = 0
    dead_lettered: int = 0
    superseded: int = 0
    disabled: bool = False
    # the most recent attempts only: a worker lives for weeks, this list must not grow forever
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


def utc_now() -> datetime:
    """The wall clock, timezone-aware (the default clock of delivery and of the hub)."""
    return datetime.now(UTC)


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


@dataclass(slots=True)
class _Waiting:
    """The newest version of one alert waiting in a partner's mailbox."""

    delivery: Delivery
    on_settled: OnSettled | None
    # a throttled update in place of the version being sent: it goes only if that one is not
    # delivered (superseded at its next retry, expired, refused), else it is dropped as throttled
    throttled: bool = False


class PartnerWorker:
    """One partner's mailbox (latest version per alert) and the tasks that send it."""

    def __init__(
        self,
        partner: Partner,
        *,
        client: httpx.AsyncClient,
        audit: AuditSink,
        dead_letter: DeadLetterSink,
        scrub: Callable[[str], str],
        render: Render,
        clock: Callable[[], datetime] = utc_now,
        expiry_clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        retry: RetryPolicy | None = None,
        breaker: Breaker | None = None,
        failures: FailurePolicy | None = None,
        on_stop: OnStop | None = None,
        on_disable: OnDisable | None = None,
        disabled: Callable[[], bool] | None = None,
        held: Callable[[], bool] | None = None,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        self.partner = partner
        self._held = held  # the hub holds new sends while its shell catches up a backlog
        # whether the shell may act for its alerts at all: False after a stall past its group
        # session (another worker may own them and have sent newer versions); no attempt
        # starts then, not even a retry, until it may again or a revoke takes them away
        self._may_send = may_send
        self._recheck: asyncio.TimerHandle | None = None
        self._closed = False  # stop(): nothing starts any more, whatever comes back
        self.audit = audit
        self.dead_letter = dead_letter
        self.scrub = scrub
        self.render = render
        self.clock = clock
        self.expiry_clock = expiry_clock or clock
        # how the partner is called: each attempt, its outcome, the breaker, a retry's wait
        self.attempts = Attempts(
            client=client, scrub=scrub, clock=clock, expiry_clock=self.expiry_clock,
            sleep=sleep, rand=rand, retry=retry or RetryPolicy(), breaker=breaker or Breaker(),
        )
        self.failures = failures or FailurePolicy()
        self.on_stop = on_stop
        self.on_disable = on_disable
        # a durable record of a 410 (the shell's, read on every delivery, so an operator's
        # re-enable takes effect at once); without one, a flag of this worker's own
        self._durably_disabled = disabled
        self.stats = PartnerStats(disabled=bool(disabled and disabled()))
        self.stopped: StopWork | None = None  # set once the failure policy stopped this worker
        # keyed by the partner-facing alert id (``Delivery.mailbox``): per life of the alert
        # when pseudonymised (a re-created alert is another alert for the partner, whose
        # versions may even count from 1 again); with the engine's id passed on, one key for
        # all lives, whose steps go in order of (started_at, version) (``Delivery.step``)
        self.waiting: dict[Mailbox, _Waiting] = {}  # key -> its newest step not yet started
        # keys to start, in arrival order: first those the partner has received nothing
        # of (a driver not warned at all is worse off than one with a zone a few seconds old),
        # then the rest, so a slow partner still gets every new alert's create in time
        self.first: deque[Mailbox] = deque()
        self.order: deque[Mailbox] = deque()
        self.active: dict[Mailbox, asyncio.Task[None]] = {}  # key -> the task sending it
        self.delivered: dict[Mailbox, LastSent] = {}  # the partner's last received, per key
        self._forget_at: dict[Mailbox, datetime] = {}  # when a key's entry may go (expiry)
        # keys whose last message the partner received was not a cancel: it holds an alert
        # live under that id (with the engine's id passed on, maybe of an earlier life whose
        # cancel a later life's step took the place of: that life's cancel then ends it)
        self._live: set[Mailbox] = set()
        self._outstanding = 0
        # deliveries settling once their audit records are durable (and a stop on its way),
        # by task: the alert each is of
        self._settling: dict[asyncio.Task[None], Mailbox] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def breaker(self) -> Breaker:
        """The partner's circuit breaker (kept by :attr:`attempts`)."""
        return self.attempts.breaker

    # ---- the mailbox ---------------------------------------------------------------------

    def submit(
        self, delivery: Delivery, on_settled: OnSettled | None = None,
        delivered: LastSent | None = None,
    ) -> None:
        """Put ``delivery`` in the mailbox; ``on_settled`` is called once it has settled.

        ``delivered``: what the partner had received of the alert before (from the shell's
        durable record, after a restart); the newer of that and this worker's knowledge counts,
        and only if it is of this delivery's life (``fanout.received_in_life``).
        """
        aid = delivery.mailbox
        self._know(aid, delivery, received_in_life(delivery.view, delivered))
        self._outstanding += 1
        self._idle.clear()
        seen = self.delivered.get(aid)
        if seen is not None and delivery.step <= _step(seen):
            self._settle(delivery, on_settled, "superseded", audit=False)
            return
        old = self.waiting.get(aid)
        if delivery.replace_only and old is None and aid not in self.active:
            # throttled, and no older version waits or is being sent: dropped (no audit record:
            # nothing was attempted and AuditStatus has no value for it)
            self._settle(delivery, on_settled, "throttled", audit=False)
            return
        if old is not None and old.delivery.step >= delivery.step:
            self._settle(delivery, on_settled, "superseded")
            return
        # a throttled update takes the place of an older version waiting (and inherits whether
        # that one had to go) or being sent, retried or not (then it goes only if that one fails)
        throttled = delivery.replace_only and (old is None or old.throttled)
        self.waiting[aid] = _Waiting(delivery, on_settled, throttled)
        if old is not None:
            self._settle(old.delivery, old.on_settled, "superseded")
        elif aid not in self.active:
            (self.order if self._received(delivery) else self.first).append(aid)
        self.start_ready()

    def _know(self, aid: Mailbox, d: Delivery, delivered: LastSent | None) -> None:
        if delivered is not None:
            if delivered.started_at is None:  # an older record: of d's life (received_in_life)
                delivered = replace(delivered, started_at=d.view.started_at)
            seen = self.delivered.get(aid)
            if seen is None or _step(delivered) > _step(seen):
                self.delivered[aid] = delivered
        forget = d.expires_at + CANCEL_TTL
        if forget > self._forget_at.get(aid, forget - timedelta(seconds=1)):
            self._forget_at[aid] = forget

    def _received(self, d: Delivery) -> LastSent | None:
        """The last message of ``d``'s life of the alert the partner has received, if any."""
        return received_in_life(d.view, self.delivered.get(d.mailbox))

    def start_ready(self) -> None:
        """Start sending waiting alerts, up to ``max_in_flight`` at once, one task per alert
        (none while the hub holds: see :meth:`DeliveryHub.hold`)."""
        if self._closed or self.stopped is not None:
            return
        if self._held is not None and self._held():
            return
        if not self.may_send():
            if self._recheck is None and (self.first or self.order):
                self._recheck = asyncio.get_running_loop().call_later(
                    MAY_SEND_RECHECK_S, self._rechecked)
            return
        while (self.first or self.order) and len(self.active) < self.partner.max_in_flight:
            aid = self.first.popleft() if self.first else self.order.popleft()
            entry = self.waiting.pop(aid, None)
            if entry is None or aid in self.active:
                continue
            self.active[aid] = asyncio.create_task(
                self._one(entry), name=f"deliver:{self.partner.id}:{aid[1]}"
            )

    def may_send(self) -> bool:
        """Whether the shell may send for its alerts now (see ``may_send`` in ``__init__``)."""
        return self._may_send is None or self._may_send()

    def _rechecked(self) -> None:
        self._recheck = None
        self.start_ready()

    def _cancel_recheck(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None

    async def _one(self, entry: _Waiting) -> None:
        d = entry.delivery
        aid = d.mailbox
        try:
            how = await self._settle_or_stop(d)
            await self._durable(d)  # its records in the audit log for good before it settles
        except StopWork as stop:  # not settled, so never acknowledged: a restart resends
            self.active.pop(aid, None)
            await self._stop(stop)
            return
        self.active.pop(aid, None)
        newer = self.waiting.get(aid)
        if newer is not None and newer.throttled and how == "delivered":
            # throttled while this one was sent: the partner has a version within the interval
            del self.waiting[aid]
            self._settle(d, entry.on_settled, how, audit=False)
            self._settle(newer.delivery, newer.on_settled, "throttled", audit=False)
            self.start_ready()
            return
        if newer is not None:  # a newer version came meanwhile: it goes next
            (self.order if self._received(newer.delivery) else self.first).append(aid)
        self._settle(d, entry.on_settled, how, audit=False)
        self.start_ready()

    def _settle(
        self, d: Delivery, on_settled: OnSettled | None, how: Settled, *, audit: bool = True
    ) -> None:
        if how == "superseded":
            self.stats.superseded += 1
            if audit:
                try:
                    self._record(d, "superseded", 0,
                                 detail="a newer version of the alert came first")
                    wait = durable(self.audit)
                except StopWork as stop:  # not settled; the worker stops
                    self._stop_soon(stop)
                    return
                except Exception as err:
                    self._stop_soon(self._audit_failed(err, d))
                    return
                if wait is not None:  # settled once the record is durable
                    task = asyncio.create_task(self._settle_when(wait, d, on_settled, how))
                    self._settling[task] = d.mailbox
                    task.add_done_callback(self._settling.pop)
                    return
        self._settled(d, on_settled, how)

    async def _settle_when(
        self, wait: Awaitable[None], d: Delivery, on_settled: OnSettled | None, how: Settled
    ) -> None:
        try:
            await wait
        except asyncio.CancelledError:
            raise
        except Exception as err:
            await self._stop(self._audit_failed(err, d))
            return
        self._settled(d, on_settled, how)

    def _settled(self, d: Delivery, on_settled: OnSettled | None, how: Settled) -> None:
        if on_settled is not None:
            try:
                on_settled(d, how, self._received(d))
            except Exception:  # the ack stays undone: the alert is redelivered later
                log.exception("on_settled callback of %s failed", self.partner.id)
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()
            self._prune()

    def _prune(self) -> None:
        """Forget what the partner received of alerts long expired (bounded memory)."""
        now = self.expiry_clock()
        for aid in [a for a, t in self._forget_at.items() if t <= now]:
            if aid not in self.active and aid not in self.waiting:
                self._forget_at.pop(aid, None)
                self.delivered.pop(aid, None)
                self._live.discard(aid)

    # ---- one alert ---------------------------------------------------------------------------

    async def _settle_or_stop(self, d: Delivery) -> Settled:
        """Deliver ``d``; a delivery that raises goes through the failure policy."""
        try:
            return await self._deliver(d)
        except (asyncio.CancelledError, StopWork):
            raise
        except Exception as err:
            failure = self.failures.check(
                "delivery", err, key=d.message_id, raw=d.view.message_id.encode(),
                source=self.partner.id,
            )
            await self._dead(d, f"{REASONS['delivery']}: {self.scrub(failure.error)}", 0, None)
            return "dead_letter"

    def _superseded(self, d: Delivery) -> bool:
        newer = self.waiting.get(d.mailbox)
        return newer is not None and newer.delivery.step > d.step

    def _deadline(self, d: Delivery) -> datetime:
        """When ``d`` is given up: the alert's expiry, except for the cancel of an alert (this
        life of it) the partner has received, which is never given up (the partner's picture
        must end right); so is a cancel under an id the partner holds live from an earlier
        life (the engine's id passed on: this life's step took that life's cancel's place)."""
        if d.view.action == "cancel" and (
            self._received(d) is not None or d.mailbox in self._live
        ):
            return NEVER
        return d.expires_at

    async def _deliver(self, d: Delivery) -> Settled:  # noqa: C901 - the contract, step by step
        attempt = 0

        def deadline() -> datetime:
            return self._deadline(d)

        def superseded() -> bool:
            return self._superseded(d)

        while True:
            if not self.may_send():  # a retry after a stall: wait, then look at it afresh
                await asyncio.sleep(MAY_SEND_RECHECK_S)
                continue
            if self.disabled:
                await self._dead(d, "partner disabled (410 Gone earlier)", attempt, None)
                return "dead_letter"
            if self._superseded(d):
                self._record(d, "superseded", attempt, detail="a newer version came meanwhile")
                return "superseded"
            if self.expiry_clock() >= self._deadline(d):
                self._expired(d, attempt, "alert expired before delivery")
                return "expired"
            permit = await self.attempts.permit(deadline, superseded)
            if permit is None:
                if self._superseded(d):
                    continue
                self._record(d, "circuit_open", attempt, detail="partner down past the expiry")
                self._expired(d, attempt, "the partner was down until after the alert expired")
                return "expired"
            if not self.may_send():  # the lease lapsed while it waited for the probe
                self.attempts.release(permit)
                continue
            # expired while waiting for the breaker's probe
            if self.attempts.bound_s(self.partner, self._deadline(d)) <= 0:
                self.attempts.release(permit)
                self._expired(d, attempt, "alert expired before delivery")
                return "expired"
            attempt += 1
            payload = self.render(self.partner, d.view, self.delivered.get(d.mailbox))
            try:
                # written, and durable, before the request: a send cut short leaves its trace
                self._record(d, "sending", attempt)
                await self._durable(d)
                # looked at again: Kafka may have taken a while (or the worker stalled)
                held_back = self._held_back(d)
                sent = None if held_back else await self.attempts.send(
                    self.partner, d.url, payload, deadline)
            finally:
                self.attempts.release(permit)
            if held_back == "lease":
                self._record(d, "failed", attempt,
                             detail="not sent: the worker's lease on the alert lapsed")
                continue
            if held_back == "expired":
                self._expired(d, attempt, "not sent: the alert expired while its audit record "
                                          "went to Kafka")
                return "expired"
            if held_back == "superseded":
                self._record(d, "superseded", attempt,
                             detail="not sent: a newer version came while its audit record "
                                    "went to Kafka")
                return "superseded"
            assert sent is not None
            outcome, latency_ms = sent
            if outcome.ok:
                self._delivered(d, payload, attempt, outcome, latency_ms)
                return "delivered"
            self.stats.failed_attempts += 1
            decision = self.attempts.decide(outcome, attempt, deadline)
            status: AuditStatus = "disabled" if isinstance(decision, Disable) else "failed"
            self._record(d, status, attempt, http_status=outcome.status,
                         latency_ms=round(latency_ms, 2), detail=decision.reason)
            match decision:
                case Disable(reason=reason):
                    await self._disable(reason)
                    await self._dead(d, reason, attempt, payload)
                    return "dead_letter"
                case Reject(reason=reason):
                    await self._dead(d, reason, attempt, payload)
                    return "dead_letter"
                case GiveUp(reason=reason):
                    self._expired(d, attempt, reason)
                    return "expired"
                case Retry(at=at):
                    await self.attempts.wait_until(at, superseded)

    def _delivered(
        self, d: Delivery, payload: Payload, attempt: int, outcome: Outcome, latency_ms: float
    ) -> None:
        self.stats.delivered += 1
        self.stats.latencies_ms.append(latency_ms)
        # recorded first: the record's action is judged from what the partner had before
        self._record(d, "delivered", attempt, http_status=outcome.status,
                     latency_ms=round(latency_ms, 2))
        self.delivered[d.mailbox] = LastSent(d.version, self.clock(), payload.message_id,
                                             d.view.ts, d.view.started_at)
        if d.view.action == "cancel":
            self._live.discard(d.mailbox)
        else:
            self._live.add(d.mailbox)

    @property
    def disabled(self) -> bool:
        """The partner answered 410 Gone (and no operator has enabled it since)."""
        if self._durably_disabled is not None:
            self.stats.disabled = self._durably_disabled()
        return self.stats.disabled

    async def _disable(self, reason: str) -> None:
        self.stats.disabled = True
        log.warning("partner %s disabled: %s", self.partner.id, reason)
        if self.on_disable is not None:
            await _maybe_await(self.on_disable(self.partner.id, reason))

    # ---- records ------------------------------------------------------------------------------

    def _record(self, d: Delivery, status: AuditStatus, attempt: int, **kw: Any) -> None:
        """One audit record of ``d``. Its action is the one the partner gets (or would get):
        the first message of an alert goes as a ``create`` whatever the event was
        (``fanout.first_or_as_is``), and the log said ``update`` for it."""
        action = first_or_as_is(d.view, self.delivered.get(d.mailbox)).action
        record = AuditRecord(
            at=self.clock(), partner=self.partner.id, alert_id=d.view.alert_id,
            version=d.view.version, action=action, status=status, fields=d.view.fields_sent,
            attempt=attempt, message_id=d.message_id, started_at=d.view.started_at, **kw,
        )
        try:
            self.audit.write(record)
        except Exception as err:  # not written: nothing more may go or settle
            raise self._audit_failed(err, d) from err

    def _held_back(self, d: Delivery) -> Literal["lease", "expired", "superseded"] | None:
        """Why an attempt whose ``sending`` record is durable must not go after all, if so."""
        if not self.may_send():
            return "lease"
        if self.attempts.bound_s(self.partner, self._deadline(d)) <= 0:
            return "expired"
        if self._superseded(d):
            return "superseded"
        return None

    async def _durable(self, d: Delivery) -> None:
        """Return once every audit record written so far is durable (``audit.durable``);
        raise :class:`StopWork` if one was lost."""
        try:
            wait = durable(self.audit)
            if wait is not None:
                await wait
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise self._audit_failed(err, d) from err

    def _audit_failed(self, err: Exception, d: Delivery) -> StopWork:
        """The failure policy's stop for an audit record not written (site ``audit`` always
        stops; in ``mode="raise"`` the error itself propagates)."""
        try:
            failure = self.failures.check(
                "audit", err, key=d.message_id, raw=d.view.message_id.encode(),
                source=self.partner.id,
            )
        except StopWork as stop:
            return stop
        return StopWork(failure)  # not reached: "audit" is always a stop

    async def _dead(self, d: Delivery, reason: str, attempts: int, payload: Payload | None) -> None:
        self.stats.dead_lettered += 1
        if payload is None:
            payload = self.render(self.partner, d.view, self.delivered.get(d.mailbox))
        letter = DeadLetter(
            at=self.clock(), partner=self.partner.id, message_id=d.message_id,
            alert_id=d.view.alert_id, version=d.view.version, reason=reason, attempts=attempts,
            content_type=payload.content_type, body=payload.body,
        )
        await _maybe_await(self.dead_letter(letter))
        self._record(d, "dead_letter", attempts, detail=reason)

    def _expired(self, d: Delivery, attempt: int, why: str) -> None:
        self.stats.expired += 1
        self._record(d, "expired", attempt, detail=why)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def join(self) -> None:
        """Wait until everything submitted has settled (or the worker stopped)."""
        await self._idle.wait()

    async def revoke(self, alerts: Callable[[str], bool]) -> None:
        """Drop the alerts ``alerts(alert_id)`` names: waiting versions are forgotten and sends
        under way cancelled and awaited, all without settling (a rebalance moved them: their new
        owner sends them from the durable record, and nothing of them may go from here after)."""
        for aid in [a for a in self.waiting if alerts(a[0])]:
            del self.waiting[aid]
            self._outstanding -= 1
        self.first = deque(a for a in self.first if a in self.waiting)
        self.order = deque(a for a in self.order if a in self.waiting)
        tasks = [t for aid, t in self.active.items() if alerts(aid[0])]
        # superseded deliveries waiting for their record to be durable: unsettled too
        tasks += [t for t, aid in self._settling.items() if aid[0] and alerts(aid[0])]
        # one that has finished settled and was counted off already (its done-callback, which
        # forgets it, runs on the next turn of the loop): cancelled and counted again, it took
        # a waiting delivery's count with it and ``_idle`` was set early
        tasks = [t for t in tasks if not t.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for aid in [a for a in self.active if alerts(a[0])]:
            self.active.pop(aid, None)
        self._outstanding -= len(tasks)
        for aid in [a for a in self.delivered if alerts(a[0])]:
            self.delivered.pop(aid, None)
            self._forget_at.pop(aid, None)
            self._live.discard(aid)
        if self._outstanding <= 0:
            self._outstanding = 0
            self._idle.set()

    def _stop_soon(self, stop: StopWork) -> None:
        """:meth:`_stop` from code that cannot await (``submit``)."""
        task = asyncio.create_task(self._stop(stop))
        self._settling[task] = ("", "")
        task.add_done_callback(self._settling.pop)

    async def _stop(self, stop: StopWork) -> None:
        """Stop this partner's worker: nothing more settles, the shell is told."""
        if self.stopped is not None:
            return
        self.stopped = stop
        self._cancel_recheck()
        self.waiting.clear()
        self.first.clear()
        self.order.clear()
        for t in [*self.active.values(), *self._settling]:
            if t is not asyncio.current_task():
                t.cancel()
        self._outstanding = 0
        self._idle.set()
        if self.on_stop is not None:
            await _maybe_await(self.on_stop(stop))

    async def stop(self) -> None:
        """Cancel every send under way (unsettled deliveries stay unacknowledged); none starts
        after it, even if the lease comes back during the shutdown."""
        self._closed = True
        self._cancel_recheck()
        tasks = [*self.active.values(), *self._settling]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.active.clear()
        self._settling.clear()
