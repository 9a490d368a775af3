"""The delivery hub: one :class:`~adapters.delivery.PartnerWorker` per push partner, and
``deliver_events``, the in-process fan-out and delivery of a replay (``broker replay
--deliver``). The delivery contract itself is ``adapters.delivery``'s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import numpy as np

from adapters.audit import AuditSink
from adapters.config import Partner
from adapters.dead_letters import DeadLetterSink
from adapters.delivery import PartnerWorker
from adapters.delivery_model import OnMaybeLive, OnSettled, PartnerStats, utc_now
from adapters.fanout import Delivery, LastSent, PartnerSet, ThrottleState, fan_out
from adapters.payload import Payload
from adapters.policy import AlertView
from broker.failure import FirstFailure
from broker.model import AlertEvent

log = logging.getLogger(__name__)


class DeliveryHub:
    """One ``PartnerWorker`` per push partner, created on first use. Use as an async context
    manager, or call ``drain()`` then ``stop()``.

    ``disabled(partner_id)``: whether the partner answered 410 Gone (the shell's durable
    record, asked before every delivery, so an operator's re-enable takes effect at once; the
    shell's ``on_disable`` writes it). Without one, a 410 holds for this hub's life.
    """

    def __init__(
        self,
        partners: PartnerSet,
        client: httpx.AsyncClient,
        audit: AuditSink,
        dead_letter: DeadLetterSink,
        *,
        disabled: Callable[[str], bool] | None = None,
        may_send: Callable[[], bool] | None = None,
        **worker_options: Any,
    ) -> None:
        self.partners = partners
        self.client = client
        self.audit = audit
        self.dead_letter = dead_letter
        self.disabled = disabled
        self.may_send = may_send  # the shell's lease on its alerts (PartnerWorker's may_send)
        self.worker_options = worker_options
        secrets = [
            s.reveal() for p in partners.config.partners for s in (p.secret, p.feed_token) if s
        ] + [partners.config.pseudonym_key.reveal()]
        self._secrets = [s for s in secrets if s]
        self.workers: dict[str, PartnerWorker] = {}
        self.holding = False

    def scrub(self, text: str) -> str:
        """Remove every configured secret from a text (belt and braces for error messages)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def render(self, partner: Partner, view: AlertView, delivered: LastSent | None) -> Payload:
        """The payload of one alert step for ``partner`` (see ``fanout.render_for``)."""
        from adapters.fanout import render_for

        return render_for(partner, view, sender=self.partners.config.cap_sender,
                          delivered=delivered)

    def worker(self, partner_id: str) -> PartnerWorker:
        """The partner's worker (made on first use)."""
        if partner_id not in self.workers:
            self.workers[partner_id] = PartnerWorker(
                self.partners.partners[partner_id], client=self.client, audit=self.audit,
                dead_letter=self.dead_letter, scrub=self.scrub, render=self.render,
                disabled=self._durable(partner_id), held=lambda: self.holding,
                may_send=self.may_send, **self.worker_options,
            )
        return self.workers[partner_id]

    def _durable(self, partner_id: str) -> Callable[[], bool] | None:
        if self.disabled is None:
            return None
        check = self.disabled
        return lambda: check(partner_id)

    def submit(
        self, delivery: Delivery, on_settled: OnSettled | None = None,
        delivered: LastSent | None = None, *, maybe_live: bool = False,
        on_maybe_live: OnMaybeLive | None = None,
    ) -> None:
        """Put a delivery in its partner's mailbox (see ``PartnerWorker.submit``)."""
        self.worker(delivery.partner_id).submit(delivery, on_settled, delivered,
                                                maybe_live=maybe_live,
                                                on_maybe_live=on_maybe_live)

    def hold(self) -> None:
        """Start no new send until :meth:`release` (sends under way go on). A shell catching
        up a backlog holds while newer records wait behind the one it handles: their versions
        replace the older ones in the mailboxes meanwhile, so what goes out is the latest
        version, not every superseded one on the way (after a restart or a Kafka outage)."""
        self.holding = True

    def release(self) -> None:
        """Let the held mailboxes send again."""
        if self.holding:
            self.holding = False
            for w in self.workers.values():
                w.start_ready()

    async def drain(self) -> None:
        """Wait until every delivery has settled; raises :class:`~broker.failure.StopWork`
        if the failure policy stopped a partner's worker."""
        self.release()
        await asyncio.gather(*(w.join() for w in self.workers.values()))
        for w in self.workers.values():
            if w.stopped is not None:
                raise w.stopped

    async def revoke(self, alerts: Callable[[str], bool]) -> None:
        """Drop the alerts ``alerts(alert_id)`` names from every partner (a rebalance)."""
        await asyncio.gather(*(w.revoke(alerts) for w in self.workers.values()))

    async def stop(self) -> None:
        """Stop every partner's worker, each even if another's stop fails; the first failure
        is raised once all have stopped (plain ``gather`` raised it at once, the other
        partners' stops left running behind the caller, the hub's exit and the shutdown)."""
        done = await asyncio.gather(*(w.stop() for w in self.workers.values()),
                                    return_exceptions=True)
        failures = FirstFailure(logger=log)  # each later one logged and noted on the first
        for result in done:
            if isinstance(result, BaseException):
                failures.keep(result, "stopping a partner's worker")
        failures.raise_first()

    def stats(self) -> dict[str, PartnerStats]:
        return {pid: w.stats for pid, w in self.workers.items()}

    async def __aenter__(self) -> DeliveryHub:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> None:
        """Drain (unless the block raised), then stop the partners' tasks, even if draining
        raised. The first failure is the one raised (the block's, or the drain's); a stop that
        fails after it is logged and noted on it: raised, it replaced the cause (the failed
        delivery's ``StopWork``) with whatever stopping the partners' tasks ran into. A
        cancellation while stopping is raised, the failure before it logged and noted on it
        (``FirstFailure``)."""
        failures = FirstFailure(error, logger=log)
        if kind is None:
            try:
                await self.drain()
            except BaseException as err:  # the cause: raised after the stop, whatever it does
                failures.keep(err, "draining")
        try:
            await self.stop()
        except BaseException as err:  # a cancellation too: raised, the drain's failure told
            failures.keep(err, "stopping the partners' workers")
        failures.raise_first(unless=error)  # the block's own goes on by itself


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
    clock: Callable[[], datetime] = utc_now,
    replay_time: bool = True,
    throttle_state: ThrottleState | None = None,
    watch: Callable[[int, dict[str, PartnerStats]], None] | None = None,
    watch_every_s: float = 1.0,
    **worker_options: Any,
) -> DeliverySummary:
    """Fan out and deliver alert events in-process (``broker replay --deliver``).

    With ``replay_time`` (default), expiry is judged in the events' own time frame, shifted so
    the first event happens "now": a recorded incident replayed later is not all expired, and
    an alert still expires if its delivery is held up for longer than its life. Signatures
    and audit times always use the wall ``clock``. ``watch`` is told the deliveries queued and
    the partners' counters every ``watch_every_s`` while they go (a partner down is retried
    until each alert expires: minutes, with nothing else to see).
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

    async def watching() -> None:
        assert watch is not None
        while True:
            try:
                watch(count, hub.stats())
            except Exception:  # a progress line's bug: the deliveries go on without it
                log.exception("deliver_events: the progress callback failed; no more progress")
                return
            await asyncio.sleep(watch_every_s)

    watcher = None if watch is None else asyncio.create_task(watching())
    try:
        async with hub:
            for ev in events:
                state, deliveries = fan_out(ev, partners, state, ev.ts)
                for d in deliveries:
                    hub.submit(d)
                    count += 1
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return DeliverySummary(count, hub.stats(), state)


def latency_percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100, numpy's ``inverted_cdf``); nan when empty."""
    arr = np.fromiter(values, dtype=float)
    return float(np.percentile(arr, q, method="inverted_cdf")) if arr.size else math.nan
