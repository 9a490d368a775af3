"""The tests' ``broker worker`` subprocess (``broker.streams.worker_process`` with the test
settings below) and the Kafka check around it: what the integration tests
(``tests/integration/conftest.py``) and the fault harness (``tests/faults/processes.py``) start."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from broker.streams.worker_process import free_port, health, kill9, log_tail, running, stop
from broker.streams.worker_process import spawn_worker as _spawn

__all__ = ["REPO", "WORKER_ENV", "answers", "free_port", "health", "kill9", "log_tail",
           "running", "spawn_worker", "stop"]

REPO = Path(__file__).resolve().parents[1]

# every test worker: a short session (a dead worker's partitions move within seconds) and
# frequent commits; the callers add their own settings after these
WORKER_ENV = {
    "BROKER_LOG_LEVEL": "INFO",
    "BROKER_SESSION_TIMEOUT_S": "8",
    "BROKER_COMMIT_INTERVAL_S": "0.5",
}


def answers(bootstrap: str) -> bool:
    """Whether something listens at the first host:port of ``bootstrap``."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def spawn_worker(
    *, module: str, bootstrap: str, app_id: str, prefix: str, port: int, ops_port: int,
    data: Path, log: Path, env: dict[str, str],
) -> subprocess.Popen[bytes]:
    """A worker of this checkout with the test settings (``WORKER_ENV``), then ``env``."""
    return _spawn(
        module=module, bootstrap=bootstrap, app_id=app_id, prefix=prefix, port=port,
        ops_port=ops_port, data=data, log=log, env={**WORKER_ENV, **env}, cwd=REPO,
    )
