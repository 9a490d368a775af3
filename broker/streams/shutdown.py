"""A worker asked to stop stops: a deadline on Faust's graceful shutdown.

Why: with its Kafka gone, Faust's shutdown (leave the group, flush the producer, stop the
consumer thread) waits for Kafka for ever: a worker sent SIGTERM a few seconds after its broker
stopped was still running 60 s later, and benchmark runs left such workers behind, busy. What
a worker has not flushed it has not acked, so leaving without it is what a ``kill -9`` does,
which loses nothing (docs/streams.md, "No alert lost"): the next worker does that work again.
So the first SIGTERM or SIGINT arms a timer; a shutdown still under way when it runs out ends
the process with :data:`EXIT_SHUTDOWN_TIMEOUT`, saying so.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import NoReturn

import faust

from broker.streams.runtime import exit_code_for

log = logging.getLogger(__name__)

EXIT_SHUTDOWN_TIMEOUT = 70  # EX_SOFTWARE: the graceful shutdown did not finish


class ShutdownDeadline:
    """Ends the process ``timeout_s`` after :meth:`arm`, unless it has ended by then."""

    def __init__(self, timeout_s: float, end: Callable[[int], object] = os._exit) -> None:
        self.timeout_s = timeout_s
        self._end = end  # os._exit: no atexit, no thread joins (they are what hangs)
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        """Start the countdown (once: a second signal does not push it back)."""
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.timeout_s, self._expire)
        self._timer.daemon = True  # a shutdown that finishes is not held up by it
        self._timer.start()

    def _expire(self) -> None:
        log.critical(
            "shutdown not finished %g s after the stop signal (Kafka unreachable?): exiting "
            "without it; what was not acked is done again by the next worker (exit %d)",
            self.timeout_s, EXIT_SHUTDOWN_TIMEOUT,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._end(EXIT_SHUTDOWN_TIMEOUT)


class DeadlineWorker(faust.Worker):
    """Faust's worker, its shutdown on SIGTERM / SIGINT bounded by a :class:`ShutdownDeadline`
    (set ``deadline`` before it runs), and a crash that asks for an exit code of its own (the
    readiness watchdog's stop: ``broker.streams.runtime.exit_code_for``) exiting with it."""

    deadline: ShutdownDeadline | None = None

    def execute_from_commandline(self) -> NoReturn:
        try:
            super().execute_from_commandline()
        except SystemExit as done:
            # the worker's first stop (a later crash during its shutdown overwrites Faust's
            # crash_reason, not the cause), else Faust's crash reason
            rt = getattr(getattr(self, "app", None), "broker_runtime", None)
            first = getattr(rt, "stopped", None)
            code = exit_code_for(first if first is not None else self.crash_reason)
            if code is not None and done.code not in (None, 0):
                raise SystemExit(code) from None
            raise

    def _on_sigterm(self) -> None:
        if self.deadline is not None:
            self.deadline.arm()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        if self.deadline is not None:
            self.deadline.arm()
        super()._on_sigint()
