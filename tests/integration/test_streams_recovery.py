"""Crash and scale-out on a real Kafka broker: kill -9 mid-replay, and two workers in one group."""

from __future__ import annotations

import re
import threading
import time

import pytest

from broker.streams.produce import produce_replay
from tests.integration.conftest import (
    WORKER_CFG,
    Run,
    alerts_of,
    assert_same_alerts,
    expected_events,
    fixture_messages,
    has_every_last_version,
    read_topic,
    spread_fleet,
)

pytestmark = pytest.mark.integration
CFG = WORKER_CFG


def test_kill_9_mid_replay_then_restart_recovers_state_and_loses_no_alert(
    kafka_run: Run,
) -> None:
    messages = fixture_messages("route-downtown")
    expected = expected_events(messages, CFG)
    first = kafka_run.worker()
    first.wait_ready()

    # ~470 s of event time at 25x: ~19 s of wall time, so the kill lands mid-incident
    replay = threading.Thread(
        target=produce_replay,
        args=(messages, kafka_run.bootstrap),
        kwargs={"speed": 25.0, "topic_prefix": kafka_run.prefix},
    )
    replay.start()
    some = read_topic(
        kafka_run.bootstrap,
        kafka_run.topic("alerts"),
        until=lambda r: len(r) >= len(expected) // 3,
        timeout_s=60.0,
    )
    assert len(some) >= len(expected) // 3
    first.kill9()
    second = kafka_run.worker()
    replay.join(timeout=120)
    assert not replay.is_alive()
    second.wait_ready()

    records = read_topic(
        kafka_run.bootstrap,
        kafka_run.topic("alerts"),
        # the restarted worker catches up a backlog and may coalesce updates: wait for each
        # alert's last version (waiting for every version ran into the timeout, 120 s)
        until=has_every_last_version(expected),
        timeout_s=120.0,
        idle_s=3.0,
    )
    got = alerts_of(records)
    # grouped() also checks: a redelivered (id, version) is identical, versions only go up
    assert_same_alerts(got, expected)


def _messages_in(metrics: str) -> float:
    found = re.findall(r'^broker_messages_in_total\{topic="avl.positions"\} (\S+)$', metrics, re.M)
    return float(found[0]) if found else 0.0


def test_two_workers_split_the_partitions_and_produce_the_same_alerts_as_one(
    kafka_run: Run,
) -> None:
    messages = spread_fleet(8, ["route-downtown", "noisy-gps", "dead-reckoning"])
    expected = expected_events(messages, CFG)
    a = kafka_run.worker()
    a.wait_ready()
    b = kafka_run.worker()
    b.wait_ready()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the rebalance that hands b its share
        (_, ha), (_, hb) = a.health(), b.health()
        pa, pb = set(ha.get("partitions") or []), set(hb.get("partitions") or [])
        if pa and pb and not pa & pb and pa | pb == set(range(8)):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"partitions not split: a={a.health()} b={b.health()}")

    produce_replay(messages, kafka_run.bootstrap, speed=None, topic_prefix=kafka_run.prefix)
    records = read_topic(
        kafka_run.bootstrap,
        kafka_run.topic("alerts"),
        # a worker that reads its share late (a rebalance under way) coalesces updates: waiting
        # for every version waited out the timeout (120 s) in about half the runs
        until=has_every_last_version(expected),
        timeout_s=120.0,
        idle_s=2.0,
    )
    assert_same_alerts(alerts_of(records), expected)
    assert _messages_in(a.metrics()) > 0 and _messages_in(b.metrics()) > 0
    assert _messages_in(a.metrics()) + _messages_in(b.metrics()) == sum(
        1 for t, _ in messages if t == "avl.positions"
    )
