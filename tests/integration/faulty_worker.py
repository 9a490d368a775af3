"""The real worker with a bug planted in the engine, for the failure-policy tests.

``python -m tests.integration.faulty_worker worker`` runs ``broker.streams.cli`` after wrapping
``broker.engine.step``: a position of vehicle ``BUGGY-*`` raises ZeroDivisionError (a bug in our
code: the policy skips it into ``avl.dlq``), one of ``OUTAGE-*`` raises ConnectionError (a part
that is down: the policy stops the worker without acking). Every other message is untouched.
"""

from __future__ import annotations

import sys

from broker import engine
from broker.model import Position

_real_step = engine.step


def _step(state, msg, **kw):  # type: ignore[no-untyped-def]
    if isinstance(msg, Position) and msg.vehicle_id.startswith("BUGGY-"):
        raise ZeroDivisionError("a planted bug")
    if isinstance(msg, Position) and msg.vehicle_id.startswith("OUTAGE-"):
        raise ConnectionError("a planted outage")
    return _real_step(state, msg, **kw)


engine.step = _step

if __name__ == "__main__":
    from broker.streams.cli import cli

    sys.exit(cli())
