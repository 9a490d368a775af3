"""The one failure policy on a real worker: a bug is dead-lettered and the stream goes on; an
outage stops the worker without acking, and the restarted worker does the work."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from broker import codec
from broker.model import Position
from broker.streams.produce import envelope, produce_replay
from broker.streams.runtime import REWINDS, partition_for
from tests.integration.conftest import (
    WORKER_CFG,
    Run,
    Worker,
    alerts_of,
    assert_nothing_missing_but_coalesced,
    expected_events,
    fixture_messages,
    has_every_last_version,
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


def assert_stopped(worker: Worker, within_s: float = 60.0) -> None:
    """The worker process exits, and not with 0 (the failure policy stopped it)."""
    assert worker.proc is not None
    deadline = time.monotonic() + within_s
    while worker.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker.proc.returncode not in (None, 0), worker.log_tail()


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
    expected = expected_events(messages, WORKER_CFG)
    # a loaded machine may put the worker over LATE_S behind the burst: updates coalesced then
    alerts = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                        until=has_every_last_version(expected))
    assert_nothing_missing_but_coalesced(worker, alerts_of(alerts), expected)
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
    assert_stopped(faulty)
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


def _fixes_with_a_marker_between(run: Run, vehicle_id: str) -> None:
    """Three fixes of one unit, the last two in transactions of their own: each commit marker
    takes an offset, so the consumer sees fixes at 0, 1 and 3 (the marker at 2 is a gap)."""
    now = datetime.now(UTC)
    topic, key = run.topic("avl.positions"), vehicle_id.encode()
    plain = KafkaProducer(bootstrap_servers=run.bootstrap)
    plain.send(topic, key=key, value=_fix(vehicle_id, now)).get(timeout=30)
    plain.close()
    producer = KafkaProducer(
        bootstrap_servers=run.bootstrap, transactional_id=f"{run.prefix}{vehicle_id}",
        enable_idempotence=True,
    )
    producer.init_transactions()
    for i in (1, 2):
        producer.begin_transaction()
        producer.send(topic, key=key, value=_fix(vehicle_id, now + timedelta(seconds=i)))
        producer.commit_transaction()
    producer.close()


def _committed(run: Run, group_id: str, tp: TopicPartition) -> int:
    group = KafkaConsumer(bootstrap_servers=run.bootstrap, group_id=group_id,
                          enable_auto_commit=False)
    try:
        return group.committed(tp) or 0
    finally:
        group.close()


def test_records_never_handed_over_stop_the_worker_before_it_acks_past_them(
    kafka_run: Run,
) -> None:
    """A gap in the offsets handed to the vehicle agent: acking the next record would let Faust
    commit past the missing ones, so the partition is read again from the gap, and a gap that
    reading again never fills stops the worker. A transactional producer's commit markers
    make such gaps on a real broker (nothing was lost there: `count` is the setting for such
    inputs)."""
    stopping = kafka_run.worker()
    stopping.wait_ready()
    _fixes_with_a_marker_between(kafka_run, "GAP-1")
    assert_stopped(stopping)
    said = stopping.log_tail(200)
    assert "offsets 2..2 never handed over" in said
    # read again from the missing offset before giving up: the marker is never there
    assert said.count("reading the partition again from offset 2") == REWINDS
    tp = TopicPartition(kafka_run.topic("avl.positions"), partition_for(b"GAP-1", 8))
    assert _committed(kafka_run, kafka_run.app_id, tp) <= 3  # not past the fix after the gap
    # a worker that counts gaps (its own group, from the start) goes on past the marker
    group_id = f"{kafka_run.app_id}-counting"
    counting = kafka_run.worker(BROKER_INPUT_OFFSET_GAPS="count", BROKER_APP_ID=group_id)
    counting.wait_ready()
    deadline = time.monotonic() + 60
    while _committed(kafka_run, group_id, tp) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _committed(kafka_run, group_id, tp) >= 4, counting.log_tail()
    topic = kafka_run.topic("avl.positions")
    assert f'broker_input_offset_gaps_total{{topic="{topic}"}} 1.0' in counting.metrics()
    assert counting.proc is not None and counting.proc.poll() is None  # going on


def test_a_status_whose_restatement_raises_is_one_dead_letter_and_the_stream_goes_on(
    kafka_run: Run,
) -> None:
    """The split form: a unit responding (its CAD status, then fixes without one), then CAD's
    ``available`` (stamped among the fixes, so it is due as soon as it is taken) and no more
    fixes. Time for the stood-down unit raises (planted), so the worker's tick restating the
    status fails: one ``tick_error`` record, its alert cancelled (``stale``, the quarantine's),
    the worker running on. Before 2026-12-06 the tick's restatement wrote a record and the tick
    of the live units right after it, on the same state, a second."""
    import json

    from broker.model import UnitStatus

    vid = "RESTATE-1"

    def status(t: float, name: str, lights: bool) -> tuple[str, bytes]:
        return ("cad.status", codec.encode(UnitStatus(
            vehicle_id=vid, ts=t0 + timedelta(seconds=t), status=name,  # type: ignore[arg-type]
            incident_id="F-RESTATE", lights_sirens=lights)))

    def avl(t: float) -> tuple[str, bytes]:
        pos = json.loads(_fix(vid, t0 + timedelta(seconds=t)))
        for key in ("status", "lights_sirens", "incident_id"):
            del pos[key]
        return ("avl.positions", json.dumps(pos).encode())

    worker = kafka_run.worker(module=FAULTY)
    worker.wait_ready()
    t0 = datetime.now(UTC) - timedelta(seconds=10)
    for part in ([status(0.0, "responding", True)], [avl(float(t)) for t in range(1, 6)],
                 [status(1.5, "available", False)]):
        produce_replay(part, kafka_run.bootstrap, speed=None, topic_prefix=kafka_run.prefix)
        time.sleep(1.0)  # the status goes through the forwarder: the unit's log in this order
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"),
                     until=lambda r: len(r) >= 1, timeout_s=60, idle_s=5.0)
    assert [r.key for r in dlq] == [vid.encode()]  # type: ignore[attr-defined]
    headers = dict(dlq[0].headers)  # type: ignore[attr-defined]
    assert headers["reason"] == b"tick_error" and b"ZeroDivisionError" in headers["detail"]
    alerts = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                        until=lambda r: any(e.action == "cancel" for e in alerts_of(r)),
                        timeout_s=30)
    assert [(e.action, e.cancel_reason) for e in alerts_of(alerts) if e.action == "cancel"] == [
        ("cancel", "stale")
    ]
    assert 'broker_failures_total{decision="skip",site="tick"} 1.0' in worker.metrics()
    assert worker.proc is not None and worker.proc.poll() is None  # still running


def test_a_quarantine_that_cannot_cancel_stops_the_worker(kafka_run: Run) -> None:
    """A unit's tick raises (planted) and so does the quarantine's cancel of its live alert:
    the cancel cannot go out, so the worker stops loudly (site ``cancel``), not going on with
    the alert left on partners' maps. Before 2026-12-06 it logged the failure and ran on."""
    faulty = kafka_run.worker(module=FAULTY)
    faulty.wait_ready()
    produce_replay([("avl.positions", _fix("NOCANCEL-1", datetime.now(UTC)))],
                   kafka_run.bootstrap, speed=None, topic_prefix=kafka_run.prefix)
    alerts = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                        until=lambda r: len(r) >= 1, timeout_s=60)
    assert [(e.action, e.vehicle_id) for e in alerts_of(alerts)] == [("create", "NOCANCEL-1")]
    assert_stopped(faulty, within_s=60.0)  # at the first tick after the create
    log = faulty.log_tail(200)
    assert "cancel failed on 'NOCANCEL-1', stopping" in log and "stopping the worker" in log


