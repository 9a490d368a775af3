"""Whether the worker may act, and whether it is ready: Faust's table recovery, a rebalance, and
the lease on the partitions (``broker.streams.membership``), read the same way by the agents,
/health (``ops``), the feeds (``web``) and the readiness watchdog (``watchdog``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from broker.streams.runtime import Runtime

log = logging.getLogger(__name__)


def recovered(app: faust.App) -> bool:
    """Faust's table recovery has completed (False while its service is not built yet)."""
    try:
        return bool(app.tables.recovery.completed.is_set())  # type: ignore[attr-defined]
    except Exception:
        return False


def is_ready(app: faust.App, rt: Runtime) -> bool:
    """Table recovery finished, not rebalancing, and the lease on the partitions held (a
    worker frozen past its session may have lost them: ``broker.streams.membership``);
    /health also wants ``rt.assigned_once``."""
    return recovered(app) and not app.rebalancing and rt.membership.held()


def waits_on_kafka(app: faust.App, rt: Runtime) -> bool:
    """Recovered, assigned and not rebalancing, only the lease on the partitions lapsed: Kafka
    (or the worker's link to it) away, which the worker comes back from by itself when it
    answers (docs/streams.md, "Kafka away"). Not the readiness watchdog's to stop: a restart
    would add the supervisor's back-off and a whole table recovery to the silence after it."""
    return (recovered(app) and not app.rebalancing and rt.assigned_once and not rt.partial
            and not rt.membership.held())


async def leased(app: faust.App, rt: Runtime) -> bool:
    """Whether this worker may act on a record of its assignment: at once while its lease is
    held; after a stall past the session (``broker.streams.membership``), once a heartbeat
    renews it, or False when a rebalance begins first (the record is of the assignment that
    ended: not processed, not acked; Faust hands it over again if the partition stays here)."""
    membership = rt.membership
    if membership.held():
        return True
    generation = app.consumer_generation_id
    if membership.first_look():
        log.warning("the group has not heard from this worker for its session timeout (%.0f s:"
                    " a stall?); acting on no record until a heartbeat is answered",
                    membership.session_timeout_s)
    return await membership.wait(
        lambda: bool(app.rebalancing) or app.consumer_generation_id != generation)
