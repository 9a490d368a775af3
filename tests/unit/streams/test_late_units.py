"""The worker's side of a late unit (``Driver.late``; docs/streams.md, "Time"): its fix is
judged against its own partition's clock (the worker's one driver serves every partition), goes
to avl.dlq with reason ``late`` and is counted, and the unit is logged once as it starts coming
late and once as its fixes are taken again, not at every fix."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from broker import codec
from broker.drive import Driver
from broker.model import AlertEvent
from broker.settings import EngineConfig
from broker.streams.agents import VehicleAgent
from broker.streams.late_units import LateUnits
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.topics import TopicNames
from tests.conftest import at, fix

CFG = EngineConfig()
WALL = at(3600.0)


class _Agent:
    """The parts of the vehicle agent ``VehicleAgent.handle`` touches: a real runtime and
    driver, the dead letters and alerts recorded."""

    def __init__(self) -> None:
        self.rt = Runtime(settings=StreamSettings(partitions=4), names=TopicNames.for_prefix(),
                          utc=lambda: WALL, wall=lambda: 0.0)
        self.metrics = self.rt.metrics
        self.topics = SimpleNamespace(names=self.rt.names)
        counter = SimpleNamespace(inc=lambda: None, observe=lambda _: None)
        self.messages_in = {self.rt.names.positions: counter}
        self.step_latency = counter
        self.driver: Driver[bytes] = Driver(CFG, key=str.encode)
        self.rt.driver = self.driver
        self.late_units = LateUnits()
        self.dead: list[tuple[bytes, str, str]] = []
        self.events: list[AlertEvent] = []
        self.offsets: dict[int, int] = {}

    def dead_letter(self, key: Any, raw: bytes, source: str, reason: str, detail: str) -> None:
        self.metrics.rejected.labels(reason).inc()
        self.dead.append((key, reason, detail))

    def send(self, events: list[AlertEvent], late: bool | None = None) -> None:
        self.events += events

    def take(self, vid: str, t: float, received_s: float, headers: Any = None) -> None:
        """One fix of ``vid`` at T0 + ``t``, its record stamped T0 + ``received_s``."""
        key = vid.encode()
        partition = self.rt.partition_of(key)
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        message = SimpleNamespace(topic=self.rt.names.positions, partition=partition,
                                  offset=offset, headers=headers,
                                  timestamp=at(received_s).timestamp())
        value = codec.encode(fix(t, 12.0 * t, vehicle_id=vid))
        VehicleAgent.handle(self, SimpleNamespace(message=message, value=value, key=key))  # type: ignore[arg-type]


def _same_partition(rt: Runtime, vid: str) -> str:
    """Another vehicle id on ``vid``'s partition."""
    p = rt.partition_of(vid.encode())
    return next(f"U{i}" for i in range(1000) if rt.partition_of(f"U{i}".encode()) == p and
                f"U{i}" != vid)


def test_a_late_fix_goes_to_the_dlq_counted_and_the_unit_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = _Agent()
    y = _same_partition(agent.rt, "X")
    caplog.set_level(logging.INFO, logger="broker.streams.late_units")
    for s in range(3500, 3510):
        agent.take(y, s, s)
        agent.take("X", s - 40, s)  # its device's clock 40 s behind
    assert [(k, r) for k, r, _ in agent.dead] == [(b"X", "late")] * 10
    assert "40.0 s behind" in agent.dead[0][2]
    assert agent.metrics.rejected.labels("late")._value.get() == 10
    assert not [e for e in agent.events if e.vehicle_id == "X"]
    late_logs = [r for r in caplog.records if "come late" in r.getMessage()]
    assert len(late_logs) == 1 and late_logs[0].levelno == logging.WARNING
    assert "unit X" in late_logs[0].getMessage()
    agent.take("X", 3510, 3510)  # its clock put right: taken at once, said once
    assert [e.action for e in agent.events if e.vehicle_id == "X"] == ["create"]
    assert len([r for r in caplog.records if "taken again" in r.getMessage()]) == 1
    agent.take("X", 3470, 3511)  # behind again: logged again, once
    assert len([r for r in caplog.records if "come late" in r.getMessage()]) == 2


def test_a_partition_read_behind_another_is_not_late() -> None:
    """Two partitions read ten minutes apart (uneven fetches, one's backlog): the driver's own
    clock is the newer one's; the older partition's fixes are judged by their own clock."""
    agent = _Agent()
    other = next(f"U{i}" for i in range(1000)
                 if agent.rt.partition_of(f"U{i}".encode()) != agent.rt.partition_of(b"X"))
    agent.take(other, 3590, 3590)
    agent.take("X", 3000, 3000)  # its partition's backlog, ten minutes behind
    agent.take("X", 3001, 3001)
    assert agent.dead == []
    assert [e.action for e in agent.events if e.vehicle_id == "X"] == ["create"]
    assert agent.rt.clocks.event_time(agent.rt.partition_of(b"X")) == at(3001)
    assert agent.driver.clock == at(3590) and at(3590) - at(3000) > timedelta(seconds=30)


def test_a_device_behind_is_late_also_when_its_records_carry_the_fixes_own_time() -> None:
    """A producer may stamp each record with its fix's time (event-time CreateTime): the clock
    is not capped at it, or no fix would ever be late, a device clock behind included."""
    agent = _Agent()
    y = _same_partition(agent.rt, "X")
    for s in range(3500, 3505):
        agent.take(y, s, s)
        agent.take("X", s - 40, s - 40)
    assert [(k, r) for k, r, _ in agent.dead] == [(b"X", "late")] * 5


def test_a_fix_re_keyed_behind_a_backlog_is_judged_by_when_it_was_first_sent() -> None:
    """A misrouted fix appended again under its vehicle id (``rekey``) comes after its home
    partition's backlog, whose newer fixes moved the clock; it keeps its first timestamp, and
    is judged no later than that: taken, as it would have been on time."""
    agent = _Agent()
    y = _same_partition(agent.rt, "X")
    for s in range(3500, 3560):
        agent.take(y, s, s)  # the home partition's backlog, a minute of it
    agent.take("X", 3500, 3500, headers=[("rekeyed_from", b"1")])
    assert agent.dead == []
    assert [e.action for e in agent.events if e.vehicle_id == "X"] == ["create"]
