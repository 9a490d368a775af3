"""Where a restarted worker resumes its inputs, on a real broker: the committed offset, and
past records that retention deleted while no worker read them (``InputSequence``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from broker import codec
from broker.model import Position
from broker.streams.produce import produce_replay
from broker.streams.runtime import partition_for
from tests.integration.conftest import Run, Worker, wait_committed

pytestmark = pytest.mark.integration


def _fixes(vehicle_id: str, start: datetime, n: int) -> list[tuple[str, bytes]]:
    """``n`` fixes of a unit on scene, one a second from ``start`` (no alert churn needed)."""
    return [("avl.positions", codec.encode(Position(
        vehicle_id=vehicle_id, ts=start + timedelta(seconds=i), lat=35.2271, lon=-80.8431,
        status="available", speed_mps=0.0, heading_deg=90.0,
    ))) for i in range(n)]  # fmt: skip


def _restarted_after_retention(
    run: Run, vid: str, starts_at: int,
) -> tuple[TopicPartition, Worker]:
    """A worker's group commits 3 fixes of ``vid``; while no worker runs, 6 more come and
    Kafka deletes the partition's records below ``starts_at`` (retention, here
    delete_records); then a worker restarts: its partition and that worker, ready."""
    tp = TopicPartition(run.topic("avl.positions"), partition_for(vid.encode(), 8))
    now = datetime.now(UTC) - timedelta(seconds=30)
    first = run.worker()
    first.wait_ready()
    produce_replay(_fixes(vid, now, 3), run.bootstrap, speed=None, topic_prefix=run.prefix)
    assert wait_committed(run, tp, 3) == 3, first.log_tail()
    first.stop()
    produce_replay(_fixes(vid, now + timedelta(seconds=3), 6), run.bootstrap, speed=None,
                   topic_prefix=run.prefix)
    admin = KafkaAdminClient(bootstrap_servers=run.bootstrap)
    try:
        admin.delete_records({tp: starts_at})
    finally:
        admin.close()
    second = run.worker()
    second.wait_ready()
    return tp, second


def test_records_retention_deleted_before_a_restart_are_counted_and_passed_over(
    kafka_run: Run,
) -> None:
    """The group committed 3; Kafka then lost 3..5 (retention, here delete_records) while no
    worker ran. The restarted worker reads from the committed offset, finds the partition
    starting at 6, counts 3 deleted offsets, says so, and goes on (a stop would stop every
    restart the same way)."""
    tp, second = _restarted_after_retention(kafka_run, "RET-1", starts_at=6)
    assert wait_committed(kafka_run, tp, 9) == 9, second.log_tail(200)
    said = second.log_tail(400)
    assert f"{tp.topic}[{tp.partition}]: offsets 3..5 were deleted (retention)" in said
    assert f'broker_input_offset_gaps_total{{topic="{tp.topic}"}} 3.0' in second.metrics()
    assert second.proc is not None and second.proc.poll() is None  # going on


def _lag(metrics: str, tp: TopicPartition) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("broker_consumer_lag{") and f'topic="{tp.topic}"' in line \
                and f'partition="{tp.partition}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_backlog_retention_deleted_entirely_is_no_lag(kafka_run: Run) -> None:
    """The group committed 3; Kafka then lost all 3..8 while no worker ran, and nothing was
    written since: the restarted consumer resets to where Kafka starts (its fetch position, 9)
    and no record ever comes, so the partition has no backlog (docs/streams.md, "What counts as
    a backlog"); counted from the committed offset its lag was 6 for ever, its clock held."""
    tp, second = _restarted_after_retention(kafka_run, "RET-2", starts_at=9)
    deadline = time.monotonic() + 60
    while (lag := _lag(second.metrics(), tp)) != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lag == 0, second.log_tail(200)
