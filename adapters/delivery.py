"""Push delivery to partners, as a contract they can rely on (docs/partners.md).

- **Latest state wins, per (partner, alert).** Each partner has a mailbox keyed by alert: a
  newer version of an alert replaces the one still waiting (the older is settled as
  ``superseded`` and never sent), also while an attempt is being retried; so does a throttled
  update (``replace_only``), which is dropped (settled ``throttled``, not audited: nothing was
  attempted) only when no older version waits or the one being sent is accepted. Memory is
  one entry per live alert, however long the partner is down (and what the partner received
  of an alert is forgotten once the alert is long expired, as deliveries settle: not only when
  none is outstanding, which a cancel owed through an outage never let happen). An alert is
  one *life* of it (engine id, ``started_at``): a re-created alert, whose versions go on or
  count from 1 again, is another alert for the partner, never superseded by, queued behind or
  judged by another life.
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
  ``expires_at``; so does one whose alert it may have (an attempt whose answer never came
  though the request may have gone, or a gateway's 504: ``Outcome.may_have_arrived``),
  also after a restart or a rebalance (``on_maybe_live`` and ``on_settled`` report it, the
  shell keeps it and hands it back to ``submit``). A cancel of an alert the
  partner never received keeps the alert's expiry: once that is past there is nothing at the
  partner to cancel.
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
  (``broker.failure``): dead-lettered as ``delivery_error`` (with its last attempt's payload,
  none if rendering raised) and settled, or, for an outage, the partner's worker stops
  *without* settling (its alert is never acknowledged) and ``on_stop`` tells the shell to stop;
  ``drain`` then raises :class:`~broker.failure.StopWork`. So does anything else that raises
  out of a delivery's task, a dead letter not written or ``on_settled`` raising included (site
  ``settle``, always a stop): a task never dies leaving its alert's key taken, unsettled.

The HTTP client is injected (pooled, TLS verified: see ``adapters.http_pool.make_client``); so
are the clocks, ``sleep`` and ``rand``, which makes the worker testable with
``httpx.MockTransport``. The worker hands them to its :class:`~adapters.attempts.Attempts`,
which calls the partner. Here are the mailbox, settling and the worker's lifecycle; one
delivery's attempt loop, its audit records and dead letters are its base's
(:class:`~adapters.delivery_loop.DeliveryLoop`); the types it shares with its shell
(``Settled``, the callbacks, :class:`~adapters.delivery_model.PartnerStats`) are in
``adapters.delivery_model``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx

from adapters.attempts import Attempts
from adapters.audit import AuditSink, durable
from adapters.config import Partner
from adapters.dead_letters import DeadLetterSink
from adapters.delivery_loop import MAY_SEND_RECHECK_S, DeliveryLoop
from adapters.delivery_model import (
    OnDisable,
    OnMaybeLive,
    OnSettled,
    OnStop,
    PartnerStats,
    Render,
    Settled,
    Waiting,
    maybe_await,
    utc_now,
)
from adapters.fanout import Delivery, LastSent, Mailbox, received_in_life
from adapters.policy import CANCEL_TTL
from adapters.retry import Breaker, RetryPolicy
from broker.failure import FailurePolicy, StopWork

log = logging.getLogger(__name__)

# a key whose forget time has passed while its alert is still being sent (a cancel owed through
# an outage) is looked at again this much later (expiry clock), not at every settle
PRUNE_RECHECK = timedelta(seconds=30)


# ---- the worker ------------------------------------------------------------------------------

def _step(seen: LastSent) -> tuple[datetime, int]:
    """Where a received message stands among its partner-facing id's steps (``Delivery.step``;
    ``started_at`` is always known in the worker's memory: ``PartnerWorker._know``)."""
    assert seen.started_at is not None
    return (seen.started_at, seen.version)


