"""The real worker whose consumer stands ahead of the committed offset when Faust seeks, for
``test_handoff_before_seek.py``.

``python -m tests.integration.seek_ahead_worker worker`` runs ``broker.streams.cli`` after
wrapping ``HandoffConsumer.perform_seek``: with ``TEST_SEEK_AHEAD`` = ``topic:partition:offset``,
the first seek of an assignment holding that partition first moves the consumer to that offset
(where records Faust took in during recovery and cleared had left it: docs/streams.md, "No
record is taken before the seek"), logs ``ran ahead``, waits ``TEST_SEEK_HOLD_S`` (the
partitions resumed, Faust's fetcher running, commits every half second) and only then seeks.
And every ``alerts`` record the fan-out agent takes is logged: ``fan-out took <topic>[<p>]@<o>``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from faust.types import TP

from broker.streams.consumer import HandoffConsumer
from broker.streams.fanout_agent import FanOutAgent

_ran_ahead: list[bool] = []
_real_seek = HandoffConsumer.perform_seek
_real_catch_up = FanOutAgent.catch_up


def _say(line: str) -> None:
    sys.stderr.write(f"seek_ahead_worker: {line}\n")  # the worker's log file
    sys.stderr.flush()


async def _perform_seek(self: HandoffConsumer) -> None:
    topic, partition, offset = os.environ["TEST_SEEK_AHEAD"].rsplit(":", 2)
    ahead = TP(topic, int(partition))
    if not _ran_ahead and ahead in self.assignment():
        _ran_ahead.append(True)
        await self.seek_wait({ahead: int(offset)})
        _say(f"ran ahead to {topic}[{partition}]@{offset}")
        await asyncio.sleep(float(os.environ.get("TEST_SEEK_HOLD_S", "4")))
        _say("seeking to the committed offsets now")
    await _real_seek(self)


def _catch_up(self: FanOutAgent, message: Any) -> None:
    _say(f"fan-out took {message.topic}[{message.partition}]@{message.offset}")
    _real_catch_up(self, message)


if __name__ == "__main__":  # only in the worker: pytest imports this module too
    from broker.streams.cli import cli

    HandoffConsumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    FanOutAgent.catch_up = _catch_up  # type: ignore[method-assign]

    sys.exit(cli())
