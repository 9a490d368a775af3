"""The AVL + CAD join and Traccar ingest on a real worker and Kafka broker (issue 13).

The split form of an incident (fixes without status, ``cad.status`` events) and its Traccar
form (Traccar's forwarded JSON on ``avl.traccar``, and over HTTP) go through the forwarder into
each unit's log (``avl.positions``). What the worker sends must be exactly what the in-process
replay makes of that log, also with a kill -9 in between (no version with two contents), and
the same incident as the combined form: the same alerts, created and ended the same way (a
status racing a fix of the same instant may shift an update by a fix). A status alone acts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from broker import codec
from broker.agencies import load_agencies
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, TRACCAR
from broker.ingest_forms import split_form, traccar_form
from broker.model import AlertEvent, UnitStatus
from broker.replay import merge_by_time, replay_in_process
from broker.streams.produce import envelope, produce_replay
from broker.streams.status_records import is_status
from tests.integration.conftest import (
    FIXTURES,
    WORKER_CFG,
    Run,
    alerts_of,
    assert_same_alerts,
    expected_events,
    fixture_messages,
    grouped,
    read_topic,
)

pytestmark = pytest.mark.integration
CFG = WORKER_CFG
AGENCIES_FILE = FIXTURES.parent / "agencies.toml"
TOKEN = "ingest-token-for-the-tests-0123456789"


def same_alerts(records: list[object], expected: list[AlertEvent]) -> None:
    """The alerts on the topic are the expected ones (redeliveries of an identical version
    allowed: at-least-once; late updates may be coalesced)."""
    assert_same_alerts(alerts_of(records), expected)


def the_logs_replay(run: Run) -> list[AlertEvent]:
    """What the in-process replay makes of the worker's own input: the units' log as the
    forwarder wrote it (status records marked by their header), routes merged by time."""
    log = read_topic(run.bootstrap, run.topic(POSITIONS), until=lambda r: False, timeout_s=4)
    routes = read_topic(run.bootstrap, run.topic(ROUTES), until=lambda r: False, timeout_s=2)
    fixes = [
        (CAD_STATUS if is_status(r.headers) else POSITIONS, r.value)  # type: ignore[attr-defined]
        for r in log
    ]
    messages = merge_by_time(fixes, [(ROUTES, r.value) for r in routes])  # type: ignore[attr-defined]
    return replay_in_process(messages, cfg=CFG).events


def same_incident(got: list[AlertEvent], combined: list[AlertEvent]) -> None:
    """The same alerts as the combined form, created and ended the same way."""
    def shape(events: list[AlertEvent]) -> dict[str, tuple[str, str, str | None]]:
        by_id = grouped(events)
        return {k: (v[0].action, v[-1].action, v[-1].cancel_reason) for k, v in by_id.items()}

    assert shape(got) == shape(combined)


def has_alert_ends(expected: list[AlertEvent]) -> Callable[[list[object]], bool]:
    """A ``read_topic`` stop condition: every expected alert has its cancel."""
    ends = {e.alert_id for e in expected if e.action == "cancel"}

    def until(records: list[object]) -> bool:
        return ends <= {e.alert_id for e in alerts_of(records) if e.action == "cancel"}

    return until


def test_split_form_with_a_kill_9_in_between_gives_the_combined_alerts(kafka_run: Run) -> None:
    combined = fixture_messages("route-downtown")
    expected = expected_events(combined, CFG)
    first = kafka_run.worker()
    first.wait_ready()
    replay = threading.Thread(
        target=produce_replay, args=(split_form(combined), kafka_run.bootstrap),
        kwargs={"speed": 25.0, "topic_prefix": kafka_run.prefix},
    )
    replay.start()
    read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
               until=lambda r: len(r) >= len(expected) // 3, timeout_s=60.0)
    first.kill9()  # statuses already stored must come back from the changelog
    second = kafka_run.worker()
    replay.join(timeout=120)
    assert not replay.is_alive()
    second.wait_ready()
    records = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                         until=has_alert_ends(expected), timeout_s=120.0, idle_s=3.0)
    same_alerts(records, the_logs_replay(kafka_run))
    same_incident(alerts_of(records), expected)


def test_a_status_alone_cancels_the_alert_without_a_fix(kafka_run: Run) -> None:
    split = split_form(fixture_messages("route-downtown"))
    responding = next(i for i, (t, raw) in enumerate(split)
                      if t == CAD_STATUS and json.loads(raw)["status"] == "responding")
    part = split[: responding + 40]  # 40 s into the response, then the fixes stop
    last_fix = max(envelope(raw)[1] for t, raw in part if t == POSITIONS)  # type: ignore[type-var]
    worker = kafka_run.worker()
    worker.wait_ready()
    # paced like the live feeds it stands for: at full speed the fixes would all be in the log
    # before the forwarder appended the first status (two producers racing, ms apart)
    produce_replay(part, kafka_run.bootstrap, speed=10.0, topic_prefix=kafka_run.prefix)
    status = json.loads(split[responding][1])
    available = UnitStatus(vehicle_id=status["vehicle_id"], ts=last_fix + timedelta(seconds=2),
                           status="available", lights_sirens=False)
    produce_replay([(CAD_STATUS, codec.encode(available))], kafka_run.bootstrap, speed=None,
                   topic_prefix=kafka_run.prefix)

    def cancelled(records: list[object]) -> bool:
        return any(e.action == "cancel" for e in alerts_of(records))

    records = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"), until=cancelled,
                         timeout_s=60.0)
    cancels = [e for e in alerts_of(records) if e.action == "cancel"]
    assert [(e.cancel_reason, e.ts) for e in cancels] == [("left_emergency", available.ts)]


def test_traccar_on_its_kafka_topic_gives_the_combined_alerts(kafka_run: Run) -> None:
    combined = fixture_messages("route-downtown")
    expected = expected_events(combined, CFG)
    messages = traccar_form(combined, load_agencies(AGENCIES_FILE))
    bad = (FIXTURES.parent / "bad_messages" / "traccar" / "invalid_fix--valid-false.json")
    worker = kafka_run.worker(BROKER_AGENCIES=str(AGENCIES_FILE))
    worker.wait_ready()
    produce_replay([(TRACCAR, bad.read_bytes()), *messages], kafka_run.bootstrap, speed=50.0,
                   topic_prefix=kafka_run.prefix)
    records = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                         until=has_alert_ends(expected), timeout_s=120.0, idle_s=2.0)
    same_alerts(records, the_logs_replay(kafka_run))
    same_incident(alerts_of(records), expected)
    traccar, positions = (kafka_run.topic(t).encode() for t in (TRACCAR, POSITIONS))

    def reasons(records: list[object]) -> list[tuple[bytes, bytes]]:
        return [(h["reason"], h["source_topic"])
                for h in (dict(r.headers) for r in records)]  # type: ignore[attr-defined]

    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"),
                     until=lambda r: (b"invalid_fix", traccar) in reasons(r), timeout_s=30,
                     idle_s=1.0)
    # the invalid fix, once; and fixes the stale timeout behind their partition's clock
    # (`late`), as the log's own replay refuses them (same_alerts above): the forwarder appends
    # each device's positions to the units' log in the order it reads avl.traccar's partitions,
    # at 50x one device's minutes before another's, as after a backlog
    assert reasons(dlq).count((b"invalid_fix", traccar)) == 1
    assert set(reasons(dlq)) <= {(b"invalid_fix", traccar), (b"late", positions)}
    (invalid,) = [r for r in dlq if dict(r.headers)["reason"] == b"invalid_fix"]  # type: ignore[attr-defined]
    assert invalid.value == bad.read_bytes()  # type: ignore[attr-defined]


def test_traccar_over_http_is_taken_only_with_the_token(kafka_run: Run) -> None:
    combined = fixture_messages("route-downtown")
    expected = expected_events(combined, CFG)
    messages = traccar_form(combined, load_agencies(AGENCIES_FILE))
    worker = kafka_run.worker(BROKER_AGENCIES=str(AGENCIES_FILE), BROKER_INGEST_TOKEN=TOKEN)
    worker.wait_ready()
    url = f"http://127.0.0.1:{worker.port}/ingest/traccar"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = next(raw for topic, raw in messages if topic == TRACCAR)
    with httpx.Client(timeout=10.0) as http:
        assert http.post(url, content=first).status_code == 401
        assert http.post(url, content=first, headers={"Authorization": "Bearer nope"}
                         ).status_code == 401
        too_big = b"{" + b" " * (CFG.max_message_bytes + 10) + b"}"
        assert http.post(url, content=too_big, headers=auth).status_code == 413
        bad = (FIXTURES.parent / "bad_messages" / "traccar" / "unknown_unit--unknown-unique-id"
               ".json").read_bytes()
        refused = http.post(url, content=bad, headers=auth)
        assert (refused.status_code, refused.json()) == (
            202, {"taken": False, "dead_lettered": "unknown_unit"}
        )
        # positions over HTTP, unit status on Kafka, in the incident's order
        for topic, raw in messages:
            if topic == TRACCAR:
                r = http.post(url, content=raw, headers=auth)
                assert (r.status_code, r.json()) == (200, {"taken": True})
            else:
                produce_replay([(topic, raw)], kafka_run.bootstrap, speed=None, partitions=None,
                               topic_prefix=kafka_run.prefix)
    records = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                         until=has_alert_ends(expected), timeout_s=120.0, idle_s=2.0)
    same_alerts(records, the_logs_replay(kafka_run))
    same_incident(alerts_of(records), expected)
    rejected = 'broker_rejected_total{reason="unknown_unit"} 1.0'
    metrics = worker.metrics_once(lambda text: rejected in text)
    assert 'broker_ingest_requests_total{status="200"}' in metrics
    assert rejected in metrics


def test_input_not_keyed_by_its_vehicle_id_is_taken_on_its_units_partition(
    kafka_run: Run,
) -> None:
    """A fix and a status each keyed by another key than their unit's id (a device id, or a
    producer hashing with CRC32), so on another partition than the id's. The fix is not
    processed there (it was, until 2026-12-07, by whichever worker owned that partition: a
    second create of the unit's alert id, the unit's state in the owner's changelog
    partition): it is appended again to ``avl.positions`` keyed by the vehicle id, marked
    ``rekeyed_from``, and taken on the unit's own partition: one alert. The status goes to its
    unit's log keyed by the vehicle id, as every status does. Both counted as misrouted."""
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    from broker.streams.rekey import REKEYED_HEADER
    from broker.streams.runtime import partition_for

    partitions = 8  # the worker's (tests.integration.conftest)
    vid, other, good = "MIS-1", "MIS-2", "KEYED-1"
    own = partition_for(vid.encode(), partitions)
    homes = (own, partition_for(other.encode(), partitions))
    stray = next(k for k in (f"device-{i}".encode() for i in range(100))
                 if partition_for(k, partitions) not in homes)
    now = datetime.now(UTC)

    def fix(vehicle_id: str) -> bytes:
        return json.dumps({"vehicle_id": vehicle_id, "ts": now.isoformat(), "lat": 35.2271,
                           "lon": -80.8431, "speed_mps": 14.0, "heading_deg": 90.0,
                           "status": "responding", "lights_sirens": True,
                           "incident_id": "F-KEYS"}).encode()

    status = json.dumps({"vehicle_id": other, "ts": now.isoformat(),
                         "status": "available"}).encode()
    worker = kafka_run.worker()
    worker.wait_ready()
    producer = KafkaProducer(bootstrap_servers=kafka_run.bootstrap)
    for topic, key, value in [(POSITIONS, stray, fix(vid)), (CAD_STATUS, stray, status),
                              (POSITIONS, good.encode(), fix(good))]:
        producer.send(kafka_run.topic(topic), key=key, value=value).get(timeout=30)
    producer.close()
    alerts = read_topic(kafka_run.bootstrap, kafka_run.topic("alerts"),
                        until=lambda r: len(alerts_of(r)) >= 2, timeout_s=60, idle_s=2.0)
    creates = [e.vehicle_id for e in alerts_of(alerts) if e.action == "create"]
    assert sorted(creates) == sorted([good, vid])  # the stray fix: one alert, made once
    positions = read_topic(kafka_run.bootstrap, kafka_run.topic(POSITIONS),
                           until=lambda r: len(r) >= 4, timeout_s=60)
    keyed = [r for r in positions if r.key in (vid.encode(), other.encode())]  # type: ignore[attr-defined]
    by_key = {r.key: r for r in keyed}  # type: ignore[attr-defined]
    rekeyed = by_key[vid.encode()]
    assert rekeyed.value == fix(vid) and rekeyed.partition == own  # type: ignore[attr-defined]
    assert dict(rekeyed.headers)[REKEYED_HEADER] == str(partition_for(stray, partitions)).encode()  # type: ignore[attr-defined]
    forwarded = by_key[other.encode()]
    assert is_status(forwarded.headers) and forwarded.value == status  # type: ignore[attr-defined]
    metrics = worker.metrics()
    assert "broker_misrouted_total 2.0" in metrics
    assert 'reason="misrouted"' not in metrics  # neither refused


