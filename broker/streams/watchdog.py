"""The readiness watchdog: a worker not ready for too long, with nothing moving, stops loudly.

Why: a worker that is not ready answers 503 on /health, but nothing stops it, and a readiness
probe restarts no process. Our own part of a recovery is bounded (docs/streams.md), Faust's is
not: it retries the committed offsets without end, and gives the recovery up for good when its
seek outlives the request timeout (90 s), the worker then holding its partitions and reading
none. So the worker looks at itself every few seconds (readiness as /health computes it) and,
not ready for ``BROKER_NOT_READY_EXIT_S`` with no progress in that time, stops through
:meth:`Runtime.stop_worker` (failure site ``readiness``, exit :data:`EXIT_NOT_READY`).

Progress is what a legitimately long recovery shows: the changelog offsets Faust's recovery has
read (``Recovery.active_offsets``, moved by every changelog record it applies), the input
offsets the worker handled, and when Faust's recovery last started (a new assignment starts a new
recovery). Not the group's generation: a recovery that Faust gave up for good starts no new
one, while any other member's rebalance still moves the generation (review, 2026-12-06).
A big changelog being restored moves the first, so it is never taken for a stall.

The decision (:class:`ReadinessWatchdog`) is pure: times, readiness and a progress marker in, a
:class:`Stall` or None out. The look runs as a mode service the app starts with its own
services, *before* its first table recovery: Faust starts ``@app.timer`` and ``@app.task``
(the tick, the /health server) only once that recovery has completed, so a timer would never
see a worker whose first recovery never ends.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec
from mode import Service

from broker.failure import Failure, StopWork
from broker.streams.ops import health_body
from broker.streams.readiness import waits_on_kafka

if TYPE_CHECKING:
    import faust

    from broker.streams.runtime import Runtime

log = logging.getLogger(__name__)

LOOK_INTERVAL_S = 5.0  # how often the worker looks at itself (shorter for a short limit)
# a look this long after the one before (at least: 4 intervals) means the process or its loop
# was stopped meanwhile (SIGSTOP; a suspended host stops the monotonic clock too): what it did
# then was not seen, so the count starts again rather than stopping a worker whose recovery
# may resume right away
BLIND_AFTER_S = 60.0


class Progress(msgspec.Struct, frozen=True):
    """What moves while a worker is busy getting ready (any change is progress)."""

    # when Faust's table recovery last started (monotonic s, 0 before any): a new assignment
    # taken up; a recovery loop that gave up starts none, however often the group rebalances
    recovery_started: float
    changelog_offsets: int  # sum of the changelog offsets the table recovery has read
    input_offsets: int  # sum of the next input offsets to handle, per partition


class Stall(msgspec.Struct, frozen=True):
    """The verdict to stop: not ready for ``not_ready_s``, nothing moved for ``still_s``."""

    not_ready_s: float
    still_s: float
    progress: Progress | None  # the last progress marker seen


class ReadinessWatchdog:
    """Decides, from what it is shown, whether a worker not ready has stalled.

    ``look(now, ready, progress)`` every few seconds (``now`` monotonic seconds): a
    :class:`Stall` once the worker has been not ready for ``limit_s`` and ``progress`` has not
    changed in that time, else None. ``limit_s`` <= 0: never. A look more than ``blind_s`` after
    the previous one starts the count again (the watchdog judges only what it saw).
    """

    def __init__(self, limit_s: float, blind_s: float = BLIND_AFTER_S) -> None:
        self.limit_s = limit_s
        self.blind_s = blind_s
        self.not_ready_since: float | None = None
        self.still_since: float | None = None  # the later of not ready since / last progress
        self.progress: Progress | None = None
        self.last_look: float | None = None

    def look(self, now: float, ready: bool, progress: Progress | None) -> Stall | None:
        """One look; a :class:`Stall` when the worker should stop (see the class)."""
        blind = self.last_look is None or now - self.last_look > self.blind_s
        self.last_look = now
        if self.limit_s <= 0:
            return None
        if ready:
            self.not_ready_since = self.still_since = None
            self.progress = progress
            return None
        if blind or self.not_ready_since is None or self.still_since is None:
            self.not_ready_since = self.still_since = now
            self.progress = progress
            return None
        if progress != self.progress:
            self.progress = progress
            self.still_since = now
            return None
        if now - self.still_since < self.limit_s:
            return None
        return Stall(not_ready_s=now - self.not_ready_since, still_s=now - self.still_since,
                     progress=self.progress)


def progress_of(app: faust.App, rt: Runtime) -> Progress:
    """The worker's progress marker now (a part Faust does not say yet counts as 0)."""
    try:
        offsets = app.tables.recovery.active_offsets  # type: ignore[attr-defined]
        changelog = sum(int(o) for o in offsets.values() if o is not None)
    except Exception:  # the recovery service not built yet
        changelog = 0
    started = getattr(getattr(app.tables, "recovery", None), "_recovery_started_at", None)
    return Progress(
        recovery_started=started if isinstance(started, float) else 0.0,
        changelog_offsets=changelog,
        input_offsets=sum(rt.next_offset.values()),
    )


