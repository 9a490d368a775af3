"""The delivery of one alert to one partner: the attempt loop and the audit records around it.

:class:`DeliveryLoop` is the part of :class:`~adapters.delivery.PartnerWorker` that takes one
delivery from the mailbox to how it settled (``adapters.delivery`` states the contract).
Before each attempt it looks at the lease (``may_send``), a 410, a newer version, the deadline
and the breaker's probe (``adapters.attempts``); it writes the ``sending`` record, waits until
that is durable, looks again (the breaker too: opened meanwhile, it waits for the probe), and
sends; the outcome decides (``adapters.retry``): delivered, retried, refused, the partner
disabled, or given up. Every step leaves its audit record; dead
letters and the partner's counters are kept here too. The state it reads is the worker's, set
in ``PartnerWorker.__init__`` (declared on the class below); the mailbox, settling and the
worker's lifecycle are ``adapters.delivery``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from adapters.attempts import Attempts, Permit
from adapters.audit import AuditRecord, AuditSink, AuditStatus, durable
from adapters.carried import fields_carried
from adapters.config import Partner
from adapters.dead_letters import DeadLetter, DeadLetterSink
from adapters.delivery_model import (
    OnDisable,
    OnMaybeLive,
    PartnerStats,
    Render,
    Settled,
    Waiting,
    maybe_await,
)
from adapters.fanout import (
    Delivery,
    LastSent,
    Mailbox,
    as_known,
    first_or_as_is,
    received_in_life,
)
from adapters.payload import Payload
from adapters.retry import Disable, GiveUp, Outcome, Reject, Retry
from broker.failure import REASONS, FailurePolicy, StopWork

log = logging.getLogger("adapters.delivery")  # the worker's one logger, as before its split
NEVER = datetime.max.replace(tzinfo=UTC)  # the deadline of a cancel the partner must get
# how often a worker whose shell may not send (``may_send``: its lease on the alerts lapsed)
# looks again; only while it may not
MAY_SEND_RECHECK_S = 0.05


@dataclass(slots=True)
class _Progress:
    """How far one delivery got, for its dead letter if it raises: the payload its last attempt
    rendered (None if none was, or rendering raised), and whether rendering is what raised."""

    payload: Payload | None = None
    rendering: bool = False  # True from a render's start until it returned


class DeliveryLoop:
    """One delivery, attempt by attempt, until it settles; every step audited. The base of
    :class:`~adapters.delivery.PartnerWorker`, whose ``__init__`` sets what it reads."""

    partner: Partner
    attempts: Attempts  # how the partner is called: each attempt, its outcome, the breaker
    audit: AuditSink
    dead_letter: DeadLetterSink
    scrub: Callable[[str], str]
    render: Render
    clock: Callable[[], datetime]
    expiry_clock: Callable[[], datetime]
    failures: FailurePolicy
    on_disable: OnDisable | None
    stats: PartnerStats
    waiting: dict[Mailbox, Waiting]  # the mailbox: the newest step of each alert not started
    delivered: dict[Mailbox, LastSent]  # the partner's last received, per key
    _may_send: Callable[[], bool] | None
    _durably_disabled: Callable[[], bool] | None
    _live: set[Mailbox]

    def may_send(self) -> bool:
        """Whether the shell may send for its alerts now (see ``may_send`` in
        ``PartnerWorker.__init__``)."""
        return self._may_send is None or self._may_send()

    def _as_known(self, d: Delivery) -> Delivery:
        """``d`` numbered as the partner knows its life of the alert (``fanout.as_known``)."""
        view = as_known(d.view, self.delivered.get(d.mailbox))
        return d if view is d.view else replace(d, view=view)

    def _received(self, d: Delivery) -> LastSent | None:
        """The last message of ``d``'s life of the alert the partner has received, if any."""
        return received_in_life(d.view, self.delivered.get(d.mailbox))

    # ---- one alert ---------------------------------------------------------------------------

    async def _settle_or_stop(
        self, d: Delivery, on_maybe_live: OnMaybeLive | None = None
    ) -> Settled:
        """Deliver ``d``; a delivery that raises goes through the failure policy. Its dead
        letter carries the payload of its last attempt if one was rendered, one rendered now if
        the delivery failed before any render, none if rendering is what failed (the handler
        must not depend on what failed); if even that letter cannot be written, the worker stops
        (site ``settle``, always a stop). ``on_maybe_live``: see ``PartnerWorker.submit``."""
        progress = _Progress()
        try:
            return await self._deliver(d, progress, on_maybe_live)
        except (asyncio.CancelledError, StopWork):
            raise
        except Exception as err:
            failure = self.failures.check(
                "delivery", err, key=d.message_id, raw=d.view.message_id.encode(),
                source=self.partner.id,
            )
        reason = f"{REASONS['delivery']}: {self.scrub(failure.error)}"
        try:
            await self._dead(d, reason, 0, progress.payload, rendered=progress.rendering)
        except (asyncio.CancelledError, StopWork):
            raise
        except Exception as err:
            raise self.escaped(err, d) from err
        return "dead_letter"

    def escaped(self, err: Exception, d: Delivery) -> StopWork:
        """The failure policy's stop for an error the delivery's own handling let out (a dead
        letter not written, ``on_settled`` failing, a bug around settling): site ``settle``,
        always a stop, so the worker stops loudly rather than leave the alert's task dead, its
        key taken and its record never acknowledged."""
        return self._stop_at("settle", err, d)

    def _superseded(self, d: Delivery) -> bool:
        newer = self.waiting.get(d.mailbox)
        return newer is not None and newer.delivery.step > d.step

    def _deadline(self, d: Delivery) -> datetime:
        """When ``d`` is given up: the alert's expiry, except for the cancel of an alert (this
        life of it) the partner has received, which is never given up (the partner's picture
        must end right); so is a cancel under an id the partner holds live from an earlier
        life (the engine's id passed on: this life's step took that life's cancel's place),
        or whose attempt may have reached it (a timeout, a connection dropped after the request
        went, a gateway's 504: ``Outcome.may_have_arrived``; after a restart, the shell's
        durable ``maybe_live``, ``PartnerWorker.submit``)."""
        if d.view.action == "cancel" and (
            self._received(d) is not None or d.mailbox in self._live
        ):
            return NEVER
        return d.expires_at

    async def _deliver(  # noqa: C901 - the contract, step by step
        self, d: Delivery, progress: _Progress, on_maybe_live: OnMaybeLive | None = None
    ) -> Settled:
        attempt = 0

        def deadline() -> datetime:
            return self._deadline(d)

        def superseded() -> bool:
            return self._superseded(d)

        while True:
            # what the partner is known to have may have grown (a step of the life that went
            # meanwhile): the same numbering for this attempt's payload and its records
            d = self._as_known(d)
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
            # the lease lapsed, or the partner answered another alert's attempt (the probe
            # before this one) 410 Gone, while it waited for the probe: looked at afresh
            if not self.may_send() or self.disabled:
                self.attempts.release(permit)
                continue
            # expired while waiting for the breaker's probe
            if self.attempts.bound_s(self.partner, self._deadline(d)) <= 0:
                self.attempts.release(permit)
                self._expired(d, attempt, "alert expired before delivery")
                return "expired"
            attempt += 1
            progress.payload = None
            try:  # the permit goes back on every path, a render that raises included
                progress.rendering = True
                payload = self.render(self.partner, d.view, self.delivered.get(d.mailbox))
                progress.payload, progress.rendering = payload, False
                # written, and durable, before the request: a send cut short leaves its trace
                self._record(d, "sending", attempt)
                await self._durable(d)
                # looked at again: Kafka may have taken a while (or the worker stalled)
                held_back = self._held_back(d, permit)
                sent = None if held_back else await self.attempts.send(
                    self.partner, d.url, payload, deadline, permit)
            finally:
                self.attempts.release(permit)
            if held_back == "lease":
                self._record(d, "failed", attempt, not_sent=True,
                             detail="not sent: the worker's lease on the alert lapsed")
                continue
            if held_back == "disabled":  # dead-lettered at the loop's top
                self._record(d, "failed", attempt, not_sent=True,
                             detail="not sent: the partner answered 410 Gone meanwhile")
                continue
            if held_back == "breaker":  # waits for the probe, at the loop's top
                self._record(d, "failed", attempt, not_sent=True,
                             detail="not sent: the partner's breaker opened meanwhile (another "
                                    "alert's answer); waits for its probe")
                continue
            if held_back == "expired":
                self._expired(d, attempt, "not sent: the alert expired while its audit record "
                                          "went to Kafka", not_sent=True)
                return "expired"
            if held_back == "superseded":
                self._record(d, "superseded", attempt, not_sent=True,
                             detail="not sent: a newer version came while its audit record "
                                    "went to Kafka")
                return "superseded"
            assert sent is not None
            outcome, latency_ms = sent
            if outcome.ok:
                self._delivered(d, payload, attempt, outcome, latency_ms)
                return "delivered"
            self.stats.failed_attempts += 1
            if outcome.may_have_arrived and d.view.action != "cancel":
                # the partner may hold the alert live now (the audit's ``sending`` without an
                # outcome says the same): its cancel is owed as for one it received (_deadline)
                self._live.add(d.mailbox)
                if on_maybe_live is not None and self._received(d) is None:
                    self._maybe_live(d, on_maybe_live)
            decision = self.attempts.decide(outcome, attempt, deadline)
            status: AuditStatus = "disabled" if isinstance(decision, Disable) else "failed"
            self._record(d, status, attempt, http_status=outcome.status,
                         latency_ms=round(latency_ms, 2), detail=decision.reason,
                         may_have_arrived=outcome.may_have_arrived)
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
                case Retry(at=at, retry_after=retry_after):
                    await self.attempts.wait_until(at, superseded, retry_after=retry_after)

    def _maybe_live(self, d: Delivery, on_maybe_live: OnMaybeLive) -> None:
        """Tell the shell the partner may hold ``d``'s alert (kept durable before ``d`` settles);
        a shell that cannot keep it stops the worker (site ``settle``, as ``on_settled``)."""
        try:
            on_maybe_live(d)
        except Exception as err:
            raise self.escaped(err, d) from err

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
            await maybe_await(self.on_disable(self.partner.id, reason))

    # ---- records ------------------------------------------------------------------------------

    def _record(self, d: Delivery, status: AuditStatus, attempt: int, **kw: Any) -> None:
        """One audit record of ``d``. Its action is the one the partner gets (or would get):
        the first message of an alert goes as a ``create`` whatever the event was
        (``fanout.first_or_as_is``), and the log said ``update`` for it."""
        action = first_or_as_is(d.view, self.delivered.get(d.mailbox)).action
        record = AuditRecord(
            at=self.clock(), partner=self.partner.id, alert_id=d.view.alert_id,
            version=d.view.version, action=action, status=status,
            fields=fields_carried(self.partner.format, d.view),
            attempt=attempt, message_id=d.message_id, started_at=d.view.started_at, **kw,
        )
        try:
            self.audit.write(record)
        except Exception as err:  # not written: nothing more may go or settle
            raise self._audit_failed(err, d) from err

    def _held_back(
        self, d: Delivery, permit: Permit
    ) -> Literal["lease", "disabled", "expired", "superseded", "breaker"] | None:
        """Why an attempt whose ``sending`` record is durable must not go after all, if so:
        ``breaker``, its ``free`` permit given before the breaker opened (``Attempts.lapsed``)."""
        if not self.may_send():
            return "lease"
        if self.disabled:  # another alert's attempt was answered 410 Gone meanwhile
            return "disabled"
        if self.attempts.bound_s(self.partner, self._deadline(d)) <= 0:
            return "expired"
        if self._superseded(d):
            return "superseded"
        if self.attempts.lapsed(permit):
            return "breaker"
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
        return self._stop_at("audit", err, d)

    def _stop_at(self, site: Literal["audit", "settle"], err: Exception, d: Delivery) -> StopWork:
        """The failure policy's decision at a site that always stops, as the ``StopWork``."""
        try:
            failure = self.failures.check(
                site, err, key=d.message_id, raw=d.view.message_id.encode(),
                source=self.partner.id,
            )
        except StopWork as stop:
            return stop
        return StopWork(failure)  # not reached: both sites always stop

    async def _dead(
        self, d: Delivery, reason: str, attempts: int, payload: Payload | None,
        *, rendered: bool = False,
    ) -> None:
        """Dead-letter ``d`` with ``payload``; None renders it now, unless ``rendered`` says
        rendering was already tried (then a letter without body: the reason says why)."""
        self.stats.dead_lettered += 1
        if payload is None and not rendered:
            payload = self.render(self.partner, d.view, self.delivered.get(d.mailbox))
        letter = DeadLetter(
            at=self.clock(), partner=self.partner.id, message_id=d.message_id,
            alert_id=d.view.alert_id, version=d.view.version, reason=reason, attempts=attempts,
            content_type=payload.content_type if payload is not None else "",
            body=payload.body if payload is not None else b"",
        )
        await maybe_await(self.dead_letter(letter))
        self._record(d, "dead_letter", attempts, detail=reason)

    def _expired(self, d: Delivery, attempt: int, why: str, *, not_sent: bool = False) -> None:
        self.stats.expired += 1
        self._record(d, "expired", attempt, detail=why, not_sent=not_sent)
