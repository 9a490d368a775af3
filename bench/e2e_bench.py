"""End to end: position produced -> signed webhook received by ``broker sink``, at a fixed rate.

The source is fleet-200 cloned to reach the rate (500 positions/s = 500 units at 1 Hz: two full
copies and half a third, each clone with its own vehicle ids), from the busiest stretch of the
fixture. Each message is stamped with the wall clock at the moment it is produced, so the
sink's ``delay_ms`` (receive time - the position's ``ts`` in the webhook body, or CAP
``<sent>``) is exactly produced -> received. The sink runs as its own process (``broker
sink``), verifying every Standard Webhooks signature.

Two pipelines:

- ``inprocess``: the driver loop (``broker.drive``: decode, ``engine.step``, a tick each
  second) -> ``fanout.fan_out`` ->
  ``DeliveryHub`` (httpx) -> sink, all in this process's event loop.
- ``kafka``: an aiokafka producer -> ``avl.positions`` -> a Faust worker (``broker worker``,
  its own process, with a partners file pointing at the sink and the development secrets
  allowed) -> ``alerts`` -> the worker's own fan-out agent -> its ``DeliveryHub`` -> sink: the
  production path. A consumer here reads ``alerts`` only to keep the ledger: it runs the same
  pure ``fan_out`` over the same events, which says which deliveries the worker must make.

Zero loss is checked two ways: every delivery fan-out queued arrived (by path + webhook-id),
or a newer version of its alert did (latest wins: a version replaced in the partner's mailbox
before it went out is not lost), and every alert version the engine emitted was either
delivered to some partner or held back on purpose by every partner's minimum update interval
(counted separately).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hdrh.histogram import HdrHistogram

from adapters.audit import JsonlAudit
from adapters.dead_letters import JsonlDeadLetter
from adapters.fanout import PartnerSet
from adapters.http_pool import make_client
from adapters.hub import DeliveryHub
from adapters.partners_file import load_partners
from bench.common import FLEET, ROOT, Line, log, parse_lines, rewrite, window
from bench.e2e_ledger import FanOut, Ledger, in_this_trees_terms, unanswered
from broker import codec
from broker.drive import ROUTES, Driver
from broker.replay import load_messages
from broker.settings import EngineConfig
from broker.streams.worker_process import free_port

CFG = EngineConfig()
BUSY_START_S = 150.0  # fleet-200 has most alert traffic from ~2 to ~6 min in
WARMUP_S = 5.0  # "steady" latency leaves out deliveries of the first seconds (the creates)


def partners_file(tmp: Path, port: int) -> Path:
    """fixtures/partners.toml with every push URL pointed at the sink's port, and without the
    warning segments (issue 15): today's code, run beside this tree, has none, so both trees
    do the same work and today's accepts the file. Without ``cifs_end_grace_s`` either (set to
    its default there, 600 s): today's loader refuses a key it does not know, and from
    2026-12-07 (333e886) to session 8 the base worker exited with that error at start, so the
    through-Kafka section ran nothing."""
    text = (ROOT / "fixtures" / "partners.toml").read_text()
    text = text.replace(', "segments"', "").replace('"segments", ', "")
    text = re.sub(r"^cifs_end_grace_s\b.*\n", "", text, flags=re.MULTILINE)
    path = tmp / "partners.toml"
    path.write_text(text.replace("127.0.0.1:8088", f"127.0.0.1:{port}"))
    return path


@contextlib.contextmanager
def running_sink(tmp: Path, port: int, partners: Path):  # type: ignore[no-untyped-def]
    """``broker sink`` as a subprocess on 127.0.0.1:port; yields the JSONL path it records to."""
    out = tmp / "sink.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "sink", "--port", str(port), "--partners",
         str(partners), "--out", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read() if proc.stderr else b""
                    raise RuntimeError(f"broker sink did not start: {err!r}") from None
                time.sleep(0.2)
        yield out
        with contextlib.suppress(httpx.HTTPError, ValueError):  # its own counters, e.g. how
            # many TCP connections the deliveries opened (one per webhook when none is reused)
            summary = httpx.get(f"http://127.0.0.1:{port}/", timeout=5.0).json()
            (tmp / "sink-summary.json").write_text(json.dumps(summary))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Source:
    """Cloned fixture messages with their send offsets (seconds from the start)."""

    items: list[tuple[float, Line, str]]  # (send offset s, line, vehicle suffix)
    vehicles: int

    @classmethod
    def build(cls, rate: float, duration_s: float, start_s: float = BUSY_START_S,
              lead_in_s: float = 0.0) -> Source:
        lines = parse_lines(load_messages(FLEET))
        routes, inside = window(lines, start_s, duration_s)
        vids = sorted({ln.vehicle_id for ln in lines})
        copies = math.ceil(rate / len(vids))
        chosen = {(v, k) for k in range(copies) for i, v in enumerate(vids)
                  if k * len(vids) + i < rate}
        t0 = lines[0].ts + timedelta(seconds=start_s)
        items: list[tuple[float, Line, str]] = []
        for k in range(copies):
            spread = k / copies  # clones fire a fraction of a second apart, not in one burst
            for ln in routes:
                if (ln.vehicle_id, k) in chosen:
                    items.append((0.0, ln, f"~{k}"))
            for ln in inside:
                if (ln.vehicle_id, k) in chosen:
                    items.append(((ln.ts - t0).total_seconds() + spread, ln, f"~{k}"))
        items.sort(key=lambda it: (it[0], it[1].topic != ROUTES))
        if lead_in_s > 0:
            items = [(at + lead_in_s, ln, sfx) for at, ln, sfx in items]
            items[:0] = _lead_in(inside, chosen, copies, t0, lead_in_s)
        return cls(items, len(chosen))


_LIGHTS = re.compile(rb'"lights_sirens":true')
_STATUS = re.compile(rb'"status":"[a-z_]+"')


def _lead_in(inside: list[Line], chosen: set[tuple[str, int]], copies: int, t0: datetime,
             lead_in_s: float) -> list[tuple[float, Line, str]]:
    """The first ``lead_in_s`` of the source's positions, sent before it by other vehicles
    (suffix ``~w<k>``) on patrol (lights off, available): the worker, Kafka and the partners'
    connections are warm and busy when the measured units start responding, as in a city
    where an incident comes in on a running system. They make no alert."""
    out: list[tuple[float, Line, str]] = []
    for k in range(copies):
        spread = k / copies
        for ln in inside:
            at = (ln.ts - t0).total_seconds() + spread
            if ln.topic == ROUTES or (ln.vehicle_id, k) not in chosen or at >= lead_in_s:
                continue
            raw = _LIGHTS.sub(b'"lights_sirens":false', ln.raw)
            raw = _STATUS.sub(b'"status":"available"', raw)
            out.append((at, Line(ln.topic, raw, ln.ts, ln.vehicle_id), f"~w{k}"))
    out.sort(key=lambda it: it[0])
    return out


def _now() -> datetime:
    return datetime.now(UTC)


async def _paced(
    source: Source, send: Any, stamps: set[tuple[str, datetime]]
) -> tuple[int, float]:
    """Call ``send(raw, topic, vehicle_id)`` for each item at its offset; returns (sent, lag s).

    Each message is stamped with the wall clock at the moment it goes out (ms, kept in
    ``stamps``).
    """
    start = time.monotonic()
    worst_lag = 0.0
    sent = 0
    for offset, ln, suffix in source.items:
        wait = start + offset - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            worst_lag = max(worst_lag, -wait)
        now = _now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as rewrite stamps it
        stamps.add((ln.vehicle_id + suffix, now))
        raw = rewrite(ln.raw, suffix=suffix, ts=now)
        await send(raw, ln.topic, ln.vehicle_id + suffix)
        sent += 1
    return sent, worst_lag


async def run_inprocess(source: Source, fo: FanOut) -> dict[str, Any]:
    """decode -> engine -> fan-out -> delivery, in this loop; ticks live units each second."""
    driver: Driver[str] = Driver(CFG)
    step_us: list[float] = []

    async def send(raw: bytes, topic: str, _vid: str) -> None:
        t = time.perf_counter_ns()
        handled = driver.handle(topic, raw, received_at=_now())
        if handled.rejection is not None:
            return
        fo(handled.events)
        step_us.append((time.perf_counter_ns() - t) / 1000)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            fo(driver.pass_time(_now()))

    tick_task = asyncio.create_task(ticker())
    try:
        sent, lag = await _paced(source, send, fo.ledger.stamps)
    finally:
        tick_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick_task
    return {"sent": sent, "producer_worst_lag_s": round(lag, 3),
            "broker_side_us_p99": round(sorted(step_us)[int(0.99 * len(step_us))], 1)
            if step_us else None}


async def run_kafka(source: Source, fo: FanOut, bootstrap: str, prefix: str) -> dict[str, Any]:
    """aiokafka producer -> worker (another process: engine, fan-out, delivery) -> sink; the
    ``alerts`` consumer here only feeds the ledger (``fo`` has no hub)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        f"{prefix}alerts", bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=5,
    )
    await producer.start()
    await consumer.start()
    consumed = 0

    records: list[tuple[bytes, int]] = []

    async def consume() -> None:
        # only collect during the run: the ledger's fan-out (rendering every partner's payload)
        # runs afterwards, so it cannot delay this loop's producer and skew the figures
        nonlocal consumed
        async for rec in consumer:
            records.append((rec.value, rec.timestamp))
            consumed += 1

    async def send(raw: bytes, topic: str, vid: str) -> None:
        await producer.send(f"{prefix}{topic}", raw, key=vid.encode())

    task = asyncio.create_task(consume())
    try:
        sent, lag = await _paced(source, send, fo.ledger.stamps)
        await producer.flush()
        await asyncio.sleep(8.0)  # let the last alerts and deliveries through the worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()
    for raw, created_ms in records:
        ev = codec.decode_alert(raw)
        fo.ledger.alert_produced.setdefault(
            (ev.alert_id, ev.version), datetime.fromtimestamp(created_ms / 1000, UTC)
        )
        fo([ev])
    return {"sent": sent, "producer_worst_lag_s": round(lag, 3), "alerts_consumed": consumed}


