"""The real worker whose table recovery never ends, for ``test_not_ready_watchdog.py``.

``python -m tests.integration.stuck_seek_worker worker`` runs ``broker.streams.cli`` after
replacing ``HandoffConsumer.perform_seek`` (the seek to the committed offsets that ends every
recovery) with one that never returns, logging ``seek held``: what Faust's own retry of the
committed offsets, which has no bound, does while Kafka cannot answer it (docs/streams.md, "A
worker that never gets ready"). Faust gives the recovery up after its request timeout (90 s)
and the worker stays not ready for good; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import sys

from broker.streams.consumer import HandoffConsumer


async def _perform_seek(self: HandoffConsumer) -> None:
    sys.stderr.write("stuck_seek_worker: seek held\n")  # the worker's log file
    sys.stderr.flush()
    await asyncio.Event().wait()  # never set


if __name__ == "__main__":  # only in the worker: pytest imports this module too
    from broker.streams.cli import cli

    HandoffConsumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    sys.exit(cli())
