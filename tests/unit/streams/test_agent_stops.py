"""The vehicle agent's loop (broker.streams.agents.VehicleAgent.run) on a failure outside the
driver: the worker stops loudly, the message not acked. Out of ``run`` (before 2026-12-07),
Faust's supervisor restarted the agent with the message un-acked: the partition's commits
frozen behind it, later messages taken, and nothing stopping."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from broker import codec
from broker.drive import Driver
from broker.failure import FailurePolicy, StopWork
from broker.settings import EngineConfig
from broker.streams.agents import VehicleAgent
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames


class _Stream:
    def __init__(self, events: list[Any]) -> None:
        self._events = events

    def noack(self) -> _Stream:
        return self

    async def events(self) -> Any:
        for event in self._events:
            yield event


def _event(offset: int, acked: list[int]) -> Any:
    message = SimpleNamespace(topic="avl.positions", partition=0, offset=offset)
    return SimpleNamespace(message=message, key=b"E1", value=b"{}",
                           ack=lambda: acked.append(offset))


def test_a_bug_of_the_loop_itself_stops_the_worker_without_acking() -> None:
    acked: list[int] = []
    stops: list[StopWork] = []
    handled: list[int] = []

    async def stop_worker(app: object, stop: StopWork) -> None:
        stops.append(stop)

    def handle(event: Any) -> None:
        handled.append(event.message.offset)
        if event.message.offset == 1:
            raise KeyError("a bug in the shell")

    agent: Any = SimpleNamespace(
        app=SimpleNamespace(),
        rt=SimpleNamespace(skipped=lambda *a: False, stop_worker=stop_worker,
                           membership=SimpleNamespace(held=lambda: True)),
        states=SimpleNamespace(begin=lambda: None, processed=lambda ack: ack(),
                               due=lambda: False),
        failures=FailurePolicy(),
        handle=handle,
    )
    agent.unsettled = lambda err, event: VehicleAgent.unsettled(agent, err, event)

    async def no_turns(since_yield: int) -> int:
        return since_yield

    agent.give_turns = no_turns
    stream = _Stream([_event(0, acked), _event(1, acked), _event(2, acked)])
    asyncio.run(VehicleAgent.run(agent, stream))
    assert handled == [0, 1] and acked == [0]  # the failed message, and none after it
    (stop,) = stops
    assert stop.failure.site == "settle" and stop.failure.source == "avl.positions"
    assert stop.failure.raw == b"{}" and "a bug in the shell" in stop.failure.error


def test_a_failed_records_dead_letter_keeps_its_key_bytes_exactly() -> None:
    """The key a decode failure carries (any bytes, decoded with surrogateescape by ``handle``)
    is the record's own key on its dead letter, byte for byte."""
    from broker.failure import Failure

    letters: list[tuple[bytes, bytes, str, str]] = []
    agent: Any = SimpleNamespace(
        rt=SimpleNamespace(settings=SimpleNamespace(topic_prefix="")),
        dead_letter=lambda key, raw, source, reason, detail: letters.append(
            (key, raw, source, reason)),
    )
    key = b"\xff\xfeunit-7"  # not UTF-8: a device's own id
    failure = Failure(site="decode", error="ZeroDivisionError",
                      key=key.decode(errors="surrogateescape"), raw=b"{}",
                      source="avl.positions")
    VehicleAgent.failed_work(agent, failure)
    assert letters == [(key, b"{}", "avl.positions", "decode_error")]


def test_a_record_whose_reading_raises_is_dead_lettered_under_its_own_key_through_handle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``handle`` hands the record's key to the driver (``key=``), whose failure policy gives
    it to ``failed_work``: the dead letter's key is the record's, byte for byte (without it,
    the empty key of before)."""
    rt = Runtime(settings=StreamSettings(partitions=4), names=TopicNames.for_prefix())
    letters: list[tuple[bytes, bytes, str, str]] = []
    counter = SimpleNamespace(inc=lambda: None, observe=lambda _: None)
    agent: Any = SimpleNamespace(
        rt=rt, metrics=rt.metrics, topics=SimpleNamespace(names=rt.names),
        messages_in={rt.names.positions: counter}, step_latency=counter,
        late_units=SimpleNamespace(), send=lambda events, late=None: None,
        dead_letter=lambda key, raw, source, reason, detail: letters.append(
            (key, raw, source, reason)),
    )
    policy = FailurePolicy(dead_letter=lambda failure: VehicleAgent.failed_work(agent, failure))
    agent.driver = Driver(EngineConfig(), key=str.encode, failures=policy)

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug reading it")

    monkeypatch.setattr(codec, "decode_position", bug)
    key = b"\xff\xfeunit-7"  # not UTF-8: a device's own id
    message = SimpleNamespace(topic=rt.names.positions, partition=rt.partition_of(key),
                              offset=0, headers=None, timestamp=None)
    VehicleAgent.handle(agent, SimpleNamespace(message=message, value=b"{}", key=key))
    assert letters == [(key, b"{}", "avl.positions", "decode_error")]


def test_a_bug_in_a_held_dispatch_alerts_own_tick_stops_the_worker() -> None:
    """The tick of one unit whose dispatch alert is held (``VehicleAgent.tick_due``) runs in a
    task of its own: an exception the driver's policy does not turn into a stop (a bug of the
    shell, or of the driver's own handling) went into the task, which nothing read (Python's
    "Task exception was never retrieved" at best, when it is collected). The worker went on,
    and the next flush wrote whatever states the failed tick had put before raising, their
    events dropped with the exception. It stops, as a bug of the message loop does (site
    ``settle``)."""
    from datetime import UTC, datetime

    stops: list[StopWork] = []

    async def stop_worker(app: object, stop: StopWork) -> None:
        stops.append(stop)

    now = datetime(2026, 1, 1, tzinfo=UTC)

    async def tick_or_stop(now: datetime, live: Any) -> Any:
        raise AttributeError("a bug past the driver's policy")

    async def scenario() -> None:
        rt: Any = SimpleNamespace(
            owned={0}, background=set(), stop_worker=stop_worker,
            clocks=SimpleNamespace(now=lambda *a, **k: now), wall=lambda: 0.0,
        )
        agent: Any = SimpleNamespace(
            app=SimpleNamespace(), rt=rt, failures=FailurePolicy(),
            begin_tick=lambda: True, caught_up=lambda p: True, tick_or_stop=tick_or_stop,
            send=lambda events: None,
            states=SimpleNamespace(get=lambda key: SimpleNamespace(dispatch_due=now)),
        )
        agent.tick_due = lambda p, k: VehicleAgent.tick_due(agent, p, k)
        VehicleAgent._dispatch_due(agent, 0, b"E1")
        while rt.background:
            await asyncio.gather(*rt.background, return_exceptions=True)
            await asyncio.sleep(0)

    asyncio.run(scenario())
    (stop,) = stops
    assert stop.failure.site == "settle" and "a bug past the driver's policy" in stop.failure.error
