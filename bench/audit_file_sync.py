"""What syncing the audit file (``BROKER_AUDIT_FILE``) costs the delivery path.

    .venv/bin/python -m bench.audit_file_sync [--records N] [--rounds R] [--dir DIR]

One asyncio loop writes audit records as a delivery does (``JsonlAudit.write`` in the loop, a
loop turn after each) while the file is synced in one of these ways, the variants interleaved
round by round so the machine's noise falls on all alike: ``none`` (the code before
2026-12-06), ``timer 1s`` (the worker's: ``JsonlAudit.sync`` in a thread every
``AUDIT_FILE_SYNC_S``), ``timer 10ms`` (the same a hundred times as often, to make its cost
visible) and ``per record`` (an fsync after each write, in the loop: the alternative not taken).
Prints, per variant, the median over rounds of records/s and of the write's p50 / p99 / max in
microseconds (the loop is blocked that long: every delivery waits). DIR is where the file goes:
the disk the worker's audit file would be on (default: a temporary directory under ./out).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from adapters.audit import AuditRecord, JsonlAudit

RECORD = AuditRecord(at=datetime(2026, 12, 6, tzinfo=UTC), partner="navapp", alert_id="a" * 22,
                     version=3, action="update", status="delivered", attempt=1,
                     message_id="a" * 22 + "-v3", fields=("zone", "expires_at", "segments"),
                     http_status=204, latency_ms=12.5)


async def _syncing(sink: JsonlAudit, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(sink.sync)


async def one_run(path: Path, records: int, variant: str) -> tuple[float, np.ndarray]:
    """Records/s and each write's duration (s) for one variant on a fresh file."""
    sink = JsonlAudit(path)
    timer = {"timer 1s": 1.0, "timer 10ms": 0.01}.get(variant)
    syncer = asyncio.create_task(_syncing(sink, timer)) if timer is not None else None
    after: Callable[[], None] = sink.sync if variant == "per record" else (lambda: None)
    took = np.empty(records)
    started = time.perf_counter()
    for i in range(records):
        t = time.perf_counter()
        sink.write(RECORD)
        after()
        took[i] = time.perf_counter() - t
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    if syncer is not None:
        syncer.cancel()
    await asyncio.to_thread(sink.sync)  # the shutdown's
    return records / elapsed, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("out"))
    args = parser.parse_args()
    variants = ["none", "timer 1s", "timer 10ms", "per record"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    pcts: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                # an fsync per record is ~20x slower: a tenth of the records is enough
                n = args.records // 10 if v == "per record" else args.records
                path = Path(tmp) / "audit.jsonl"
                path.unlink(missing_ok=True)
                rate, took = asyncio.run(one_run(path, n, v))
                rates[v].append(rate)
                pcts[v].append(np.percentile(took, [50, 99, 100]) * 1e6)
    base = statistics.median(rates["none"])
    print(f"{'variant':<12} {'records/s':>10} {'vs none':>8} {'p50 us':>8} {'p99 us':>8} "
          f"{'max us':>9}")
    for v in variants:
        rate = statistics.median(rates[v])
        p50, p99, top = np.median(np.array(pcts[v]), axis=0)
        print(f"{v:<12} {rate:>10.0f} {rate / base:>8.2f} {p50:>8.1f} {p99:>8.1f} {top:>9.1f}")


if __name__ == "__main__":
    main()
