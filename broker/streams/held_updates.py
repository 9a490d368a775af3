"""Alert updates of late messages held until the next flush, the latest per alert.

Why: when the worker catches up a backlog (after a Kafka outage, a restart, or behind a flood
of bad lines) it processes seconds of fixes in a moment, and each step's update was produced
on ``alerts`` at once: partners got versions that were already superseded, and a partner's
minimum update interval then kept the newest one back. A message is *late* when its Kafka
timestamp is more than ``LATE_S`` behind the wall clock; its updates are held here, a newer one
of the same alert replacing the older, until the first timely message (caught up) or the flush,
which produces what is held and awaits it before it writes states and acks
(``broker.streams.states``: a crash loses nothing). Creates and cancels never wait; either
drops the held update of its alert (a newer event supersedes it). In steady state nothing is
late and nothing is held.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from broker.model import AlertEvent

LATE_S = 1.0  # a message this long in Kafka before we process it: we are catching up


def is_late(received_at: datetime, now: datetime) -> bool:
    """Whether a record Kafka received at ``received_at`` waited there over ``LATE_S`` by
    ``now``: the worker is catching up (the vehicle agent's held updates, fan-out's hold)."""
    return (now - received_at).total_seconds() > LATE_S


class HeldUpdates:
    """The latest held update per alert id; ``send`` hands events to the producer."""

    def __init__(
        self,
        send: Callable[[list[AlertEvent]], list[Awaitable[Any]]],
        on_coalesced: Callable[[], None] = lambda: None,
    ) -> None:
        self._send = send
        self._on_coalesced = on_coalesced  # a held update replaced before it went out
        self._held: dict[str, AlertEvent] = {}

    def route(self, events: list[AlertEvent], late: bool | None) -> list[AlertEvent]:
        """What goes to the producer now, given a message's events: a late message's updates
        are held instead; a timely one (``late=False``: the backlog is caught up) releases
        whatever is held first. ``None`` (the tick): neither. Events of one alert come in
        version order, so each event drops the held update of its alert."""
        for ev in events:
            if self._held.pop(ev.alert_id, None) is not None:
                self._on_coalesced()
        now: list[AlertEvent] = []
        if late is False and self._held:
            now, self._held = list(self._held.values()), {}
        for ev in events:
            if late and ev.action == "update":
                self._held[ev.alert_id] = ev
            else:
                # also an update of its alert this message held (one step can update and
                # then end an alert: a silent unit's dead-reckoning steps, then its call-off):
                # held, it went out behind this event at the flush
                if self._held.pop(ev.alert_id, None) is not None:
                    self._on_coalesced()
                now.append(ev)
        return now

    def __len__(self) -> int:
        return len(self._held)

    def take(self) -> list[AlertEvent]:
        """What is held (the flush's snapshot); nothing is held after."""
        taken = list(self._held.values())
        self._held = {}
        return taken

    def clear(self) -> None:
        """Forget what is held (a rebalance: the messages come again)."""
        self._held = {}

    async def produce(self, taken: list[AlertEvent]) -> list[Awaitable[Any]]:
        """Hand the held updates to the producer; the futures resolve once Kafka has them."""
        return self._send(taken)
