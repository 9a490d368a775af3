"""Through Kafka: sustained positions/s of one and of two Faust workers, with consumer lag.

Needs a Kafka broker on 127.0.0.1 (``BROKER_KAFKA_BOOTSTRAP``; ``make bench`` starts one with
``scripts/with-kafka``). Method:

1. fleet-200 (or its first part in quick mode) is produced once, at full speed, into a fresh
   topic prefix (8 partitions, keyed by vehicle id), before any worker runs: a backlog.
2. For each worker count (1, then 2), a fresh consumer group (Faust app id) of real worker
   processes (``python -m broker.streams.cli worker``) drains that backlog. Every
   ``SAMPLE_S`` this module reads the positions the workers have taken (their
   ``broker_messages_in_total`` on ``/metrics``), and once a second the group's committed
   offsets against the end offsets: lag over time. Sustained rate = positions taken / time
   between 10 % and 90 % of the backlog, each crossing interpolated between two samples
   (process start, rebalance and the final commit left out; time counts from starting the
   processes). Committed offsets alone moved in steps of Faust's commit (every 10,000 records
   or 2.8 s): on a window of 5-8 s that put up to +-20 % on each rate, +-30 % on the
   head/base ratio. Each run stops by itself: when the lag is zero or after ``max_s`` seconds.

Run alone: ``scripts/with-kafka .venv/bin/python -m bench.kafka_bench [--positions N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import FLEET, ROOT, log
from broker.drive import ROUTES
from broker.replay import load_messages
from broker.streams import worker_process
from broker.streams.worker_process import free_port

PARTITIONS = 8
SAMPLE_S = 0.2  # how often the positions taken are read (the rate's time resolution)
TAKEN = re.compile(r'^broker_messages_in_total\{topic="avl\.positions"\} (\S+)$', re.M)


@dataclass
class WorkerProc:
    """One ``broker worker`` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def health(self) -> tuple[int, dict[str, object]]:
        return worker_process.health(self.port)

    def positions_taken(self) -> float | None:
        """``broker_messages_in_total{topic="avl.positions"}`` from the worker's /metrics (None:
        not answering)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            return None
        match = TAKEN.search(text)
        return float(match.group(1)) if match else 0.0

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        worker_process.stop(self.proc, grace_s=20)


def _has_ops_port(tree: Path) -> bool:
    settings = tree / "broker" / "streams" / "settings.py"
    return "BROKER_OPS_PORT" in settings.read_text()


def start_worker(bootstrap: str, prefix: str, app_id: str, tmp: Path, index: int,
                 extra_env: dict[str, str] | None = None, tree: Path = ROOT) -> WorkerProc:
    """Start a worker process of consumer group ``app_id`` reading topics under ``prefix``
    (``extra_env`` overrides, e.g. a partners file for the end-to-end run). ``tree``: the
    checkout whose code the worker runs (another revision: ``bench.fleets.base_tree``)."""
    port = free_port()
    data = tmp / f"{app_id}-w{index}"
    data.mkdir(parents=True, exist_ok=True)
    log_path = data / "worker.log"
    env = {
        "BROKER_PARTITIONS": str(PARTITIONS),
        "BROKER_LOG_LEVEL": "WARNING",
        "BROKER_SESSION_TIMEOUT_S": "10",
        # alerts only: the throughput run measures the engine path; the end-to-end run gives
        # the worker a partners file and lets it fan out and deliver (bench/e2e_bench.py)
        "BROKER_PARTNERS": "",
        "PYTHONPATH": str(tree),
        **(extra_env or {}),
    }
    proc = worker_process.spawn_worker(
        bootstrap=bootstrap, app_id=app_id, prefix=prefix,
        # /health and /metrics on the port the bench reads; a revision from before the
        # operations port served /health on its web port
        port=free_port(besides=(port,)) if _has_ops_port(tree) else port, ops_port=port,
        data=data, log=log_path, env=env, cwd=tree,
    )
    return WorkerProc(proc, port, log_path)


def wait_ready(workers: list[WorkerProc], timeout_s: float = 120.0) -> float:
    """Block until every worker's /health is 200 with partitions; returns seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        for w in workers:
            if w.proc.poll() is not None:
                tail = w.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{tail}")
        states = [w.health() for w in workers]
        if all(code == 200 and body.get("partitions") for code, body in states):
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"workers not ready after {timeout_s} s")


