"""Audit log: what we sent (or tried to send, or served) to whom, when, about which alert.

One record per delivery attempt or feed response: partner, partner-facing alert id, version
(for a feed response: the message id, alert id + version, of every item it carried), the names
of the fields sent (never their values), status, HTTP status, latency. Records never
hold secrets, tokens, signatures, headers or bodies. Sinks: a JSON-lines file (in-process
mode), a list (tests), several at once (``TeeAudit``); the streams worker adds a Kafka ``audit``
topic writer (``ProducerAudit``) with the same ``write`` method.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import msgspec

AuditStatus = Literal[
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


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the audit log."""

    at: datetime  # wall-clock time of the attempt (UTC)
    partner: str
    alert_id: str  # partner-facing (pseudonymised) id; "" for a feed response
    version: int
    action: str  # create | update | cancel | feed
    status: AuditStatus
    fields: tuple[str, ...] = ()  # names of the fields sent
    attempt: int = 0
    http_status: int | None = None
    latency_ms: float | None = None
    detail: str = ""  # reason of a failure (no secrets: URLs are redacted by the caller)
    message_id: str = ""  # webhook-id (idempotency key)
    alerts: int = 0  # feed responses: how many alerts the feed carried
    # feed responses: which alert steps the feed carried (their message ids, partner-facing
    # alert id + version): a feed record has no alert_id of its own, and without these the log
    # could not say which alerts a pull partner was given
    served: tuple[str, ...] = ()


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
    """Appends one JSON line per record; flushed per record so a crash loses at most one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._encoder = msgspec.json.Encoder()
        self._lock = threading.Lock()

    def write(self, record: AuditRecord) -> None:
        line = self._encoder.encode(record) + b"\n"
        with self._lock, self.path.open("ab") as fh:
            fh.write(line)


_decoder = msgspec.json.Decoder(AuditRecord)
_encoder_for_producer = msgspec.json.Encoder()


def read_audit(path: Path, unreadable: list[int] | None = None) -> Iterator[AuditRecord]:
    """Records of a JSON-lines audit log, skipping blank lines. With ``unreadable``, a line
    that is not a record (the last one cut off by a ``kill -9``) is skipped and its number
    appended there; without it, it raises ``msgspec.DecodeError``."""
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


class TeeAudit:
    """Writes every record to several sinks (the worker: Kafka ``audit``, metrics, a file)."""

    def __init__(self, *sinks: AuditSink) -> None:
        self.sinks = sinks

    def write(self, record: AuditRecord) -> None:
        for sink in self.sinks:
            sink.write(record)


class ProducerAudit:
    """Audit sink handing each record as JSON, keyed by partner id, to a producer (the worker's
    ``audit`` topic).

    ``send(key, value)`` is a non-blocking producer call (Faust ``topic.send_soon``). Records
    hold no secrets (``adapters.audit``): names of fields, statuses, scrubbed error texts.
    """

    def __init__(self, send: Callable[[bytes, bytes], object]) -> None:
        self.send = send

    def write(self, record: AuditRecord) -> None:
        self.send(record.partner.encode(), _encoder_for_producer.encode(record))
