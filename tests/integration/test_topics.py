"""The topics a worker creates: the dead-letter topics keep raw input for a bounded time."""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from tests.integration.conftest import Run

pytestmark = pytest.mark.integration


def test_the_dead_letter_topics_have_a_retention(kafka_run: Run) -> None:
    worker = kafka_run.worker(BROKER_DLQ_RETENTION_S="7200")
    worker.wait_ready()
    admin = KafkaAdminClient(bootstrap_servers=kafka_run.bootstrap)
    try:
        names = [kafka_run.topic("avl.dlq"), kafka_run.topic("delivery.dlq")]
        answers = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    finally:
        admin.close()
    # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
    retention = {n: answers["topic"][n]["retention.ms"]["value"] for n in names}
    assert retention == {n: "7200000" for n in names}


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
