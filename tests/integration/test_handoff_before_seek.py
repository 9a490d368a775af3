"""No agent is handed a record before its assignment is sought, on a real broker.

Faust resumes the partitions it assigns before it seeks them to their committed offsets, and
its fetcher handed over records from wherever the consumer stood: a restarted worker was
handed offset 374 of a partition committed at about 170 (docs/streams.md, "No record is taken
before the seek"). The fan-out agent acked such records and Faust, no committed offset known
yet, committed over the ones before them: those alerts went to no partner. Here the restarted
worker's consumer is moved ahead of the committed offset before Faust's seek
(``seek_ahead_worker``), and its fan-out must take every ``alerts`` record from the committed
offset on, the first one first.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer, TopicPartition

from broker import codec
from broker.streams.runtime import partition_for
from tests.integration.conftest import Run, wait_committed
from tests.unit.adapters.factory import alert

pytestmark = pytest.mark.integration
PARTITIONS = 8
AHEAD = 5  # how far past the committed offset the consumer stands when Faust seeks
# one pull-feed partner: the fan-out agent runs (it does only with partners) and settles each
# alert at once (no push to wait for)
FEED_ONLY = """
[broker]
cap_sender = "alerts@test.example"
pseudonym_key = { env = "BROKER_PSEUDONYM_KEY" }

[[partner]]
id = "waze"
name = "Waze for Cities (CIFS feed)"
category = "navigation"
format = "waze_cifs"
purpose = "Show emergency-vehicle hazards on the map."
retention_days = 30
feed = true
feed_token = { env = "WAZE_FEED_TOKEN" }
coverage = { bbox = [-81.30, 34.90, -80.40, 35.60] }
timezone = "America/New_York"
[partner.policy]
fields = ["path", "segments", "street"]
"""


def _alert_ids(n: int) -> tuple[int, list[str]]:
    """``n`` alert ids that share one ``alerts`` partition, and that partition."""
    ids = [f"CFD-E{i}:F261206-{i:04d}:approaching" for i in range(400)]
    partition = partition_for(ids[0].encode(), PARTITIONS)
    same = [a for a in ids if partition_for(a.encode(), PARTITIONS) == partition]
    assert len(same) >= n
    return partition, same[:n]


def _produce(run: Run, partition: int, alert_ids: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=run.bootstrap)
    try:
        for aid in alert_ids:
            unit = aid.split(":")[0]
            event = alert(alert_id=aid, vehicle_id=unit, at=datetime.now(UTC))
            producer.send(run.topic("alerts"), key=aid.encode(), value=codec.encode(event),
                          partition=partition)
        producer.flush()
    finally:
        producer.close()


@pytest.mark.parametrize("committed_before", [True, False], ids=["committed", "never-committed"])
def test_fan_out_takes_every_alert_from_the_committed_offset_though_the_consumer_ran_ahead(
    kafka_run: Run, tmp_path: Path, committed_before: bool,
) -> None:
    """Committed: the group committed 5 and 10 more alerts wait. Never committed: 15 alerts
    wait on a partition the group never committed (its records start at the log's start,
    which aiokafka's seek to the committed offsets leaves alone). Either way the restarted
    worker's consumer stands 5 records ahead when Faust seeks, for 4 s of resumed fetching
    and commits; its fan-out must take the first waiting record first and every one after."""
    partition, ids = _alert_ids(15)
    tp = TopicPartition(kafka_run.topic("alerts"), partition)
    partners = tmp_path / "partners.toml"
    partners.write_text(FEED_ONLY)
    env = {"BROKER_PARTNERS": str(partners), "BROKER_PSEUDONYM_KEY": secrets.token_urlsafe(24),
           "WAZE_FEED_TOKEN": secrets.token_urlsafe(24), "BROKER_DELIVERY_MAX_AGE_S": ""}
    first = kafka_run.worker(**env)
    first.wait_ready()
    start = 5 if committed_before else 0
    if committed_before:
        _produce(kafka_run, partition, ids[:start])
        assert wait_committed(kafka_run, tp, start) == start, first.log_tail()
    first.stop()
    _produce(kafka_run, partition, ids[start:])

    second = kafka_run.worker(
        "tests.integration.seek_ahead_worker",
        TEST_SEEK_AHEAD=f"{tp.topic}:{partition}:{start + AHEAD}", TEST_SEEK_HOLD_S="4", **env,
    )
    second.wait_ready()
    assert wait_committed(kafka_run, tp, len(ids)) == len(ids), second.log_tail(200)
    assert second.log_path is not None
    said = second.log_path.read_text(errors="replace")
    assert f"ran ahead to {tp.topic}[{partition}]@{start + AHEAD}" in said  # the fault was made
    taken = [int(o) for o in re.findall(
        rf"fan-out took {re.escape(tp.topic)}\[{partition}\]@(\d+)", said)]
    assert taken, second.log_tail(200)
    # nothing handed over before the seek: the first record taken is the first one waiting
    assert taken[0] == start, f"first taken {taken[0]}, committed {start}: {taken}"
    assert set(range(start, len(ids))) <= set(taken), f"never taken: {taken}"
