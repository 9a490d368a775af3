"""A worker that can never become ready stops, saying why, with its own exit code.

Its table recovery's last step (the seek to the committed offsets) never returns
(``stuck_seek_worker``): before the readiness watchdog such a worker ran on, not ready, for as
long as it lived (/health, once up, 503; here not even up: Faust starts its tasks only after
the first recovery). With ``BROKER_NOT_READY_EXIT_S`` it exits 75 once that long has passed
with no progress, through the failure policy's stop, and its log says what it saw.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from broker.streams.runtime import EXIT_NOT_READY
from tests.integration.conftest import Run

pytestmark = pytest.mark.integration
STUCK = "tests.integration.stuck_seek_worker"
LIMIT_S = 15
# how long the test waits for the exit: far longer than the limit plus a start on a loaded
# machine; only a worker that never stops reaches it
EXIT_WAIT_S = 240


def test_a_worker_whose_recovery_never_ends_exits_not_ready(kafka_run: Run) -> None:
    worker = kafka_run.worker(module=STUCK, BROKER_NOT_READY_EXIT_S=str(LIMIT_S))
    assert worker.proc is not None
    try:
        code = worker.proc.wait(timeout=EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {EXIT_WAIT_S} s:\n{worker.log_tail()}")
    assert worker.log_path is not None
    log = worker.log_path.read_text(errors="replace")  # whole: the stop's lines may be long
    tail = worker.log_tail(80)  # what a failure shows
    assert "stuck_seek_worker: seek held" in log, tail  # the recovery did reach the held seek
    assert code == EXIT_NOT_READY, tail
    still = re.search(r"readiness watchdog: not ready for \d+ s, no progress for (\d+) s", log)
    assert still is not None and int(still.group(1)) >= LIMIT_S, tail
    assert "/health missing: recovered, assigned; recovery_completed=False" in log, tail
    assert "stopping the worker: readiness failed on 'worker'" in log, tail
