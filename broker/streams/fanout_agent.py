"""Faust wiring of partner delivery: the ``fan-out`` agent on ``alerts`` and the worker's hub.

The rules live in ``adapters.fanout`` (pure) and ``adapters.delivery``; the bookkeeping of what a
restart needs in ``adapters.dispatch``. Here: one pooled httpx client and one
``DeliveryHub`` per worker (created with the app, closed at shutdown), audit records to the
``audit`` topic (+ metrics, + ``BROKER_AUDIT_FILE``), dead letters to ``delivery.dlq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import msgspec
from faust.types.tuples import TP, ConsumerMessage

from adapters.audit import AuditSink, JsonlAudit, ProducerAudit, TeeAudit, sync
from adapters.config import PartnersConfig
from adapters.dead_letters import DeadLetter
from adapters.dispatch import Dispatcher, dead_letter_headers, dead_letter_value
from adapters.fanout import PartnerSet
from adapters.http_pool import make_client
from adapters.hub import DeliveryHub
from broker import codec
from broker.failure import FirstFailure, StopWork
from broker.streams.audit_producer import AuditProducer
from broker.streams.dead_letters import dlq_headers
from broker.streams.held_updates import is_late
from broker.streams.metrics import MetricsAudit
from broker.streams.ordered_acks import OrderedAcks
from broker.streams.readiness import is_ready, leased
from broker.streams.runtime import Runtime, partition_for
from broker.streams.table_writes import worker_table_writes
from broker.streams.tables import Tables
from broker.streams.topics import Topics

log = logging.getLogger(__name__)
SHUTDOWN_DRAIN_S = 3.0  # at shutdown, give queued deliveries this long before cancelling them
PRUNE_INTERVAL_S = 60.0  # how often settled records of long-gone alerts leave the table
# While records wait behind the one in hand, new sends are held (their newer versions collapse
# the mailboxes), at most this long at a time: catching up never delays a delivery by more.
CATCH_UP_HOLD_S = 0.5
# how often the audit file (BROKER_AUDIT_FILE) is fsynced: a host crash loses at most the
# records of about this long from it (the audit topic has them); at shutdown too
AUDIT_FILE_SYNC_S = 1.0
_status_encoder = msgspec.json.Encoder()


def worker_audit(app: faust.App, topics: Topics, rt: Runtime,
                 audit_file: Path | None) -> tuple[AuditSink, AuditProducer]:
    """Audit sink of the worker: Kafka ``audit`` topic, metrics, and optionally a file.

    Each record's produce future is kept (``ProducerAudit``): delivery awaits them before a
    request goes and before a delivery settles (so before its alert is acked), and a record
    Kafka did not take stops the worker (``broker.failure`` site ``audit``), as a dead letter
    not written does. The records go to the producer directly, in order, not through Faust's
    send queue (``broker.streams.audit_producer``), which is returned too: the shutdown hook
    flushes it after the last outcome records."""
    produce = AuditProducer(lambda: app.producer.send, topics.names.audit)
    sinks: list[AuditSink] = [ProducerAudit(produce), MetricsAudit(rt.metrics)]
    if audit_file is not None:
        sinks.append(JsonlAudit(audit_file))
    return TeeAudit(*sinks), produce


class FanOutAgent:
    """The partner side of one worker: the dispatcher over the ``alerts`` partitions it owns,
    the delivery hub, and what a bug or an outage in fan-out does (``broker.failure``)."""

    def __init__(
        self, app: faust.App, topics: Topics, tables: Tables, rt: Runtime,
        partners: PartnersConfig, audit: AuditSink,
    ) -> None:
        self.app, self.topics, self.tables, self.rt = app, topics, tables, rt
        self.alerts_topic = topics.names.alerts
        partner_set = PartnerSet.from_config(partners)
        self.client = make_client()
        self.failures = rt.failure_policy()
        # the ``delivered`` records: an alert is acked once Kafka has those of its deliveries
        # (one Kafka did not take stops the worker: ``worker_table_writes``)
        self.delivered = worker_table_writes(app, rt, tables.delivered, self.failures)
        self.hub = DeliveryHub(
            partner_set, self.client, audit, self.dead_letter, failures=self.failures,
            on_stop=self.stop, disabled=self.is_disabled, on_disable=self.disable,
            may_send=rt.membership.held,
        )
        self.dispatcher = Dispatcher(
            partners=partner_set,
            hub=self.hub,
            metrics=rt.metrics,
            settled_get=lambda alert_id: tables.delivered.get(alert_id.encode()),
            settled_put=self.settled_put,
            owns=self.owns,
            max_age_s=rt.settings.delivery_max_age_s,
            after_written=lambda alert_id, ack: self.delivered.after(alert_id.encode(), ack),
        )
        self._behind: set[int] = set()  # alerts partitions with records waiting (catch_up)
        # each record is acked once its deliveries settle, out of order; Faust gets the acks
        # in offset order, so its commit never passes a record still being delivered
        self.acks = message_acks(app, self.alerts_topic)
        self._hold_timer: asyncio.TimerHandle | None = None

    async def dead_letter(self, letter: DeadLetter) -> None:
        """A delivery that could not be made, to ``delivery.dlq`` with its reason; returns
        once Kafka has it (the delivery then settles, and its alert may be acked)."""
        sent = await self.topics.delivery_dlq.send(
            key=letter.partner.encode(),
            value=dead_letter_value(letter),
            headers=dead_letter_headers(letter),
            force=True,
        )
        await sent  # Topic.send only queues the record: its future says Kafka has it

    def is_disabled(self, partner_id: str) -> bool:
        """Whether the partner answered 410 Gone before (on any worker, before any restart)."""
        return self.tables.partner_status.get(partner_id.encode()) is not None

    def disable(self, partner_id: str, reason: str) -> None:
        """Keep a 410 Gone: the global ``partner-status`` table (changelogged)."""
        record = {"disabled_at": self.rt.utc().isoformat(), "reason": reason}
        self.tables.partner_status[partner_id.encode()] = _status_encoder.encode(record)
        self.rt.metrics.partner_disabled.labels(partner_id).set(1)

    async def stop(self, stop: StopWork) -> None:
        """The failure policy stopped delivery: stop the worker, nothing acked."""
        await self.rt.stop_worker(self.app, stop)

    def partition_of(self, alert_id: str) -> int:
        """The ``alerts`` partition of an alert (murmur2 of its id)."""
        return partition_for(alert_id.encode(), self.rt.settings.partitions)

    def owns(self, alert_id: str) -> bool:
        """Whether this worker owns the alert's ``alerts`` partition now."""
        try:
            assigned = self.app.consumer.assignment()
        except Exception:  # consumer not started
            return False
        mine = {tp.partition for tp in assigned if tp.topic == self.alerts_topic}
        return self.partition_of(alert_id) in mine

    def settled_put(self, alert_id: str, value: bytes | None) -> None:
        """Write (or with None, delete) the alert's settled deliveries in the table; the alert
        is acked once Kafka has the record (``Dispatcher.after_written``)."""
        key = alert_id.encode()
        if value is not None or key in self.delivered:
            self.delivered.put(key, value)

    async def run(self, stream: faust.StreamT[bytes]) -> None:
        """Fan each alert out to the push partners; ack once its deliveries have settled."""
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # untyped in Faust
            if not await leased(self.app, self.rt):
                continue  # of the assignment a rebalance ended: comes again if still ours
            message = event.message
            self.catch_up(message)
            settled = self.acks.track(message.partition, message.offset, message)
            try:
                self.dispatcher.handle(codec.decode_alert(event.value), settled)
            except Exception as err:  # a bug, or an outage: the one failure policy decides
                if not await self.failed(event, err, settled):
                    return
            let_go(message)
            if not self._behind:
                self.end_hold()

    def catch_up(self, message: Any) -> None:
        """Hold new sends while newer ``alerts`` records already wait in this record's
        partition and it has waited in Kafka over ``LATE_S`` (after a restart, a rebalance or
        a Kafka outage): the versions they carry supersede what would go now. Held at most
        ``CATCH_UP_HOLD_S`` at a time. A fresh record is never held: in a burst of new alerts
        newer records wait behind almost every one, and holding them held every create."""
        tp = faust.types.TP(message.topic, message.partition)
        try:
            hw = self.app.consumer.highwater(tp)
        except Exception:  # consumer not started / partition not fetched yet
            hw = None
        behind = isinstance(hw, int) and message.offset + 1 < hw
        # the clocks only for a record with others behind it (fan-out's per-record path)
        if behind and is_late(self.rt.received_at(message.timestamp), self.rt.utc()):
            self._behind.add(message.partition)
            if not self.hub.holding:
                self.hub.hold()
                self._hold_timer = asyncio.get_running_loop().call_later(
                    CATCH_UP_HOLD_S, self.end_hold)
        else:
            self._behind.discard(message.partition)

    def end_hold(self) -> None:
        """Caught up (or held long enough): the mailboxes send their latest versions."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._behind.clear()
        self.hub.release()

    async def failed(
        self, event: faust.EventT[bytes], err: Exception, settled: Callable[[], None]
    ) -> bool:
        """Skip the alert into ``delivery.dlq`` (then ack it), or stop; False when stopping."""
        key = event.key.decode(errors="replace") if isinstance(event.key, bytes) else ""
        try:
            failure = self.failures.check(
                "fanout", err, key=key, raw=event.value, source=self.alerts_topic
            )
        except StopWork as stop:  # not acked: the restarted worker fans it out again
            await self.stop(stop)
            return False
        # parked in delivery.dlq with the alert's bytes, and only once Kafka has it acked
        try:
            sent = await self.topics.delivery_dlq.send(
                key=event.key, value=event.value, force=True,
                headers=dlq_headers(self.alerts_topic, failure.reason, failure.error),
            )
            await sent
        except asyncio.CancelledError:
            raise
        except Exception as dlq_err:  # not parked: a stop (site "settle"), never out of run()
            # (Faust would restart the agent, the record left unacked in ``acks``: the
            # partition's commit frozen behind it, and nothing stopping)
            try:
                self.failures.check("settle", dlq_err, key=key, raw=event.value,
                                    source=self.alerts_topic)
            except StopWork as stop:
                await self.stop(stop)
            return False
        settled()
        return True

    async def revoke(self, revoked: Any) -> None:
        """Partitions of ``alerts`` moved to another worker: drop their working state and stop
        every delivery of their alerts here *before* the new owner starts (awaited by Faust
        before it reassigns), so a version from here can never arrive after the new owner's
        newer one."""
        gone = {tp.partition for tp in revoked if tp.topic == self.alerts_topic}
        if gone:
            self.acks.forget(gone)
            self.dispatcher.forget(lambda aid: self.partition_of(aid) not in gone)
            await self.hub.revoke(lambda aid: self.partition_of(aid) in gone)

    def prune(self) -> int:
        """Delete ``delivered`` records of this worker's alerts that have outlived them."""
        table, now = self.tables.delivered, self.rt.utc()
        gone = [k for k, v in table.items()
                if self.owns(k.decode()) and self.dispatcher.forgettable(v, now, k.decode())]
        for key in gone:
            self.delivered.put(key, None)
        return len(gone)

    async def close(self) -> None:
        """At shutdown: give queued deliveries a moment, then stop (unsettled ones were not
        acked: a restarted worker sends them again). The partners' tasks stop even if draining
        raised, the pool's connections close even if stopping failed; the first failure is
        raised, a later one logged and noted on it (``FirstFailure``: in nested ``finally``
        blocks, the last one raised replaced the cause), unless the later one is a
        cancellation: then it is raised, the failure logged and noted on it."""
        failures = FirstFailure(logger=log)
        try:
            with contextlib.suppress(TimeoutError, StopWork):
                await asyncio.wait_for(self.hub.drain(), SHUTDOWN_DRAIN_S)
        except BaseException as err:  # a cancellation too: every step runs, as a finally's
            failures.keep(err, "draining the deliveries")
        try:
            await self.hub.stop()
        except BaseException as err:
            failures.keep(err, "stopping the partners' workers")
        try:
            await self.client.aclose()
        except BaseException as err:
            failures.keep(err, "closing the HTTP pool")
        failures.raise_first()


