"""The real worker with a bug planted in the engine, for the failure-policy tests.

``python -m tests.integration.faulty_worker worker`` runs ``broker.streams.cli`` after wrapping
``broker.engine.step``: a position of vehicle ``BUGGY-*`` raises ZeroDivisionError (a bug in our
code: the policy skips it into ``avl.dlq``), one of ``OUTAGE-*`` raises ConnectionError (a part
that is down: the policy stops the worker without acking). And ``broker.engine.tick``: time for
a unit ``RESTATE-*`` whose CAD status is ``available`` raises ZeroDivisionError (a bug that its
status's restatement, and any tick of it, runs into); for a unit ``NOCANCEL-*`` every tick
raises, and so does ``broker.engine.withdraw``, the quarantine's cancel (a bug in the cancel
itself: the policy stops the worker). And the forwarder (``broker.streams.ingest``): an input
message carrying ``planted-refusal`` is one the producer will not take (KafkaTimeoutError, as
when its buffer stays full while Kafka is away). Every other message is untouched.
"""

from __future__ import annotations

import sys

from aiokafka.errors import KafkaTimeoutError

from broker import engine
from broker.model import Position
from broker.streams.ingest import Forwarder

_real_step = engine.step


def _step(state, msg, **kw):  # type: ignore[no-untyped-def]
    if isinstance(msg, Position) and msg.vehicle_id.startswith("BUGGY-"):
        raise ZeroDivisionError("a planted bug")
    if isinstance(msg, Position) and msg.vehicle_id.startswith("OUTAGE-"):
        raise ConnectionError("a planted outage")
    return _real_step(state, msg, **kw)


engine.step = _step

_real_tick = engine.tick


def _tick(state, **kw):  # type: ignore[no-untyped-def]
    cad = state.cad
    if state.vehicle_id.startswith("RESTATE-") and cad is not None and cad.status == "available":
        raise ZeroDivisionError("a planted bug in a stood-down unit's time")
    if state.vehicle_id.startswith("NOCANCEL-"):
        raise ZeroDivisionError("a planted bug in a unit's tick")
    return _real_tick(state, **kw)


_real_withdraw = engine.withdraw


def _withdraw(state, **kw):  # type: ignore[no-untyped-def]
    if state.vehicle_id.startswith("NOCANCEL-"):
        raise ZeroDivisionError("a planted bug in the quarantine's cancel")
    return _real_withdraw(state, **kw)


engine.tick = _tick
engine.withdraw = _withdraw

_real_forward = Forwarder.forward


async def _forward(self, kind, raw, *args, **kw):  # type: ignore[no-untyped-def]
    if b"planted-refusal" in raw:
        raise KafkaTimeoutError("planted: the producer's buffer stayed full")
    return await _real_forward(self, kind, raw, *args, **kw)


Forwarder.forward = _forward  # type: ignore[method-assign]

if __name__ == "__main__":
    from broker.streams.cli import cli

    sys.exit(cli())
