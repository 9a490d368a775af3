"""What a partner's delivery worker and its shell share: how a delivery settled and the
callbacks that report it, the partner's counters, a mailbox entry, the wall clock.

The worker is :class:`~adapters.delivery.PartnerWorker` (its mailbox and lifecycle) on
:class:`~adapters.delivery_loop.DeliveryLoop` (one delivery's attempts and audit records).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from adapters.config import Partner
from adapters.fanout import Delivery, LastSent
from adapters.payload import Payload
from adapters.policy import AlertView
from broker.failure import StopWork

# How a delivery ended: sent; dropped because its alert expired first; dead-lettered; or
# superseded by a newer version of its alert before it could go (the newer one goes instead).
Settled = Literal["delivered", "expired", "dead_letter", "superseded", "throttled"]
# Called once per delivery when it has settled, with what the partner now has of the alert: its
# last received message of the delivery's life, and whether it may hold the alert live though
# nothing of it was confirmed (an attempt whose answer never came, a gateway's 504: its
# cancel is owed), which the shell keeps across restarts and hands back to ``submit``. The
# shell acks the alert's offset once all its deliveries have settled.
OnSettled = Callable[[Delivery, Settled, LastSent | None, bool], None]
# Called when an attempt of a delivery may have reached the partner though nothing of its life
# of the alert was confirmed (``Outcome.may_have_arrived``), before the delivery settles: the
# shell keeps durable that the partner may hold the alert (its cancel is owed), so a restart or
# a rebalance while the delivery is still retried keeps it too.
OnMaybeLive = Callable[[Delivery], None]
# Called when the failure policy stops a partner's worker (the shell stops; nothing is acked).
OnStop = Callable[[StopWork], Awaitable[None] | None]
# Called when a partner answers 410 Gone (the shell keeps it disabled across restarts).
OnDisable = Callable[[str, str], Awaitable[None] | None]
Render = Callable[[Partner, AlertView, LastSent | None], Payload]


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


async def maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


@dataclass(slots=True)
class Waiting:
    """The newest version of one alert waiting in a partner's mailbox."""

    delivery: Delivery
    on_settled: OnSettled | None
    # a throttled update in place of the version being sent: it goes only if that one is not
    # delivered (superseded at its next retry, expired, refused), else it is dropped as throttled
    throttled: bool = False
    on_maybe_live: OnMaybeLive | None = None
