"""Faust agents and the tick timer: the driver loop (``broker.drive``) on Kafka. No rules here.

The worker runs one :class:`~broker.drive.Driver` over its write-behind state cache, so the
agent, the replay and the simulator run the same decode / step / tick code; the tick goes
partition by partition, each with its own clock. A bug in the engine on a message, or on a
unit's tick, goes through the worker's one failure policy (``broker.failure``): skipped with a
record in ``avl.dlq`` (reason ``decode_error`` / ``engine_error`` / ``tick_error``,
original bytes), or the worker
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
from collections.abc import Awaitable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import faust

from adapters.config import PartnersConfig
from broker import codec
from broker.agencies import Agencies
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, Driver
from broker.failure import Failure, StopWork
from broker.model import AlertEvent, Position, VehicleState
from broker.streams.dead_letters import DeadLetterBatches, dlq_headers, reason_of
from broker.streams.feed_table import register_feed_table
from broker.streams.held_updates import HeldUpdates, is_late
from broker.streams.input_lag import InputLag
from broker.streams.input_sequence import InputSequence
from broker.streams.late_units import LateUnits
from broker.streams.log_repeats import warn_misrouted
from broker.streams.readiness import is_ready, leased
from broker.streams.rekey import Rekeying, was_rekeyed
from broker.streams.runtime import Runtime
from broker.streams.states import FlushResult, VehicleStates, is_idle, newest_fixes
from broker.streams.status_records import KIND_HEADER, is_status
from broker.streams.table_writes import TableWrites
from broker.streams.tables import Tables
from broker.streams.topics import Topics
from broker.streams.turns import turns_after_message

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

log = logging.getLogger(__name__)

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


def vehicle_dead_letters(app: faust.App, topics: Topics, rt: Runtime) -> DeadLetterBatches:
    """The vehicle agent's ``avl.dlq`` batches, each letter counted in
    ``broker_rejected_total`` by its reason once Kafka has it (not when gathered: a rebalance
    drops gathered letters and their messages come again)."""
    m = rt.metrics
    return DeadLetterBatches(
        topics.dlq.get_topic_name(),
        # the aiokafka producer under Faust's (started after the agent is built: looked up late)
        lambda: app.producer._ensure_producer(),  # type: ignore[attr-defined]
        max_bytes=rt.settings.dead_letter_bytes,
        taken=lambda letter: m.rejected.labels(reason_of(letter.headers)).inc(),
    )


class VehicleAgent:
    """The vehicle side of one worker: the driver loop over the state cache, the partition
    clocks, flushes, and the tick. Faust calls in through ``register_agents``."""

    def __init__(
        self, app: faust.App, topics: Topics, tables: Tables, rt: Runtime,
        roads: RoadNetwork | None, agencies: Agencies | None = None,
    ) -> None:
        self.app, self.topics, self.tables, self.rt = app, topics, tables, rt
        m = self.metrics = rt.metrics
        self.messages_in = {  # label children looked up once, not per message
            topics.names.positions: m.messages_in.labels(POSITIONS),
            topics.names.routes: m.messages_in.labels(ROUTES),
        }
        self.step_latency = m.engine_latency.labels("step")
        vehicles = tables.vehicles
        self.changelog = vehicles.changelog_topic.get_topic_name()
        self.held = HeldUpdates(lambda events: send_alerts(topics, rt, events),
                                on_coalesced=m.updates_coalesced.inc)
        self.dead_letters = vehicle_dead_letters(app, topics, rt)
        # input not keyed by its vehicle id: appended again under it (``rekey``)
        self.rekeying = Rekeying(
            (topics.names.positions, topics.names.routes),
            lambda: app.producer._ensure_producer(),  # type: ignore[attr-defined]
            max_bytes=rt.settings.dead_letter_bytes, keep=(KIND_HEADER,),
        )
        self.states = VehicleStates(
            read=lambda key: vehicles.get(key),
            write=self.write_state,
            # a new epoch at each rebalance start (count, set first) and assignment (generation)
            epoch=lambda: (app.rebalancing_count, app.consumer_generation_id),
            paused=lambda: bool(app.rebalancing),
            # the lease lapsed (a stall past the session: the partitions may be another
            # worker's already): no flush starts
            leased=rt.membership.held,
            # the failure policy stopped the worker, Faust crashed (an exception out of a
            # timer, a service) or is shutting down (its timers and agents cancelled, a flush
            # among them maybe): nothing more written or acked (``states``); the next owner
            # takes the un-acked messages again
            stopping=lambda: rt.stopping(app),
            max_pending=rt.settings.flush_max_messages,
            max_age_s=rt.settings.flush_interval_s,
            on_drop=rt.forget_progress,
            # the held alerts first: produced in the step that takes them, so no newer event
            # of their alerts can get ahead of them on the producer
            outboxes=(self.held, self.dead_letters, *self.rekeying.outboxes.values()),
        )
        self.failures = rt.failure_policy(dead_letter=self.failed_work)
        self.driver: Driver[bytes] = Driver(
            rt.engine, roads=roads, store=self.states, key=str.encode, failures=self.failures,
            agencies=agencies, noted=m.unknown_reading,
            # a message on another partition than its vehicle id's is refused (misrouted)
            partition_of=lambda vehicle_id: rt.partition_of(vehicle_id.encode()),
        )
        rt.driver = self.driver
        self.sequence = InputSequence(app, rt, self.failures)
        self.backlog_limit = 4 * rt.settings.flush_max_messages
        self.alerts_queued = False  # an alert was handed to the producer since the last turn
        self._idle_swept = rt.wall()
        self.lag = InputLag(app, topics.names, rt)  # the input partitions' backlog
        self.caught_up = self.lag.caught_up
        self.late_units = LateUnits()  # units whose fixes come late: logged once each

    # ---- state and dead letters --------------------------------------------------------------

    async def write_state(self, key: bytes, raw: bytes | None) -> Awaitable[Any]:
        """What ``vehicles[key] = raw`` (or ``del``, for None) does, but straight to the
        producer, not through Faust's send buffer (where hundreds of state writes queued ahead
        of the next alerts), keeping the future so the flush can await it. partition=None: the
        producer's murmur2 partitioner, as ``use_partitioner=True`` gives (the vehicle's input
        partition); a None value is the changelog's tombstone."""
        if raw is None:
            self.tables.vehicles.data.pop(key, None)
        else:
            self.tables.vehicles.data[key] = raw
        self.metrics.state_writes.inc()
        return await self.app.producer.send(self.changelog, key, raw, None, None, None)

    def dead_letter(self, key: Any, raw: bytes, source: str, reason: str, detail: str) -> None:
        """A record in ``avl.dlq``: the original bytes (the first ones of a message too large
        for it: ``dead_letters.fitted``), why, and where they came from. The next flush
        produces it (in one batch with the others) and awaits it before acking the message it
        stands for; counted once Kafka has it (``broker_rejected_total``)."""
        # the topic is created at start (cli.ensure_topics, declare_outputs); no agent reads it
        self.dead_letters.add(key, raw, dlq_headers(source, reason, detail))

    def failed_work(self, failure: Failure) -> None:
        """A skipped failure's record: an engine failure's source is the input topic; a tick's
        has none (its raw bytes are the unit's state)."""
        prefix = self.rt.settings.topic_prefix
        source = prefix + failure.source if failure.source else "tick"
        key = failure.key.encode(errors="surrogateescape")  # a decode failure's: any bytes
        self.dead_letter(key, failure.raw, source, failure.reason, failure.error)

    # ---- messages ----------------------------------------------------------------------------

    def handle(self, event: faust.EventT[bytes]) -> None:
        """Process one message against the cached states (synchronous: nothing interleaves)."""
        rt, message = self.rt, event.message
        topic, partition = message.topic, message.partition
        self.messages_in[topic].inc()
        received_at = rt.received_at(message.timestamp)
        raw = event.value if isinstance(event.value, bytes) else b""
        started = time.perf_counter()
        # the topic as the driver knows it (without this worker's prefix); a status event
        # appended to the unit's log by the forwarder says so in a header
        source = self.topics.names.source_of(topic)
        if message.headers and source == POSITIONS and is_status(message.headers):
            source = CAD_STATUS
        # on a partition that is not its vehicle id's: refused (misrouted), not processed
        # against a state another worker owns; a fix is late against its partition's newest
        # event time (the tick's "now" while a backlog is read, and never past it): the
        # driver's own clock is every partition's; for a record re-keyed behind a backlog no
        # later than the time its producer first sent it (rekey: its timestamp is that one).
        # Not for others: a producer stamping each record with its fix's own time would make
        # no fix ever late, a device clock behind included
        clock = rt.clocks.event_time(partition)
        if clock is not None and received_at < clock and was_rekeyed(message.headers):
            clock = received_at
        # the key as it came, any bytes (surrogateescape: ``failed_work`` gives them back)
        key = event.key.decode(errors="surrogateescape") if isinstance(event.key, bytes) else ""
        handled = self.driver.handle(source, raw, received_at=received_at, partition=partition,
                                     clock=clock, key=key)
        if handled.rejection is not None:
            rej = handled.rejection
            if rej.reason == "misrouted":
                self.metrics.misrouted.inc()
            if (rej.reason == "misrouted" and rej.vehicle_id is not None
                    and self.rekeying.take(topic, rej.vehicle_id, raw, message.headers,
                                           partition, received_at.timestamp())):
                warn_misrouted(rej.detail)  # taken on its unit's partition (rekey)
            else:  # where it came from: a status's is cad.status (forwarded to the unit's log)
                self.dead_letter(event.key, raw, rt.settings.topic_prefix + source, rej.reason,
                                 rej.detail)
            if rej.reason == "late":
                self.late_units.note(event.key, rej.detail)
        elif not handled.failed:
            self.step_latency.observe(time.perf_counter() - started)
            if self.late_units and isinstance(handled.msg, Position):
                self.late_units.taken(event.key)
        msg = handled.msg
        self.send(handled.events, late=is_late(received_at, rt.utc()))
        ts = msg.ts if msg is not None and not handled.failed else None
        rt.processed(topic, partition, message.offset, ts, received_at)
        if source == ROUTES and msg is not None and not handled.failed:
            self.time_dispatch(partition, msg.vehicle_id.encode())

    def send(self, events: list[AlertEvent], late: bool | None = None) -> None:
        """Alert events to the producer (``broker.streams.held_updates``: a late message's
        updates held, a timely one releasing them; None, the tick: neither); the next flush
        awaits them."""
        for fut in send_alerts(self.topics, self.rt, self.held.route(events, late)):
            self.states.sent(fut)
            self.alerts_queued = True

    async def run(self, stream: faust.StreamT[bytes]) -> None:
        """The agent: each message through the driver, parked un-acked until a flush."""
        states, skipped = self.states, self.rt.skipped
        # noack: a message is acked by the flush that made its effects durable
        # (Faust itself skips messages of an older generation or while flow is suspended)
        since_yield = 0
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # untyped in Faust
            states.begin()
            if not await leased(self.app, self.rt):
                continue  # of the assignment a rebalance ended: comes again if still ours
            message = event.message
            try:
                if skipped(message.topic, message.partition, message.offset) and not (
                    await self.sequence.check(message)
                ):
                    continue  # not acked: it comes again after the records before it
                self.handle(event)
            except StopWork as stop:  # not acked: the restarted worker gets the message again
                await self.rt.stop_worker(self.app, stop)
                return
            except Exception as err:  # a bug of this loop's own (the driver's had the policy):
                # a stop, not out of run() (Faust restarted the agent, the message un-acked:
                # the partition's commits frozen behind it, and nothing stopping)
                await self.rt.stop_worker(self.app, self.unsettled(err, event))
                return
            states.processed(event.ack)
            if states.due():
                if (task := states.flush_soon()) is not None:
                    task.add_done_callback(self.flush_done)
                elif states.pending >= self.backlog_limit and not await self.flush_now():
                    return  # the flush fell behind and failed: stopping
            since_yield = await self.give_turns(since_yield + 1)

    def unsettled(self, err: Exception, event: faust.EventT[bytes]) -> StopWork:
        """The failure policy's stop for a message the loop failed on outside the driver (site
        ``settle``, which always stops; in ``mode="raise"`` the error itself propagates)."""
        message = event.message
        key = event.key.decode(errors="replace") if isinstance(event.key, bytes) else ""
        raw = event.value if isinstance(event.value, bytes) else b""
        try:
            failure = self.failures.check("settle", err, key=key, raw=raw, source=message.topic)
        except StopWork as stop:
            return stop
        return StopWork(failure)  # not reached: the site always stops

    async def give_turns(self, since_yield: int) -> int:
        """Let the other tasks run after a message, as :func:`turns_after_message` says (the
        alert just handed to the producer first); returns the messages since the last turn."""
        turns = turns_after_message(self.alerts_queued, since_yield)
        if not turns:
            return since_yield
        self.alerts_queued = False
        for _ in range(turns):
            await asyncio.sleep(0)
        return 0

    # ---- held dispatch alerts ----------------------------------------------------------------

    def time_dispatch(self, partition: int, key: bytes) -> None:
        """A route that left its unit's dispatch alert held (``dispatch_hold_s``) gets a timer
        for the hold's end: the alert goes out then, not with the next tick, which came up to
        ``tick_interval_s`` later (p50 ~0.5 s, p99 ~0.94 s through Kafka, docs/benchmarks.md)."""
        state = self.states.get(key)
        now = self.rt.clocks.now(partition, self.rt.wall(), caught_up=True)
        if state is None or state.dispatch_due is None or now is None:
            return
        wait_s = max(0.0, (state.dispatch_due - now).total_seconds()) + DUE_SLACK_S
        asyncio.get_running_loop().call_later(wait_s, self._dispatch_due, partition, key)

    def _dispatch_due(self, partition: int, key: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self.tick_due(partition, key))
        self.rt.background.add(task)
        task.add_done_callback(self.rt.background.discard)

    async def tick_due(self, partition: int, key: bytes) -> None:
        """The tick of one unit whose dispatch alert is still held, at its partition's time (as
        the tick does); nothing when the hold has ended meanwhile (its own fix came, or a
        rebalance took the partition: the regular tick, or the new owner's, has it then).
        In a task of its own, which nothing reads: an exception out of it (a bug past the
        driver's policy) stops the worker (site ``settle``, as one of the message loop does),
        or it was lost, and the next flush wrote the states the tick had put before it raised."""
        rt = self.rt
        try:
            if not self.begin_tick() or partition not in rt.owned:
                return
            state = self.states.get(key)
            if state is None or state.dispatch_due is None:
                return
            now = rt.clocks.now(partition, rt.wall(), caught_up=self.caught_up(partition))
            if now is None or now < state.dispatch_due:
                return  # behind a backlog: the partition's time has not come to it yet
            if (events := await self.tick_or_stop(now, [key])) is not None:
                self.send(events)
        except Exception as err:
            try:
                self.failures.check("settle", err, key=key.decode(errors="replace"))
            except StopWork as stop:
                await rt.stop_worker(self.app, stop)

    # ---- flushes -------------------------------------------------------------------------------

    def flushed(self, result: FlushResult) -> None:
        """Count a finished flush."""
        outcome = "dropped" if result.dropped else "deferred" if result.deferred else "ok"
        self.metrics.state_flushes.labels(outcome).inc()
        if result.states_written:
            self.metrics.loop_work.labels("flush").observe(result.encode_s)

    async def flush_failed(self, err: BaseException) -> None:
        """A flush that raised lost its snapshot from memory (nothing of it was acked): the
        failure policy stops the worker, and the restarted one processes those messages again."""
        try:
            error = err if isinstance(err, Exception) else RuntimeError(err)
            self.failures.check("flush", error, key="state flush")
        except StopWork as stop:
            await self.rt.stop_worker(self.app, stop)

    async def flush_now(self) -> bool:
        """Flush and wait; False once the worker is stopping."""
        try:
            self.flushed(await self.states.flush())
        except Exception as err:
            await self.flush_failed(err)
            return False
        return True

    def flush_done(self, task: asyncio.Task[FlushResult]) -> None:
        """The end of a background flush: counted, or the worker stops."""
        if task.cancelled():
            return
        if (err := task.exception()) is not None:
            stopping = asyncio.get_running_loop().create_task(self.flush_failed(err))
            self.rt.background.add(stopping)
            stopping.add_done_callback(self.rt.background.discard)
            return
        self.flushed(task.result())

    # ---- assignment and the tick ---------------------------------------------------------------

    def rebuild_index(self) -> None:
        """After a rebalance or restart: find the live alerts and seed partition clocks."""
        rt, states = self.rt, self.states
        owned: dict[bytes, VehicleState] = {}
        self.driver.live.clear()
        self.driver.pending.clear()
        for key in set(self.tables.vehicles.keys()) | set(states.cached_keys()):
            state = states.get(key)
            if state is not None and rt.partition_of(key) in rt.owned:
                owned[key] = state
                self.driver.mark(key, state)
        # A quiet partition after a restart still needs a clock: start from the newest fix its
        # states remember (never one dated beyond the wall clock), then let the wall clock run.
        wall = rt.wall()
        newest = newest_fixes(owned, rt.partition_of, rt.trusted_until(), upto=rt.utc())
        for p, ts in newest.items():
            if rt.clocks.event_time(p) is None:
                rt.clocks.observe(p, ts, wall)
        rt.index_built_for = rt.owned

    def update_assignment(self) -> None:
        """Take in the consumer's assignment: a partition counts once every input is assigned."""
        rt, names = self.rt, self.topics.names
        assigned = self.app.consumer.assignment()
        per_topic = [{tp.partition for tp in assigned if tp.topic == t} for t in names.inputs]
        owned = set.intersection(*per_topic)
        rt.partial = set.union(*per_topic) - owned
        if frozenset(owned) != rt.owned or not rt.assigned_once:
            rt.set_owned(owned)

    def forget_idle(self) -> int:
        """Drop vehicles with no live alert and no message for ``vehicle_idle_expiry_s`` from
        the table (at most once a minute): state stays bounded by the fleet that is on the road,
        not by every id a producer ever sent. Returns how many went."""
        rt, states = self.rt, self.states
        wall = rt.wall()
        if wall - self._idle_swept < IDLE_SWEEP_INTERVAL_S:
            return 0
        self._idle_swept = wall
        expiry = timedelta(seconds=rt.settings.vehicle_idle_expiry_s)
        nows = {p: rt.clocks.now(p, wall, caught_up=self.caught_up(p)) for p in rt.owned}
        gone = 0
        for key in set(self.tables.vehicles.keys()) | set(states.cached_keys()):
            now = nows.get(rt.partition_of(key))
            if now is None:
                continue
            state = states.get(key)
            if state is not None and is_idle(state, now, expiry):
                states.forget(key)
                self.driver.quarantined.discard(key)
                gone += 1
        self.metrics.vehicles_forgotten.inc(gone)
        return gone

    def begin_tick(self) -> bool:
        """Whether a tick (the regular one, or a held alert's) may run now: tables recovered,
        not rebalancing. If so, a new epoch of the state cache begins and the consumer's
        assignment is taken in."""
        if not is_ready(self.app, self.rt):
            return False
        self.states.begin()
        self.update_assignment()
        return True

    async def tick_or_stop(self, now: datetime, live: Iterable[bytes],
                           pending: Iterable[bytes] = ()) -> list[AlertEvent] | None:
        """The events of ticking units at ``now`` (``pending``: their status changes due, then
        ``live``: their alerts); None when a failure the policy does not skip (StopWork) has
        stopped the worker instead."""
        try:
            return self.driver.pass_time(now, live, pending)
        except StopWork as stop:
            await self.rt.stop_worker(self.app, stop)
            return None

    async def tick(self) -> None:
        """Tick the engine for units with a live alert, so silent units get their stale cancel;
        then flush, so a quiet stream's last messages are acked too."""
        rt = self.rt
        if not self.begin_tick():
            return
        if rt.index_built_for != rt.owned:
            self.rebuild_index()
        if rt.rewinds:
            await self.sequence.rewind_overdue()
        self.lag.update()
        self.forget_idle()
        wall = rt.wall()
        sweep_started = time.perf_counter()
        for p in sorted(rt.owned):
            now = rt.clocks.now(p, wall, caught_up=self.caught_up(p))
            if now is None:
                continue
            started = time.perf_counter()
            events = await self.tick_or_stop(now, rt.live_in(p), rt.pending_in(p))
            if events is None:
                return
            self.metrics.engine_latency.labels("tick").observe(time.perf_counter() - started)
            self.send(events)
        self.metrics.loop_work.labels("tick").observe(time.perf_counter() - sweep_started)
        self.metrics.units_quarantined.set(len(self.driver.quarantined))
        await self.flush_now()


