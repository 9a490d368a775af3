"""What syncing the audit file (``BROKER_AUDIT_FILE``) costs the delivery path.

    .venv/bin/python -m bench.audit_file_sync [--seconds S] [--rounds R] [--dir DIR]

One asyncio loop writes audit records as a delivery does (``JsonlAudit.write`` in the loop, a
loop turn after each) while the file is synced in one of these ways, the variants interleaved
round by round so the machine's noise falls on all alike: ``none`` (the code before
2026-12-06), ``timer 1s`` (the worker's: ``JsonlAudit.sync`` in a thread every
``AUDIT_FILE_SYNC_S``), ``timer 10ms`` (the same a hundred times as often, to make its cost
visible) and ``per record`` (an fsync after each write, in the loop: the alternative not taken).
Each variant writes for S seconds (default 5: several of the 1 s timer's syncs fall inside the
timed window, counted and printed). Prints, per variant, the median over rounds of records/s,
of the syncs in the window and of the write's p50 / p99 / max in microseconds (the loop is
blocked that long: every delivery waits). DIR is where the file goes:
the disk the worker's audit file would be on (default: a temporary directory under ./out).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from adapters.audit import AuditRecord, JsonlAudit

RECORD = AuditRecord(at=datetime(2026, 12, 6, tzinfo=UTC), partner="navapp", alert_id="a" * 22,
                     version=3, action="update", status="delivered", attempt=1,
                     message_id="a" * 22 + "-v3", fields=("zone", "expires_at", "segments"),
                     http_status=204, latency_ms=12.5)


async def _syncing(sink: JsonlAudit, every_s: float, done: list[int]) -> None:
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(sink.sync)
        done[0] += 1


async def one_run(path: Path, seconds: float, variant: str) -> tuple[float, int, np.ndarray]:
    """Records/s, syncs done while writing, and each write's duration (s) for one variant on a
    fresh file, writing for ``seconds``."""
    sink = JsonlAudit(path)
    timer = {"timer 1s": 1.0, "timer 10ms": 0.01}.get(variant)
    syncs = [0]
    syncer = asyncio.create_task(_syncing(sink, timer, syncs)) if timer is not None else None
    per_record = variant == "per record"
    took: list[float] = []
    started = time.perf_counter()
    while (t := time.perf_counter()) - started < seconds:
        sink.write(RECORD)
        if per_record:
            sink.sync()
            syncs[0] += 1
        took.append(time.perf_counter() - t)
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    in_window = syncs[0]
    if syncer is not None:
        syncer.cancel()
    await asyncio.to_thread(sink.sync)  # the shutdown's (not timed)
    return len(took) / elapsed, in_window, np.array(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("out"))
    args = parser.parse_args()
    variants = ["none", "timer 1s", "timer 10ms", "per record"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    syncs: dict[str, list[int]] = {v: [] for v in variants}
    pcts: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                path = Path(tmp) / "audit.jsonl"
                path.unlink(missing_ok=True)
                rate, n_syncs, took = asyncio.run(one_run(path, args.seconds, v))
                rates[v].append(rate)
                syncs[v].append(n_syncs)
                pcts[v].append(np.percentile(took, [50, 99, 100]) * 1e6)
    base = statistics.median(rates["none"])
    print(f"{'variant':<12} {'records/s':>10} {'vs none':>8} {'syncs':>7} {'p50 us':>8} "
          f"{'p99 us':>8} {'max us':>9}")
    for v in variants:
        rate = statistics.median(rates[v])
        p50, p99, top = np.median(np.array(pcts[v]), axis=0)
        print(f"{v:<12} {rate:>10.0f} {rate / base:>8.2f} {statistics.median(syncs[v]):>7.0f} "
              f"{p50:>8.1f} {p99:>8.1f} {top:>9.1f}")


if __name__ == "__main__":
    main()