def _delays_ms(
    rows: list[dict[str, Any]], stamps: dict[tuple[str, str], datetime]
) -> list[dict[str, Any]]:
    """Received time minus the exact stamp of each delivery's event (the ledger knows it; the
    sink's own ``delay_ms`` uses CAP ``<sent>``, which has whole seconds only); deliveries not
    in ``stamps`` are left out."""
    out = []
    for r in rows:
        ts = stamps.get((r["path"], r["message_id"]))
        if ts is None:
            continue
        received = datetime.fromisoformat(r["received_at"].replace("Z", "+00:00"))
        out.append({**r, "delay_ms": (received - ts).total_seconds() * 1000})
    return out


def _dump(rows: list[dict[str, Any]], ledger: Ledger) -> str:
    """One JSON line per timed delivery: when its position went out (s after the first), its
    latency, when the worker produced its alert, and what the event was: the burst's shape."""
    t0 = min(ledger.event_ts.values())
    out = []
    for r in rows:
        key = (r["path"], r["message_id"])
        made = ledger.alert_produced.get(ledger.delivery_alert.get(key, ("", 0)))
        out.append(json.dumps({
            "at_s": round((ledger.event_ts[key] - t0).total_seconds(), 3),
            "delay_ms": round(r["delay_ms"], 2), "path": r["path"], "message_id": r["message_id"],
            "event": ledger.kind.get(key),
            "alert_produced_s": round((made - t0).total_seconds(), 3) if made else None,
        }))
    return "\n".join(out) + "\n"