def message_acks(app: Any, topic: str) -> OrderedAcks[Any]:
    """The fan-out's ``OrderedAcks`` of ``topic``'s records: a record in hand is its Faust
    ``Message`` (without its bytes: :func:`let_go`), not its ``Event``, acked as ``Event.ack``
    acks it (faust/events.py: ``self.message.ack(self.app.consumer)``), so the ``feed-table``
    agent's ack and this one still count the message's ``refcount`` down together.

    A record that settles behind one still owed (a partner down) needs even less: once this
    ack is the last its message waits for (``refcount`` 1: the ``feed-table`` agent has acked
    it), its final ack is ``Consumer.ack`` of its topic, partition and offset alone
    (``Message.ack`` -> ``ConsumerMessage.on_final_ack`` -> ``Consumer.ack``, which reads
    ``acked``, ``tp``, ``offset`` and ``topic``, and drops the message from its ``WeakSet`` of
    unacked ones, which it leaves once collected anyway). So only its offset is kept, and it is
    acked through a message made for it then (:func:`stand_in`)."""

    def keep(message: Any) -> bool:
        return bool(message.refcount > 1 or message.acked)  # another stream still to ack it

    def ack(partition: int, offset: int, message: Any) -> None:
        if message is None:  # let go once settled (``keep``): its offset is what is left
            message = stand_in(topic, partition, offset)
        message.ack(app.consumer)

    return OrderedAcks(ack, keep)


