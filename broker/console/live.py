"""The live console's source: Kafka's ``alerts``, ``audit``, ``cad.routes`` and ``avl.dlq``.

Every worker that serves the console runs one :class:`LiveSource`: an aiokafka consumer with no
consumer group, assigned *every* partition of those four topics, so the picture is the whole
cluster's whichever worker the page is on and however the partitions are spread over workers
(two workers show the same console). At start it seeks each partition to the first record of
the last ``lookback_s`` seconds (alerts live 60 s past their last update, so every live alert
is reached) and reads forward; the first snapshot a page gets waits until it has caught up with
the end offsets it saw at start. After a worker restart the new process rebuilds the same picture
from Kafka, and the open page, whose stream broke, reconnects and gets it.

Figures that only a worker knows (positions per second and consumer lag of *this* worker) come
from a ``figures`` callable over its in-process metrics; delivery latencies (p50 / p99) come
from the ``audit`` records, so they cover every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from adapters.audit import AuditRecord
from adapters.fanout import PartnerSet
from broker import codec
from broker.console.feed import Feed
from broker.console.state import Delta, LiveState
from broker.model import Rejection

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

log = logging.getLogger(__name__)

FIGURES_EVERY_S = 1.0
# The reader shares the worker's event loop with the vehicle agent: it fetches in batches (the
# broker answers once 64 KiB are there or 250 ms have passed) rather than as soon as one record
# is, which had it parse a fetch of all 32 partitions for every few records: ~13 % of the
# worker's main thread in the start burst's profile (docs/benchmarks.md). A page sees a change
# at most a quarter second later; its figures tick once a second anyway.
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 250
_audit = msgspec.json.Decoder(AuditRecord)


@dataclass(frozen=True)
class LiveTopics:
    """The (prefixed) topic names the console reads."""

    alerts: str
    audit: str
    routes: str
    dlq: str

    def all(self) -> list[str]:
        return [self.alerts, self.audit, self.routes, self.dlq]


@dataclass(frozen=True)
class WorkerFigures:
    """What the worker's own metrics say: position messages so far, and its consumer lag."""

    positions_total: float
    lag: float | None


