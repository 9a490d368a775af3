"""The real parts the suite drives: a Kafka broker (``scripts/kafka``) and worker processes.

:class:`KafkaNode` is ``scripts/kafka`` on its own port and run directory, so the "Kafka
stopped" scenario stops and restarts *this* broker with its data kept (``stop``, then ``start``
without ``--fresh``). :class:`WorkerProcess` is ``python -m broker.streams.cli worker`` as a
subprocess with ``BROKER_*`` settings (as the integration tests start it), its own data
directory and web port, and a log file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "scripts" / "kafka"
READY_TIMEOUT_S = 120.0


class PartFailed(RuntimeError):
    """A real part (Kafka, a worker) did not start or died: the scenario is an error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(bootstrap: str) -> bool:
    """Whether something listens at the first host:port of ``bootstrap``."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class KafkaNode:
    """``scripts/kafka`` on ``port`` (controller ``port + 1``) with its own run directory."""

    port: int
    rundir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "EV_KAFKA_PORT": str(self.port),
                "EV_KAFKA_CONTROLLER_PORT": str(self.port + 1), "EV_KAFKA_DIR": str(self.rundir)}

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(KAFKA_SCRIPT), *args], env=self._env(), capture_output=True,
                              text=True, timeout=180)
        if done.returncode != 0:
            said = [ln for ln in done.stderr.splitlines() if ln.startswith("kafka:")]
            raise PartFailed(f"scripts/kafka {' '.join(args)} failed: {' / '.join(said)} "
                             f"(logs: {self.rundir / 'logs'})\n{done.stderr[-1500:]}")

    def start(self, *, fresh: bool = False) -> None:
        """Start (``fresh``: new storage); returns once it answers."""
        self._run("start", *(["--fresh"] if fresh else []))

    def stop(self) -> None:
        """Controlled shutdown (SIGKILL after 30 s), data kept."""
        self._run("stop")


@dataclass
class WorkerProcess:
    """One ``broker worker`` subprocess of a run (same app id = same consumer group)."""

    name: str
    bootstrap: str
    app_id: str
    prefix: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        """Start the process with a fresh data dir (state comes back from the changelogs)."""
        self.port = free_port()
        data = self.workdir / f"{self.name}-{len(self.logs)}"
        data.mkdir(parents=True, exist_ok=True)
        log = data / "worker.log"
        self.logs.append(log)
        env = {
            **os.environ,
            "BROKER_KAFKA_BOOTSTRAP": self.bootstrap,
            "BROKER_APP_ID": self.app_id,
            "BROKER_TOPIC_PREFIX": self.prefix,
            "BROKER_WEB_PORT": str(self.port),
            "BROKER_DATA_DIR": str(data),
            "BROKER_LOG_LEVEL": "INFO",
            "BROKER_SESSION_TIMEOUT_S": "8",
            "BROKER_COMMIT_INTERVAL_S": "0.5",
            "BROKER_ALLOW_DEV_SECRETS": "true",
            **self.env,
        }
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker.streams.cli", "worker"],
                env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
            )

    def health(self) -> tuple[int, dict[str, object]]:
        """(status, body) of /health; (0, {}) while the web server is not up."""
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2.0)
            return r.status_code, r.json()
        except (httpx.HTTPError, json.JSONDecodeError):
            return 0, {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, *, partitions: int | None = None,
                   timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until /health is 200 (and, with ``partitions``, it owns that many)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise PartFailed(f"worker {self.name} exited:\n{self.log_tail()}")
            status, body = self.health()
            owned = body.get("partitions")
            if status == 200 and isinstance(owned, list) and owned and (
                partitions is None or len(owned) == partitions
            ):
                return
            time.sleep(0.25)
        raise PartFailed(f"worker {self.name} not ready after {timeout_s:.0f} s:\n"
                         f"{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a graceful leave), SIGKILL after 30 s."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.logs or not self.logs[-1].exists():
            return "(no log)"
        return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-lines:])
