"""Into each unit's one log: unit status from ``cad.status``, Traccar positions from Kafka and HTTP.

Why a log: the vehicle agent must see a unit's fixes and status changes in *one* order, the
same every time it reads them. Read from two topics, Faust interleaves them as its fetches
come back, and after a restart it would interleave the unprocessed tail differently: the same
alert version with other contents (measured: a kill -9 mid-incident gave version 22 as an
update, then as a cancel). So status events are appended to ``avl.positions`` (the unit's
log, same key) by this forwarder, marked with the header ``kind: status``; the agent reads them
there in log order. The hop costs a status some milliseconds; a status that lands after a fix
of a later instant acts just after that fix (broker.join).

Traccar forwards each position as JSON (``broker.traccar``), to Kafka keyed by its own numeric
device id (``forward.type`` kafka), or by POST to a URL (``forward.type`` json). Either way the
broker maps the device to a unit (the agency file) and appends the fix to the unit's log.

Nothing is lost on the way: an input message is acked only once what it became (the log record,
or its dead letter in ``avl.dlq``: refused, or ``decode_error`` when reading it raised) is in
Kafka; a send that failed, or any other exception out of :meth:`Forwarder.forward`, stops the
worker with the message un-acked. ``POST /ingest/traccar``
answers only then: 200 taken, 202 dead-lettered (refused, ``decode_error``, or ``ingest_error``:
a bug of ours past the reading, sending the record; Traccar must not retry what will never be
taken, a bad message would fill its retry queue), 503 when Kafka did not take it (Traccar
retries, ``forward.retry.enable``), 500 only when that dead letter failed too, not for an
outage (not stored, logged; Traccar retries any answer but a 2xx, at most
``forward.retry.count`` times, and by default not at all).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import faust
from aiohttp import web

from adapters.rate_limit import TokenBucket
from adapters.tokens import bearer_matches
from broker import codec
from broker.agencies import Agencies
from broker.drive import CAD_STATUS, TRACCAR, misrouted
from broker.failure import REASONS, FailurePolicy, StopWork, is_outage
from broker.model import Fix, Rejection, UnitStatus
from broker.streams.dead_letters import dlq_headers, fitted
from broker.streams.input_sequence import InputSequence
from broker.streams.log_repeats import warn_misrouted
from broker.streams.readiness import leased
from broker.streams.runtime import Runtime
from broker.streams.status_records import KIND_HEADER, STATUS_KIND
from broker.streams.topics import Topics
from broker.streams.web import DENIED_RATE_PER_S
from broker.traccar import decode_traccar

log = logging.getLogger(__name__)

INGEST_PATH = "/ingest/traccar"
ACK_BATCH = 256  # messages forwarded before the agent awaits them and acks
ACK_INTERVAL_S = 0.1  # ...or this long, whichever comes first
# A POST waits this long for Kafka to take its record, then answers 503 (Traccar retries; if
# the record lands after all, the retry's copy is a duplicate fix, which the engine drops). The
# producer's own bound is Faust's request timeout (20 min): until 2026-12-08 a request waited
# that long through an outage, answered nothing Traccar could retry on.
STORE_WAIT_S = 10.0
# POSTs waiting on Kafka at once; past it, 503 at once, the body unread (an outage's requests
# held for STORE_WAIT_S each, with their bodies, at Traccar's rate)
MAX_WAITING = 256
# what ``broker_ingest_requests_total{status}`` counts a request under whose client went away
# before its body was read (nginx's "client closed request"): nothing of it to keep
CLIENT_GONE = 499


@dataclass
class Forwarder:
    """Status events and Traccar positions -> the units' log (``avl.positions``) or the DLQ."""

    app: faust.App
    topics: Topics
    rt: Runtime
    agencies: Agencies | None
    failures: FailurePolicy
    # each input partition's records forwarded in offset order, none passed over unseen (as the
    # vehicle agent's: ``broker.streams.input_sequence``); None: not watched (unit tests)
    sequence: InputSequence | None = None
    pending: list[tuple[Awaitable[Any], Callable[[], Any]]] = field(default_factory=list)
    _settling: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def forward(
        self, kind: str, raw: bytes, received_at: datetime, source: str,
        partition: int | None = None, *, where: str = "", key: bytes | None = None,
        stops: bool = True,
    ) -> tuple[Awaitable[Any], str]:
        """Append one input message of ``kind`` (``cad.status``, ``avl.traccar``) to its unit's
        log, or dead-letter it; the future resolves once Kafka has it. Returns it and the
        outcome: ``taken`` or the rejection's reason (``decode_error``: reading it raised, a bug
        of ours on these bytes, ``broker.failure``; an outage there raises :class:`StopWork`).
        ``where``: the message's place for the log (``topic[partition]@offset``); ``key``: the
        message's own key, which its dead letter keeps, byte for byte (the unit's log is keyed
        by the vehicle id). ``stops``: whether an outage while reading stops the worker (the
        agents); False (``POST``): it is raised as it came, for the caller to answer 503, and
        not counted as a ``stop`` that did not happen.

        ``partition``: the ``cad.status`` partition it came on. A status not keyed by its
        vehicle id (on another partition than the id's) is counted and logged as
        ``misrouted`` and appended all the same: its unit's log is keyed by the vehicle id here,
        as for every status (the vehicle agent re-keys fixes and routes the same way,
        ``broker.streams.rekey``). A producer that keys each unit's statuses to one partition,
        by whatever hash, keeps their order; one that spreads them can reorder them.

        Straight to the producer, not through Faust's send buffer (as the state writes do:
        measured, Faust's per-message path cost more than the conversion itself)."""
        self.rt.metrics.messages_in.labels(kind).inc()
        try:
            out = self._convert(kind, raw, received_at, partition)
        except Exception as err:  # junk is a Rejection: this is a bug of ours on these bytes
            # the failure policy's ``decode`` site, as in the vehicle agent: dead-lettered as
            # ``decode_error`` with the bytes, and the stream goes on; an outage raises StopWork.
            # Raised out of here as it was, the worker stopped (the ``ingest`` site), and again
            # on the same record after every restart, the partition's later messages held.
            # POST stops nothing: its outage is answered 503 (Traccar retries), as one of Kafka
            # on the send is, and counted as that is (broker_ingest_requests{status="503"})
            if not stops and is_outage(err, self.failures.outages):
                raise
            failure = self.failures.check("decode", err, key=where or source, raw=bytes(raw),
                                          source=source, counted=False)
            letter = await self.dead_letter(raw, source, failure.reason, failure.error, key=key)
            # counted once its letter is in Kafka: not on every retry of a 503 (POST), nor again
            # after the restart a letter that failed stops the worker into (the agents)
            letter.add_done_callback(self._count_decode_skip)
            return letter, failure.reason
        if isinstance(out, Rejection):
            return await self.dead_letter(raw, source, out.reason, out.detail, key=key), out.reason
        unit, value, headers = out
        # stamped as its input record was (``received_at``: its Kafka timestamp, never past the
        # wall clock; a POST's arrival): the agent judges the record's lateness and moves the
        # partition's clock by it. Stamped when forwarded, a backlog drained after a restart
        # came "now", and a unit whose clock ran ahead took the clock past the others' fixes
        # (refused as late, their alerts cancelled as stale) until 2026-12-08
        fut = await self.app.producer.send(self.rt.names.positions, unit, value, None,
                                           received_at.timestamp(), headers)
        return fut, "taken"

    def _convert(
        self, kind: str, raw: bytes, received_at: datetime, partition: int | None
    ) -> Rejection | tuple[bytes, bytes, list[tuple[str, bytes]] | None]:
        """The message read (``kind``), as the record for its unit's log (key, value, headers),
        or refused."""
        cfg = self.rt.engine
        skew = timedelta(seconds=cfg.max_future_skew_s)
        out: Fix | UnitStatus | Rejection
        if kind == TRACCAR:
            # the unit's log gets the fix in the broker's terms (an unknown heading as null):
            # counted here, where it was read
            out = decode_traccar(raw, self.agencies, received_at=received_at,
                                 max_bytes=cfg.max_message_bytes, max_future_skew=skew,
                                 area=cfg.service_area, noted=self.rt.metrics.unknown_reading)
        else:
            out = codec.decode_status(raw, received_at=received_at,
                                      max_bytes=cfg.max_message_bytes, max_future_skew=skew)
            if partition is not None and isinstance(out, UnitStatus):
                expected = self.rt.partition_of(out.vehicle_id.encode())
                if isinstance(wrong := misrouted(out, raw, partition, expected), Rejection):
                    self.rt.metrics.misrouted.inc()
                    warn_misrouted(wrong.detail)
        if isinstance(out, Rejection):
            return out
        key = out.vehicle_id.encode()
        if isinstance(out, UnitStatus):  # as it came, marked: the agent decodes it again
            return key, raw, [(KIND_HEADER, STATUS_KIND)]
        return key, codec.encode(out), None

    async def dead_letter(
        self, raw: bytes, source: str, reason: str, detail: str, *, key: bytes | None = None
    ) -> asyncio.Future[Any]:
        """``raw`` (and its input record's ``key``) to ``avl.dlq`` with why and where from;
        the future resolves once Kafka has it, and is counted then
        (``broker_rejected_total{reason}``): counted when handed over, a letter the producer
        refused or Kafka never took was counted too, and a POST body whose ``decode_error``
        letter failed so, sent again as ``ingest_error``, under both reasons."""
        # cut to fit the topic: a record Kafka took compressed may not fit it uncompressed
        letter = fitted(key, raw, dlq_headers(source, reason, detail),
                        self.rt.settings.dead_letter_bytes)
        fut = asyncio.ensure_future(await self.app.producer.send(
            self.rt.names.dlq, letter.key, letter.value, None, None, list(letter.headers)))
        fut.add_done_callback(partial(self._count_rejected, reason))
        return fut

    def _count_rejected(self, reason: str, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.rt.metrics.rejected.labels(reason).inc()

    def _count_decode_skip(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.rt.metrics.failures.labels("decode", "skip").inc()

    async def run(self, kind: str, stream: faust.StreamT[bytes]) -> None:
        """An input agent: forward each message, ack once Kafka has what it became.

        A message that cannot even be handed to the producer (it refuses the record, its buffer
        stayed full while Kafka was away ...) stops the worker with that message un-acked, and
        every one after it (``broker.failure``: the ``ingest`` site always stops); those before
        it are acked once Kafka has them. Raised out of the agent instead, Faust restarted the
        agent and acked the messages after it: the commit went past a lost status change. A
        message whose reading raised (a bug: :meth:`forward`) is dead-lettered and acked in
        its turn like a refused one; an outage while reading stops the worker the same way."""
        async for event in stream.noack().events():  # type: ignore[attr-defined]  # untyped in Faust
            if not await leased(self.app, self.rt):
                # of the assignment a rebalance ended (a stall past the session: the partition
                # may be another worker's already): not appended, not acked; it comes again if
                # still ours. Until 2026-12-08 a worker resumed from such a stall appended its
                # whole buffer after the new owner's records
                continue
            message = event.message
            raw = event.value if isinstance(event.value, bytes) else b""
            key = event.key if isinstance(event.key, bytes) else None
            received_at = self.rt.received_at(message.timestamp)
            at = f"{message.topic}[{message.partition}]@{message.offset}"
            try:
                if not await self.in_sequence(message):
                    continue  # not acked: it comes again after the records before it
                partition = message.partition if kind == CAD_STATUS else None
                fut, _ = await self.forward(kind, raw, received_at, message.topic, partition,
                                            where=at, key=key)
            except Exception as err:
                if await self.settle():
                    await self.stop(err, f"forward {kind} {at}")
                return
            self.rt.processed(message.topic, message.partition, message.offset, None)
            self.pending.append((fut, event.ack))
            if len(self.pending) >= ACK_BATCH and not await self.settle():
                return

    async def in_sequence(self, message: Any) -> bool:
        """Whether ``message`` follows the last one forwarded on its partition (or where the
        consumer resumed it). Records before it that the consumer never handed over would be
        lost once it is acked (Faust commits the run of acked offsets wherever it starts): it
        waits, un-acked, while the partition is read again from the first missing one
        (:meth:`InputSequence.check`; a gap Kafka has no record for raises StopWork). Until
        2026-12-08 only the vehicle agent looked: a status change never handed over was
        committed over, lost."""
        if self.sequence is None or not self.rt.skipped(message.topic, message.partition,
                                                        message.offset):
            return True
        return await self.sequence.check(message)

    async def settle(self) -> bool:
        """Await what was forwarded so far, then ack its messages. A send that failed stops the
        worker (``broker.failure``: the ``ingest`` site always stops) with those messages
        un-acked, so the restarted worker gets them again; False then, and from then on.

        One batch at a time, in the order they were taken (the ack timer and the agent both
        settle): a later batch is acked only after every earlier one was, never once one
        failed."""
        async with self._settling:
            batch, self.pending = self.pending, []
            if self.rt.stopped is not None:
                return False  # stopping: nothing more is acked
            if not batch:
                return True
            try:
                await asyncio.gather(*(fut for fut, _ in batch))
            except Exception as err:
                await self.stop(err, "forward to the units' log")
                return False
            for _, ack in batch:
                ack()
            return True

    async def stop(self, err: Exception, key: str) -> None:
        """The failure policy's ``ingest`` site: the worker stops, un-acked (``err`` a
        :class:`StopWork` already: the policy decided where it happened, the decoding)."""
        if isinstance(err, StopWork):
            await self.rt.stop_worker(self.app, err)
            return
        try:
            self.failures.check("ingest", err, key=key)
        except StopWork as stop:
            await self.rt.stop_worker(self.app, stop)


@dataclass
class IngestEndpoint:
    """``POST /ingest/traccar``: Traccar's JSON forwarder, authenticated by a bearer token."""

    forwarder: Forwarder
    token: str
    denied: TokenBucket = field(
        default_factory=lambda: TokenBucket(DENIED_RATE_PER_S, DENIED_RATE_PER_S)
    )
    store_wait_s: float = STORE_WAIT_S
    max_waiting: int = MAX_WAITING
    waiting: int = 0  # requests past their reading, waiting on Kafka now

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant
        time)."""
        return bearer_matches(headers.get("authorization"), self.token)

    async def post(
        self, headers: Mapping[str, str], read: Callable[[int], Awaitable[bytes]],
        received_at: datetime,
    ) -> tuple[int, dict[str, Any]]:
        """One request: (status, JSON body)."""
        if (refused := self._refused(headers)) is not None:
            return refused
        limit = self.forwarder.rt.engine.max_message_bytes
        try:
            raw = await read(limit + 1)
        except UnreadableBody as err:  # the client's: nothing of it to keep
            log.warning("POST %s: a body that could not be read, answered 400: %s",
                        INGEST_PATH, err)
            return self._done(400, {"error": f"the body could not be read: {err}"})
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError: the client left
            # (until 2026-12-08 out of the endpoint: an ERROR with a traceback, uncounted)
            log.info("POST %s: the client went away before its body was read", INGEST_PATH)
            return self._done(CLIENT_GONE, {"error": "client closed the request"})
        if len(raw) > limit:
            return self._done(413, {"error": f"a position is at most {limit} bytes"})
        self.waiting += 1
        try:
            outcome = await asyncio.wait_for(self._store(raw, received_at), self.store_wait_s)
        except TimeoutError:
            return self._not_in_time()
        except Exception as err:
            if self._outage(err):
                return self._done(503, {"error": "not stored; retry"})
            return await self._failed(raw, err)
        finally:
            self.waiting -= 1
        if outcome == "taken":
            return self._done(200, {"taken": True})
        return self._done(202, {"taken": False, "dead_lettered": outcome})

    def _refused(self, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
        """The answer to a request refused before its body is read, or None."""
        if not self.token:
            return self._done(404, {"error": "Traccar ingest is off (set BROKER_INGEST_TOKEN)"})
        if not self.authorized(headers):
            if not self.denied.take():  # a flood of wrong tokens: slowed
                return self._done(429, {"error": "too many requests"})
            return self._done(401, {"error": "want Authorization: Bearer <ingest token>"})
        limit = self.forwarder.rt.engine.max_message_bytes
        if int(headers.get("content-length") or 0) > limit:
            return self._done(413, {"error": f"a position is at most {limit} bytes"})
        if self.waiting >= self.max_waiting:  # Kafka slow or away: no more bodies held
            return self._done(503, {"error": "busy: not stored; retry"})
        return None

    def _not_in_time(self) -> tuple[int, dict[str, Any]]:
        """Kafka did not take it within ``store_wait_s``: 503, Traccar retries (the record may
        land after all: the retry's copy is then a duplicate fix, which the engine drops)."""
        log.warning("POST %s: not stored within %.0f s (Kafka slow or away), answered 503",
                    INGEST_PATH, self.store_wait_s)
        return self._done(503, {"error": "not stored in time; retry"})

    async def _store(self, raw: bytes, received_at: datetime) -> str:
        """The body forwarded (its record, or its dead letter) and in Kafka; its outcome."""
        fut, outcome = await self.forwarder.forward(TRACCAR, raw, received_at, INGEST_PATH,
                                                    stops=False)
        await asyncio.shield(fut)  # a timeout cancels the wait, not the producer's future
        return outcome

    def _outage(self, err: Exception) -> bool:
        """Whether Kafka did not take it (or a part was down while reading it): Traccar
        retries (503)."""
        if isinstance(err, StopWork) or is_outage(err, self.forwarder.rt.outages):
            log.warning("POST %s: not stored, an outage (retried): %r", INGEST_PATH, err)
            return True
        return False

    async def _failed(self, raw: bytes, err: Exception) -> tuple[int, dict[str, Any]]:
        """A bug of ours past the reading (sending the record, or a ``decode_error``'s dead
        letter): the body goes to ``avl.dlq`` as ``ingest_error``, answered 202 once Kafka has
        it. Answered 500 instead, the position was gone once Traccar gave up: it retries any
        answer but a 2xx at most ``forward.retry.count`` times, and not at all by default
        (``forward.retry.enable``). 503 if that dead letter met an outage; 500 if it failed
        too (not stored, logged with the body's size and sha256)."""
        reason = REASONS["ingest"]
        log.error("POST %s: failed on a message of %d bytes (sha256 %s), dead-lettering it "
                  "as %s: %r", INGEST_PATH, len(raw), hashlib.sha256(raw).hexdigest(), reason,
                  err, exc_info=err)
        try:
            fut = await self.forwarder.dead_letter(raw, INGEST_PATH, reason, repr(err))
            await asyncio.wait_for(asyncio.shield(fut), self.store_wait_s)
        except TimeoutError:
            return self._not_in_time()
        except Exception as dlq_err:
            if self._outage(dlq_err):
                return self._done(503, {"error": "not stored; retry"})
            log.error("POST %s: the message of %d bytes (sha256 %s) not dead-lettered either, "
                      "not stored: %r", INGEST_PATH, len(raw), hashlib.sha256(raw).hexdigest(),
                      dlq_err, exc_info=dlq_err)
            return self._done(500, {"error": "not stored: the broker failed on this message"})
        # a bug of ours, skipped: the body is in avl.dlq and the worker goes on
        self.forwarder.rt.metrics.failures.labels("ingest", "skip").inc()
        return self._done(202, {"taken": False, "dead_lettered": reason})

    def _done(self, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.forwarder.rt.metrics.ingest_requests.labels(str(status)).inc()
        return status, body


class UnreadableBody(ValueError):
    """A request body the HTTP layer could not decode: a ``Content-Encoding`` it is not
    (``deflate`` over plain bytes), a compressed stream that breaks off. Answered 400."""


async def whole_body(content: Any, at_most: int) -> bytes:
    """The request's body up to EOF, or its first ``at_most`` bytes and a few more when it is
    longer (the caller refuses it then). aiohttp's ``read(n)`` returns what has arrived so far:
    a position sent in two TCP pieces, or chunked, was cut short and dead-lettered as
    ``bad_json`` with half its bytes, and the 202 told Traccar not to send it again. A body
    aiohttp cannot decode raises :class:`UnreadableBody` (its ``RequestPayloadError`` went out
    of the endpoint: a 500 with a traceback, uncounted, for a client's broken request)."""
    chunks: list[bytes] = []
    size = 0
    while size <= at_most:
        try:
            chunk = await content.read(at_most + 1 - size)
        except web.RequestPayloadError as err:
            raise UnreadableBody(" ".join(str(err).split())) from err
        if not chunk:  # EOF
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def register_ingest(
    app: faust.App, topics: Topics, rt: Runtime, agencies: Agencies | None
) -> Forwarder:
    """The ``cad.status`` and ``avl.traccar`` agents, their ack timer, and
    ``POST /ingest/traccar`` on the public port."""
    failures = rt.failure_policy()
    forwarder = Forwarder(app, topics, rt, agencies, failures,
                          sequence=InputSequence(app, rt, failures))
    endpoint = IngestEndpoint(forwarder, rt.settings.ingest_token)

    @app.agent(topics.cad_status, name="status-to-log")
    async def status_to_log(stream: faust.StreamT[bytes]) -> None:
        await forwarder.run(CAD_STATUS, stream)

    @app.agent(topics.traccar, name="traccar-to-log")
    async def traccar_to_log(stream: faust.StreamT[bytes]) -> None:
        await forwarder.run(TRACCAR, stream)

    @app.timer(interval=ACK_INTERVAL_S, name="forwarded-acks")
    async def settle() -> None:
        await forwarder.settle()

    class Ingest(faust.web.View):
        async def post(self, request: faust.web.Request) -> faust.web.Response:
            aio: Any = request  # aiohttp's request behind Faust's
            status, body = await endpoint.post(
                aio.headers, partial(whole_body, aio.content), rt.received_at(None)
            )
            return self.json(body, status=status)

    app.page(INGEST_PATH)(Ingest)
    return forwarder
