"""The topics a worker creates: the dead-letter topics keep raw input for a bounded time, the
audit topic keeps what was sent to whom for as long as it is set to (not Kafka's 7 days)."""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from tests.integration.conftest import Run

pytestmark = pytest.mark.integration


def test_the_dead_letter_and_audit_topics_have_their_retention(kafka_run: Run) -> None:
    worker = kafka_run.worker(BROKER_DLQ_RETENTION_S="7200", BROKER_AUDIT_RETENTION_S="86400")
    worker.wait_ready()
    admin = KafkaAdminClient(bootstrap_servers=kafka_run.bootstrap)
    try:
        names = [kafka_run.topic(n) for n in ("avl.dlq", "delivery.dlq", "audit")]
        answers = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    finally:
        admin.close()
    # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
    retention = {n: answers["topic"][n]["retention.ms"]["value"] for n in names}
    assert retention == {names[0]: "7200000", names[1]: "7200000", names[2]: "86400000"}


def test_a_bench_run_leaves_no_topics_behind(kafka_bootstrap: str) -> None:
    # bench.kafka_bench.drop_topics: a broker that kept every run's topics slowed run after run
    from kafka.admin import NewTopic

    from bench.kafka_bench import drop_topics

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    mine = ["dropme.avl.positions", "dropme.alerts", "dropme-app-vehicles-changelog"]
    other = "keepme.alerts"
    try:
        admin.create_topics([NewTopic(n, 2, 1) for n in [*mine, other]])
        assert set(mine) | {other} <= set(admin.list_topics())
        drop_topics(kafka_bootstrap, ("dropme.", "dropme-app"))
        left = set(admin.list_topics())
        assert other in left and not set(mine) & left
        admin.delete_topics([other])
    finally:
        admin.close()


def test_a_topic_that_takes_smaller_batches_than_the_producer_stops_the_start(
    kafka_run: Run,
) -> None:
    """A full batch over a topic's max.message.bytes is refused by Kafka, not retried: found at
    start, naming the topic and both fixes, not mid-stream as a stopped worker."""
    from kafka.admin import NewTopic

    alerts, traccar = kafka_run.topic("alerts"), kafka_run.topic("avl.traccar")
    admin = KafkaAdminClient(bootstrap_servers=kafka_run.bootstrap)
    try:
        admin.create_topics([
            NewTopic(alerts, 8, 1, topic_configs={"max.message.bytes": "65536"}),
            # an input the worker only reads: its limit is the producer's (Traccar's), not ours
            NewTopic(traccar, 8, 1, topic_configs={"max.message.bytes": "2048"}),
        ])
    finally:
        admin.close()
    refused = kafka_run.worker()
    assert refused.proc is not None
    assert refused.proc.wait(timeout=120) == 2, refused.log_tail()
    said = refused.log_tail()
    assert f"topic {alerts} takes record batches of at most 65536 bytes" in said
    assert "BROKER_PRODUCER_MAX_BATCH_BYTES to 65536 or less" in said
    fits = kafka_run.worker(BROKER_PRODUCER_MAX_BATCH_BYTES="65536")
    fits.wait_ready()


def test_a_topic_with_another_partition_count_is_named(kafka_bootstrap: str) -> None:
    """The error said "topic None has 8 partitions": kafka-python 3 names a described topic
    ``name``, and the check read ``topic`` (an operator review)."""
    from kafka.admin import NewTopic

    from broker.streams.produce import TopicMismatch, ensure_topics

    name = "mismatch.alerts"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, 2, 1)])
        with pytest.raises(TopicMismatch) as raised:
            ensure_topics(kafka_bootstrap, [name], partitions=3)
        assert name in str(raised.value) and "None" not in str(raised.value)
        admin.delete_topics([name])
    finally:
        admin.close()
