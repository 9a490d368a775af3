"""A unit whose fixes are stamped more than the stale timeout behind the other units of its
partition, on a real worker (review, 2026-12-07): before ``Driver.late`` every tick cancelled
its alert as stale and its next fix created it again, a new life (a new pseudonymous id for
partners) each second. Now its fixes go to avl.dlq (reason ``late``, counted), nothing of it
flaps, and once its clock is right its next fix starts its alert at once."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from kafka import KafkaProducer

from broker.streams.runtime import partition_for
from broker.streams.settings import StreamSettings
from tests.integration.conftest import Run, alerts_of, read_topic

pytestmark = pytest.mark.integration

STALE_S = 6  # the stale timeout of this worker (30 s by default): a short test
LAG_S = 10  # X's device clock behind: more than the timeout
ROUNDS = 10  # fixes of each unit while X is behind, PERIOD_S apart (live pacing, not a wait)
PERIOD_S = 0.5


def _fix(vehicle_id: str, ts: datetime, lon: float, lat: float) -> bytes:
    return msgspec.json.encode({
        "vehicle_id": vehicle_id, "ts": ts.isoformat().replace("+00:00", "Z"), "lat": lat,
        "lon": lon, "speed_mps": 12.0, "heading_deg": 90.0, "status": "responding",
        "lights_sirens": True, "incident_id": "LATE-1", "unit_type": "engine",
    })


def _two_on_one_partition() -> tuple[str, str]:
    partitions = StreamSettings().partitions
    ids = [f"LATE-E{i}" for i in range(100)]
    first = ids[0]
    p = partition_for(first.encode(), partitions)
    other = next(i for i in ids[1:] if partition_for(i.encode(), partitions) == p)
    return first, other


def test_a_unit_behind_its_partitions_clock_does_not_flap(kafka_run: Run) -> None:
    y, x = _two_on_one_partition()
    worker = kafka_run.worker(BROKER_ENGINE_STALE_TIMEOUT_S=str(STALE_S))
    worker.wait_ready()
    producer = KafkaProducer(bootstrap_servers=kafka_run.bootstrap)
    topic = kafka_run.topic("avl.positions")

    def send(vid: str, ts: datetime, i: int) -> None:
        lat = 35.2271 if vid == y else 35.2371
        producer.send(topic, key=vid.encode(), value=_fix(vid, ts, -80.8431 + i * 0.00007, lat))

    for i in range(ROUNDS):  # Y on time first (it sets the partition's clock), X behind
        now = datetime.now(UTC)
        send(y, now, i)
        send(x, now - timedelta(seconds=LAG_S), i)
        producer.flush()
        time.sleep(PERIOD_S)
    recovered = datetime.now(UTC)
    for i in range(ROUNDS, ROUNDS + 3):  # X's clock put right
        now = datetime.now(UTC)
        send(y, now, i)
        send(x, now, i)
        producer.flush()
        time.sleep(PERIOD_S)
    producer.close()

    def x_ended(records: list[object]) -> bool:
        return any(e.vehicle_id == x and e.action == "cancel" for e in alerts_of(records))

    events = alerts_of(read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                                  until=x_ended, timeout_s=60.0))
    x_events = [e for e in events if e.vehicle_id == x]
    # before: a create and a cancel of X at each tick while it was behind
    assert [e.action for e in x_events if e.action != "update"] == ["create", "cancel"]
    assert x_events[0].ts >= recovered - timedelta(seconds=1)  # its first fix on time
    assert x_events[-1].cancel_reason == "stale"  # its fixes stopped: the timeout after
    assert next(e.action for e in events if e.vehicle_id == y) == "create"
    assert not [e for e in events if e.vehicle_id == y and e.action == "cancel"
                and e.ts < recovered]
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"),
                     until=lambda r: len(r) >= ROUNDS, timeout_s=30.0)
    headers = [dict(r.headers) for r in dlq]  # type: ignore[attr-defined]
    assert [h["reason"] for h in headers] == [b"late"] * ROUNDS
    assert all(b"behind its stream's clock" in h["detail"] for h in headers)
    late = r'^broker_rejected_total\{reason="late"\} (\S+)$'
    text = worker.metrics_once(lambda t: re.findall(late, t, re.M) == [f"{float(ROUNDS)}"])
    counted = re.findall(late, text, re.M)
    assert counted == [f"{float(ROUNDS)}"]
    assert worker.log_path is not None
    assert worker.log_path.read_text().count("its fixes come late") == 1