@contextlib.contextmanager
def workers_running(
    n: int, bootstrap: str, prefix: str, app_id: str, tmp: Path,
    extra_env: dict[str, str] | None = None, tree: Path = ROOT,
) -> Iterator[list[WorkerProc]]:
    """``n`` workers of one group (running ``tree``'s code); always stopped on the way out, and
    the group's own topics (changelogs) deleted; the topics under ``prefix`` are the caller's."""
    ws: list[WorkerProc] = []
    try:
        for i in range(n):
            ws.append(start_worker(bootstrap, prefix, app_id, tmp, i, extra_env, tree))
        yield ws
    finally:
        for w in ws:
            w.stop()
        drop_topics(bootstrap, (app_id,))


def drop_topics(bootstrap: str, starts: tuple[str, ...]) -> None:
    """Delete a run's topics (its prefix's, and the worker group's changelogs): each run makes
    a few dozen partitions, and a broker that kept them all slowed run after run (928
    partition directories after ~15 runs; end-to-end p99 with the burst / steady 1.3-2x on the
    first runs of a fresh broker, 4-64x later). A failure is logged, never fatal."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-cleanup")
    except KafkaError as err:
        log(f"topics of this run left in Kafka: {err}")
        return
    try:
        names = [t for t in admin.list_topics() if t.startswith(starts)]
        if names:
            admin.delete_topics(names, timeout_ms=30_000)
    except KafkaError as err:
        log(f"topics of this run left in Kafka: {err}")
    finally:
        admin.close()


def produce_backlog(bootstrap: str, prefix: str, positions: int) -> dict[str, Any]:
    """The first ``positions`` positions of fleet-200 (and their routes) into Kafka."""
    from broker.streams.produce import produce_replay

    messages = load_messages(FLEET)
    cut: list[tuple[str, bytes]] = []
    n = 0
    for topic, raw in messages:
        if topic != ROUTES:
            if n >= positions:
                break
            n += 1
        cut.append((topic, raw))
    summary = produce_replay(cut, bootstrap, speed=None, max_speed=True, topic_prefix=prefix,
                             partitions=PARTITIONS)
    return {"positions": n, "messages": summary.sent,
            "produce_s": round(summary.elapsed_s, 1),
            "produce_msgs_per_s": round(summary.sent / summary.elapsed_s)}


class LagProbe:
    """Committed offsets of a group vs end offsets of the positions topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.end = sum(self.consumer.end_offsets(self.tps).values())

    def committed(self, group: str) -> int:
        offsets = self.admin.list_group_offsets({group: self.tps}).get(group, {})
        return sum(om.offset for tp, om in offsets.items() if tp in self.tps and om.offset > 0)

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def drain(n_workers: int, bootstrap: str, prefix: str, tmp: Path, max_s: float,
          tree: Path = ROOT) -> dict[str, Any]:
    """Let ``n_workers`` fresh workers (of ``tree``) drain the backlog: positions taken every
    ``SAMPLE_S``, lag once a second (module doc)."""
    app_id = f"bench-{n_workers}w-{uuid.uuid4().hex[:6]}"
    probe = LagProbe(bootstrap, prefix + "avl.positions")
    total = probe.end
    samples: list[tuple[float, int]] = []  # (s since start, lag), once a second
    taken: list[tuple[float, float]] = []  # (s since start, positions taken), every SAMPLE_S
    try:
        t0 = time.monotonic()  # workers consume as soon as they own partitions: time from here
        with workers_running(n_workers, bootstrap, prefix, app_id, tmp, tree=tree) as ws:
            ready_s = wait_ready(ws)
            cpu_at_ready, done_at_ready = sum(w.cpu_s() for w in ws), probe.committed(app_id)
            next_lag = 0.0
            while True:
                now = time.monotonic() - t0
                counts = [w.positions_taken() for w in ws]
                if all(c is not None for c in counts):
                    taken.append((now, sum(c for c in counts if c is not None)))
                if now >= next_lag:
                    done = probe.committed(app_id)
                    samples.append((round(now, 1), total - done))
                    next_lag = now + 1.0
                    if done >= total or now > max_s:
                        break
                time.sleep(SAMPLE_S)
            cpu_s = sum(w.cpu_s() for w in ws) - cpu_at_ready
    finally:
        probe.close()
    # CPU per position from ready to drained: what the machine's load moves far less than the
    # rate (the workers' start-up left out; a partition committed before ready counted out)
    drained = done - done_at_ready
    cpu_us = round(cpu_s / drained * 1e6, 1) if drained > 0 else None
    return {"workers": n_workers, "backlog_positions": total, "ready_after_s": round(ready_s, 1),
            "cpu_s": round(cpu_s, 2), "cpu_us_per_position": cpu_us,
            "committed_at_end": total - samples[-1][1] if samples else 0,
            "elapsed_s": samples[-1][0] if samples else 0.0,
            **sustained_rate(taken, total), "lag_over_time": samples}


