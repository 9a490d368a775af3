"""A ``broker worker`` as a child process: started with its settings in the environment, read
through its /health, stopped gracefully or killed. What the benchmarks (``bench/``), the
integration tests and the fault harness start, each with its own waiting and bookkeeping."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

# Ports handed to child processes come from below the kernel's ephemeral range (32768-60999
# on Linux): a port from bind(("", 0)) is free only until the next outgoing connection takes it
# as its source port, and a worker started a moment later then failed on "address already in
# use" (a benchmark run died so). Kafka's ports here (9092, 25092, 29xxx, 49092) are outside.


def ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    """The first port of the kernel's ephemeral range (Linux's default when unreadable)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


# 10000-19999, cut short below a kernel whose ephemeral range starts lower
CHILD_PORTS = range(10_000, max(10_100, min(20_000, ephemeral_low())))


def free_port(*, besides: tuple[int, ...] = ()) -> int:
    """A TCP port on 127.0.0.1 that is free right now (and not one of ``besides``), drawn from
    :data:`CHILD_PORTS`, which the kernel never hands out on its own."""
    rng = random.Random()  # its own: a seeded global random would hand every caller the same
    while True:
        port = rng.choice(CHILD_PORTS)
        if port in besides:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken: another draw
                continue
        return port


def spawn_worker(
    *, bootstrap: str, app_id: str, prefix: str, port: int, ops_port: int, data: Path,
    log: Path, env: Mapping[str, str], cwd: Path, module: str = "broker.streams.cli",
) -> subprocess.Popen[bytes]:
    """``python -m <module> worker`` in ``cwd`` (a checkout: its code runs when it is also on
    ``PYTHONPATH``), of group ``app_id`` on topics under ``prefix``, its public port ``port``,
    /health and /metrics on ``ops_port``, its state under ``data``, stdout and stderr to
    ``log``; ``env`` last (a caller's settings win)."""
    full = {
        **os.environ,
        "BROKER_KAFKA_BOOTSTRAP": bootstrap,
        "BROKER_APP_ID": app_id,
        "BROKER_TOPIC_PREFIX": prefix,
        "BROKER_WEB_PORT": str(port),
        "BROKER_OPS_PORT": str(ops_port),
        "BROKER_DATA_DIR": str(data),
        **env,
    }
    with log.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", module, "worker"],
            env=full, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd,
        )


def health(ops_port: int) -> tuple[int, dict[str, object]]:
    """(status, body) of a worker's /health; (0, {}) while its web server is not up."""
    try:
        r = httpx.get(f"http://127.0.0.1:{ops_port}/health", timeout=2.0)
        return r.status_code, r.json()
    except (httpx.HTTPError, json.JSONDecodeError):
        return 0, {}


def running(proc: subprocess.Popen[bytes] | None) -> bool:
    """Whether the process was started and has not exited."""
    return proc is not None and proc.poll() is None


def kill9(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: no shutdown, no flush, no final commit."""
    if proc is not None and running(proc):
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM (a graceful leave of the group), SIGKILL if still there after ``grace_s``."""
    if proc is None or not running(proc):
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def log_tail(log: Path | None, lines: int) -> str:
    """The last ``lines`` of a worker's log, for failure messages."""
    if log is None or not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
