"""One failure policy: what happens when code fails on a piece of work (a bug, or a broken part).

Every place where the broker does work it must not lose (the decoding of a message, which
refuses junk as a value and raises only on a bug, the engine on it, the tick on a unit, a
quarantined unit's cancel, fan-out on an alert, delivery of a message, a state flush, an audit
record) hands an exception to one :class:`FailurePolicy`, which decides:

- **skip**: a bug in *our* code on this piece of work (any exception that is not an outage):
  the work is parked as a dead-letter record with its reason and original bytes, counted, and
  the stream goes on. The caller acknowledges the work only after the record is written, so
  nothing is lost: the record can be re-driven once the bug is fixed.
- **stop**: an outage or a fault in a part the broker depends on (``OSError``, a timeout, a
  Kafka error, or an error raised from one: ``is_outage``) or a site where skipping would lose
  data (a state flush, a dead letter not written: ``ALWAYS_STOP``): the policy counts it
  and raises :class:`StopWork`; the shell stops loudly *without* acknowledging, so Kafka hands
  the work to the restarted (or another) worker.

The policy holds no I/O of its own: the shell injects where records go (``dead_letter``), what
counts them (``count``) and, for ``mode="raise"`` (in-process tools: replay, simulate, bench),
there is no dead-letter queue at all: every failure propagates as it happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Site = Literal[
    "decode", "engine", "tick", "cancel", "fanout", "delivery", "flush", "ingest", "offsets",
    "audit", "readiness", "settle",
]
Decision = Literal["skip", "stop"]

# Where a skipped piece of work's record says it failed (a DLQ record's ``reason`` header).
REASONS: dict[Site, str] = {
    "decode": "decode_error",
    "engine": "engine_error",
    "tick": "tick_error",
    "cancel": "cancel_error",
    "fanout": "fanout_error",
    "delivery": "delivery_error",
    "flush": "flush_error",
    "ingest": "ingest_error",
    "offsets": "offset_gap",
    "audit": "audit_error",
    "readiness": "not_ready",
    "settle": "settle_error",
}
# Sites where skipping would drop work no record can stand in for: always stop (a state flush;
# a Traccar position that Kafka did not take, whose message must come again; input records
# the consumer never handed over, which acking the next one would commit past; the cancel of a
# quarantined unit's live alert, which would otherwise never go out: a cancel always does; an
# audit record not written, whatever the error: nothing may reach a partner, nor be acked,
# without its record, and skipping would do one or the other; a worker not ready for too long
# with nothing moving, whose work waits for it: the readiness watchdog, broker.streams.watchdog;
# a piece of work whose settling failed -- its dead letter not written, its settled record not
# written, an error out of the failure's own handling --: skipping again would drop it with no
# record of it, or leave it unacknowledged for good with nothing stopping). ``POST
# /ingest/traccar`` stops nothing: its endpoint answers, and counts a bug whose body it
# dead-lettered as ``ingest``/``skip`` itself (broker.streams.ingest).
ALWAYS_STOP: frozenset[Site] = frozenset(
    {"flush", "ingest", "offsets", "cancel", "audit", "readiness", "settle"}
)

log = logging.getLogger(__name__)


# Exception types that mean a part is down, not that our code is wrong. Shells add their
# clients' own (the worker adds the Kafka clients' error classes); the core knows no client.
# An error raised *from* one (``raise X from err``: a library wrapping its client's error, as
# Faust's ProducerSendError wraps a KafkaError) is one too: see :func:`is_outage`.
OUTAGES: tuple[type[BaseException], ...] = (OSError, TimeoutError)
CAUSE_DEPTH = 8  # how far down a chain of explicit causes is looked at


def is_outage(error: BaseException, outages: tuple[type[BaseException], ...] = OUTAGES) -> bool:
    """Whether ``error``, or an error it was explicitly raised from (``__cause__``), is an
    outage. Only explicit causes: an error raised while *handling* an outage (``__context__``)
    may be a bug of the handler.

    Examples
    --------
    >>> class Wrapped(Exception): ...
    >>> try:
    ...     raise Wrapped("send failed") from ConnectionError()
    ... except Wrapped as err:
    ...     is_outage(err), is_outage(Wrapped("a bug"))
    (True, False)
    """
    seen: BaseException | None = error
    for _ in range(CAUSE_DEPTH):
        if seen is None:
            return False
        if isinstance(seen, outages):
            return True
        seen = seen.__cause__
    return False


def decide(
    site: Site, error: BaseException, outages: tuple[type[BaseException], ...] = OUTAGES
) -> Decision:
    """Skip a bug on one piece of work; stop on an outage, or where skipping would lose data.

    Examples
    --------
    >>> decide("engine", ZeroDivisionError()), decide("engine", ConnectionError())
    ('skip', 'stop')
    >>> decide("flush", ValueError())
    'stop'
    """
    if site in ALWAYS_STOP or is_outage(error, outages):
        return "stop"
    return "skip"


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed piece of work: where, which (``key``), why, and the work's original bytes.

    ``source`` names where the work came from (an input topic, ``alerts`` ...), "" if nowhere.
    """

    site: Site
    key: str
    error: str  # repr of the exception, cut to 500 characters
    raw: bytes
    source: str = ""

    @property
    def reason(self) -> str:
        """The dead-letter reason of this site (``engine_error``, ``fanout_error`` ...)."""
        return REASONS[self.site]


