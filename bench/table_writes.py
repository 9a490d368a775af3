"""What the fan-out's ``delivered`` writes cost per alert, Faust's way against the awaited one.

``python -m bench.table_writes [--alerts N] [--rounds R]``: the worker's own app
(``create_app``), its real ``delivered`` table and dispatcher; the partners settle every
delivery at once and the producer answers every record at once (no Kafka, no HTTP). Per round,
``N`` alerts (creates of distinct ids, two push partners each) are fanned out, settled and acked:

- ``faust``: ``table[key] = value`` (Faust's ``send_soon``; its buffer drained as its
  producer's ``_handle_pending`` does, one ``publish_message`` each), the ack right after
  (the code before ``broker.streams.table_writes``);
- ``awaited``: ``TableWrites.put`` and the ack from the records' futures (the code now).

Timed: from the deliveries settling to the last ack (their ``delivered`` writes, the records
to the producer, the answers, the acks); the fan-out before it (rules, rendering) is the same
code in both. Printed: CPU µs per alert (process time: the machine is shared; median of the
rounds) and alerts/s of that part.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types.tuples import TP

from adapters.dispatch import Dispatcher
from broker.drive import settle_gc
from broker.streams.app import create_app
from broker.streams.settings import StreamSettings
from tests.unit.adapters.factory import CONFIG, alert


class Producer:
    """Answers every record at once; Faust's send buffer is a list drained by the bench."""

    def __init__(self) -> None:
        self.buffered: list[Any] = []
        self.sent = 0

    def key_partition(self, topic: str, key: bytes) -> TP:
        return TP(topic, 0)

    def send_soon(self, fut: Any) -> None:
        self.buffered.append(fut)

    async def maybe_start(self) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: Any = None,
                   timestamp: Any = None, headers: Any = None) -> asyncio.Future[Any]:
        self.sent += 1
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answer.set_result(SimpleNamespace(topic_partition=TP(topic, 0), offset=self.sent))
        return answer


class Hub:
    def __init__(self) -> None:
        self.queued: list[Any] = []

    def submit(self, delivery: Any, on_settled: Any, delivered: Any = None) -> None:
        self.queued.append((delivery, on_settled))


async def drain_faust(producer: Producer) -> None:
    """Faust's ``_handle_pending``: each buffered record to the producer."""
    while producer.buffered:
        fut = producer.buffered.pop(0)
        await fut.message.channel.publish_message(fut, wait=False)


async def one_round(dispatcher: Dispatcher, producer: Producer, hub: Hub, mode: str,
                    n: int, base: int) -> float:
    events = [alert("create", 1, alert_id=f"B{base + i}:F1:approaching")
              for i in range(n)]
    acked = 0
    done = asyncio.get_running_loop().create_future()

    def ack() -> None:
        nonlocal acked
        acked += 1
        if acked == n and not done.done():
            done.set_result(None)

    for ev in events:  # fan-out itself (rules, rendering): the same code in both modes
        dispatcher.handle(ev, ack)
    started = time.process_time()
    queued, hub.queued = hub.queued, []
    for d, cb in queued:
        cb(d, "expired", None)
    if mode == "faust":
        await drain_faust(producer)
    await asyncio.wait_for(done, 60)
    return time.process_time() - started


async def measure(mode: str, n: int, rounds: int, data_dir: Path) -> list[float]:
    app = create_app(StreamSettings(data_dir=data_dir), partners=CONFIG)
    settle_gc()  # as the worker after start-up
    dispatcher: Dispatcher = app.broker_fanout  # type: ignore[attr-defined]
    agent: Any = dispatcher.settled_put.__self__  # type: ignore[attr-defined]
    producer = Producer()
    app.producer = producer  # type: ignore[assignment]
    hub = Hub()
    dispatcher.hub = hub  # type: ignore[assignment]
    dispatcher.owns = lambda aid: True
    dispatcher.wall = lambda: alert("create", 1).ts + timedelta(seconds=1)
    if mode == "faust":
        table = agent.tables.delivered

        def put(aid: str, value: bytes | None) -> None:
            table[aid.encode()] = value

        dispatcher.settled_put = put
        dispatcher.after_written = lambda aid, ack: ack()  # type: ignore[assignment,misc,return-value]
    times = []
    try:
        for r in range(rounds):
            times.append(await one_round(dispatcher, producer, hub, mode, n, r * n))
            dispatcher.working.clear()
    finally:
        await agent.client.aclose()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--alerts", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("faust", "awaited") * 3:
            times = asyncio.run(measure(mode, args.alerts, args.rounds, Path(tmp)))
            per = statistics.median(times) / args.alerts
            print(f"{mode:<8} {per * 1e6:8.1f} µs per alert  {1 / per:10,.0f} alerts/s "
                  f"(median of {args.rounds} rounds of {args.alerts})")


if __name__ == "__main__":
    main()