class PartnerWorker(DeliveryLoop):
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
        self.waiting: dict[Mailbox, Waiting] = {}  # key -> its newest step not yet started
        # keys to start, in arrival order: first those the partner has received nothing
        # of (a driver not warned at all is worse off than one with a zone a few seconds old),
        # then the rest, so a slow partner still gets every new alert's create in time
        self.first: deque[Mailbox] = deque()
        self.order: deque[Mailbox] = deque()
        self.active: dict[Mailbox, asyncio.Task[None]] = {}  # key -> the task sending it
        self.delivered: dict[Mailbox, LastSent] = {}  # the partner's last received, per key
        self._forget_at: dict[Mailbox, datetime] = {}  # when a key's entry may go (expiry)
        # (when to look at it, key): one per key of ``_forget_at`` (a revoked key's goes with
        # it), never after its forget time; a key's later forget time is seen when it is due
        self._forget_heap: list[tuple[datetime, Mailbox]] = []
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
        delivered: LastSent | None = None, *, maybe_live: bool = False,
        on_maybe_live: OnMaybeLive | None = None,
    ) -> None:
        """Put ``delivery`` in the mailbox; ``on_settled`` is called once it has settled.

        ``delivered``: what the partner had received of the alert before (from the shell's
        durable record, after a restart); the newer of that and this worker's knowledge counts,
        and only if it is of this delivery's life (``fanout.received_in_life``). The delivery
        is numbered as the partner knows its life (``fanout.as_known``: the engine's count for
        a life it got under that count before 2026-12-07), for every record and attempt of it.
        ``maybe_live`` (the durable record's too): the partner may hold this life of the alert
        live though nothing of it was confirmed, so its cancel is owed (``_deadline``) as it
        was before the restart or rebalance; ``on_settled`` reports it back, and
        ``on_maybe_live`` as soon as an attempt of this delivery may have reached the partner
        with nothing of the life confirmed (before it settles: it may be retried a while).
        """
        aid = delivery.mailbox
        self._know(aid, delivery, received_in_life(delivery.view, delivered), maybe_live)
        delivery = self._as_known(delivery)
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
        self.waiting[aid] = Waiting(delivery, on_settled, throttled, on_maybe_live)
        if old is not None:
            self._settle(old.delivery, old.on_settled, "superseded")
        elif aid not in self.active:
            (self.order if self._received(delivery) else self.first).append(aid)
        self.start_ready()

    def _know(
        self, aid: Mailbox, d: Delivery, delivered: LastSent | None, maybe_live: bool
    ) -> None:
        if maybe_live:
            self._live.add(aid)
        if delivered is not None:
            if delivered.started_at is None:  # an older record: of d's life (received_in_life)
                delivered = replace(delivered, started_at=d.view.started_at)
            seen = self.delivered.get(aid)
            if seen is None or _step(delivered) > _step(seen):
                self.delivered[aid] = delivered
        forget = d.expires_at + CANCEL_TTL
        known = self._forget_at.get(aid)
        if known is None:
            heapq.heappush(self._forget_heap, (forget, aid))
        if known is None or forget > known:
            self._forget_at[aid] = forget

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

    def _rechecked(self) -> None:
        self._recheck = None
        self.start_ready()

    def _cancel_recheck(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None

    async def _one(self, entry: Waiting) -> None:
        """Send one alert's step until it settles; whatever raises out of it stops the worker
        (the failure policy's stop): a task never ends leaving its key taken, unsettled."""
        d = entry.delivery
        try:
            await self._send_and_settle(entry)
        except asyncio.CancelledError:
            raise
        except StopWork as stop:  # not settled, so never acknowledged: a restart resends
            self.active.pop(d.mailbox, None)
            await self._stop(stop)
        except Exception as err:  # a bug the policy's own handling let out: loud, never silent
            self.active.pop(d.mailbox, None)
            await self._stop(self.escaped(err, d))

    async def _send_and_settle(self, entry: Waiting) -> None:
        d = entry.delivery
        aid = d.mailbox
        how = await self._settle_or_stop(d, entry.on_maybe_live)
        await self._durable(d)  # its records in the audit log for good before it settles
        self.active.pop(aid, None)
        newer = self.waiting.get(aid)
        if newer is not None and newer.delivery.step <= d.step:
            # an older step that came while this one went (``submit`` checks only what the
            # partner received and what waits): it would go after a higher one of its alert
            del self.waiting[aid]
            self._settle(newer.delivery, newer.on_settled, "superseded")
            newer = None
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
            received = self._received(d)
            # what is owed with nothing received lives in ``_live`` alone: kept durable by the
            # shell, so a restart or a rebalance still owes the cancel (``submit``)
            maybe_live = received is None and d.mailbox in self._live
            try:
                on_settled(d, how, received, maybe_live)
            except Exception as err:  # its record is never acked: the worker stops, loudly
                self._stop_soon(self.escaped(err, d))
                return
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()
        self._prune()

    def _prune(self) -> None:
        """Forget what the partner received of alerts long expired (bounded memory), on every
        settle: until 2026-12-07 only once nothing was outstanding, and one cancel owed through
        an outage kept every alert life of it (301 after 2.5 h of a 60 s alert every 30 s)."""
        heap = self._forget_heap
        if not heap:
            return
        now = self.expiry_clock()
        again: list[tuple[datetime, Mailbox]] = []
        while heap and heap[0][0] <= now:
            _, aid = heapq.heappop(heap)
            forget = self._forget_at.get(aid)
            if forget is None:  # revoked (or forgotten through another of its entries)
                continue
            if forget > now:  # a later version put it off
                again.append((forget, aid))
            elif aid in self.active or aid in self.waiting:  # still being sent: looked at later
                again.append((now + PRUNE_RECHECK, aid))
            else:
                del self._forget_at[aid]
                self.delivered.pop(aid, None)
                self._live.discard(aid)
        for entry in again:
            heapq.heappush(heap, entry)

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
        # what the partner received or may hold of them (``_live`` alone: a timeout or a 504,
        # nothing confirmed): until 2026-12-07 only keys in ``delivered`` were dropped, and a
        # maybe-live key stayed, so a partition that came back owed its cancel from here
        known = set(self.delivered) | set(self._forget_at) | self._live
        for aid in [a for a in known if alerts(a[0])]:
            self.delivered.pop(aid, None)
            self._forget_at.pop(aid, None)
            self._live.discard(aid)
        # and their entries in the forget heap: a resubmit pushes a new one (until 2026-12-07
        # each revoke and resubmit of an alert left one more)
        heap = [e for e in self._forget_heap if not alerts(e[1][0])]
        if len(heap) < len(self._forget_heap):
            heapq.heapify(heap)
            self._forget_heap = heap
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
            await maybe_await(self.on_stop(stop))

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