def test_a_refused_status_is_dead_lettered_as_a_status(kafka_run: Run) -> None:
    """A status older than the unit's stored one is refused (``stale_status``) in the unit's
    log, where the forwarder appended it: its dead letter named ``avl.positions`` as its source
    and lost the header marking it a status, so sent again from there it read as a bad fix."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    newer = UnitStatus(vehicle_id="STALE-1", ts=now, status="responding", lights_sirens=True)
    older = UnitStatus(vehicle_id="STALE-1", ts=now - timedelta(seconds=10), status="available")
    worker = kafka_run.worker()
    worker.wait_ready()
    for status in (newer, older):  # one after the other: the forwarder keeps their order
        produce_replay([(CAD_STATUS, codec.encode(status))], kafka_run.bootstrap, speed=None,
                       topic_prefix=kafka_run.prefix)
    dlq = read_topic(kafka_run.bootstrap, kafka_run.topic("avl.dlq"),
                     until=lambda r: len(r) >= 1, timeout_s=60, idle_s=3.0)
    assert len(dlq) == 1, dlq
    headers = dict(dlq[0].headers)  # type: ignore[attr-defined]
    assert headers["reason"] == b"stale_status", headers
    assert headers["source_topic"] == kafka_run.topic(CAD_STATUS).encode()
    assert dlq[0].value == codec.encode(older)  # type: ignore[attr-defined]
