"""A worker told to stop while its Kafka is gone still stops (``broker/streams/shutdown.py``).

Faust's graceful shutdown waits for Kafka (leave the group, flush the producer) for ever; the
deadline ends such a shutdown with exit 70 and a critical line. The test needs a Kafka of its
own to stop, so it starts one beside the session's on two free ports.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.streams.shutdown import EXIT_SHUTDOWN_TIMEOUT
from tests.faults.processes import KafkaNode
from tests.integration.conftest import Run, Worker
from tests.worker_process import free_port

pytestmark = pytest.mark.integration

DEADLINE_S = 5  # the worker's BROKER_SHUTDOWN_TIMEOUT_S here
EXIT_WAIT_S = 120  # how long the test waits for the process to end at all (a bound, not a timing)


def _port_pair() -> int:
    """A free port whose next port is free too (Kafka's client and controller ports)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaNode]:
    node = KafkaNode(_port_pair(), tmp_path / "kafka")
    node.start(fresh=True)
    try:
        yield node
    finally:
        node.stop()


def test_sigterm_with_kafka_gone_ends_with_exit_70_after_the_deadline(
    own_kafka: KafkaNode, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    run = Run(own_kafka.bootstrap, prefix=f"t{tag}.", app_id=f"t{tag}", tmp=tmp_path)
    worker = run.worker(BROKER_SHUTDOWN_TIMEOUT_S=str(DEADLINE_S))
    try:
        _stop_with_kafka_gone(own_kafka, worker)
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.kill9()


def _stop_with_kafka_gone(own_kafka: KafkaNode, worker: Worker) -> None:
    worker.wait_ready()
    assert worker.proc is not None

    own_kafka.stop()
    time.sleep(2.0)  # the worker's connections see the broker go
    assert worker.proc.poll() is None, f"worker ended before the signal:\n{worker.log_tail()}"
    signalled = time.monotonic()
    worker.proc.terminate()
    try:
        code = worker.proc.wait(timeout=EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        worker.kill9()
        pytest.fail(f"worker still running {EXIT_WAIT_S} s after SIGTERM:\n{worker.log_tail()}")
    took = time.monotonic() - signalled
    log = worker.log_path.read_text(errors="replace") if worker.log_path else ""
    assert code == EXIT_SHUTDOWN_TIMEOUT, f"exit {code} after {took:.1f} s:\n{worker.log_tail()}"
    assert "shutdown not finished" in log, worker.log_tail()
    # it waited for the graceful shutdown first (never cut short before its deadline)
    assert took >= DEADLINE_S, f"exit {code} after {took:.1f} s"
