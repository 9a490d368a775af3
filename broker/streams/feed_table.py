"""The ``feed-table`` agent: the ``active-alerts`` global table the pull feeds read, fed from
``alerts`` (docs/streams.md, "The ``feed-table`` agent writes ...").

Every worker reads the table's changelog, so each keeps every alert life's latest step, with
the feed partners any step of it reached (``tables.keep_newest``). A record of ``alerts`` is
acked once Kafka has the entry it wrote (``broker.streams.table_writes``), in offset order
(``OrderedAcks``), and not at all once its partition was revoked.
"""

from __future__ import annotations

from typing import Any

import faust

from adapters.config import PartnersConfig
from adapters.feeds import FeedReach
from broker.streams.ordered_acks import OrderedAcks
from broker.streams.readiness import leased
from broker.streams.runtime import Runtime
from broker.streams.table_writes import TableWrites, worker_table_writes
from broker.streams.tables import Tables, keep_newest
from broker.streams.topics import Topics


def register_feed_table(
    app: faust.App, topics: Topics, rt: Runtime, feed_writes: TableWrites,
    partners: PartnersConfig | None,
) -> None:
    """Attach the ``feed-table`` agent and its revoke handler to ``app`` (``partners``: whose
    pull feeds the table remembers each life's reach for). ``feed_writes``: the
    ``active-alerts`` table's writes (``feed_table_writes``), shared with the feeds' prune
    (every write of the table in one queue: per key in order)."""
    reach = FeedReach.from_config(partners)
    app.broker_feed_writes = feed_writes  # type: ignore[attr-defined]  # for tests
    # acked as their entries reach Kafka, given to Faust in offset order (``OrderedAcks``): the
    # fan-out's acks of the same messages are too, so Faust's commit never passes a record in
    # hand (it commits the first run of acked offsets wherever that starts)
    feed_acks: OrderedAcks[Any] = OrderedAcks()

    @app.agent(topics.alerts, name="feed-table")
    async def feed_table(stream: faust.StreamT[bytes]) -> None:
        await keep_feed_table(app, rt, stream, feed_writes, feed_acks, reach)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust types want *args
    async def forget_feed_revoked(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        """Records of ``alerts`` partitions that moved away are not acked here (an entry
        answered after the revoke acks nothing): the owner reads them again."""
        feed_acks.forget({tp.partition for tp in revoked if tp.topic == topics.names.alerts})


def feed_table_writes(app: faust.App, tables: Tables, rt: Runtime) -> TableWrites:
    """The ``active-alerts`` table's writes, each ``alerts`` record acked once Kafka has its
    record (``broker.streams.table_writes``); one Kafka did not take stops the worker (site
    ``settle``, always a stop), nothing acked since."""
    return worker_table_writes(app, rt, tables.active_alerts, rt.failure_policy())


async def keep_feed_table(app: faust.App, rt: Runtime, stream: faust.StreamT[bytes],
                          writes: TableWrites, acks: OrderedAcks[Any], reach: FeedReach) -> None:
    """The ``feed-table`` agent: keep the latest event of every alert life in the global table
    the feeds read (every worker reads its changelog: a record of a lapsed lease would put an
    old version back on all of them), with the feed partners any step of the life reached
    (``reach``); an older step never goes over a newer one (``keep_newest``). A record is
    acked once Kafka has what it wrote (``writes.after``) and every record before it in its
    partition is acked (``acks``)."""
    # noack: a record passed over for a lapsed lease must not be committed by the revoke
    async for event in stream.noack().events():  # type: ignore[attr-defined]  # untyped in Faust
        if not await leased(app, rt):
            continue  # of the assignment a rebalance ended: comes again if still ours
        message = event.message
        settled = acks.track(message.partition, message.offset, event)
        # the life's key, written or not: the table may hold this step already, written by us
        # and not yet in Kafka (read again after a revoke)
        key = keep_newest(writes.table, event.key, event.value, reach=reach, put=writes.put)
        writes.after(key, settled)  # no write of the key under way: settled now, in order
