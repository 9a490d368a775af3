"""The real parts the suite drives: a Kafka broker (``scripts/kafka``) and worker processes.

:class:`KafkaNode` is ``scripts/kafka`` on its own port and run directory, so the "Kafka
stopped" scenario stops and restarts *this* broker with its data kept (``stop``, then ``start``
without ``--fresh``). :class:`WorkerProcess` is ``python -m broker.streams.cli worker`` as a
subprocess with ``BROKER_*`` settings (as the integration tests start it), its own data
directory and web port, and a log file.

Whether the workers are serving is read from Kafka (:class:`ConsumerGroup`: the group is stable
and every ``avl.positions`` partition has an owner; how far its committed offsets are behind),
so the suite does not depend on the worker's web surface; a worker's ``/health`` is waited for
only where it answers (a 200 or 503; anything else, e.g. after ``/health`` moved to another
port, is taken as "nothing to wait for").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import worker_process as wp
from tests.worker_process import REPO, free_port

KAFKA_SCRIPT = REPO / "scripts" / "kafka"
READY_TIMEOUT_S = 120.0


class PartFailed(RuntimeError):
    """A real part (Kafka, a worker) did not start or died: the scenario is an error."""


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


class ConsumerGroup:
    """The workers' consumer group as Kafka sees it (kafka-python admin client)."""

    def __init__(self, bootstrap: str, group_id: str, topics: list[str]) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        servers = [s.strip() for s in bootstrap.split(",")]
        self.group_id, self.topics = group_id, topics
        self.admin: Any = KafkaAdminClient(bootstrap_servers=servers,
                                           reconnect_backoff_max_ms=1000)
        self.consumer: Any = KafkaConsumer(bootstrap_servers=servers, group_id=None,
                                           enable_auto_commit=False,
                                           reconnect_backoff_max_ms=1000)

    def owners(self) -> dict[str, set[int]] | None:
        """Member id -> the partitions of the first topic it owns, once the group is stable
        (None while it rebalances or is empty)."""
        info = self.admin.describe_groups([self.group_id]).get(self.group_id) or {}
        if info.get("group_state") != "Stable":
            return None
        out: dict[str, set[int]] = {}
        for m in info.get("members") or []:
            assigned = (m.get("member_assignment") or {}).get("assigned_partitions") or []
            out[m["member_id"]] = {p for a in assigned if a["topic"] == self.topics[0]
                                   for p in a["partitions"]}
        return out

    def lag(self) -> int:
        """Messages of the topics not yet committed by the group."""
        from kafka import TopicPartition

        parts = [TopicPartition(t, p) for t in self.topics
                 for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        end = self.consumer.end_offsets(parts)
        done = self.admin.list_group_offsets({self.group_id: parts}).get(self.group_id, {})
        return sum(max(0, end[tp] - (done[tp].offset if tp in done and done[tp].offset >= 0
                                     else 0)) for tp in parts)

    def wait(self, *, members: int, partitions: int, not_before: set[str] | None = None,
             alive: Callable[[], bool] = lambda: True,
             timeout_s: float = READY_TIMEOUT_S) -> set[str]:
        """Until the group is stable with ``members`` members (none of ``not_before``: a
        restarted worker is a new member) that own all ``partitions``; returns the ids."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive():
                raise PartFailed("a worker exited while the group was forming")
            owners = self._owners_or_none()
            if owners is not None and len(owners) == members and all(owners.values()) and (
                not not_before or not (set(owners) & not_before)
            ) and len(set().union(*owners.values())) == partitions:
                return set(owners)
            time.sleep(0.25)
        raise PartFailed(f"group {self.group_id} not stable with {members} member(s) owning "
                         f"{partitions} partitions after {timeout_s:.0f} s")

    def _owners_or_none(self) -> dict[str, set[int]] | None:
        try:
            return self.owners()
        except Exception:  # Kafka busy or the coordinator moving: ask again
            return None

    def close(self) -> None:
        for client in (self.admin, self.consumer):
            with contextlib.suppress(Exception):
                client.close()


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
    ops_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)
    frozen: bool = False

    def start(self) -> None:
        """Start the process with a fresh data dir (state comes back from the changelogs)."""
        self.port = free_port()
        self.ops_port = free_port(besides=(self.port,))  # /health and /metrics: a port of their own
        data = self.workdir / f"{self.name}-{len(self.logs)}"
        data.mkdir(parents=True, exist_ok=True)
        self.logs.append(data / "worker.log")
        self.proc = wp.spawn_worker(
            module="broker.streams.cli", bootstrap=self.bootstrap, app_id=self.app_id,
            prefix=self.prefix, port=self.port, ops_port=self.ops_port, data=data,
            log=self.logs[-1], env={"BROKER_ALLOW_DEV_SECRETS": "true", **self.env},
        )

    def health(self) -> tuple[int, dict[str, object]]:
        """(status, body) of /health; (0, {}) while the web server is not up."""
        return wp.health(self.ops_port)

    def alive(self) -> bool:
        return wp.running(self.proc)

    def wait_healthy(self, timeout_s: float = 20.0) -> None:
        """Until /health says 200, where the worker serves one (see the module docstring);
        gives up quietly after ``timeout_s`` when nothing answers there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise PartFailed(f"worker {self.name} exited:\n{self.log_tail()}")
            status, _body = self.health()
            if status not in (0, 503):  # 200, or no /health here
                return
            time.sleep(0.25)

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        wp.kill9(self.proc)

    def freeze(self) -> None:
        """SIGSTOP: every thread stops where it is (a GC pause, a VM stall), sockets open,
        nothing flushed, no heartbeat; the process keeps everything it had in memory."""
        if self.proc is not None and self.alive():
            self.proc.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: the frozen process goes on from where it stopped."""
        if self.proc is not None and self.frozen:
            self.proc.send_signal(signal.SIGCONT)
            self.frozen = False

    def stop(self) -> None:
        """SIGTERM (a graceful leave), SIGKILL after 30 s; a frozen worker is thawed first."""
        self.thaw()
        wp.stop(self.proc, grace_s=30)

    def log_tail(self, lines: int = 40) -> str:
        return wp.log_tail(self.logs[-1] if self.logs else None, lines)