def _after_warmup(rows: list[dict[str, Any]], ledger: Ledger) -> list[dict[str, Any]]:
    """Deliveries of positions produced ``WARMUP_S`` or more after the first one: without the
    start, where every responding unit of the source creates its alert within a second (about
    100 zone builds and route projections at once, as when a worker takes over partitions)."""
    if not ledger.event_ts:
        return []
    start = min(ledger.event_ts.values()) + timedelta(seconds=WARMUP_S)
    return [r for r in rows if ledger.event_ts[(r["path"], r["message_id"])] >= start]


def _stages(rows: list[dict[str, Any]], ledger: Ledger) -> dict[str, Any]:
    """Where the time goes, per delivery: position produced -> alert produced by the worker
    (Kafka CreateTime of the alert record, the worker's clock: same machine) and alert
    produced -> webhook received (fan-out, delivery, HTTP)."""
    to_alert, to_hook = [], []
    for r in rows:
        ts = ledger.event_ts.get((r["path"], r["message_id"]))
        which = ledger.delivery_alert.get((r["path"], r["message_id"]))
        made = ledger.alert_produced.get(which) if which is not None else None
        if ts is None or made is None:
            continue
        received = datetime.fromisoformat(r["received_at"].replace("Z", "+00:00"))
        to_alert.append({"delay_ms": (made - ts).total_seconds() * 1000})
        to_hook.append({"delay_ms": (received - made).total_seconds() * 1000})
    return {"position_to_alert": _latency(to_alert), "alert_to_webhook": _latency(to_hook)}


