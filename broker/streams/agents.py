"""Faust agents and the tick timer: the driver loop (``broker.drive``) on Kafka. No rules here.

The worker runs one :class:`~broker.drive.Driver` over its write-behind state cache, so the
agent, the replay and the simulator run the same decode / step / tick code; the tick goes
partition by partition, each with its own clock. A bug in the engine on a message, or on a
unit's tick, goes through the worker's one failure policy (``broker.failure``): skipped with a
record in ``avl.dlq`` (reason ``engine_error`` / ``tick_error``, original bytes), or the worker
stops.

Order of effects, chosen so a ``kill -9`` at any point loses no alert: the agent processes each
message against decoded states in memory (``broker.streams.states``), hands its alert events to
the producer at once, and parks the message un-acked. A flush (every couple of thousand messages
or a quarter second, and on every tick) awaits those alerts, *then* writes each changed
vehicle's state to the changelogged table once and awaits it, and only *then* acks the messages;
Faust commits acked offsets only. A crash before the acks makes the restarted worker process
the messages again from the states of the last flush: the deterministic engine emits the same
events with the same ids and versions, so a consumer sees at most a duplicate of
(alert_id, version), never a lost alert or a second id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import faust

from broker import codec
from broker.drive import POSITIONS, ROUTES, Driver
from broker.failure import Failure, FailurePolicy, StopWork
from broker.model import AlertEvent
from broker.streams.runtime import Runtime
from broker.streams.states import FlushResult, VehicleStates
from broker.streams.tables import Tables
from broker.streams.topics import Topics

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

log = logging.getLogger(__name__)

def dlq_headers(source_topic: str, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """Headers of a DLQ record: why it was refused and where it came from."""
    return [
        ("reason", reason.encode()),
        ("detail", detail[:500].encode()),
        ("source_topic", source_topic.encode()),
    ]


def send_alerts(topics: Topics, rt: Runtime, events: list[AlertEvent]) -> list[Awaitable[Any]]:
    """Hand alert events (keyed by alert id) to the producer now; the futures resolve once
    Kafka has them. ``send_soon`` queues in order on one buffer, so per-key order is kept."""
    pending: list[Awaitable[Any]] = []
    for ev in events:
        pending.append(
            topics.alerts.send_soon(key=ev.alert_id.encode(), value=codec.encode(ev))
        )
        rt.metrics.alerts.labels(ev.action).inc()
    return pending


def register_agents(
    app: faust.App,
    topics: Topics,
    tables: Tables,
    rt: Runtime,
    *,
    roads: RoadNetwork | None = None,
) -> VehicleStates:
    """Attach the vehicle agent, the feed-table agent and the tick timer to ``app``."""
    cfg = rt.engine
    vehicles = tables.vehicles
    m = rt.metrics
    messages_in = {  # label children looked up once, not per message
        topics.names.positions: m.messages_in.labels(POSITIONS),
        topics.names.routes: m.messages_in.labels(ROUTES),
    }
    step_latency = m.engine_latency.labels("step")

    changelog = vehicles.changelog_topic.get_topic_name()

    async def write_state(key: bytes, raw: bytes) -> Awaitable[Any]:
        # what ``vehicles[key] = raw`` does, but straight to the producer, not through Faust's
        # send buffer (where hundreds of state writes queued ahead of the next alerts), and
        # keeping the future so the flush can await it. partition=None: the producer's murmur2
        # partitioner, as ``use_partitioner=True`` gives (the input partition of the vehicle).
        vehicles.data[key] = raw
        m.state_writes.inc()
        return await app.producer.send(changelog, key, raw, None, None, None)

    states = VehicleStates(
        read=lambda key: vehicles.get(key),
        write=write_state,
        # a new epoch at each rebalance start (count, set first) and assignment (generation)
        epoch=lambda: (app.rebalancing_count, app.consumer_generation_id),
        paused=lambda: bool(app.rebalancing),
        max_pending=rt.settings.flush_max_messages,
        max_age_s=rt.settings.flush_interval_s,
        on_drop=rt.forget_progress,
    )

    def dead_letter(key: Any, raw: bytes, source: str, reason: str, detail: str) -> None:
        """A record in ``avl.dlq``: the original bytes, why, and where they came from. The next
        flush awaits it before acking the message it stands for."""
        m.rejected.labels(reason).inc()
        # the topic is created at start (cli.ensure_topics, declare_outputs); no agent reads it
        states.sent(topics.dlq.send_soon(
            key=key, value=raw, headers=dlq_headers(source, reason, detail)
        ))

    def failed_work(failure: Failure) -> None:
        # an engine failure's source is the input topic; a tick's has none (the raw bytes are
        # the unit's state)
        source = settings_prefix + failure.source if failure.source else "tick"
        dead_letter(failure.key.encode(), failure.raw, source, failure.reason, failure.error)

    settings_prefix = rt.settings.topic_prefix
    failures = FailurePolicy(
        dead_letter=failed_work,
        count=lambda site, decision: m.failures.labels(site, decision).inc(),
        outages=rt.outages,
    )
    driver: Driver[bytes] = Driver(cfg, roads=roads, store=states, key=str.encode,
                                   failures=failures)
    rt.driver = driver

    def handle(event: faust.EventT[bytes]) -> None:
        """Process one message against the cached states (synchronous: nothing interleaves)."""
        message = event.message
        topic, partition = message.topic, message.partition
        messages_in[topic].inc()
        received_at = rt.clocks.now(partition, rt.wall(), caught_up=caught_up(partition))
        raw = event.value if isinstance(event.value, bytes) else b""
        started = time.perf_counter()
        # the topic as the driver knows it (without this worker's prefix)
        handled = driver.handle(
            ROUTES if topic == topics.names.routes else POSITIONS, raw, received_at=received_at
        )
        if handled.rejection is not None:
            rej = handled.rejection
            dead_letter(event.key, raw, topic, rej.reason, rej.detail)
        elif not handled.failed:
            step_latency.observe(time.perf_counter() - started)
        msg = handled.msg
        if msg is not None and rt.partition_of(msg.vehicle_id.encode()) != partition:
            m.misrouted.inc()
        for fut in send_alerts(topics, rt, handled.events):
            states.sent(fut)
        ts = handled.msg.ts if handled.msg is not None and not handled.failed else None
        rt.processed(topic, partition, message.offset, ts)

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

    def flushed(result: FlushResult) -> None:
        outcome = "dropped" if result.dropped else "deferred" if result.deferred else "ok"
        m.state_flushes.labels(outcome).inc()
        if result.states_written:
            m.loop_work.labels("flush").observe(result.encode_s)

    async def flush_failed(err: BaseException) -> None:
        """A flush that raised lost its snapshot from memory (nothing of it was acked): the
        failure policy stops the worker, and the restarted one processes those messages again."""
        try:
            failures.check("flush", err if isinstance(err, Exception) else RuntimeError(err),
                           key="state flush")
        except StopWork as stop:
            await rt.stop_worker(app, stop)

    async def flush_now() -> bool:
        """Flush and wait; False once the worker is stopping."""
        try:
            flushed(await states.flush())
        except Exception as err:
            await flush_failed(err)
            return False
        return True

    def flush_done(task: asyncio.Task[FlushResult]) -> None:
        if task.cancelled():
            return
        if (err := task.exception()) is not None:
            stopping = asyncio.get_running_loop().create_task(flush_failed(err))
            rt.background.add(stopping)
            stopping.add_done_callback(rt.background.discard)
            return
        flushed(task.result())

    backlog_limit = 4 * rt.settings.flush_max_messages

    @app.task
    async def declare_outputs() -> None:
        """Create the output topics at start, so consumers can subscribe before any traffic."""
        await topics.alerts.maybe_declare()
        await topics.dlq.maybe_declare()
        await topics.audit.maybe_declare()
        await topics.delivery_dlq.maybe_declare()

    @app.agent(topics.inputs, name="process-vehicles")
    async def process_vehicles(stream: faust.StreamT[bytes]) -> None:
        # noack: a message is acked by the flush that made its effects durable
        # (Faust itself skips messages of an older generation or while flow is suspended)
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # untyped in Faust
            states.begin()
            try:
                handle(event)
            except StopWork as stop:  # not acked: the restarted worker gets the message again
                await rt.stop_worker(app, stop)
                return
            states.processed(event.ack)
            if states.due():
                if (task := states.flush_soon()) is not None:
                    task.add_done_callback(flush_done)
                elif states.pending >= backlog_limit and not await flush_now():
                    return  # the flush fell behind and failed: stopping

    @app.agent(topics.alerts, name="feed-table")
    async def feed_table(stream: faust.StreamT[bytes]) -> None:
        """Keep the latest event of every alert in the global table the feeds read."""
        async for alert_id, raw in stream.items():
            tables.active_alerts[alert_id] = raw

    def rebuild_index() -> None:
        """After a rebalance or restart: find the live alerts and seed partition clocks."""
        wall = rt.wall()
        driver.live.clear()
        for key in set(vehicles.keys()) | set(states.cached_keys()):
            state = states.get(key)
            if state is None:
                continue
            p = rt.partition_of(key)
            if p not in rt.owned:
                continue
            driver.mark(key, state)
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
                m.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    @app.timer(interval=rt.settings.tick_interval_s, name="tick")
    async def tick() -> None:
        """Tick the engine for units with a live alert, so silent units get their stale cancel;
        then flush, so a quiet stream's last messages are acked too."""
        if not is_ready(app, rt):
            return
        states.begin()
        update_assignment()
        if rt.index_built_for != rt.owned:
            rebuild_index()
        update_lag()
        wall = rt.wall()
        sweep_started = time.perf_counter()
        for p in sorted(rt.owned):
            now = rt.clocks.now(p, wall, caught_up=caught_up(p))
            if now is None:
                continue
            started = time.perf_counter()
            try:
                events = driver.tick(now, rt.live_in(p))
            except StopWork as stop:
                await rt.stop_worker(app, stop)
                return
            m.engine_latency.labels("tick").observe(time.perf_counter() - started)
            for fut in send_alerts(topics, rt, events):
                states.sent(fut)
        m.loop_work.labels("tick").observe(time.perf_counter() - sweep_started)
        await flush_now()

    app.broker_states = states  # type: ignore[attr-defined]  # for tests
    return states


def is_ready(app: faust.App, rt: Runtime) -> bool:
    """Table recovery finished and not rebalancing (/health also wants ``rt.assigned_once``)."""
    try:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
    except Exception:
        return False
    return bool(recovered and not app.rebalancing)
