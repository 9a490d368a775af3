"""Audit log: what we sent (or tried to send, or served) to whom, when, about which alert.

One record before each delivery attempt (``sending``: the request is about to go), one with
its outcome, one for each delivery that ended without an attempt (expired, superseded ...) and
one per feed response: partner, partner-facing alert id and the life it is of (``started_at``),
version (for a feed response: the message id, alert id + version, and the life of every item
it carried), the names of the fields sent (never their values), status, HTTP status, latency,
whether a failed attempt may have arrived (no answer after its request went). Records never
hold secrets, tokens, signatures, headers or bodies. An attempt whose ``sending`` record has no
outcome record after it (a send cancelled by a rebalance or a shutdown, a crash mid-request)
may have reached the partner: ``adapters.transparency`` counts it so.

Sinks: a JSON-lines file (in-process mode, ``BROKER_AUDIT_FILE``), a list (tests), several at
once (``TeeAudit``); the streams worker adds a Kafka ``audit`` topic writer (``ProducerAudit``)
with the same ``write`` method. ``write`` raises if the record could not be written; a sink
whose writes become durable later (Kafka) also has ``barrier()``: see :func:`durable`.

Schema: records written since 2026-12-06 carry ``"schema": 2`` (``started_at`` and the
``sending`` status are new); older lines have no ``schema`` and still read (the new fields
default), so one file may hold both.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import io
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import msgspec

log = logging.getLogger(__name__)
AUDIT_SCHEMA = 2  # the ``schema`` of the records this code writes (see the module docstring)

AuditStatus = Literal[
    "sending",  # an attempt is about to go (written, and durable, before the request)
    "delivered",  # 2xx
    "failed",  # an attempt failed; a retry may follow
    "expired",  # the alert expired before it could be delivered (counted, not sent)
    "superseded",  # a newer version of the alert came first: this one was never sent
    "dead_letter",  # retries exhausted: sent to the delivery DLQ
    "disabled",  # the partner answered 410 Gone, or was disabled before this attempt
    "circuit_open",  # not attempted: the partner's circuit breaker is open
    "feed_served",  # a pull feed response
    "feed_denied",  # a pull feed request without a valid token
]


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True, tag_field="schema",
                  tag=AUDIT_SCHEMA):
    """One line of the audit log (encoded with ``"schema": 2`` first; a line without it is
    of schema 1 and decodes with the new fields' defaults)."""

    at: datetime  # wall-clock time of the attempt (UTC)
    partner: str
    alert_id: str  # partner-facing (pseudonymised) id; "" for a feed response
    # the engine's version (orders a life's steps); what the partner saw of it is in
    # ``message_id`` (under a pseudonym counted from 1 in each life: docs/privacy.md, item 4)
    version: int
    action: str  # create | update | cancel | feed
    status: AuditStatus
    fields: tuple[str, ...] = ()  # names of the fields sent
    attempt: int = 0
    http_status: int | None = None
    latency_ms: float | None = None
    detail: str = ""  # reason of a failure (no secrets: URLs are redacted by the caller)
    message_id: str = ""  # webhook-id (idempotency key), as it was sent
    # the alert's life (``AlertEvent.started_at``): a partner given the engine's id as it is
    # sees the same alert id (and webhook-id) again for a later life; None in schema 1
    started_at: datetime | None = None
    alerts: int = 0  # feed responses: how many alerts the feed carried
    # feed responses: which alert steps the feed carried (their message ids, partner-facing
    # alert id + version): a feed record has no alert_id of its own, and without these the log
    # could not say which alerts a pull partner was given
    served: tuple[str, ...] = ()
    # feed responses: the life (``AlertEvent.started_at``) of each item in ``served``, in its
    # order: a partner given the engine's id sees the same message id in two lives of an alert,
    # which the report counted as one. Since 2026-12-07 (session 7); older lines read ().
    served_started: tuple[datetime, ...] = ()
    # an attempt held back after its ``sending`` record was written (a newer version came, the
    # alert expired, the lease lapsed, while the record went to Kafka): the request never went.
    # The transparency report counts it as the attempt's outcome, not as a send cut short.
    not_sent: bool = False
    # a ``failed`` attempt that got no answer after its request began to go out (a timeout, a
    # connection dropped: ``Outcome.may_have_arrived``): the partner may have the message, and
    # the transparency report counts it so. Since 2026-12-07 (session 7); older lines read False.
    may_have_arrived: bool = False


class AuditSink(Protocol):
    """Where audit records go."""

    def write(self, record: AuditRecord) -> None: ...


class MemoryAudit:
    """Keeps records in a list (tests, and summaries after an in-process replay)."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def write(self, record: AuditRecord) -> None:
        self.records.append(record)


class JsonlAudit:
    """Appends one JSON line per record, in one ``write`` of a freshly opened file, so the
    record is in the file (the OS's page cache: a killed process loses nothing written,
    a power cut or a host crash may) when ``write`` returns; :meth:`sync` makes what was
    written survive those too (the worker calls it every ``AUDIT_FILE_SYNC_S`` and at
    shutdown, off the delivery path: an fsync per record made each write ~15x slower,
    docs/privacy.md). A line cut off by a failed write, a full disk or a kill is never appended
    to: the next record starts on a new line (else it was lost with the torn one)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._encoder = msgspec.json.Encoder()
        self._lock = threading.Lock()
        self._whole = False  # the file is known to end with a newline (or be empty)
        self._unsynced = False  # records appended since the last sync
        self._dir_synced = False  # the file's directory entry is on disk (the file may be new)
        self._syncing = threading.Lock()  # one sync at a time: a second waits for the first

    def write(self, record: AuditRecord) -> None:
        line = self._encoder.encode(record) + b"\n"
        with self._lock:
            with self.path.open("a+b") as fh:  # appends wherever we read
                if not self._whole and _ends_torn(fh):
                    line = b"\n" + line
                self._whole = False  # until the line is whole in the file
                self._unsynced = True
                fh.write(line)
            self._whole = True

    def sync(self) -> None:
        """fsync the file if records were appended since the last sync (and its directory the
        first time), so they survive a host crash; raises ``OSError`` if the OS could not. Safe
        from another thread while records are written: the lock is not held during the fsync,
        and a record appended meanwhile is synced by the next call."""
        with self._syncing:
            with self._lock:
                if not self._unsynced:
                    return
                self._unsynced = False
            try:
                _fsync(self.path)
                if not self._dir_synced:
                    _fsync(self.path.parent)
                    self._dir_synced = True
            except OSError:
                self._unsynced = True  # tried again at the next sync
                raise

    def check_writable(self) -> None:
        """Raise ``OSError`` if the file cannot be appended to (at start-up, so a worker
        that could not audit stops before it sends anything); writes nothing."""
        with self._lock, self.path.open("a+b") as fh:
            self._whole = not _ends_torn(fh)


def _fsync(path: Path) -> None:
    """fsync a file or directory by path (any descriptor of a file syncs all its written data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync(sink: AuditSink) -> None:
    """Make what ``sink`` wrote survive a host crash where it can (a file's :meth:`JsonlAudit.sync`;
    a list's or Kafka's records have nothing to sync). Blocking: run it in a thread."""
    sync_sink: Callable[[], None] | None = getattr(sink, "sync", None)
    if sync_sink is not None:
        sync_sink()


def _ends_torn(fh: io.BufferedRandom) -> bool:
    """Whether the open file's last byte is not a newline (an empty file is not torn)."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return False
    fh.seek(end - 1)
    return fh.read(1) != b"\n"


_decoder = msgspec.json.Decoder(AuditRecord)
_encoder_for_producer = msgspec.json.Encoder()


# where a record begins (each is a JSON object whose first key is one of these): a line the
# old writer glued onto a torn one still gives its record back
_STARTS = (b'{"schema":', b'{"at":')


def read_audit(path: Path, unreadable: list[int] | None = None) -> Iterator[AuditRecord]:
    """Records of a JSON-lines audit log, skipping blank lines. With ``unreadable``, a line
    that is not a record (one cut off by a ``kill -9`` or a full disk) is skipped and its
    number appended there, and a whole record a writer appended onto a cut-off line (before
    2026-12-06 it did) is still read; without it, it raises ``msgspec.DecodeError``."""
    with Path(path).open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield _decoder.decode(line)
            except msgspec.DecodeError:
                if unreadable is None:
                    raise
                unreadable.append(n)
                tail = _glued_record(line)
                if tail is not None:
                    yield tail


def _glued_record(line: bytes) -> AuditRecord | None:
    """The whole record at the end of a line that begins with a torn one, if there is one."""
    at = max(line.rfind(start) for start in _STARTS)
    if at <= 0:
        return None
    try:
        return _decoder.decode(line[at:])
    except msgspec.DecodeError:
        return None


class TeeAudit:
    """Writes every record to several sinks (the worker: Kafka ``audit``, metrics, a file);
    its barrier is theirs together."""

    def __init__(self, *sinks: AuditSink) -> None:
        self.sinks = sinks

    def write(self, record: AuditRecord) -> None:
        """Every sink gets the record, even past one that raises (the file and the metrics
        still hold what the Kafka topic refused); then the first error is raised."""
        first: Exception | None = None
        for sink in self.sinks:
            try:
                sink.write(record)
            except Exception as err:
                first = first or err
        if first is not None:
            raise first

    def sync(self) -> None:
        """Every sink's :func:`sync`, even past one that raises; then the first error."""
        first: Exception | None = None
        for sink in self.sinks:
            try:
                sync(sink)
            except Exception as err:
                first = first or err
        if first is not None:
            raise first

    def barrier(self) -> Awaitable[None] | None:
        """Every sink's barrier (:func:`durable`), None if none has one pending."""
        waits = [w for w in (durable(s) for s in self.sinks) if w is not None]
        if not waits:
            return None
        return _all(waits)


async def _all(waits: list[Awaitable[None]]) -> None:
    for w in waits:
        await w


# How long a record may wait for Kafka's answer before it counts as lost: longer than the
# producer's own request timeout (Faust's default, 1200 s, which the worker keeps), so a Kafka
# outage is waited out as the producer waits it out, and only a record that will never be
# answered stops the worker.
ANSWER_WITHIN_S = 1260.0


class AuditLost(Exception):
    """An audit record was not written (its produce failed): the shell must stop."""


class ProducerAudit:
    """Audit sink handing each record as JSON, keyed by partner id, to a producer (the worker's
    ``audit`` topic).

    ``send(key, value)`` is a non-blocking producer call (the worker's: records straight to its
    producer, in order, ``broker.streams.audit_producer``) returning the record's future,
    resolved once Kafka has the record. :meth:`barrier` waits for every
    record written so far; a record Kafka did not take makes it raise :class:`AuditLost`, and
    so does every later barrier (the worker stops; a record lost cannot be written again from
    here). Records hold no secrets (``adapters.audit``): names of fields, statuses, scrubbed
    error texts.

    Records are numbered as written; ``durable_upto`` is the highest number up to which every
    record has its answer from Kafka. A barrier waits for the number written at its call, so
    each costs O(log waiters) however many records are in flight (a burst's hundreds of
    deliveries each waiting on every pending future was quadratic).
    """

    def __init__(self, send: Callable[[bytes, bytes], asyncio.Future[object]],
                 answer_within_s: float = ANSWER_WITHIN_S) -> None:
        self.send = send
        self.answer_within_s = answer_within_s
        self.written = 0  # records handed to the producer
        self.durable_upto = 0  # every record numbered up to this one has Kafka's answer
        self._answered: set[int] = set()  # numbers above durable_upto already answered
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by number
        self.lost: str | None = None  # why the first record Kafka did not take was lost

    def write(self, record: AuditRecord) -> None:
        if self.lost is not None:
            raise AuditLost(self.lost)
        fut = self.send(record.partner.encode(), _encoder_for_producer.encode(record))
        self.written += 1
        if fut.done():  # answered already (a callback would run only at the next loop turn)
            self._answer(self.written, fut)
            if self.lost is not None:  # refused at once (a stopped or failed producer)
                raise AuditLost(self.lost)
        else:
            fut.add_done_callback(functools.partial(self._answer, self.written))

    def _answer(self, number: int, fut: asyncio.Future[object]) -> None:
        err = "cancelled" if fut.cancelled() else fut.exception()
        if err is not None and self.lost is None:
            self.lost = f"an audit record was not produced: {err!r}"[:500]
            log.error("%s", self.lost)
        self._answered.add(number)
        while self.durable_upto + 1 in self._answered:
            self._answered.discard(self.durable_upto + 1)
            self.durable_upto += 1
        while self._waiters and self._waiters[0][0] <= self.durable_upto:
            waiter = heapq.heappop(self._waiters)[2]
            if not waiter.done():
                waiter.set_result(None)

    def barrier(self) -> Awaitable[None] | None:
        """None if every record written so far is in Kafka; else an awaitable that returns once
        they are (raising :class:`AuditLost` if one is not)."""
        if self.lost is not None:
            raise AuditLost(self.lost)
        if self.durable_upto >= self.written:
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self.written, id(waiter), waiter))
        return self._wait(waiter)

    async def _wait(self, waiter: asyncio.Future[None]) -> None:
        # a timer of our own, not wait_for(shield(...)): those two wrappers cost the delivery
        # two more loop turns to resume once Kafka answers (bench/notes.md, 2026-12-06); set
        # here, not in barrier(), so a wait that never starts leaves no timer behind
        timer = asyncio.get_running_loop().call_later(self.answer_within_s, _expire, waiter)
        try:
            await waiter  # cancelled with its caller: _answer skips a waiter already done
        except TimeoutError:
            # a record whose future is never resolved (the producer's send queue died with it)
            # held every delivery for good: counted lost, the worker stops
            if self.lost is None:
                self.lost = (f"an audit record had no answer from Kafka in "
                             f"{self.answer_within_s:g} s")
                log.error("%s", self.lost)
        finally:
            timer.cancel()
        if self.lost is not None:
            raise AuditLost(self.lost)


def _expire(waiter: asyncio.Future[None]) -> None:
    """A barrier's answer time ran out (``ProducerAudit._wait``)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def durable(sink: AuditSink) -> Awaitable[None] | None:
    """What to await until every record ``sink`` was given so far is durable (None: already
    so, as a list's records are once ``write`` returns, and a file's are in the file, the OS's
    cache: :func:`sync` takes them to the disk). Raises, or the awaitable
    raises, if a record was lost: nothing may be sent or acknowledged after that."""
    barrier: Callable[[], Awaitable[None] | None] | None = getattr(sink, "barrier", None)
    return barrier() if barrier is not None else None
