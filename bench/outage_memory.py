"""Memory the fan-out holds per ``alerts`` record while a partner is down, in process.

``python -m bench.outage_memory [--records N] [--feed-lag K]``: one ``alerts`` partition fed
through the real ``FanOutAgent.run`` (its ``OrderedAcks``, the ``Dispatcher``, the
``DeliveryHub`` and the partner workers) as Faust hands it records: a real ``ConsumerMessage``
(fresh key and value bytes, as aiokafka makes them) in a real ``faust.Event``. The sample
partners (``fixtures/partners.toml``) answer 200; ``navapp`` takes every unit's create, then
refuses every connection: the cancels it is owed are retried until it is back, so every later
record of the partition, settled or not, is held behind the first of them (``OrderedAcks``). A
200-unit fleet: record ``i`` is step ``i // 200`` of unit ``i % 200``'s alert (a create, its
cancel, a new life: its create, then updates), with a 40-vertex zone and a 4-point path
(~1.1-1.5 KB, as the records of the fault suite's ``partner_down_long``). Each alert life queued
for the down partner holds one mailbox entry (bounded by the alert's expiry:
``adapters.delivery``); the measurement starts once they are all there, so the growth is what is
held per record.

Faust hands each record to both agents of ``alerts`` (``fan-out`` and ``feed-table``). By
default only the fan-out's share is modelled (refcount 1): as when the ``feed-table`` agent has
acked each record before it settles behind the owed one, so each is held as its offset only
(``fanout_agent.message_acks``). With ``--feed-lag K`` the ``feed-table`` agent's share is
there too (refcount 2), acked ``K`` records after the fan-out read it: with ``K`` 0 it keeps
up; with a larger ``K`` a record settles before the ``feed-table`` agent acked it, and is held
as its message without its bytes (``fanout_agent.let_go``).

Printed: the value bytes per record, then tracemalloc's growth per record between the first
``N/5`` records and all ``N`` (the held records' marginal cost), its allocation sites, and how
many records ``OrderedAcks`` holds. The audit sink is a no-op (the worker's goes to Kafka, whose
producer holds nothing per held record), as is Faust's consumer (its ``WeakSet`` of unacked
messages is the same before and after). No Kafka, no sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import tracemalloc
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from faust.events import Event
from faust.types.tuples import TP, ConsumerMessage

from adapters.audit import AuditRecord
from adapters.dispatch import Dispatcher
from adapters.fanout import PartnerSet
from adapters.hub import DeliveryHub
from adapters.partners_file import load_partners
from broker import codec
from broker.failure import FailurePolicy
from broker.model import AlertEvent
from broker.streams.fanout_agent import FanOutAgent, message_acks

UNITS = 200
DOWN = "navapp"
SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "partners.toml"
LON0, LAT0 = -80.8431, 35.2271


class NullAudit:
    """The audit sink: takes every record, keeps none (``durable`` finds nothing to wait for)."""

    def write(self, record: AuditRecord) -> None:
        pass


class Consumer:
    """What ``Event.ack`` reaches at the end: Faust's consumer, counting the final acks."""

    def __init__(self) -> None:
        self.acked = 0

    def ack(self, message: Any) -> bool:
        message.acked = True
        self.acked += 1
        return True

    def highwater(self, tp: TP) -> None:  # catch_up: nothing known behind
        return None


