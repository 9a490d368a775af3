"""Ingest forms: positions/s of one worker with the AVL + CAD join, against the combined form.

The same fleet-200 backlog (its first ``positions`` fixes) in three forms, each drained by a
fresh one-worker group (docs/ingest.md):

- **combined**: today's input, status inside every fix (the reference);
- **split**: fixes without status and the units' status events, already in each unit's log as
  the forwarder appends them (``avl.positions``, header ``kind: status``): the vehicle agent's
  join, without the forwarder's hop (a status is a few messages per call);
- **traccar**: Traccar's forwarded JSON on ``avl.traccar`` (status events in the log as above):
  the worker's forwarder maps and re-keys every fix onto ``avl.positions``, then joins it,
  both in the one worker process.

Rate = fixes through the engine per second between 10 % and 90 % of them taken by the vehicle
agent (its /metrics, read every ``SAMPLE_S``; for Traccar, the fixes the forwarder appended to
``avl.positions``), and per CPU second of the worker process from ready to drained.
The forms run interleaved, ``rounds`` times, because this machine's load drifts; the ratio of
fixes per CPU second, split / combined and traccar / combined, per round is the figure (target:
>= 0.85): on these shared 2-core machines the wall-clock rate of one form swung by a fifth from
one round to the next.

Run alone: ``scripts/with-kafka .venv/bin/python -m bench.ingest_bench [--positions N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import FLEET, ROOT, log
from bench.kafka_bench import (
    PARTITIONS,
    SAMPLE_S,
    LagProbe,
    drop_topics,
    sustained_rate,
    wait_ready,
    workers_running,
)
from broker.agencies import load_agencies
from broker.drive import CAD_STATUS, POSITIONS, ROUTES
from broker.ingest_forms import Form, in_form
from broker.replay import load_messages

FORMS: tuple[Form, ...] = ("combined", "split", "traccar")


def backlog(form: Form, positions: int) -> list[tuple[str, bytes]]:
    """The first ``positions`` fixes of fleet-200 (with their routes) in ``form``."""
    cut: list[tuple[str, bytes]] = []
    n = 0
    for topic, raw in load_messages(FLEET):
        if topic != ROUTES:
            if n >= positions:
                break
            n += 1
        cut.append((topic, raw))
    return in_form(cut, form, load_agencies(ROOT / "fixtures" / "agencies.toml"))


def produce(messages: list[tuple[str, bytes]], bootstrap: str, prefix: str) -> None:
    """Into Kafka as a backlog; status events straight into the units' log, marked as the
    forwarder marks them (so the join sees them in order, as live)."""
    from kafka import KafkaProducer

    from broker.streams.produce import TOPICS, ensure_topics, envelope
    from broker.streams.status_records import KIND_HEADER, STATUS_KIND

    ensure_topics(bootstrap, [prefix + t for t in TOPICS], partitions=PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             enable_idempotence=True)
    try:
        for topic, raw in messages:
            key, _ = envelope(raw, topic)
            if topic == CAD_STATUS:
                producer.send(prefix + POSITIONS, key=key, value=raw,
                              headers=[(KIND_HEADER, STATUS_KIND)])
            else:
                producer.send(prefix + topic, key=key, value=raw)
        producer.flush()
    finally:
        producer.close()


def drain(form: Form, fixes: int, bootstrap: str, prefix: str, tmp: Path,
          max_s: float) -> dict[str, Any]:
    """One fresh worker drains the backlog of ``form``: the log records its vehicle agent has
    taken (``broker_messages_in_total`` on its /metrics, every ``SAMPLE_S``), its CPU from
    ready to drained. Faust commits every 10,000 records or few seconds, so committed
    offsets put up to a fifth on one rate of a 40,000-fix backlog (as for the drain above)."""
    app_id = f"ingest-{form}-{uuid.uuid4().hex[:6]}"
    env = {"BROKER_AGENCIES": str(ROOT / "fixtures" / "agencies.toml")}
    probe = LagProbe(bootstrap, prefix + POSITIONS)
    try:
        base = probe.end  # statuses (and, for Traccar, nothing yet) already in the log
    finally:
        probe.close()
    total = base + (fixes if form == "traccar" else 0)
    taken: list[tuple[float, float]] = []  # (s since start, log records taken)
    t0 = time.monotonic()
    with workers_running(1, bootstrap, prefix, app_id, tmp, env) as ws:
        worker = ws[0]
        ready_s = wait_ready(ws)
        cpu_at_ready, taken_at_ready = worker.cpu_s(), worker.positions_taken() or 0.0
        while True:
            now = time.monotonic() - t0
            n = worker.positions_taken()
            if n is not None:
                taken.append((now, n))
            if (n is not None and n >= total) or now > max_s:
                break
            time.sleep(SAMPLE_S)
        cpu_s = worker.cpu_s() - cpu_at_ready
    # records per CPU second of the worker process from ready to drained (Traccar's forwarding
    # included): what the shared machine's load moves far less than the wall clock
    drained = (taken[-1][1] if taken else 0.0) - taken_at_ready
    per_cpu = round(drained / cpu_s) if drained > 0 and cpu_s > 0 else None
    return {"form": form, "records": total, "ready_after_s": round(ready_s, 1),
            "taken_at_end": taken[-1][1] if taken else 0, "cpu_s": round(cpu_s, 2),
            "records_per_cpu_s": per_cpu, **sustained_rate(taken, total)}


def ingest_throughput(bootstrap: str, positions: int, max_s: float,
                      rounds: int = 2) -> dict[str, Any]:
    """Each form's backlog drained ``rounds`` times, the forms interleaved."""
    out: dict[str, Any] = {"positions": positions, "rounds": []}
    backlogs = {form: backlog(form, positions) for form in FORMS}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmpdir:
        for r in range(rounds):
            row: dict[str, Any] = {}
            for form in FORMS:
                # a fresh prefix each time: the Traccar form's forwarder appends to the log
                prefix = f"ingest{form[:2]}{uuid.uuid4().hex[:6]}."
                produce(backlogs[form], bootstrap, prefix)
                try:
                    res = drain(form, positions, bootstrap, prefix, Path(tmpdir), max_s)
                finally:
                    drop_topics(bootstrap, (prefix,))
                # a log record is a fix or a status event: rates count fixes only
                share = positions / res["records"]
                rate = res.get("sustained_positions_per_s")
                per_cpu = res.get("records_per_cpu_s")
                row[form] = {**res, "fixes_per_s": None if rate is None else round(rate * share),
                             "fixes_per_cpu_s": None if per_cpu is None
                             else round(per_cpu * share)}
                log(f"ingest round {r + 1}: {form}: {row[form]['fixes_per_s']} fixes/s, "
                    f"{row[form]['fixes_per_cpu_s']} per CPU second")
            comb = row["combined"]["fixes_per_cpu_s"]
            for form in ("split", "traccar"):
                got = row[form]["fixes_per_cpu_s"]
                row[f"{form}_vs_combined"] = round(got / comb, 3) if got and comb else None
            out["rounds"].append(row)
    for form in ("split", "traccar"):
        ratios = [r[f"{form}_vs_combined"] for r in out["rounds"] if r[f"{form}_vs_combined"]]
        out[f"{form}_vs_combined_median"] = statistics.median(ratios) if ratios else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("BROKER_KAFKA_BOOTSTRAP"))
    parser.add_argument("--positions", type=int, default=40_000)
    parser.add_argument("--max-s", type=float, default=90.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not args.bootstrap:
        raise SystemExit("needs BROKER_KAFKA_BOOTSTRAP (run under scripts/with-kafka)")
    res = ingest_throughput(args.bootstrap, args.positions, args.max_s, args.rounds)
    print(json.dumps({k: v for k, v in res.items() if k != "rounds"}, indent=2))
    for r in res["rounds"]:
        print({f: r[f]["fixes_per_s"] for f in FORMS}, r["split_vs_combined"],
              r["traccar_vs_combined"])


if __name__ == "__main__":
    main()
