"""End to end: position produced -> signed webhook received by ``broker sink``, at a fixed rate.

The source is fleet-200 cloned to reach the rate (500 positions/s = 500 units at 1 Hz: two full
copies and half a third, each clone with its own vehicle ids), from the busiest stretch of the
fixture. Each message is stamped with the wall clock at the moment it is produced, so the
sink's ``delay_ms`` (receive time - the position's ``ts`` in the webhook body, or CAP
``<sent>``) is exactly produced -> received. The sink runs as its own process (``broker
sink``), verifying every Standard Webhooks signature.

Two pipelines:

- ``inprocess``: decode -> ``engine.step`` (+ tick each second) -> ``fanout.fan_out`` ->
  ``DeliveryHub`` (httpx) -> sink, all in this process's event loop.
- ``kafka``: an aiokafka producer -> ``avl.positions`` -> a Faust worker (``broker worker``,
  its own process) -> ``alerts`` -> a consumer here -> ``fan_out`` -> ``DeliveryHub`` -> sink.
  The worker does not run fan-out and delivery itself yet, so those run here, after Kafka.

Zero loss is checked two ways: every delivery fan-out queued arrived (by path + webhook-id),
and every alert version the engine emitted was either delivered to some partner or held back
on purpose by every partner's minimum update interval (counted separately).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from hdrh.histogram import HdrHistogram

from adapters.delivery import DeliveryHub, JsonlDeadLetter, make_client
from bench.common import FLEET, ROOT, Line, log, parse_lines, rewrite, window
from broker import codec, engine
from broker.audit import JsonlAudit
from broker.fanout import Delivery, PartnerSet, ThrottleState, fan_out
from broker.model import AlertEvent, Rejection, VehicleState
from broker.partners import load_partners
from broker.replay import ROUTES, load_messages
from broker.settings import EngineConfig

CFG = EngineConfig()
BUSY_START_S = 150.0  # fleet-200 has most alert traffic from ~2 to ~6 min in


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def partners_file(tmp: Path, port: int) -> Path:
    """fixtures/partners.toml with every push URL pointed at the sink's port."""
    text = (ROOT / "fixtures" / "partners.toml").read_text()
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
    def build(cls, rate: float, duration_s: float, start_s: float = BUSY_START_S) -> Source:
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
        return cls(items, len(chosen))


@dataclass
class Ledger:
    """What the broker side emitted and queued, for the zero-loss check."""

    engine_versions: set[tuple[str, int]] = field(default_factory=set)
    delivered_versions: set[tuple[str, int]] = field(default_factory=set)
    queued: set[tuple[str, str]] = field(default_factory=set)  # (url path, webhook-id)
    event_ts: dict[tuple[str, str], datetime] = field(default_factory=dict)  # exact, per delivery
    queued_by_partner: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    stale_cancels: int = 0

    def record(self, ev: AlertEvent, deliveries: list[Delivery]) -> None:
        self.engine_versions.add((ev.alert_id, ev.version))
        self.actions[ev.action] += 1
        if ev.cancel_reason == "stale":
            self.stale_cancels += 1
        for d in deliveries:
            self.delivered_versions.add((ev.alert_id, ev.version))
            key = (urlparse(d.url).path, d.message_id)
            self.queued.add(key)
            if ev.cancel_reason not in ("stale", "expired"):  # tick-made: no position behind it
                self.event_ts[key] = d.event_ts
            self.queued_by_partner[d.partner_id] += 1


class FanOut:
    """fan_out + DeliveryHub, shared by both pipelines."""

    def __init__(self, partners: PartnerSet, hub: DeliveryHub, ledger: Ledger) -> None:
        self.partners, self.hub, self.ledger = partners, hub, ledger
        self.state: ThrottleState = {}

    def __call__(self, events: list[AlertEvent]) -> None:
        for ev in events:
            self.state, deliveries = fan_out(ev, self.partners, self.state, ev.ts)
            self.ledger.record(ev, deliveries)
            for d in deliveries:
                self.hub.submit(d)


def _now() -> datetime:
    return datetime.now(UTC)