def crossing(series: list[tuple[float, float]], level: float) -> float | None:
    """When ``series`` (time, count; counts never fall) first reaches ``level``, linearly
    interpolated between the two samples around it (None: never)."""
    prev: tuple[float, float] | None = None
    for t, n in series:
        if n >= level:
            if prev is None or n == prev[1]:
                return t
            return prev[0] + (t - prev[0]) * (level - prev[1]) / (n - prev[1])
        prev = (t, n)
    return None


def sustained_rate(taken: list[tuple[float, float]], total: int) -> dict[str, Any]:
    """Positions/s between 10 % and 90 % of the backlog taken (module doc)."""
    lo, hi = crossing(taken, 0.1 * total), crossing(taken, 0.9 * total)
    if lo is None or hi is None or hi <= lo:
        return {"sustained_positions_per_s": None}
    return {"sustained_positions_per_s": round(0.8 * total / (hi - lo)),
            "window": {"from_s": round(lo, 2), "to_s": round(hi, 2),
                       "positions": round(0.8 * total)}}


def kafka_throughput(bootstrap: str, positions: int, max_s: float,
                     worker_counts: tuple[int, ...] = (1, 2),
                     base: Path | None = None, repeats: int = 1) -> dict[str, Any]:
    """Produce a backlog once, then drain it with each worker count; with ``base`` (another
    revision's checkout), one worker of it too, interleaved with this tree's one worker
    (base, head, head, base, ...): the ratio head/base is the figure, not either rate."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    out: dict[str, Any] = {"bootstrap": bootstrap, "partitions": PARTITIONS, "prefix": prefix}
    log(f"kafka: producing {positions} positions under {prefix}")
    out["backlog"] = produce_backlog(bootstrap, prefix, positions)
    runs: list[tuple[str, Path, int]] = []
    for r in range(repeats):
        pair = [("base", base), ("head", ROOT)] if base is not None else [("head", ROOT)]
        runs += [(label, tree, 1) for label, tree in (pair if r % 2 == 0 else pair[::-1])
                 if tree is not None]
    runs += [("head", ROOT, n) for n in worker_counts if n != 1]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmpdir:
            for label, tree, n in runs:
                log(f"kafka: {n} {label} worker(s) draining the backlog (at most {max_s:.0f} s)")
                res = drain(n, bootstrap, prefix, Path(tmpdir), max_s, tree)
                log(f"kafka: {n} {label} worker(s): {res.get('sustained_positions_per_s')} /s")
                key = f"workers_{n}" if label == "head" else f"base_workers_{n}"
                out.setdefault(key + "_runs", []).append(res)
    finally:
        drop_topics(bootstrap, (prefix,))
    for key in [k for k in out if k.endswith("_runs")]:
        rates = [r["sustained_positions_per_s"] for r in out[key]
                 if r.get("sustained_positions_per_s")]
        best = dict(out[key][0])
        best["sustained_positions_per_s"] = round(statistics.median(rates)) if rates else None
        cpus = [r["cpu_us_per_position"] for r in out[key] if r.get("cpu_us_per_position")]
        best["cpu_us_per_position"] = round(statistics.median(cpus), 1) if cpus else None
        out[key[: -len("_runs")]] = best
    if base is not None and out.get("workers_1") and out.get("base_workers_1"):
        h = out["workers_1"]["sustained_positions_per_s"]
        b = out["base_workers_1"]["sustained_positions_per_s"]
        out["ratio_1_worker"] = round(h / b, 3) if h and b else None
        hc = out["workers_1"].get("cpu_us_per_position")
        bc = out["base_workers_1"].get("cpu_us_per_position")
        out["ratio_1_worker_cpu"] = round(bc / hc, 3) if hc and bc else None
        out["base_tree"] = str(base)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("BROKER_KAFKA_BOOTSTRAP"))
    parser.add_argument("--positions", type=int, default=40_000)
    parser.add_argument("--max-s", type=float, default=60.0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--base", default="", help="also a worker of this revision (e.g. 777fae7)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("no Kafka: set BROKER_KAFKA_BOOTSTRAP or run under scripts/with-kafka")
    counts = tuple(int(x) for x in args.workers.split(","))
    from bench.fleets import base_tree

    base = base_tree(args.base) if args.base else None
    print(json.dumps(kafka_throughput(args.bootstrap, args.positions, args.max_s, counts, base,
                                      args.repeats), indent=2))


if __name__ == "__main__":
    main()
