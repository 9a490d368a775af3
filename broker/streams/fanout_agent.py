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
from pathlib import Path
from typing import Any

import faust

from adapters.audit import AuditSink, JsonlAudit, ProducerAudit, TeeAudit
from adapters.config import PartnersConfig
from adapters.delivery import DeadLetter, DeliveryHub, make_client
from adapters.dispatch import Dispatcher, dead_letter_headers, dead_letter_value
from adapters.fanout import PartnerSet
from broker import codec
from broker.failure import FailurePolicy, StopWork
from broker.streams.agents import dlq_headers
from broker.streams.metrics import MetricsAudit
from broker.streams.runtime import Runtime, partition_for
from broker.streams.tables import Tables
from broker.streams.topics import Topics

log = logging.getLogger(__name__)
SHUTDOWN_DRAIN_S = 3.0  # at shutdown, give queued deliveries this long before cancelling them


def worker_audit(topics: Topics, rt: Runtime, audit_file: Path | None) -> AuditSink:
    """Audit sink of the worker: Kafka ``audit`` topic, metrics, and optionally a file."""
    sinks: list[AuditSink] = [
        ProducerAudit(lambda key, value: topics.audit.send_soon(key=key, value=value)),
        MetricsAudit(rt.metrics),
    ]
    if audit_file is not None:
        sinks.append(JsonlAudit(audit_file))
    return TeeAudit(*sinks)


def register_delivery(
    app: faust.App,
    topics: Topics,
    tables: Tables,
    rt: Runtime,
    partners: PartnersConfig,
    audit: AuditSink,
) -> Dispatcher:
    """Attach the fan-out agent and the hub's shutdown hook to ``app``."""
    partner_set = PartnerSet.from_config(partners)
    client = make_client()
    n_partitions = rt.settings.partitions
    alerts_topic = topics.names.alerts

    async def dead_letter(letter: DeadLetter) -> None:
        await topics.delivery_dlq.send(
            key=letter.partner.encode(),
            value=dead_letter_value(letter),
            headers=dead_letter_headers(letter),
            force=True,
        )

    failures = FailurePolicy(
        count=lambda site, decision: rt.metrics.failures.labels(site, decision).inc(),
        outages=rt.outages,
    )

    async def stop(stop: StopWork) -> None:
        await rt.stop_worker(app, stop)

    hub = DeliveryHub(partner_set, client, audit, dead_letter, failures=failures, on_stop=stop)

    def alerts_partitions() -> set[int]:
        try:
            assigned = app.consumer.assignment()
        except Exception:  # consumer not started
            return set()
        return {tp.partition for tp in assigned if tp.topic == alerts_topic}

    def owns(alert_id: str) -> bool:
        return partition_for(alert_id.encode(), n_partitions) in alerts_partitions()

    def settled_put(alert_id: str, value: bytes | None) -> None:
        key = alert_id.encode()
        if value is not None:
            tables.delivered[key] = value
        elif key in tables.delivered:
            del tables.delivered[key]

    fan = Dispatcher(
        partners=partner_set,
        hub=hub,
        metrics=rt.metrics,
        settled_get=lambda alert_id: tables.delivered.get(alert_id.encode()),
        settled_put=settled_put,
        owns=owns,
        max_age_s=rt.settings.delivery_max_age_s,
    )

    @app.agent(topics.alerts, name="fan-out")
    async def fan_out_agent(stream: faust.StreamT[bytes]) -> None:
        """Fan each alert out to the push partners; ack once its deliveries have settled."""
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # untyped in Faust
            try:
                alert = codec.decode_alert(event.value)
                fan.handle(alert, event.ack)
            except Exception as err:  # a bug, or an outage: the one failure policy decides
                key = event.key.decode(errors="replace") if event.key else ""
                try:
                    failure = failures.check(
                        "fanout", err, key=key, raw=event.value, source=alerts_topic
                    )
                except StopWork as stop:  # not acked: the restarted worker fans it out again
                    await rt.stop_worker(app, stop)
                    return
                # parked in delivery.dlq with the alert's bytes, and only then acked
                await topics.delivery_dlq.send(
                    key=event.key, value=event.value, force=True,
                    headers=dlq_headers(alerts_topic, failure.reason, failure.error),
                )
                event.ack()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust types want *args
    async def forget_revoked(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == alerts_topic}
        if gone:
            fan.forget(lambda aid: partition_for(aid.encode(), n_partitions) not in gone)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # Faust types want *args
    async def close_hub(sender: Any, **kwargs: Any) -> None:
        # unsettled deliveries were not acked: a restarted worker sends them again
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.drain(), SHUTDOWN_DRAIN_S)
        await hub.stop()
        await client.aclose()

    app.broker_fanout = fan  # type: ignore[attr-defined]  # for tests
    return fan