def _latency(rows: list[dict[str, Any]]) -> dict[str, Any]:
    hist = HdrHistogram(1, 600_000_000, 3)  # µs, 1 µs .. 10 min, 3 significant digits
    negative = 0
    for r in rows:
        d = r["delay_ms"]
        if d < 0:
            negative += 1
            continue
        hist.record_value(max(1, int(d * 1000)))
    if hist.get_total_count() == 0:
        return {"n": 0}
    return {
        "n": hist.get_total_count(),
        "p50_ms": round(hist.get_value_at_percentile(50) / 1000, 2),
        "p99_ms": round(hist.get_value_at_percentile(99) / 1000, 2),
        "p99_9_ms": round(hist.get_value_at_percentile(99.9) / 1000, 2),
        "max_ms": round(hist.get_max_value() / 1000, 2),
        "mean_ms": round(hist.get_mean_value() / 1000, 2),
        "negative_delays": negative,
    }


@contextlib.contextmanager
def worker_delivering(bootstrap: str, prefix: str, pfile: Path, tmp: Path,
                      info: dict[str, Any], tree: Path = ROOT):  # type: ignore[no-untyped-def]
    """One ``broker worker`` with the partners file (dev secrets allowed: a local sink only),
    ready before it yields (``info["ready_after_s"]``)."""
    from bench import kafka_bench

    app_id = f"bench-e2e-{prefix[:-1]}"
    env = {"BROKER_PARTNERS": str(pfile), "BROKER_ALLOW_DEV_SECRETS": "true",
           "BROKER_AUDIT_FILE": str(tmp / "worker-audit.jsonl")}
    try:
        with kafka_bench.workers_running(1, bootstrap, prefix, app_id, tmp, env, tree) as ws:
            info["ready_after_s"] = round(kafka_bench.wait_ready(ws), 1)
            yield ws[0]
    finally:
        kafka_bench.drop_topics(bootstrap, (prefix,))