def test_a_status_the_forwarder_cannot_hand_over_stops_the_worker_unacked(
    kafka_run: Run,
) -> None:
    """Three status changes of one unit on ``cad.status``; the producer will not take the
    second (planted: KafkaTimeoutError, as when its buffer stays full while Kafka is away; or
    a record over its size limit). The worker stops (site ``ingest``) with the group's commit
    not past it, and a healthy worker then appends it and the one after to the unit's log.
    Before 2026-12-07 the exception crashed the agent, Faust restarted it, the third status
    was forwarded and acked, and the commit went past the second: a lost
    responding -> available left the unit's alert live."""
    import json

    from broker.streams.status_records import is_status

    vid = "FORWARD-1"
    t0 = datetime.now(UTC) - timedelta(seconds=5)

    def status(t: float, name: str, note: str = "") -> bytes:
        return json.dumps({"vehicle_id": vid, "ts": (t0 + timedelta(seconds=t)).isoformat(),
                           "status": name, **({"note": note} if note else {})}).encode()

    sent = [status(0, "responding"), status(1, "available", "planted-refusal"),
            status(2, "dispatched")]
    faulty = kafka_run.worker(module=FAULTY)
    faulty.wait_ready()
    producer = KafkaProducer(bootstrap_servers=kafka_run.bootstrap)
    offsets = [producer.send(kafka_run.topic("cad.status"), key=vid.encode(), value=raw)
               .get(timeout=30) for raw in sent]
    producer.close()
    assert_stopped(faulty)
    assert faulty.log_path is not None
    said = faulty.log_path.read_text()
    assert "ingest failed on 'forward cad.status" in said and "KafkaTimeoutError" in said, said
    assert "stopping the worker" in said
    tp = TopicPartition(kafka_run.topic("cad.status"), offsets[1].partition)
    assert _committed(kafka_run, kafka_run.app_id, tp) <= offsets[1].offset  # not past it

    def statuses(records: list[object]) -> list[bytes]:
        return [r.value for r in records if r.headers and is_status(r.headers)]  # type: ignore[attr-defined]

    healthy = kafka_run.worker()
    healthy.wait_ready()
    log = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.positions"),
                     until=lambda r: sent[2] in statuses(r), timeout_s=60)
    got = statuses(log)
    assert got[-2:] == sent[1:] and set(got) == set(sent)  # nothing lost, in order