def stand_in(topic: str, partition: int, offset: int) -> ConsumerMessage:
    """A message for the final ack of a record whose own ``Message`` was let go: the same
    topic, partition and offset, its one remaining ack to count down."""
    message = ConsumerMessage(topic, partition, offset, 0.0, 0, None, None, None, None,
                              tp=TP(topic, partition))
    message.incref()
    return message


def let_go(message: Any) -> None:
    """Drop a handled ``alerts`` record's bytes from its Faust ``Message``, which ``acks`` holds
    until the record is acked: behind a delivery owed to a partner that is down, every record
    read since stays in hand for the whole outage, and its key, value and headers were ~70 %
    of what each cost (``bench.outage_memory``). What acking needs stays: ``tp``, ``offset``,
    ``topic``, ``acked`` and ``refcount`` (``Message.ack`` and ``Consumer.ack``).

    Faust reads them only to decode the record into its events, for every stream of the topic
    at once, before any stream gets one (``Conductor``'s ``on_message``: the first channel
    decodes, the others reuse that event or decode in the same loop); the streams read the
    ``Event``'s own ``key``, ``value`` and ``headers``, which the ``feed-table`` agent, sharing
    the event, still has. Only a changelog's recovery reads a message's bytes again
    (``Store.apply_changelog_batch``), and ``alerts`` is no changelog."""
    message.key = message.value = message.headers = None


