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