def _worker_delivery_stats(info: dict[str, Any]) -> dict[str, Any]:
    """Per-partner delivery outcomes from the worker's /metrics (``broker_deliveries_total``)."""
    import re

    out: dict[str, dict[str, float]] = {}
    pattern = r'^broker_deliveries_total\{partner="([^"]+)",status="([^"]+)"\} (\S+)$'
    for partner, status, value in re.findall(pattern, info.get("metrics", ""), re.M):
        out.setdefault(partner, {})[status] = float(value)
    text = info.get("metrics", "")
    loop: dict[str, float] = {}
    for stat, part, value in re.findall(
        r'^broker_loop_work_seconds_(sum|count)\{part="(\w+)"\} (\S+)$', text, re.M
    ):
        loop[f"{part}_{stat}"] = float(value)
    return {"worker_ready_after_s": info.get("ready_after_s"), **out,
            "loop_work_s": loop, "worker_cpu_s": info.get("cpu_s")}


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process so far (Linux /proc; None elsewhere):
    what the worker spent, less sensitive to a loaded machine than its latencies."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def e2e(rate: float = 500.0, duration_s: float = 60.0, mode: str = "inprocess",
        bootstrap: str | None = None, prefix: str | None = None,
        tree: Path = ROOT, lead_in_s: float = 0.0, dump: Path | None = None) -> dict[str, Any]:
    """Run one end-to-end measurement and return its figures (see the module docstring).
    ``tree``: the checkout whose worker runs (kafka mode; another revision for a baseline);
    ``lead_in_s``: patrol traffic first, so the burst meets a warm pipeline (``_lead_in``);
    ``dump``: every timed delivery written there (``_dump``)."""
    source = Source.build(rate, duration_s, lead_in_s=lead_in_s)
    positions = sum(1 for _, ln, sfx in source.items
                    if ln.topic != ROUTES and not sfx.startswith("~w"))
    log(f"e2e {mode}: {source.vehicles} units, {positions} positions over {duration_s:.0f} s")
    worker_info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        pfile = partners_file(tmp, port)
        config = load_partners(pfile, env=dict(os.environ), allow_dev_defaults=True)
        partners = PartnerSet.from_config(config)
        ledger = Ledger()
        with running_sink(tmp, port, pfile) as sink_out, contextlib.ExitStack() as stack:
            if mode == "kafka":
                assert bootstrap is not None
                prefix = prefix or f"benche2e{uuid.uuid4().hex[:6]}."
                worker = stack.enter_context(
                    worker_delivering(bootstrap, prefix, pfile, tmp, worker_info, tree)
                )

            async def main() -> tuple[dict[str, Any], dict[str, Any]]:
                if mode == "kafka":
                    assert bootstrap is not None and prefix is not None
                    info = await run_kafka(source, FanOut(partners, None, ledger), bootstrap,
                                           prefix)
                    return info, {}
                async with make_client() as client:
                    hub = DeliveryHub(partners, client, JsonlAudit(tmp / "audit.jsonl"),
                                      JsonlDeadLetter(tmp / "dlq.jsonl"))
                    info = await run_inprocess(source, FanOut(partners, hub, ledger))
                    await asyncio.wait_for(hub.drain(), timeout=60)
                    stats = {pid: {"delivered": s.delivered, "failed_attempts": s.failed_attempts,
                                   "expired": s.expired, "dead_lettered": s.dead_lettered}
                             for pid, s in hub.stats().items()}
                    await hub.stop()
                    return info, stats

            info, stats = asyncio.run(main())
            if mode == "kafka":
                with contextlib.suppress(httpx.HTTPError):
                    worker_info["metrics"] = httpx.get(
                        f"http://127.0.0.1:{worker.port}/metrics", timeout=5.0
                    ).text
                worker_info["cpu_s"] = process_cpu_s(worker.proc.pid)
                stats = _worker_delivery_stats(worker_info)
            time.sleep(0.5)
        sink_summary = json.loads((tmp / "sink-summary.json").read_text()) \
            if (tmp / "sink-summary.json").exists() else {}
        rows = [json.loads(line) for line in sink_out.read_text().splitlines()] \
            if sink_out.exists() else []
    if tree != ROOT:  # another revision's worker: its webhook-ids in this tree's terms
        in_this_trees_terms(rows, ledger, tree)
    received = {(r["path"], r["message_id"]) for r in rows}
    clock_made = _delays_ms(rows, ledger.clock_made_ts)
    rows = _delays_ms(rows, ledger.event_ts)
    steady = _after_warmup(rows, ledger)
    if dump is not None:
        dump.write_text(_dump(rows, ledger))
    lost = unanswered(ledger.queued, received)
    by_path: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_path.setdefault(r["path"], []).append(r)
    throttled = ledger.engine_versions - ledger.delivered_versions
    return {
        "mode": mode,
        "rate_positions_per_s": rate,
        "duration_s": duration_s,
        "lead_in_s": lead_in_s,
        "units": source.vehicles,
        "positions_sent": positions,
        **info,
        "alert_events": dict(ledger.actions),
        "stale_cancels": ledger.stale_cancels,
        "engine_alert_versions": len(ledger.engine_versions),
        "versions_delivered_to_a_partner": len(ledger.delivered_versions),
        "versions_held_back_by_min_update_interval": len(throttled),
        "deliveries_queued": len(ledger.queued),
        "deliveries_queued_by_partner": dict(ledger.queued_by_partner),
        "webhooks_received": len(received),
        "sink_connections": sink_summary.get("connections"),
        "lost": len(lost),
        "lost_examples": sorted(lost)[:5],
        "partner_stats": stats,
        "latency_all": _latency(rows),
        "warmup_s": WARMUP_S,
        "latency_steady": _latency(steady),
        **({"stages": _stages(rows, ledger), "stages_steady": _stages(steady, ledger)}
           if ledger.alert_produced else {}),
        "latency_by_path": {p: _latency(rs) for p, rs in sorted(by_path.items())},
        "latency_clock_made": _latency(clock_made),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--mode", choices=["inprocess", "kafka"], default="inprocess")
    parser.add_argument("--bootstrap", default=os.environ.get("BROKER_KAFKA_BOOTSTRAP"))
    parser.add_argument("--prefix", default=None)
    parser.add_argument("--base", default="", help="run this revision's worker (kafka mode)")
    parser.add_argument("--lead-in", type=float, default=0.0,
                        help="seconds of patrol traffic before the measured units respond")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write every timed delivery there (JSON lines: the burst's shape)")
    args = parser.parse_args()
    from bench.fleets import base_tree

    tree = base_tree(args.base) if args.base else ROOT
    print(json.dumps(e2e(args.rate, args.duration, args.mode, args.bootstrap, args.prefix, tree,
                         args.lead_in, args.dump),
                     indent=2))


if __name__ == "__main__":
    main()