class StopWork(Exception):
    """The shell must stop without acknowledging the work (Kafka redelivers it)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.site} failed on {failure.key!r}: {failure.error}")
        self.failure = failure


DeadLetter = Callable[[Failure], None]
Count = Callable[[Site, Decision], None]


class FailurePolicy:
    """Decide, count and record one failure (see the module docstring).

    ``check`` decides and counts: it returns the :class:`Failure` to skip, or raises
    :class:`StopWork`. Calling the policy also hands a skipped failure to ``dead_letter`` (which
    must make it durable before the caller acknowledges the work); sites whose dead letters carry
    more (a delivery's partner, body and attempts) call ``check`` and write their own record.
    ``count(site, decision)`` feeds a metric; ``outages`` are the exception types that stop.
    ``mode="raise"``: nothing is decided, every failure propagates unchanged (in-process tools).
    """

    def __init__(
        self,
        *,
        dead_letter: DeadLetter | None = None,
        count: Count | None = None,
        outages: tuple[type[BaseException], ...] = OUTAGES,
        mode: Literal["decide", "raise"] = "decide",
    ) -> None:
        self._dead_letter = dead_letter
        self._count = count
        self.outages = outages
        self.mode = mode

    def check(
        self, site: Site, error: Exception, *, key: str, raw: bytes = b"", source: str = "",
        counted: bool = True,
    ) -> Failure:
        """Decide on ``error`` raised at ``site`` while working on ``key``, and count it.

        Returns the :class:`Failure` when the work is to be skipped; raises :class:`StopWork`
        when the shell must stop (or ``error`` itself in ``mode="raise"``). ``counted`` False:
        a skip is left for the caller to count once its record is durable (``POST
        /ingest/traccar``, which answers 503 and is sent the same body again if it is not).
        """
        if self.mode == "raise":
            raise error
        failure = Failure(site=site, key=key, error=repr(error)[:500], raw=raw, source=source)
        decision = decide(site, error, self.outages)
        if self._count is not None and (counted or decision == "stop"):
            self._count(site, decision)
        if decision == "stop":
            log.error("%s failed on %r, stopping: %s", site, key, failure.error, exc_info=error)
            raise StopWork(failure) from error
        log.error("%s failed on %r, dead-lettered: %s", site, key, failure.error, exc_info=error)
        return failure

    def __call__(
        self, site: Site, error: Exception, *, key: str, raw: bytes = b"", source: str = ""
    ) -> Failure:
        """``check``, then hand a skipped failure's record to ``dead_letter``."""
        failure = self.check(site, error, key=key, raw=raw, source=source)
        if self._dead_letter is None:
            raise ValueError("this failure policy has no dead-letter sink; use check()")
        self._dead_letter(failure)
        return failure


RAISE = FailurePolicy(mode="raise")


def _interrupts(error: BaseException) -> bool:
    """Whether ``error`` interrupts the task keeping failures (raised over a failure kept
    before it): a KeyboardInterrupt or SystemExit, or a cancellation *of this task* (one a
    child task let out while this task is not being cancelled is a step's failure)."""
    if isinstance(error, Exception):
        return False
    if isinstance(error, asyncio.CancelledError):
        task = _current_task()
        return task is None or task.cancelling() > 0
    return True


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: nothing to tell a cancellation apart by
        return None


class FirstFailure:
    """The first failure of steps that must each run even if one before them failed (a
    shutdown: drain, stop, close): :meth:`raise_first` raises it; each later one is logged and
    noted on it (``add_note``). Written as nested ``finally`` blocks, a later failure was
    raised in place of the first, the cause, left only as its ``__context__``.

    ``first``: a failure there already (a ``with`` block's own exception, which its exit does
    not raise again: ``raise_first(unless=it)``).

    A later step's error that is not an ``Exception`` (a cancellation, ``KeyboardInterrupt``)
    is the one raised instead, the failure before it logged and noted on it: behind the bug
    it was only a note, and a caller that catches ``Exception`` (``close_delivery``) went on
    with a shutdown that had been cancelled, ``asyncio.timeout`` raised the bug, not
    ``TimeoutError``.

    Examples
    --------
    >>> failures = FirstFailure()
    >>> for step, error in [("draining", KeyError("lost")), ("closing", OSError("gone"))]:
    ...     failures.keep(error, step)
    >>> try:
    ...     failures.raise_first()
    ... except KeyError as err:
    ...     err.__notes__
    ["then closing failed: OSError('gone')"]
    """

    def __init__(self, first: BaseException | None = None, *,
                 logger: logging.Logger = log) -> None:
        self.first = first
        self.log = logger

    def keep(self, error: BaseException, what: str) -> None:
        """``error``, raised by the step ``what``: the first, or logged and noted on it (or,
        a cancellation after a failure, raised in its place: the failure logged and noted)."""
        if self.first is None:
            self.first = error
            return
        if isinstance(self.first, Exception) and _interrupts(error):
            earlier, self.first = self.first, error
            self.log.error("%s was interrupted (%r) after a failure, raised in its place: %r",
                           what, error, earlier, exc_info=earlier)
            error.add_note(f"after an earlier failure: {earlier!r}")
            return
        self.log.error("%s failed too: %r", what, error, exc_info=error)
        self.first.add_note(f"then {what} failed: {error!r}")

    def raise_first(self, unless: BaseException | None = None) -> None:
        """Raise the first failure kept, if any (and it is not ``unless``)."""
        if self.first is not None and self.first is not unless:
            raise self.first
