"""Profiles of the hot paths, written as text under docs/profiles/.

- ``engine``: pyinstrument over the fleet-200 in-process replay (decode + step + tick).
- ``worker``: py-spy (sampling, attached to a real ``broker worker`` process) while it drains a
  Kafka backlog; stacks folded and summed into inclusive/self shares per function.

Run: ``.venv/bin/python -m bench.profile engine`` and
``scripts/with-kafka .venv/bin/python -m bench.profile worker``.
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
    from bench.kafka_bench import produce_backlog, start_worker, wait_ready

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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# py-spy, 200 Hz, {seconds} s, one broker worker draining {positions} fleet-200 "
        "positions (8 partitions)\n" + text
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["engine", "worker"])
    parser.add_argument("--bootstrap", default=os.environ.get("BROKER_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    if args.what == "engine":
        print(engine_profile())
    else:
        if not args.bootstrap:
            parser.error("no Kafka: set BROKER_KAFKA_BOOTSTRAP or run under scripts/with-kafka")
        print(worker_profile(args.bootstrap))


if __name__ == "__main__":
    main()