def register_agents(
    app: faust.App,
    topics: Topics,
    tables: Tables,
    rt: Runtime,
    *,
    roads: RoadNetwork | None = None,
    agencies: Agencies | None = None,
    partners: PartnersConfig | None = None,
    feed_writes: TableWrites,
) -> VehicleStates:
    """Attach the vehicle agent, the feed-table agent (``broker.streams.feed_table``, with
    ``partners`` and ``feed_writes``) and the tick timer to ``app``."""
    vehicle_agent = VehicleAgent(app, topics, tables, rt, roads, agencies)

    @app.task
    async def declare_outputs() -> None:
        """Create the output topics at start, so consumers can subscribe before any traffic."""
        await topics.alerts.maybe_declare()
        await topics.dlq.maybe_declare()
        await topics.audit.maybe_declare()
        await topics.delivery_dlq.maybe_declare()

    @app.agent(topics.inputs, name="process-vehicles")
    async def process_vehicles(stream: faust.StreamT[bytes]) -> None:
        await vehicle_agent.run(stream)

    register_feed_table(app, topics, rt, feed_writes, partners)

    @app.timer(interval=rt.settings.tick_interval_s, name="tick")
    async def tick() -> None:
        await vehicle_agent.tick()

    app.broker_states = vehicle_agent.states  # type: ignore[attr-defined]  # for tests
    return vehicle_agent.states


DUE_SLACK_S = 0.005  # a held dispatch alert's timer fires this long after its due time
IDLE_SWEEP_INTERVAL_S = 60.0  # how often the tick looks for idle vehicles to forget
