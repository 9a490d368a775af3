"""The one failure policy on a real worker: a bug is dead-lettered and the stream goes on; an
outage stops the worker without acking, and the restarted worker does the work."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from broker import codec
from broker.model import Position
from broker.settings import EngineConfig
from broker.streams.produce import envelope, produce_replay
from tests.integration.conftest import (
    Run,
    alerts_of,
    expected_events,
    fixture_messages,
    has_every_alert,
    read_topic,
    shifted,
)

pytestmark = pytest.mark.integration
FAULTY = "tests.integration.faulty_worker"


def _fix(vehicle_id: str, ts: datetime) -> bytes:
    return codec.encode(Position(
        vehicle_id=vehicle_id, ts=ts, lat=35.2271, lon=-80.8431, status="responding",
        lights_sirens=True, incident_id="F-PLANTED", speed_mps=12.0, heading_deg=90.0,
    ))


def test_a_bug_in_the_engine_is_dead_lettered_and_the_stream_goes_on(kafka_run: Run) -> None:
    # moved to end a minute ago: live-like, and never ahead of the wall clock
    messages = fixture_messages("route-downtown")
    span = envelope(messages[-1][1])[1] - envelope(messages[0][1])[1]  # type: ignore[operator]
    messages = shifted(messages, datetime.now(UTC) - span - timedelta(minutes=1))
    ts = envelope(messages[0][1])[1]
    assert ts is not None
    buggy = _fix("BUGGY-1", ts)
    worker = kafka_run.worker(module=FAULTY)
    worker.wait_ready()
    produce_replay([messages[0], ("avl.positions", buggy), *messages[1:]], kafka_run.bootstrap,
                   speed=None, topic_prefix=kafka_run.prefix)
    expected = expected_events(messages, EngineConfig())
    alerts = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                        until=has_every_alert(expected))
    assert {(e.alert_id, e.version) for e in expected} <= {
        (e.alert_id, e.version) for e in alerts_of(alerts)
    }
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"), until=lambda r: len(r) >= 1)
    assert [r.value for r in dlq] == [buggy]  # type: ignore[attr-defined]
    headers = dict(dlq[0].headers)  # type: ignore[attr-defined]
    assert headers["reason"] == b"engine_error" and b"ZeroDivisionError" in headers["detail"]
    assert headers["source_topic"] == kafka_run.topic("avl.positions").encode()
    assert 'broker_failures_total{decision="skip",site="engine"} 1.0' in worker.metrics()
    assert worker.proc is not None and worker.proc.poll() is None  # still running


def test_an_outage_stops_the_worker_unacked_and_a_restart_does_the_work(kafka_run: Run) -> None:
    now = datetime.now(UTC)
    outage = _fix("OUTAGE-1", now)
    faulty = kafka_run.worker(module=FAULTY)
    faulty.wait_ready()
    produce_replay([("avl.positions", outage)], kafka_run.bootstrap, speed=None,
                   topic_prefix=kafka_run.prefix)
    assert faulty.proc is not None
    deadline = time.monotonic() + 60
    while faulty.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert faulty.proc.returncode not in (None, 0), faulty.log_tail()
    assert "stopping the worker" in faulty.log_tail(200)
    # nothing was acked: a healthy worker in the same group gets the message again and makes
    # the alert the faulty one could not
    healthy = kafka_run.worker()
    healthy.wait_ready()
    alerts = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                        until=lambda r: len(r) >= 1, timeout_s=60)
    created = alerts_of(alerts)
    assert [(e.action, e.vehicle_id) for e in created] == [("create", "OUTAGE-1")]
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"), until=lambda r: False,
                     timeout_s=3)
    assert dlq == []  # stopped, not skipped