def has_file(audit: AuditSink) -> bool:
    """Whether the worker's audit sink writes a file (``BROKER_AUDIT_FILE``): only then is there
    anything to sync."""
    sinks = audit.sinks if isinstance(audit, TeeAudit) else (audit,)
    return any(isinstance(sink, JsonlAudit) for sink in sinks)


async def close_delivery(agent: FanOutAgent, audit_producer: AuditProducer,
                         audit: AuditSink) -> None:
    """The worker's shutdown of delivery: close the fan-out agent, sync the audit file, then hand
    the last outcome records to the producer (which stops after this, flushing what it holds:
    the records must be with it by then). An error closing the agent is logged, not raised: the
    records written before it are part of the audit log, and an error out of Faust's shutdown
    hook would skip the producer's own flush and stop (so those records would never reach
    Kafka). A cancellation is raised: a cancelled shutdown goes no further. The file first: the
    flush may wait long on a Kafka that is away."""
    try:
        await agent.close()
    except Exception:
        log.exception("closing delivery at shutdown failed; the audit records still go to the "
                      "file and the producer (unsettled deliveries are sent again on restart)")
    await sync_audit_file(audit)  # logs its own failure
    await audit_producer.flush()  # raises nothing but a cancellation


async def sync_audit_file(audit: AuditSink) -> None:
    """fsync the audit file's new records (``adapters.audit.sync``), in a thread: an fsync
    blocks for 0.2-4 ms here (``bench.audit_file_sync``), too long for the loop. A failure is
    logged, not stopped on: the records are in the ``audit`` topic (the file's are a copy). The
    next sync tries again, but on Linux a failed writeback may be reported once only, so the
    records since the last good sync may never reach the disk: the log says so."""
    try:
        await asyncio.to_thread(sync, audit)
    except OSError as err:
        log.error("audit file not synced to disk: records written since the last good sync may "
                  "be missing from it after a host crash (the audit topic has them): %r", err)


def register_delivery(
    app: faust.App,
    topics: Topics,
    tables: Tables,
    rt: Runtime,
    partners: PartnersConfig,
    audit: AuditSink,
    audit_producer: AuditProducer,
) -> Dispatcher:
    """Attach the fan-out agent and the hub's shutdown hook to ``app`` (which hands the last
    outcome records to the producer before it stops: ``audit_producer``)."""
    agent = FanOutAgent(app, topics, tables, rt, partners, audit)

    @app.agent(topics.alerts, name="fan-out")
    async def fan_out_agent(stream: faust.StreamT[bytes]) -> None:
        await agent.run(stream)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust types want *args
    async def forget_revoked(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        await agent.revoke(revoked)

    @app.timer(interval=PRUNE_INTERVAL_S, name="prune-delivered")
    async def prune_delivered() -> None:
        if is_ready(app, rt):
            agent.prune()

    if has_file(audit):
        @app.timer(interval=AUDIT_FILE_SYNC_S, name="sync-audit-file")
        async def sync_audit() -> None:
            await sync_audit_file(audit)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # Faust types want *args
    async def close_hub(sender: Any, **kwargs: Any) -> None:
        await close_delivery(agent, audit_producer, audit)

    app.broker_fanout = agent.dispatcher  # type: ignore[attr-defined]  # for tests
    return agent.dispatcher
