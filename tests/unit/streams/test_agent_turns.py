"""The vehicle agent's turns for the other tasks (broker.streams.agents): after a message whose
alert went to the producer it yields the turns that take the alert to Kafka at once; otherwise
one turn every ``YIELD_EVERY`` messages, as before (the start burst, bench/notes.md section 5)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from broker.streams.agents import VehicleAgent
from broker.streams.turns import PRODUCE_TURNS, YIELD_EVERY, turns_after_message
from tests.unit.adapters.factory import alert


@pytest.mark.parametrize(
    ("queued", "since_yield", "turns"),
    [
        (True, 1, PRODUCE_TURNS),
        (True, YIELD_EVERY, PRODUCE_TURNS),
        (False, 1, 0),
        (False, YIELD_EVERY - 1, 0),
        (False, YIELD_EVERY, 1),
    ],
)
def test_turns_after_a_message(queued: bool, since_yield: int, turns: int) -> None:
    assert turns_after_message(queued, since_yield) == turns


class _Recorder:
    """The parts of the agent ``VehicleAgent.send`` touches: the producer's topic, the
    metrics, the held updates and the state cache."""

    def __init__(self, hold: bool) -> None:
        self.produced: list[bytes] = []
        self.topics = SimpleNamespace(alerts=SimpleNamespace(send_soon=self._send_soon))
        counter = SimpleNamespace(inc=lambda: None)
        self.rt = SimpleNamespace(metrics=SimpleNamespace(
            alerts=SimpleNamespace(labels=lambda action: counter)))
        self.held = SimpleNamespace(route=lambda events, late: [] if hold else list(events))
        self.states = SimpleNamespace(sent=lambda fut: None)
        self.alerts_queued = False

    def _send_soon(self, key: bytes, value: bytes) -> Any:
        self.produced.append(key)
        return object()


@pytest.mark.parametrize("hold", [False, True])
def test_an_alert_handed_to_the_producer_asks_for_the_turns(hold: bool) -> None:
    agent: Any = _Recorder(hold)
    VehicleAgent.send(agent, [alert("update", 2)], late=hold)
    assert agent.alerts_queued is (not hold)  # a held update is produced by the flush
    assert len(agent.produced) == (0 if hold else 1)
    assert turns_after_message(agent.alerts_queued, 1) == (0 if hold else PRODUCE_TURNS)



def test_the_agent_gives_the_turns_and_clears_its_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's tail: an alert's message gives ``PRODUCE_TURNS`` and clears the flag (the
    next message gives none), and a quiet run gives one turn every ``YIELD_EVERY``."""
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr("broker.streams.agents.asyncio.sleep", sleep)
    agent: Any = SimpleNamespace(alerts_queued=True)

    async def messages() -> list[tuple[int, int, bool]]:
        """(turns given, messages since the last turn, flag) after each of a run of messages."""
        seen, since = [], 0
        for _ in range(YIELD_EVERY + 2):
            before = len(slept)
            since = await VehicleAgent.give_turns(agent, since + 1)
            seen.append((len(slept) - before, since, agent.alerts_queued))
        return seen

    seen = asyncio.run(messages())
    assert seen[0] == (PRODUCE_TURNS, 0, False)
    assert seen[1] == (0, 1, False)
    assert [s[0] for s in seen[1:]] == [0] * (YIELD_EVERY - 1) + [1, 0]
    assert seen[YIELD_EVERY][1] == 0 and set(slept) == {0}
