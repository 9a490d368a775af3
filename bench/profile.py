"""Profiles of the hot paths, written as text under docs/profiles/.

- ``engine``: pyinstrument over the fleet-200 in-process replay (decode + step + tick).
- ``worker``: py-spy (sampling, attached to a real ``broker worker`` process) while it drains a
  Kafka backlog; stacks folded and summed into inclusive/self shares per function.
- ``burst``: py-spy on the worker of the end-to-end run (``bench.e2e_bench``, Kafka mode):
  its first 8 s once ready (the start burst: every responding unit creates its alert) and 10 s
  of steady traffic later; the worker's main thread (its event loop) shared out by part.

Run: ``.venv/bin/python -m bench.profile engine`` and
``scripts/with-kafka .venv/bin/python -m bench.profile worker`` (or ``burst``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import FLEET, ROOT, log

PROFILES = ROOT / "docs" / "profiles"


def engine_profile(out: Path = PROFILES / "engine-fleet200.txt") -> Path:
    """pyinstrument text tree of one fleet-200 replay."""
    from pyinstrument import Profiler

    from broker.replay import load_messages, replay_in_process
    from broker.settings import EngineConfig

    messages = load_messages(FLEET)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    replay_in_process(messages, cfg=EngineConfig())
    profiler.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    return out


def fold(raw: Path, top: int = 60) -> str:
    """Inclusive and self shares per function from py-spy's raw (folded) output."""
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack:
            continue
        n = int(n_text)
        total += n
        names = [re.sub(r" \(/\S*?/(site-packages|main)/", " (", f) for f in stack.split(";")]
        for f in set(names):
            incl[f] += n
        self_[names[-1]] += n
    lines = [f"samples: {total}", "", "inclusive share (% of samples in which it is on the stack)"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    lines += ["", "self share"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in self_.most_common(30)]
    return "\n".join(lines) + "\n"


def worker_profile(bootstrap: str, positions: int = 100_000, seconds: int = 10,
                   out: Path = PROFILES / "worker-pyspy.txt") -> Path | None:
    """py-spy on one worker draining a backlog of fleet-200 positions."""
    from bench.kafka_bench import drop_topics, produce_backlog, start_worker, wait_ready

    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        log("py-spy not installed: no worker profile")
        return None
    prefix = f"prof{uuid.uuid4().hex[:6]}."
    produce_backlog(bootstrap, prefix, positions)
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmpdir:
        w = start_worker(bootstrap, prefix, f"prof-{prefix[:-1]}", Path(tmpdir), 0)
        try:
            wait_ready([w])
            raw = Path(tmpdir) / "worker.raw"
            subprocess.run(
                [pyspy, "record", "-p", str(w.proc.pid), "-d", str(seconds), "-r", "200",
                 "--format", "raw", "-o", str(raw), "--nonblocking"],
                check=True, capture_output=True, timeout=seconds + 60,
            )
            text = fold(raw)
        finally:
            w.stop()
            drop_topics(bootstrap, (prefix, f"prof-{prefix[:-1]}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# py-spy, 200 Hz, {seconds} s, one broker worker draining {positions} fleet-200 "
        "positions (8 partitions)\n" + text
    )
    return out


# Parts of the worker's main thread, by a frame on the stack (first match wins): what the
# start burst costs beyond steady traffic, and what only start-up should pay.
PARTS = (
    ("idle (waiting in epoll)", ("EpollSelector.select",)),
    ("TCP connect/close to partners", ("try_connect", "_call_connection_lost", "_sock_connect")),
    ("failed sniffio import (httpcore)", ("current_async_library (httpcore",)),
    ("pyproj Transformer build (frames)", ("Transformer.from_crs", "TransformerFromCRS")),
    ("other lazy imports", ("_find_and_load",)),
    ("console (reading Kafka, folding)", ("broker/console/", "aiokafka/consumer/fetcher.py")),
    ("engine (Driver.handle)", ("Driver.handle (",)),
    ("vehicle agent, rest", ("VehicleAgent.",)),
    ("state flush", ("VehicleStates.flush",)),
    ("delivery (PartnerWorker)", ("PartnerWorker.", "DeliveryLoop.")),  # and its base
    ("fan-out (Dispatcher)", ("Dispatcher.",)),
    ("Kafka producer", ("aiokafka/producer/", "ProducerBuffer")),
)


def main_thread_parts(raw: Path) -> dict[str, float]:
    """Shares (%) of the worker's main-thread samples in py-spy raw output, by ``PARTS``."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        if "run_worker (" not in stack:  # other threads (Faust's consumer thread, ...)
            continue
        n = int(n_text)
        total += n
        last = stack.rsplit(";", 1)[-1]
        for part, marks in PARTS:
            hay = last if part.startswith("idle") else stack
            if any(m in hay for m in marks):
                counts[part] += n
                break
        else:
            counts["other (Faust, asyncio, aiokafka)"] += n
    return {part: round(100 * n / total, 1) for part, n in counts.most_common()} if total else {}


def burst_profile(bootstrap: str, out: Path = PROFILES / "worker-burst.txt") -> Path | None:
    """py-spy on the end-to-end run's worker: the start burst, then steady traffic."""
    import json
    import threading
    import time

    from bench import e2e_bench, kafka_bench

    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        log("py-spy not installed: no burst profile")
        return None
    tmp = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    windows = {"burst": (0.0, 8), "steady": (18.0, 10)}  # (delay after ready s, length s)

    def record(pid: int, name: str) -> None:
        delay, length = windows[name]
        time.sleep(delay)
        subprocess.run([pyspy, "record", "-p", str(pid), "-d", str(length), "-r", "100",
                        "--idle", "--format", "raw", "-o", str(tmp / f"{name}.raw"),
                        "--nonblocking"], capture_output=True, timeout=length + 60)

    ready = kafka_bench.wait_ready
    threads: list[threading.Thread] = []

    def wait_then_record(ws: list[kafka_bench.WorkerProc], *a: object, **k: object) -> float:
        took = ready(ws, *a, **k)  # type: ignore[arg-type]
        for name in windows:
            threads.append(threading.Thread(target=record, args=(ws[0].proc.pid, name)))
            threads[-1].start()
        return took

    kafka_bench.wait_ready = wait_then_record  # type: ignore[assignment]
    try:
        res = e2e_bench.e2e(500.0, 45.0, "kafka", bootstrap)
    finally:
        kafka_bench.wait_ready = ready
        for t in threads:
            t.join()
    lines = [f"# py-spy, 100 Hz, the worker of `bench.e2e_bench` (Kafka, 500 units, 45 s), "
             f"load {os.getloadavg()[0]:.1f}", ""]
    for name in windows:
        raw = tmp / f"{name}.raw"
        if raw.exists():
            lines += [f"## {name}: main thread by part (%)", "",
                      json.dumps(main_thread_parts(raw), indent=1), "", fold(raw, top=40)]
    keys = ("latency_all", "latency_steady", "stages", "stages_steady", "sink_connections",
            "webhooks_received", "lost", "partner_stats")
    lines += ["## the run", "", json.dumps({k: res.get(k) for k in keys}, indent=1)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["engine", "worker", "burst"])
    parser.add_argument("--bootstrap", default=os.environ.get("BROKER_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    if args.what == "engine":
        print(engine_profile())
    else:
        if not args.bootstrap:
            parser.error("no Kafka: set BROKER_KAFKA_BOOTSTRAP or run under scripts/with-kafka")
        print(worker_profile(args.bootstrap) if args.what == "worker"
              else burst_profile(args.bootstrap))


if __name__ == "__main__":
    main()
