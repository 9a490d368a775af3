"""An alert the vehicle agent hands to Faust's producer is on the wire to Kafka within
``PRODUCE_TURNS`` loop turns (broker.streams.turns), against a real broker: the agent yields
that many after a message that made an alert, instead of going on with up to ``YIELD_EVERY``
more messages first (the start burst, bench/notes.md section 5)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import faust
import pytest
from aiokafka.conn import AIOKafkaConnection
from kafka.admin import KafkaAdminClient, NewTopic

from broker.streams.turns import PRODUCE_TURNS

pytestmark = pytest.mark.integration


def _turns_to_the_wire(bootstrap: str, topic: str, turns: int, monkeypatch: Any) -> list[bool]:
    """For each of a few alerts: whether its produce request was written within ``turns``
    loop turns of ``send_soon`` (the worker's path: Faust's send queue, aiokafka's sender)."""
    written: list[int] = []
    send = AIOKafkaConnection.send

    def traced(self: Any, request: Any, expect_response: bool = True) -> Any:
        if type(request).__name__.startswith("ProduceRequest"):
            written.append(1)
        return send(self, request, expect_response)

    monkeypatch.setattr(AIOKafkaConnection, "send", traced)

    async def run() -> list[bool]:
        app = faust.App(f"turns-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}",
                        autodiscover=False, producer_acks=-1)
        out = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw",
                        key_serializer="raw")
        await app.producer.start()
        try:
            await (await out.send(key=b"k", value=b"warm"))  # metadata, connection, producer id
            sender = app.producer._producer._sender  # type: ignore[attr-defined]
            results = []
            for _ in range(5):
                await _none_in_flight(sender)  # else the next request waits for Kafka's answer
                written.clear()
                fut = out.send_soon(key=b"k", value=b"alert")
                for _ in range(turns):
                    await asyncio.sleep(0)
                results.append(bool(written))
                await fut  # answered by Kafka, however long that takes on a loaded machine
            return results
        finally:
            await app.producer.stop()

    return asyncio.run(run())


async def _none_in_flight(sender: Any) -> None:
    """Wait until aiokafka's sender has no produce request in flight (one at a time per
    broker): a request answered resolves its records' futures a few turns before the sender
    lets the broker go. Counted turns, not a time: the machine's load cannot fail it."""
    for _ in range(1000):
        if not sender._in_flight:
            return
        await asyncio.sleep(0)
    raise AssertionError("a produce request stayed in flight for 1000 loop turns")


def test_an_alert_is_on_the_wire_within_the_agents_turns(kafka_bootstrap: str,
                                                         monkeypatch: Any) -> None:
    topic = f"produce-turns-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    try:
        assert _turns_to_the_wire(kafka_bootstrap, topic, PRODUCE_TURNS, monkeypatch) == [True] * 5
        # one turn fewer leaves it in aiokafka: the count is not larger than it must be
        assert _turns_to_the_wire(kafka_bootstrap, topic, PRODUCE_TURNS - 1,
                                  monkeypatch) == [False] * 5
    finally:
        admin.delete_topics([topic])
        admin.close()

