"""The fan-out agent's catch-up hold (broker.streams.fanout_agent): new sends wait while newer
``alerts`` records are queued behind a late one (a restart, an outage), never behind a fresh one
(a burst of new alerts on a running worker)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from broker.streams.fanout_agent import FanOutAgent
from broker.streams.held_updates import LATE_S
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames

WALL = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Hub:
    """The hub's hold in small."""

    def __init__(self) -> None:
        self.holding = False

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.holding = False


def agent(highwater: int) -> FanOutAgent:
    """A fan-out agent with only what ``catch_up`` reads: the consumer's high watermark, the
    clocks and the hub."""
    a = object.__new__(FanOutAgent)
    a.app = SimpleNamespace(consumer=SimpleNamespace(highwater=lambda tp: highwater))  # type: ignore[assignment]
    a.rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), utc=lambda: WALL)
    a.hub = Hub()  # type: ignore[assignment]
    a._behind = set()
    a._hold_timer = None
    return a


def record(offset: int, waited_s: float) -> SimpleNamespace:
    """An ``alerts`` record at ``offset`` that Kafka took ``waited_s`` before the wall clock."""
    ts = (WALL - timedelta(seconds=waited_s)).timestamp()
    return SimpleNamespace(topic="alerts", partition=3, offset=offset, timestamp=ts)


@pytest.mark.parametrize(
    ("waited_s", "behind", "held"),
    [
        (LATE_S + 5, True, True),  # catching up after an outage: newer versions wait behind
        (0.02, True, False),  # a burst of fresh alerts: every create goes at once
        (LATE_S + 5, False, False),  # late but the last of its partition: nothing to wait for
    ],
)
def test_sends_are_held_only_behind_a_late_record(waited_s: float, behind: bool,
                                                  held: bool) -> None:
    async def run() -> tuple[bool, set[int]]:
        a = agent(highwater=10 if behind else 5)
        a.catch_up(record(4, waited_s))
        state = (a.hub.holding, set(a._behind))
        a.end_hold()
        return state

    holding, behind_parts = asyncio.run(run())
    assert holding is held
    assert behind_parts == ({3} if held else set())
