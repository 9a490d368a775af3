"""Repeated Kafka client warnings, held back: the first through, then one per interval.

While Kafka is away every aiokafka client of the worker logs the same few warnings and errors
at each retry ("Failed fetch messages from 1", "Unable connect to node with id 1", ...): about
ninety lines a second, 3,500 for a 30 s outage (``make faults``, ``kafka_restart``). An
operator needs the first one and to know the outage goes on, not each retry.
:class:`RepeatsHeldBack` lets the first line of a kind through, then at most one every
``every_s`` seconds that says how many like it were held back meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

# aiokafka's modules that log at each retry while a broker is unreachable (a filter on a
# logger sees only the records made on that logger, not its children's: each is named)
AIOKAFKA_LOGGERS = (
    "aiokafka",  # the client's own ("Unable connect to node ...")
    "aiokafka.client",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
)
EVERY_S = 10.0
# the worker's own warning at each misrouted record: held back the same way, so a producer
# that keys every record otherwise (a librdkafka client's CRC32 partitioner) shows in the log
# as one line every EVERY_S, with the remedy, not one per record
MISROUTED = logging.getLogger("broker.streams.misrouted")
HELD_BACK_LOGGERS = (*AIOKAFKA_LOGGERS, MISROUTED.name)
MISROUTED_HELP = (
    "input not keyed by its vehicle id (misrouted: %s): appended again under its vehicle id, "
    "one Kafka hop later. Key every record of avl.positions, cad.routes and cad.status by the "
    "vehicle id's UTF-8 bytes, partitioned with Kafka's default murmur2 (librdkafka clients "
    "such as confluent-kafka hash with CRC32 unless given partitioner=murmur2_random; "
    "docs/ingest.md)"
)


def warn_misrouted(detail: str) -> None:
    """Log that a record came on another partition than its vehicle id's, and what to fix."""
    MISROUTED.warning(MISROUTED_HELP, detail)


class RepeatsHeldBack(logging.Filter):
    """A logging filter: warnings and errors of one kind (logger and message template, not its
    arguments) pass once per ``every_s`` seconds, the next one saying how many were held."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}  # -> (passed at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, str(record.msg))
        now = self.clock()
        passed, held = self._kinds.get(kind, (None, 0))
        if passed is not None and now - passed < self.every_s:
            self._kinds[kind] = (passed, held + 1)
            return False
        self._kinds[kind] = (now, 0)
        if held:
            # appended to the template, after its own %-placeholders: no '%' in it
            record.msg = f"{record.msg} ({held} more like this held back in {self.every_s:g} s)"
        return True


def hold_back_repeats(
    loggers: Iterable[str] = HELD_BACK_LOGGERS, every_s: float = EVERY_S
) -> None:
    """Put one :class:`RepeatsHeldBack` on each of ``loggers`` (aiokafka's, the misrouted
    warning)."""
    repeats = RepeatsHeldBack(every_s)
    for name in loggers:
        logging.getLogger(name).addFilter(repeats)
