"""The one driver loop: decode by topic, step, keep states, tick the live units only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from broker import codec, engine
from broker.drive import POSITIONS, ROUTES, DictStore, Driver
from broker.failure import Failure, FailurePolicy
from broker.geo.roads import RoadNetwork
from broker.replay import load_messages
from broker.settings import EngineConfig
from tests.conftest import at, drive, east_route, fix

CFG = EngineConfig()


def _raw(msgs):
    return [(ROUTES if m.__class__.__name__ == "Route" else POSITIONS, codec.encode(m))
            for m in msgs]


def test_handling_messages_gives_what_folding_the_engine_gives() -> None:
    msgs = [east_route(), *[fix(float(t), 15.0 * t) for t in range(1, 30)]]
    driver = Driver(CFG)
    events = [ev for topic, raw in _raw(msgs) for ev in driver.handle(topic, raw).events]
    state, expected = drive(msgs)
    assert events == expected
    assert driver.states["CFD-E7"] == state
    assert driver.live == {"CFD-E7"}


def test_the_drivers_memo_keeps_each_route_projected_once() -> None:
    driver = Driver(CFG)
    for topic, raw in _raw([east_route(), *[fix(float(t), 15.0 * t) for t in range(1, 5)]]):
        driver.handle(topic, raw)
    assert len(driver.memo) == 1  # an empty memo is falsy: it must still be the one used


def test_a_refused_message_is_a_rejection_and_changes_nothing() -> None:
    driver = Driver(CFG)
    handled = driver.handle(POSITIONS, b'{"vehicle_id": "X"}')
    assert handled.rejection is not None and handled.rejection.reason == "missing_field"
    assert handled.events == [] and driver.states == {} and driver.clock is None


def test_a_future_fix_is_judged_against_the_drivers_clock_by_default() -> None:
    driver = Driver(CFG)
    driver.handle(POSITIONS, codec.encode(fix(0.0)))
    far = codec.encode(fix(3600.0, 10.0))
    assert driver.handle(POSITIONS, far).rejection.reason == "future_timestamp"  # type: ignore[union-attr]
    assert driver.handle(POSITIONS, far, received_at=None).rejection is None  # not judged


def test_ticks_come_once_a_second_of_event_time_and_cancel_silent_units() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(POSITIONS, codec.encode(fix(0.0)))
    other = fix(45.0, vehicle_id="CFD-L2", status="available", lights_sirens=False)
    handled = driver.handle(POSITIONS, codec.encode(other))
    cancels = [e for e in handled.events if e.action == "cancel"]
    assert [(e.vehicle_id, e.cancel_reason, e.ts) for e in cancels] == [
        ("CFD-E7", "stale", at(CFG.stale_timeout_s))
    ]
    assert driver.live == set()


def test_tick_looks_at_live_units_only(monkeypatch) -> None:
    driver = Driver(CFG)
    driver.handle(POSITIONS, codec.encode(fix(0.0)))
    driver.handle(POSITIONS, codec.encode(
        fix(0.0, vehicle_id="IDLE", status="available", lights_sirens=False)))
    ticked: list[str] = []
    real = engine.tick

    def spy(state, **kw):
        ticked.append(state.vehicle_id)
        return real(state, **kw)

    monkeypatch.setattr(engine, "tick", spy)
    driver.tick(at(1.0))
    assert ticked == ["CFD-E7"]


def test_drain_ends_every_live_alert_with_a_cancel() -> None:
    driver = Driver(CFG)
    for t in range(3):
        driver.handle(POSITIONS, codec.encode(fix(float(t), 15.0 * t)))
    (cancel,) = driver.drain()
    assert cancel.action == "cancel" and cancel.ts == at(2.0 + CFG.stale_timeout_s)


def test_an_engine_bug_goes_through_the_failure_policy(monkeypatch) -> None:
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    monkeypatch.setattr(engine, "step", lambda *a, **k: 1 / 0)
    raw = codec.encode(fix(0.0))
    handled = driver.handle(POSITIONS, raw)
    assert handled.failed and handled.events == []
    assert [(f.reason, f.key, f.raw, f.source) for f in records] == [
        ("engine_error", "CFD-E7", raw, POSITIONS)
    ]


def test_by_default_an_engine_bug_propagates(monkeypatch) -> None:
    monkeypatch.setattr(engine, "step", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        Driver(CFG).handle(POSITIONS, codec.encode(fix(0.0)))


def test_a_tick_bug_is_dead_lettered_with_the_units_state(monkeypatch) -> None:
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    driver.handle(POSITIONS, codec.encode(fix(0.0)))
    state = driver.states["CFD-E7"]
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    assert driver.tick(at(1.0)) == []
    assert [(f.reason, f.raw) for f in records] == [("tick_error", codec.dump_state(state))]


def test_a_store_keyed_otherwise_is_used_as_given() -> None:
    class BytesStore(DictStore):  # the worker's cache is keyed by bytes
        pass

    store = BytesStore()
    driver: Driver[bytes] = Driver(CFG, store=store, key=str.encode)  # type: ignore[arg-type]
    driver.handle(POSITIONS, codec.encode(fix(0.0)))
    assert list(store) == [b"CFD-E7"] and driver.live == {b"CFD-E7"}
    assert driver.clock == at(0.0) and driver.drain()[0].ts == at(0.0) + timedelta(seconds=30)


INCIDENTS = Path(__file__).resolve().parents[2] / "fixtures" / "incidents"
ROADS = INCIDENTS.parent / "roads" / "charlotte-uptown.geojson"


@pytest.mark.parametrize("roads", [False, True])
@pytest.mark.parametrize(
    "incident", ["route-downtown", "dead-reckoning", "on-scene", "noisy-gps", "fleet-200"]
)
def test_zones_built_together_are_the_zones_built_one_by_one(incident, roads) -> None:
    network = RoadNetwork.load(ROADS) if roads else None
    messages = load_messages(INCIDENTS / incident)[:20_000]
    alone: Driver[str] = Driver(CFG, roads=network, tick_every_s=1.0)
    together: Driver[str] = Driver(CFG, roads=network, tick_every_s=1.0)
    one_by_one = [codec.encode(ev) for t, raw in messages for ev in alone.handle(t, raw).events]
    in_runs = [
        codec.encode(ev)
        for i in range(0, len(messages), 97)  # runs that cut units' fixes anywhere
        for handled in together.handle_many(messages[i : i + 97])
        for ev in handled.events
    ]
    assert in_runs == one_by_one
    assert together.states == alone.states


def test_settle_gc_walks_every_object_less_often_and_keeps_the_young_threshold() -> None:
    import gc

    from broker.drive import FULL_GC_AFTER, settle_gc

    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_threshold() == (before[0], before[1], FULL_GC_AFTER)
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