class LiveSource:
    """The worker's console source (see module doc)."""

    mode = "live"

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: LiveTopics,
        partitions: int,
        client_kwargs: Mapping[str, Any] | None = None,
        figures: Callable[[], WorkerFigures] | None = None,
        partners: PartnerSet | None = None,
        roads: RoadNetwork | None = None,
        lookback_s: float = 900.0,
        title: str = "",
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.client_kwargs = dict(client_kwargs or {})
        self.figures_of = figures
        self.roads = roads
        self.lookback_s = lookback_s
        self.title = title
        self.state = LiveState(partners=partners)
        self.feed = Feed()
        self.caught_up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._roads_json: bytes | None = None
        self._newest_wall: float = time.monotonic()
        self._figures: dict[str, Any] = {}
        self._last_positions: tuple[float, float] | None = None
        self.unreadable = 0  # records of alerts / audit that did not decode (skipped)
        # per partition, the offset after the last record taken: a restarted reader goes on
        # from there (seeking back to the lookback again folded every record in twice)
        self._resume: dict[TopicPartition, int] = {}

    # ---- Source --------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "title": self.title,
                "delivery_columns": ["delivered", "pending", "failed", "expired"]}

    def snapshot(self) -> dict[str, Any]:
        now = self._now()
        return {**self.state.snapshot(), "figures": self._figures,
                "now": now.isoformat() if now else None, "loading": not self.caught_up.is_set()}

    def roads_geojson(self) -> bytes | None:
        if self.roads is None:
            return None
        if self._roads_json is None:
            from broker.console.roads import roads_geojson

            self._roads_json = roads_geojson(self.roads)
        return self._roads_json

    async def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._tick())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def ready(self, timeout_s: float) -> bool:
        """Wait (up to ``timeout_s``) until the reader has caught up with Kafka."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.caught_up.wait(), timeout_s)
        return self.caught_up.is_set()

    # ---- records ---------------------------------------------------------------------------

    def handle(self, topic: str, value: bytes | None, headers: Any) -> None:
        """Fold one Kafka record into the state and publish what changed.

        A record that does not decode (corrupt, or written by a newer worker during a rolling
        upgrade) is logged, counted in ``unreadable`` and skipped: raising here ended the
        reader, whose restart sought back to the lookback and met the same record again, so
        the console read nothing past it until it left the lookback window.
        """
        if value is None:
            return
        deltas: list[Delta] = []
        try:
            if topic == self.topics.alerts:
                event = codec.decode_alert(value)
                self._newest_wall = time.monotonic()
                deltas = self.state.apply_alert(event, self._newest_wall)
            elif topic == self.topics.audit:
                deltas = self.state.apply_audit(_audit.decode(value))
            elif topic == self.topics.routes:
                route = codec.decode_route(value)
                if not isinstance(route, Rejection):
                    deltas = self.state.apply_route(route)
            elif topic == self.topics.dlq:
                reason = dict(headers or ()).get("reason", b"unknown")
                self.state.apply_rejection(bytes(reason).decode(errors="replace"))
        except msgspec.DecodeError as err:  # ValidationError is one too
            self.unreadable += 1
            log.warning("console: skipped an unreadable %s record (%s)", topic, err)
            return
        for name, data in deltas:
            self.feed.publish(name, data)

    async def _read(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as err:
                log.warning("console: reading Kafka failed (%s); retrying in 2 s", err)
            except Exception:
                log.exception("console: a record could not be read; reading on in 2 s")
            await asyncio.sleep(2.0)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id="ev-console",
            fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            **self.client_kwargs,
        )
        self._consumer = consumer
        await consumer.start()
        try:
            # the worker created these topics with its partition count before it started
            tps = [TopicPartition(t, p) for t in self.topics.all() for p in range(self.partitions)]
            consumer.assign(tps)
            since_ms = int((time.time() - self.lookback_s) * 1000)
            fresh = [tp for tp in tps if tp not in self._resume]
            starts = await consumer.offsets_for_times(dict.fromkeys(fresh, since_ms))
            for tp in tps:
                found = starts.get(tp)
                if tp in self._resume:
                    consumer.seek(tp, self._resume[tp])
                elif found is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            ends = await consumer.end_offsets(tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                for tp, records in batches.items():
                    for rec in records:
                        self._resume[tp] = rec.offset + 1  # taken, even if it raises
                        self.handle(tp.topic, rec.value, rec.headers)
                if not self.caught_up.is_set() and await _reached(consumer, ends):
                    self.caught_up.set()
        finally:
            self._consumer = None
            await consumer.stop()

    # ---- time and figures ----------------------------------------------------------------------

    def _now(self) -> Any:
        return self.state.now(time.monotonic() - self._newest_wall)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(FIGURES_EVERY_S)
            for name, data in self.state.expire(self._now(), time.monotonic()):
                self.feed.publish(name, data)
            self._figures = {**self._worker_figures(), **self.state.delivery_figures()}
            now = self._now()
            self.feed.publish("figures", {"figures": self._figures,
                                          "rejected": dict(self.state.rejected),
                                          "now": now.isoformat() if now else None})

    def _worker_figures(self) -> dict[str, Any]:
        if self.figures_of is None:
            return {"positions_per_s": None, "lag": None}
        fig = self.figures_of()
        wall = time.monotonic()
        rate = None
        if self._last_positions is not None:
            then, total = self._last_positions
            rate = round(max(0.0, fig.positions_total - total) / max(wall - then, 1e-3), 1)
        self._last_positions = (wall, fig.positions_total)
        return {"positions_per_s": rate, "lag": fig.lag}


async def _reached(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    """Whether the consumer has read every partition up to ``ends``."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def aiokafka_security(protocol: str, *, mechanism: str = "PLAIN", username: str | None = None,
                      password: str | None = None, ssl_context: Any = None) -> dict[str, Any]:
    """aiokafka client keyword arguments for the worker's Kafka security settings."""
    kw: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        kw |= {"sasl_mechanism": mechanism, "sasl_plain_username": username,
               "sasl_plain_password": password}
    if ssl_context is not None:
        kw["ssl_context"] = ssl_context
    return kw
