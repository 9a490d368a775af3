"""Whether this worker may still act for its partitions: a lease its group coordinator renews.

Kafka gives a member's partitions to another worker once it has heard nothing from it for the
session timeout. A worker stopped for longer (SIGSTOP, a paused VM, a long GC pause) goes on,
when it resumes, with everything it held in memory, and nothing tells it that the group moved
on until its consumer thread's next heartbeat comes back "unknown member". In that moment its
tick, a whole stall late, saw every unit of its old partitions silent and made their
dead-reckoning updates or stale cancels, whose versions the new owner had already used for real
ones; its flush wrote those states to the changelog; its buffered fixes went through the engine
again; its delivery queues sent on (``make faults``, ``worker_freeze``; docs/streams.md, "A
worker that was frozen").

The lease: when the last request the coordinator answered as this member's (a heartbeat, or the
sync that ended a join) was *sent*. The coordinator's own deadline runs from when it received
that request, so from later: while ``now < renewed + session timeout`` it cannot have evicted
this worker. Without a watched coordinator (never joined, tests) the lease is held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

# aiokafka's request API keys that renew a member's session at the coordinator
HEARTBEAT_API_KEY = 12
SYNC_GROUP_API_KEY = 14
WAIT_STEP_S = 0.05  # how often a lapsed lease is looked at again (only while it is lapsed)


class Membership:
    """The lease on this worker's partitions (module docstring). Renewed from the consumer
    thread, read from the event loop's thread: one float, written whole."""

    def __init__(self, session_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.session_timeout_s = session_timeout_s
        self.clock = clock
        self._renewed_at: float | None = None  # None: no coordinator watched yet
        self._told: float | None = None  # the renewal whose lapse was told (once per lapse)

    def renewed(self, sent_at: float) -> None:
        """The coordinator answered, as this member's, a request sent at ``sent_at``."""
        if self._renewed_at is None or sent_at > self._renewed_at:
            self._renewed_at = sent_at

    def held(self) -> bool:
        """Whether the coordinator cannot have given this worker's partitions away yet."""
        at = self._renewed_at
        return at is None or self.clock() < at + self.session_timeout_s

    def first_look(self) -> bool:
        """True the first time it is asked after the lease lapsed (to say so once)."""
        if self.held() or self._told == self._renewed_at:
            return False
        self._told = self._renewed_at
        return True

    async def wait(self, given_up: Callable[[], bool] = lambda: False) -> bool:
        """Until the lease is held again (True) or ``given_up()`` (a rebalance began: False)."""
        while not self.held():
            if given_up():
                return False
            await asyncio.sleep(WAIT_STEP_S)
        return not given_up()


def watch_coordinator(coordinator: Any, membership: Membership) -> None:
    """Renew ``membership`` whenever aiokafka's group ``coordinator`` gets a heartbeat or a
    sync answered without error, at the time the request was sent."""
    send = coordinator._send_req

    async def watched(request: Any) -> Any:
        sent_at = membership.clock()
        response = await send(request)
        renews = getattr(request, "API_KEY", None) in (HEARTBEAT_API_KEY, SYNC_GROUP_API_KEY)
        if renews and getattr(response, "error_code", None) == 0:
            membership.renewed(sent_at)
        return response

    coordinator._send_req = watched
