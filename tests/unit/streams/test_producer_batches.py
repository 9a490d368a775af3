"""The worker's producer gathers large record batches (``producer_max_batch_bytes``).

aiokafka sends one produce request at a time per broker, and a partition whose batch is full
makes the next send to it wait until that request is answered. Faust's producer sends alerts,
audit records and table writes through one queue, one record after another, so with Faust's
16 KiB batches a dozen alerts in one partition held every record behind them: in the start
burst (bench/notes.md, section 5) a full table-changelog batch kept new alerts from Kafka for
tens to hundreds of milliseconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.streams.app import create_app
from broker.streams.settings import SettingsError, StreamSettings, from_env


def _producer_batch_size(settings: StreamSettings) -> Any:
    """The batch size of the aiokafka producer the worker's app builds (not started: nothing
    connects)."""

    async def build() -> Any:
        app = create_app(settings)
        return app.producer._new_producer()._message_accumulator._batch_size

    return asyncio.run(build())


@pytest.mark.parametrize("size", [None, 65_536])
def test_the_worker_producer_uses_the_configured_batch_size(tmp_path: Any,
                                                            size: int | None) -> None:
    env = {"BROKER_PARTNERS": "", "BROKER_DATA_DIR": str(tmp_path)}
    if size is not None:
        env["BROKER_PRODUCER_MAX_BATCH_BYTES"] = str(size)
    settings = from_env(env)
    assert _producer_batch_size(settings) == (size or 1_000_000)
    assert settings.producer_max_batch_bytes > 16_384  # larger than Faust's default


def test_a_batch_larger_than_kafka_takes_is_refused() -> None:
    with pytest.raises(SettingsError, match="BROKER_PRODUCER_MAX_BATCH_BYTES"):
        from_env({"BROKER_PRODUCER_MAX_BATCH_BYTES": "2000000", "BROKER_PARTNERS": ""})
