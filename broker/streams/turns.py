"""How many loop turns the vehicle agent gives the other tasks after a message (fan-out,
delivery, the tick, and the producer that takes its alerts to Kafka): a policy apart from the
agent, so it can be read and tested on its own (bench/notes.md section 5, the start burst)."""

from __future__ import annotations

YIELD_EVERY = 64  # messages the agent processes between two turns of the other tasks
# Loop turns from ``send_soon`` until the alert's produce request is written to Kafka's socket:
# Faust's send-queue task takes it and puts it in aiokafka's batch, which wakes aiokafka's
# sender, which starts the request's own task, which writes it; counted, not derived, with
# faust-streaming 0.15 and aiokafka 0.14 (tests/integration/test_produce_turns.py)
PRODUCE_TURNS = 7


def turns_after_message(alerts_queued: bool, since_yield: int) -> int:
    """Loop turns the vehicle agent gives the other tasks after a message. Faust hands over a
    full buffer (thousands of messages) without yielding to the loop, so the agent lets
    fan-out, delivery and the tick run every ``YIELD_EVERY`` messages; and after a message
    whose alert it handed to the producer (``alerts_queued``) it gives the ``PRODUCE_TURNS``
    that put the alert on its way to Kafka now. Until 2026-12-06 only the first: in the start
    burst (every message a new zone, ~1 ms each) a new alert sat in Faust's send queue, then
    in aiokafka's batch, while the agent built the next zones (bench/notes.md, section 5)."""
    if alerts_queued:
        return PRODUCE_TURNS
    return 1 if since_yield >= YIELD_EVERY else 0