async def _paced(source: Source, send: Any) -> tuple[int, float]:
    """Call ``send(raw, topic, vehicle_id)`` for each item at its offset; returns (sent, lag s).

    Each message is stamped with the wall clock at the moment it goes out.
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
        raw = rewrite(ln.raw, suffix=suffix, ts=_now())
        await send(raw, ln.topic, ln.vehicle_id + suffix)
        sent += 1
    return sent, worst_lag


async def run_inprocess(source: Source, fo: FanOut) -> dict[str, Any]:
    """decode -> engine -> fan-out -> delivery, in this loop; ticks live units each second."""
    states: dict[str, VehicleState] = {}
    live: set[str] = set()
    skew = timedelta(seconds=CFG.max_future_skew_s)
    step_us: list[float] = []

    async def send(raw: bytes, topic: str, _vid: str) -> None:
        now = _now()
        t = time.perf_counter_ns()
        if topic == ROUTES:
            msg = codec.decode_route(raw, received_at=now, max_future_skew=skew)
        else:
            msg = codec.decode_position(raw, received_at=now, max_future_skew=skew)
        if isinstance(msg, Rejection):
            return
        st, events = engine.step(states.get(msg.vehicle_id), msg, now=msg.ts, cfg=CFG)
        states[msg.vehicle_id] = st
        (live.add if st.alert is not None else live.discard)(msg.vehicle_id)
        fo(events)
        step_us.append((time.perf_counter_ns() - t) / 1000)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            now = _now()
            for vid in sorted(live):
                st, events = engine.tick(states[vid], now=now, cfg=CFG)
                states[vid] = st
                if st.alert is None:
                    live.discard(vid)
                fo(events)

    tick_task = asyncio.create_task(ticker())
    try:
        sent, lag = await _paced(source, send)
    finally:
        tick_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick_task
    return {"sent": sent, "producer_worst_lag_s": round(lag, 3),
            "broker_side_us_p99": round(sorted(step_us)[int(0.99 * len(step_us))], 1)
            if step_us else None}


async def run_kafka(source: Source, fo: FanOut, bootstrap: str, prefix: str) -> dict[str, Any]:
    """aiokafka producer -> worker (another process) -> alerts -> fan-out here -> sink."""
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

    async def consume() -> None:
        nonlocal consumed
        async for rec in consumer:
            fo([codec.decode_alert(rec.value)])
            consumed += 1

    async def send(raw: bytes, topic: str, vid: str) -> None:
        await producer.send(f"{prefix}{topic}", raw, key=vid.encode())

    task = asyncio.create_task(consume())
    try:
        sent, lag = await _paced(source, send)
        await producer.flush()
        await asyncio.sleep(5.0)  # let the last alerts through the worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()
    return {"sent": sent, "producer_worst_lag_s": round(lag, 3), "alerts_consumed": consumed}


def _delays_ms(rows: list[dict[str, Any]], ledger: Ledger) -> list[dict[str, Any]]:
    """Received time minus the exact position ts of each delivery (the ledger knows it; the
    sink's own ``delay_ms`` uses CAP ``<sent>``, which has whole seconds only)."""
    out = []
    for r in rows:
        ts = ledger.event_ts.get((r["path"], r["message_id"]))
        if ts is None:
            continue
        received = datetime.fromisoformat(r["received_at"].replace("Z", "+00:00"))
        out.append({**r, "delay_ms": (received - ts).total_seconds() * 1000})
    return out


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


def e2e(rate: float = 500.0, duration_s: float = 60.0, mode: str = "inprocess",
        bootstrap: str | None = None, prefix: str | None = None) -> dict[str, Any]:
    """Run one end-to-end measurement and return its figures (see the module docstring)."""
    source = Source.build(rate, duration_s)
    positions = sum(1 for _, ln, _ in source.items if ln.topic != ROUTES)
    log(f"e2e {mode}: {source.vehicles} units, {positions} positions over {duration_s:.0f} s")
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        pfile = partners_file(tmp, port)
        config = load_partners(pfile, env=dict(os.environ), allow_dev_defaults=True)
        partners = PartnerSet.from_config(config)
        ledger = Ledger()
        with running_sink(tmp, port, pfile) as sink_out:

            async def main() -> tuple[dict[str, Any], dict[str, Any]]:
                async with make_client() as client:
                    hub = DeliveryHub(partners, client, JsonlAudit(tmp / "audit.jsonl"),
                                      JsonlDeadLetter(tmp / "dlq.jsonl"))
                    fo = FanOut(partners, hub, ledger)
                    if mode == "kafka":
                        assert bootstrap is not None and prefix is not None
                        info = await run_kafka(source, fo, bootstrap, prefix)
                    else:
                        info = await run_inprocess(source, fo)
                    await asyncio.wait_for(hub.drain(), timeout=60)
                    stats = {pid: {"delivered": s.delivered, "failed_attempts": s.failed_attempts,
                                   "expired": s.expired, "dead_lettered": s.dead_lettered}
                             for pid, s in hub.stats().items()}
                    await hub.stop()
                    return info, stats

            info, stats = asyncio.run(main())
            time.sleep(0.5)
        rows = [json.loads(line) for line in sink_out.read_text().splitlines()] \
            if sink_out.exists() else []
    received = {(r["path"], r["message_id"]) for r in rows}
    rows = _delays_ms(rows, ledger)
    lost = ledger.queued - received
    by_path: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_path.setdefault(r["path"], []).append(r)
    throttled = ledger.engine_versions - ledger.delivered_versions
    return {
        "mode": mode,
        "rate_positions_per_s": rate,
        "duration_s": duration_s,
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
        "lost": len(lost),
        "lost_examples": sorted(lost)[:5],
        "partner_stats": stats,
        "latency_all": _latency(rows),
        "latency_by_path": {p: _latency(rs) for p, rs in sorted(by_path.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--mode", choices=["inprocess", "kafka"], default="inprocess")
    parser.add_argument("--bootstrap", default=os.environ.get("BROKER_KAFKA_BOOTSTRAP"))
    parser.add_argument("--prefix", default=None)
    args = parser.parse_args()
    print(json.dumps(e2e(args.rate, args.duration, args.mode, args.bootstrap, args.prefix),
                     indent=2))


if __name__ == "__main__":
    main()
