"""Hostile time on a real worker: a fix from the year 2100, then junk on the same key, then the
real incident. Nothing of the incident may be lost (issue 14 measured 28 of 73 before)."""

from __future__ import annotations

import pytest

from broker import codec
from broker.model import Fix, Position
from broker.streams.produce import envelope, produce_replay
from tests.integration.conftest import (
    WORKER_CFG,
    Run,
    alerts_of,
    expected_events,
    fixture_messages,
    has_every_alert,
    read_topic,
)

pytestmark = pytest.mark.integration


def test_a_fix_from_2100_and_junk_do_not_silence_the_unit(kafka_run: Run) -> None:
    messages = fixture_messages("route-downtown")
    first = next(raw for topic, raw in messages if topic == "avl.positions")
    ts = envelope(first)[1]
    assert ts is not None
    unit = codec.decode_position(first)
    assert isinstance(unit, Fix)
    from_2100 = codec.encode(Position(
        vehicle_id=unit.vehicle_id, ts=ts.replace(year=2100), lat=unit.lat, lon=unit.lon,
        status="responding", lights_sirens=True, incident_id="F-2100",
    ))
    junk = [("avl.positions", b'{"vehicle_id": "%s", "lat": "north"}' % unit.vehicle_id.encode())
            for _ in range(500)]
    worker = kafka_run.worker()  # a fresh worker: no partition clock, no state
    worker.wait_ready()
    produce_replay([("avl.positions", from_2100), *junk, *messages], kafka_run.bootstrap,
                   speed=None, topic_prefix=kafka_run.prefix)
    expected = expected_events(messages, WORKER_CFG)
    records = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                         until=has_every_alert(expected), timeout_s=120)
    got = {(e.alert_id, e.version) for e in alerts_of(records)}
    missing = {(e.alert_id, e.version) for e in expected} - got
    assert not missing, f"{len(missing)} of {len(expected)} alerts never came out"
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"),
                     until=lambda r: len(r) >= 501, timeout_s=60)
    reasons = [dict(r.headers)["reason"] for r in dlq]  # type: ignore[attr-defined]
    assert reasons.count(b"future_timestamp") == 1 and reasons.count(b"wrong_type") == 500