def zone(lon: float, lat: float, n: int = 40) -> dict[str, Any]:
    ring = [[round(lon + 0.002 * math.cos(2 * math.pi * k / n), 6),
             round(lat + 0.0015 * math.sin(2 * math.pi * k / n), 6)] for k in range(n)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def record(i: int, start: datetime) -> AlertEvent:
    """Record ``i``: step ``i // UNITS`` of unit ``i % UNITS``'s alert: a create (step 0), its
    cancel (1), then another life of it (a create at step 2, updates after)."""
    unit, step = i % UNITS, i // UNITS
    action = "create" if step in (0, 2) else "cancel" if step == 1 else "update"
    life = 0 if step < 2 else 2
    lon, lat = LON0 + 0.01 * (unit % 20), LAT0 + 0.01 * (unit // 20)
    ts = start + timedelta(seconds=step)
    return AlertEvent(
        action=action, alert_id=f"ev-{unit:016x}", version=step + 1,  # type: ignore[arg-type]
        kind="approaching", vehicle_id=f"FLT-U{unit:03d}", incident_id=f"F14-FLT-U{unit:03d}-0",
        agency="faults-fd", unit_type="engine", ts=ts,
        started_at=start + timedelta(seconds=life), first_version=life + 1,
        expires_at=ts + timedelta(hours=1), lat=lat, lon=lon, speed_mps=14.1,
        heading_deg=180.0, zone=zone(lon, lat),
        cancel_reason="left_emergency" if action == "cancel" else None,
        path=[(lon, lat), (lon, lat - 0.002), (lon + 0.0014, lat - 0.002),
              (lon + 0.0014, lat - 0.0025)],
    )


class Stream:
    """``stream.noack().events()`` over records ``lo..hi-1``, made one at a time (nothing of
    them kept here)."""

    def __init__(self, app: Any, lo: int, hi: int, start: datetime,
                 feed: FeedTable | None = None) -> None:
        self.app, self.lo, self.hi, self.start, self.feed = app, lo, hi, start, feed
        self.tp = TP("alerts", 0)

    def noack(self) -> Stream:
        return self

    async def events(self) -> AsyncIterator[Event]:
        for i in range(self.lo, self.hi):
            ev = record(i, self.start)
            value = codec.encode(ev)
            message = ConsumerMessage(
                "alerts", 0, i, 0.0, 0, [], ev.alert_id.encode(), value, None, tp=self.tp)
            # the conductor's, per channel: the fan-out's (and the feed-table agent's)
            message.incref(1 if self.feed is None else 2)
            event = Event(self.app, message.key, message.value, message.headers, message)
            yield event
            if self.feed is not None:
                self.feed.read(event)
            del event


class FeedTable:
    """The ``feed-table`` agent's acks: of each record ``lag`` records after the fan-out read
    it (the events it has not acked yet are all it keeps)."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.unacked: deque[Event] = deque()

    def read(self, event: Event) -> None:
        self.unacked.append(event)
        while len(self.unacked) > self.lag:
            self.unacked.popleft().ack()


class Partners:
    """The partners' answers: 200, but ``DOWN`` refuses every connection once ``down``."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down and request.url.path.endswith(DOWN):
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)


def make_agent(client: httpx.AsyncClient) -> FanOutAgent:
    """The fan-out agent with its real acks, dispatcher and hub; the rest of the worker faked."""
    partners = PartnerSet.from_config(load_partners(SAMPLE, env={}, allow_dev_defaults=True))
    table: dict[str, bytes] = {}
    metrics = SimpleNamespace(queued=lambda pid: None, pending=lambda n: None)
    hub = DeliveryHub(partners, client, NullAudit(), lambda letter: None)

    def put(aid: str, value: bytes | None) -> None:
        if value is None:
            table.pop(aid, None)
        else:
            table[aid] = value

    a = object.__new__(FanOutAgent)
    a.app = SimpleNamespace(consumer=Consumer())  # type: ignore[assignment]
    a.rt = SimpleNamespace(membership=SimpleNamespace(held=lambda: True))  # type: ignore[assignment]
    a.failures, a.alerts_topic, a.hub = FailurePolicy(), "alerts", hub
    a.dispatcher = Dispatcher(partners=partners, hub=hub, metrics=metrics,
                              settled_get=table.get, settled_put=put, owns=lambda aid: True)
    a.acks, a._behind, a._hold_timer = message_acks(a.app, "alerts"), set(), None
    return a


async def settle(agent: FanOutAgent, down: bool = True) -> None:
    """Let the partners that are up take everything queued for them."""
    for _ in range(50):
        await asyncio.sleep(0.01)
    await asyncio.gather(*(w.join() for pid, w in agent.hub.workers.items()
                           if pid != DOWN or not down))


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def measure(n: int, feed_lag: int | None = None) -> dict[str, Any]:
    start = datetime.now(UTC)
    feed = None if feed_lag is None else FeedTable(feed_lag)
    first = max(n // 5, 4 * UNITS)  # once every alert's next life is under way
    partners = Partners()
    async with httpx.AsyncClient(transport=httpx.MockTransport(partners)) as client:
        agent = make_agent(client)
        # every unit's create reaches every partner; then DOWN goes down: its cancels are owed
        await agent.run(Stream(agent.app, 0, UNITS, start, feed))  # type: ignore[arg-type]
        await settle(agent, down=False)
        partners.down = True
        tracemalloc.start(8)
        await agent.run(Stream(agent.app, UNITS, first, start, feed))  # type: ignore[arg-type]
        await settle(agent)
        before, snap0 = traced(), tracemalloc.take_snapshot()
        await agent.run(Stream(agent.app, first, n, start, feed))  # type: ignore[arg-type]
        await settle(agent)
        after, snap1 = traced(), tracemalloc.take_snapshot()
        tracemalloc.stop()
        held = agent.acks.in_hand()
        acked = agent.app.consumer.acked
        sites = snap1.compare_to(snap0, "lineno")
        await agent.hub.stop()
    sample = codec.encode(record(UNITS, start))
    return {
        "records": n, "held": held, "acked": acked, "value_bytes": len(sample),
        "bytes_per_record": (after - before) / (n - first),
        "sites": [(str(s.traceback[0]), s.size_diff / (n - first)) for s in sites[:8]],
    }


def lines(result: dict[str, Any]) -> Iterator[str]:
    yield (f"{result['records']} records, {result['held']} held by OrderedAcks, "
           f"{result['acked']} acked; a record's value {result['value_bytes']} B")
    yield f"held per record: {result['bytes_per_record']:.0f} B (tracemalloc growth)"
    for where, size in result["sites"]:
        yield f"  {size:8.0f} B  {where}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--feed-lag", type=int, default=None, metavar="K",
                   help="the feed-table agent acks each record K records after the fan-out "
                        "read it (default: it is not modelled, refcount 1)")
    args = p.parse_args()
    for line in lines(asyncio.run(measure(args.records, args.feed_lag))):
        print(line)


if __name__ == "__main__":
    main()
