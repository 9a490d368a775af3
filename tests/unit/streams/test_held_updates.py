"""Alert updates of late messages: held, the latest per alert, produced by the flush before
its acks; creates and cancels never wait and supersede what is held. No Kafka: the producer is
a list, its futures are resolved by hand."""

from __future__ import annotations

import asyncio
from typing import Any

from broker.model import AlertEvent
from broker.streams.held_updates import HeldUpdates
from broker.streams.states import VehicleStates
from tests.unit.adapters.factory import alert
from tests.unit.streams.fakes import never_written


class Produced:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []
        self.futures: list[asyncio.Future[Any]] = []

    def send(self, events: list[AlertEvent]) -> list[Any]:
        self.events += events
        futs = [asyncio.get_running_loop().create_future() for _ in events]
        self.futures += futs
        return futs


def versions(events: list[AlertEvent]) -> list[tuple[str, int]]:
    return [(e.action, e.version) for e in events]


def test_in_steady_state_nothing_is_held() -> None:
    held = HeldUpdates(lambda events: [])
    events = [alert("create", 1), alert("update", 2)]
    assert held.route(events, late=False) == events
    assert len(held) == 0


def test_late_updates_are_held_the_newest_replacing_the_older() -> None:
    coalesced: list[int] = []
    held = HeldUpdates(lambda events: [], on_coalesced=lambda: coalesced.append(1))
    assert held.route([alert("create", 1)], late=True) == [alert("create", 1)]  # never waits
    for v in (2, 3, 4):
        assert held.route([alert("update", v)], late=True) == []
    other = alert("update", 7, alert_id="CFD-E9:F1:approaching", vehicle_id="CFD-E9")
    assert held.route([other], late=True) == []
    assert sorted(versions(held.take())) == [("update", 4), ("update", 7)]
    assert len(coalesced) == 2  # v2 and v3 never went out
    assert held.take() == []


def test_a_cancel_or_a_timely_update_supersedes_the_held_one() -> None:
    held = HeldUpdates(lambda events: [])
    held.route([alert("update", 2)], late=True)
    assert versions(held.route([alert("cancel", 3)], late=True)) == [("cancel", 3)]
    assert held.take() == [], "v2 after the v3 cancel would go out of order"
    held.route([alert("update", 5)], late=True)
    assert versions(held.route([alert("update", 6)], late=False)) == [("update", 6)]
    assert held.take() == []


def test_the_first_timely_message_releases_what_is_held_before_its_own_events() -> None:
    held = HeldUpdates(lambda events: [])
    e9 = dict(alert_id="CFD-E9:F1:approaching", vehicle_id="CFD-E9")
    held.route([alert("update", 4), alert("update", 7, **e9)], late=True)
    assert held.route([alert("update", 8, **e9)], late=None) == [alert("update", 8, **e9)]
    assert len(held) == 1, "a tick says nothing about the backlog: v4 stays held"
    got = held.route([alert("create", 1, alert_id="CFD-E3:F2:approaching")], late=False)
    assert [(e.alert_id, e.version) for e in got] == [
        ("CFD-E7:F261125-0042:approaching", 4), ("CFD-E3:F2:approaching", 1)
    ]
    assert len(held) == 0


def test_the_flush_produces_what_is_held_and_acks_only_once_kafka_has_it() -> None:
    async def scenario() -> tuple[list[str], list[tuple[str, int]]]:
        produced = Produced()
        held = HeldUpdates(produced.send)
        states = VehicleStates(read=lambda k: None, write=never_written, epoch=lambda: 0,
                               outboxes=[held])
        order: list[str] = []
        held.route([alert("update", 2), alert("update", 3)], late=True)
        states.processed(lambda: order.append("ack"))
        task = asyncio.create_task(states.flush())
        for _ in range(3):
            await asyncio.sleep(0)
        assert versions(produced.events) == [("update", 3)] and order == []
        produced.futures[0].set_result(None)
        await task
        return order, versions(produced.events)

    assert asyncio.run(scenario()) == (["ack"], [("update", 3)])


def test_a_rebalance_forgets_what_is_held() -> None:
    held = HeldUpdates(lambda events: [])
    epoch = [0]
    states = VehicleStates(read=lambda k: None, write=never_written, epoch=lambda: epoch[0],
                           outboxes=[held])
    held.route([alert("update", 2)], late=True)
    epoch[0] = 1
    assert states.begin() is True
    assert held.take() == []


def test_a_cancel_drops_the_held_update_its_own_message_made() -> None:
    """One step can end an alert it updates: a unit silent on its CAD route is dead-reckoned
    by the step's catch-up (updates) and its fix then calls it off (cancel), all in one list.
    Late, the updates were held *after* the cancel had gone, and the flush produced the last
    of them behind it: ``alerts`` carried update v7 after cancel v8 of one alert, and a partner
    whose cancel was still being sent got the update after it (a live zone after its cancel)."""
    from broker import engine
    from broker.settings import EngineConfig
    from tests.conftest import east_route, fix

    cfg, state = EngineConfig(), None
    for m in [east_route(), *(fix(1 + i, 15.0 * i) for i in range(10))]:
        state, _ = engine.step(state, m, now=m.ts, cfg=cfg)
    called_off = fix(55.0, 15.0 * 54, status="available", lights_sirens=False)
    state, events = engine.step(state, called_off, now=called_off.ts, cfg=cfg)
    assert [e.action for e in events][-2:] == ["update", "cancel"]  # of one alert
    held = HeldUpdates(lambda events: [])
    assert versions(held.route(events, late=True)) == [versions(events)[-1]]
    assert held.take() == [], "an update held behind its alert's cancel goes out after it"
    # so does one held by an earlier message of its late stretch
    held.route([alert("update", 2)], late=True)
    assert versions(held.route([alert("update", 3), alert("cancel", 4)], late=True)) == [
        ("cancel", 4)]
    assert held.take() == []