def stall_report(app: faust.App, rt: Runtime, stall: Stall) -> str:
    """What the watchdog saw, for the critical log line and the stop's reason."""
    _, body = health_body(app, rt)
    recovery: Any = getattr(app.tables, "recovery", None)
    try:
        completed = recovery.completed.is_set() if recovery is not None else None
        left = recovery.active_remaining_total() if recovery is not None else None
        in_recovery = bool(recovery.in_recovery) if recovery is not None else None
    except Exception:  # Faust's recovery half built: say nothing of it
        completed = left = in_recovery = None
    # what /health wants and does not have (its body's fields); "recovered" is Faust's recovery
    # completed, no rebalance under way and the lease held, each said apart after it
    missing = [name for name in ("recovered", "assigned") if not body[name]]
    if body["half_assigned"]:
        missing.append(f"half_assigned={body['half_assigned']}")
    return (
        f"not ready for {stall.not_ready_s:.0f} s, no progress for {stall.still_s:.0f} s "
        f"(limit BROKER_NOT_READY_EXIT_S={rt.settings.not_ready_exit_s:g}); /health missing: "
        f"{', '.join(missing) or 'nothing'}; recovery_completed={completed} "
        f"rebalancing={bool(app.rebalancing)} lease_held={rt.membership.held()} "
        f"in_recovery={in_recovery} changelog_records_left={left} "
        f"partitions={body['partitions']}; last progress {stall.progress}"
    )


class ReadinessWatch(Service):
    """The watchdog's look every ``interval_s``, started with the app (before its first table
    recovery); stops the worker through :meth:`Runtime.stop_worker` on a :class:`Stall`."""

    def __init__(self, app: faust.App, rt: Runtime, watchdog: ReadinessWatchdog,
                 interval_s: float, **kwargs: Any) -> None:
        self.app, self.rt, self.watchdog, self.interval_s = app, rt, watchdog, interval_s
        super().__init__(**kwargs)

    async def look(self) -> bool:
        """One look; True once it has stopped the worker."""
        rt, app = self.rt, self.app
        if rt.stopped is not None or app.should_stop:
            return False  # stopping already: for another reason, or a stop signal's shutdown
        status, _ = health_body(app, rt)  # also sets the broker_ready gauge
        waiting = status != 200 and not waits_on_kafka(app, rt)
        stall = self.watchdog.look(rt.wall(), not waiting, progress_of(app, rt))
        if stall is None:
            return False
        reason = stall_report(app, rt, stall)
        log.critical("readiness watchdog: %s", reason)
        rt.metrics.failures.labels("readiness", "stop").inc()
        stop = StopWork(Failure(site="readiness", key="worker", error=reason, raw=b""))
        await rt.stop_worker(app, stop)
        return True

    @Service.task
    async def _watch(self) -> None:
        async for _ in self.itertimer(self.interval_s, name="readiness-watchdog"):
            if await self.look():
                return


def register_watchdog(app: faust.App, rt: Runtime) -> ReadinessWatch | None:
    """Start the readiness watchdog with the app (None when ``not_ready_exit_s`` is 0: off)."""
    limit_s = rt.settings.not_ready_exit_s
    if limit_s <= 0:
        return None
    interval_s = min(LOOK_INTERVAL_S, limit_s / 4)
    watchdog = ReadinessWatchdog(limit_s, blind_s=max(BLIND_AFTER_S, 4 * interval_s))
    watch = ReadinessWatch(app, rt, watchdog, interval_s)
    # a dependency is started with the app's own services, before on_started waits for the
    # first recovery (where Faust starts the timers and tasks)
    app.add_dependency(watch)
    return watch
