"""Faust agents and the tick timer: decode, call the engine, produce. No rules live here.

Order of effects per message, chosen so a ``kill -9`` at any point loses no alert:
alert events are produced and *acknowledged* before the vehicle's new state is written to the
table, and Faust flushes the producer before it commits offsets. A crash after the alerts went
out but before the state did makes the restarted worker process the message again from the old
state: the deterministic engine emits the same events with the same ids and versions, so a
consumer sees at most a duplicate of (alert_id, version), never a lost alert or a second id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import faust

from broker import codec, engine
from broker.model import AlertEvent, Position, Rejection, Route
from broker.streams.runtime import Runtime, partition_for
from broker.streams.tables import Tables
from broker.streams.topics import ROUTES, Topics

log = logging.getLogger(__name__)

def dlq_headers(source_topic: str, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """Headers of a DLQ record: why it was refused and where it came from."""
    return [
        ("reason", reason.encode()),
        ("detail", detail[:500].encode()),
        ("source_topic", source_topic.encode()),
    ]


async def produce_alerts(topics: Topics, rt: Runtime, events: list[AlertEvent]) -> None:
    """Produce alert events keyed by alert id and wait until Kafka has them."""
    pending: list[Awaitable[Any]] = []
    for ev in events:
        # force=True: send now, not attached to the offset commit, so we can await delivery
        fut = await topics.alerts.send(key=ev.alert_id.encode(), value=codec.encode(ev), force=True)
        pending.append(fut)
        rt.metrics.alerts.labels(ev.action).inc()
    for fut in pending:
        await fut


def register_agents(
    app: faust.App, topics: Topics, tables: Tables, rt: Runtime, *, roads: object | None = None
) -> None:
    """Attach the vehicle agent, the feed-table agent and the tick timer to ``app``."""
    cfg = rt.engine
    skew = timedelta(seconds=cfg.max_future_skew_s)
    vehicles = tables.vehicles
    n_partitions = rt.settings.partitions

    async def reject(event: faust.EventT, source: str, reason: str, detail: str) -> None:
        rt.metrics.rejected.labels(reason).inc()
        await topics.dlq.maybe_declare()  # once (stampede-cached); no agent reads the DLQ
        raw = event.value if isinstance(event.value, bytes) else b""
        await topics.dlq.send(
            key=event.key,
            value=raw,
            headers=dlq_headers(source, reason, detail),
            force=True,
        )

    async def handle(event: faust.EventT) -> None:
        message = event.message
        topic, partition = message.topic, message.partition
        source = topics.names.source_of(topic)
        rt.metrics.messages_in.labels(source).inc()
        received_at = rt.clocks.now(partition, rt.wall(), caught_up=caught_up(partition))
        raw = event.value
        msg: Position | Route | Rejection
        if source == ROUTES:
            msg = codec.decode_route(raw, received_at=received_at, max_future_skew=skew)
        else:
            msg = codec.decode_position(
                raw, received_at=received_at, max_bytes=cfg.max_message_bytes,
                max_future_skew=skew,
            )
        if isinstance(msg, Rejection):
            await reject(event, topic, msg.reason, msg.detail)
            rt.processed(topic, partition, message.offset, None)
            return
        key = msg.vehicle_id.encode()
        if partition_for(key, n_partitions) != partition:
            rt.metrics.misrouted.inc()
        started = time.perf_counter()
        try:
            state, events = engine.step(
                codec.load_state(vehicles.get(key)), msg, now=msg.ts, cfg=cfg, roads=roads  # type: ignore[arg-type]
            )
        except Exception as err:  # a bug in the engine: log it, park the message, go on
            log.exception("engine.step failed on %s[%d]@%d", topic, partition, message.offset)
            await reject(event, topic, "engine_error", repr(err))
            rt.processed(topic, partition, message.offset, None)
            return
        rt.metrics.engine_latency.labels("step").observe(time.perf_counter() - started)
        await produce_alerts(topics, rt, events)
        vehicles[key] = codec.dump_state(state)  # reassign, never mutate (faust tables guide)
        rt.mark_live(partition_for(key, n_partitions), key, state.alert is not None)
        rt.processed(topic, partition, message.offset, msg.ts)

    def caught_up(partition: int) -> bool:
        """No known backlog on either input topic at this partition."""
        for topic in (topics.names.positions, topics.names.routes):
            lag = rt.lag(topic, partition, highwater(topic, partition))
            if lag:
                return False
        return True

    def highwater(topic: str, partition: int) -> int | None:
        try:
            hw = app.consumer.highwater(faust.types.TP(topic, partition))
        except Exception:  # consumer not started / partition not fetched yet
            return None
        return hw if isinstance(hw, int) else None

    @app.task
    async def declare_outputs() -> None:
        """Create the output topics at start, so consumers can subscribe before any traffic."""
        await topics.alerts.maybe_declare()
        await topics.dlq.maybe_declare()
        await topics.audit.maybe_declare()
        await topics.delivery_dlq.maybe_declare()

    @app.agent(topics.inputs, name="process-vehicles")
    async def process_vehicles(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await handle(event)

    @app.agent(topics.alerts, name="feed-table")
    async def feed_table(stream: faust.StreamT) -> None:
        """Keep the latest event of every alert in the global table the feeds read."""
        async for alert_id, raw in stream.items():
            tables.active_alerts[alert_id] = raw

    def rebuild_index() -> None:
        """After a rebalance or restart: find the live alerts and seed partition clocks."""
        wall = rt.wall()
        rt.live = {}
        for key, raw in list(vehicles.items()):
            state = codec.load_state(raw)
            if state is None:
                continue
            p = partition_for(key, n_partitions)
            if p not in rt.owned:
                continue
            if state.alert is not None:
                rt.mark_live(p, key, True)
            if state.last_fix is not None and rt.clocks.event_time(p) is None:
                # A quiet partition after a restart still needs a clock: start from the newest
                # fix the state remembers, then let the wall clock run.
                rt.clocks.observe(p, state.last_fix.ts, wall)
        rt.index_built_for = rt.owned

    def update_assignment() -> None:
        assigned = app.consumer.assignment()
        positions = {tp.partition for tp in assigned if tp.topic == topics.names.positions}
        routes = {tp.partition for tp in assigned if tp.topic == topics.names.routes}
        owned = positions & routes  # a partition counts once both inputs are assigned
        rt.partial = (positions | routes) - owned
        if frozenset(owned) != rt.owned or not rt.assigned_once:
            rt.set_owned(owned)

    def update_lag() -> None:
        for tp in app.consumer.assignment():
            if tp.topic not in (topics.names.positions, topics.names.routes):
                continue
            lag = rt.lag(tp.topic, tp.partition, highwater(tp.topic, tp.partition))
            if lag is not None:
                rt.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    @app.timer(interval=rt.settings.tick_interval_s, name="tick")
    async def tick() -> None:
        """Tick the engine for units with a live alert, so silent units get their stale cancel."""
        if not is_ready(app, rt):
            return
        update_assignment()
        if rt.index_built_for != rt.owned:
            rebuild_index()
        update_lag()
        wall = rt.wall()
        for p in sorted(rt.owned):
            now = rt.clocks.now(p, wall, caught_up=caught_up(p))
            if now is None:
                continue
            for key in sorted(rt.live.get(p, set())):
                state = codec.load_state(vehicles.get(key))
                if state is None or state.alert is None:
                    rt.mark_live(p, key, False)
                    continue
                started = time.perf_counter()
                new, events = engine.tick(state, now=now, cfg=cfg)
                rt.metrics.engine_latency.labels("tick").observe(time.perf_counter() - started)
                if not events:
                    continue
                await produce_alerts(topics, rt, events)
                vehicles[key] = codec.dump_state(new)
                rt.mark_live(p, key, new.alert is not None)


def is_ready(app: faust.App, rt: Runtime) -> bool:
    """Table recovery finished and not rebalancing (/health also wants ``rt.assigned_once``)."""
    try:
        recovered = app.tables.recovery.completed.is_set()
    except Exception:
        return False
    return bool(recovered and not app.rebalancing)
