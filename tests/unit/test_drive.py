"""The one driver loop: decode by topic, step, keep states, tick the live units only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from broker import codec, engine
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, DictStore, Driver
from broker.failure import Failure, FailurePolicy
from broker.geo.roads import RoadNetwork
from broker.geo.zoning import ZoneBatch
from broker.model import VehicleState
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
    state, expected = drive(msgs, CFG)
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


def test_a_driver_made_with_repairs_off_leaves_a_stored_future_fix_alone() -> None:
    """The repair before each message with a given clock (the worker's: a fix from a device
    clock years ahead, stored before the codec judged skew) is the driver's default; a driver
    whose states are all its own (the replay) turns it off."""
    real = codec.encode(fix(3600.0, 10.0))
    for repairs, actions in ((True, ["cancel", "create"]), (False, [])):
        driver: Driver[str] = Driver(CFG, repairs=repairs)
        future = driver.step(fix(10**9))[0]  # year ~2058: accepted with no reference at all
        handled = driver.handle(POSITIONS, real, received_at=at(3600.0))
        assert [e.action for e in handled.events] == actions
        if not repairs:
            assert driver.states["CFD-E7"].last_fix == future.last_fix


def test_a_replay_goes_on_after_a_quiet_spell_longer_than_the_skew() -> None:
    """Judged against the newest event time, the first fix after 66 s of silence is refused as
    future; the next one agrees with it, so the stream moved on: it is taken, and so is the
    rest (everything after the spell was refused, the clock never moving again). A lone fix
    an hour ahead, with the stream going on at its own time, stays refused."""
    driver = Driver(CFG, tick_every_s=1.0)
    handled = [driver.handle(POSITIONS, codec.encode(fix(float(t), 10.0 * t)))
               for t in [*range(10), *range(75, 100)]]  # fmt: skip
    assert [t for t, h in zip([*range(10), *range(75, 100)], handled, strict=True)
            if h.rejection is not None] == [75]  # fmt: skip
    assert driver.clock == at(99.0)
    assert driver.handle(POSITIONS, codec.encode(fix(3700.0))).rejection is not None
    assert driver.handle(POSITIONS, codec.encode(fix(100.0, 1000.0))).rejection is None
    assert driver.handle(POSITIONS, codec.encode(fix(101.0, 1010.0))).rejection is None


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


def test_drain_ends_a_dispatch_alert_its_own_tick_started() -> None:
    """A CAD route as the recording's last message: the drain's tick starts the held dispatch
    alert (``dispatch_hold_s`` after the route), and must also end it, as a live worker's later
    ticks would at its expiry: no alert is left without its cancel."""
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(POSITIONS, codec.encode(
        fix(0.0, vehicle_id="CFD-L2", status="available", lights_sirens=False)))
    driver.handle(ROUTES, codec.encode(east_route(t=1.0)))
    events = driver.drain()
    assert [(e.action, e.ts, e.cancel_reason) for e in events] == [
        ("create", at(1.0 + CFG.dispatch_hold_s), None),
        ("cancel", at(1.0 + CFG.dispatch_cover_s), "expired"),
    ]
    assert driver.live == set()


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
    # the quarantined unit's alert is cancelled (see the quarantine tests below)
    assert [e.action for e in driver.tick(at(1.0))] == ["cancel"]
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


def _silent_fleet(incident: str) -> Driver[str]:
    """A driver fed the first half of ``incident`` (at most 20,000 messages), one at a time."""
    driver: Driver[str] = Driver(CFG, tick_every_s=1.0)
    messages = load_messages(INCIDENTS / incident)
    for topic, raw in messages[: min(len(messages) // 2, 20_000)]:
        driver.handle(topic, raw)
    assert driver.clock is not None and driver.live
    return driver


@pytest.mark.parametrize("incident", ["route-downtown", "fleet-200"])
@pytest.mark.parametrize("silent_s", [42.0, 61.0])  # dead-reckoning; then cancelled as stale
def test_a_ticks_zones_built_together_are_the_zones_built_one_by_one(incident, silent_s) -> None:
    driver = _silent_fleet(incident)
    assert driver.clock is not None
    now = driver.clock + timedelta(seconds=silent_s)
    states = dict(driver.states)
    expected = [
        codec.encode(ev)
        for k in sorted(driver.live)
        for ev in engine.tick(states[k], now=now, cfg=CFG)[1]
    ]
    assert any(b'"update"' in ev for ev in expected)  # dead-reckoning steps among them
    assert [codec.encode(ev) for ev in driver.tick(now)] == expected


def test_a_tick_whose_batch_fails_is_ticked_again_one_zone_at_a_time(monkeypatch) -> None:
    driver, alone = _silent_fleet("fleet-200"), _silent_fleet("fleet-200")
    assert driver.clock is not None
    end = driver.clock + timedelta(seconds=61.0)
    expected = [codec.encode(ev) for ev in alone.tick(end)]

    def broken(self: ZoneBatch) -> int:
        raise RuntimeError("batch")

    monkeypatch.setattr(ZoneBatch, "build", broken)
    assert [codec.encode(ev) for ev in driver.tick(end)] == expected
    assert driver.states == alone.states and driver.live == alone.live


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


# ---- the split form: fixes and cad.status joined per unit (broker.join) ----------------------


def _status(t: float, status: str, *, lights: bool | None = True, incident: str | None = "F1",
            vehicle_id: str = "CFD-E7") -> bytes:
    from broker.model import UnitStatus

    return codec.encode(UnitStatus(vehicle_id=vehicle_id, ts=at(t), status=status,  # type: ignore[arg-type]
                                   incident_id=incident, lights_sirens=lights))


def _avl(t: float, east_m: float = 0.0, vehicle_id: str = "CFD-E7") -> bytes:
    """A fix without status: the split form."""
    import json

    pos = json.loads(codec.encode(fix(t, east_m, vehicle_id=vehicle_id)))
    for key in ("status", "lights_sirens", "incident_id"):
        del pos[key]
    return json.dumps(pos).encode()


def test_a_status_alone_cancels_at_once_without_waiting_for_a_fix() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(CAD_STATUS, _status(0.0, "responding"))
    created = driver.handle(POSITIONS, _avl(1.0)).events
    assert [e.action for e in created] == ["create"]
    driver.handle(CAD_STATUS, _status(5.0, "available", lights=False, incident=None))
    assert driver.pending == {"CFD-E7"}
    # once the clock has passed the status by its grace (a message of any unit), it acts alone,
    # stamped at the status's time, at the unit's last place
    other = driver.handle(POSITIONS, _avl(8.5, vehicle_id="CFD-L2")).events
    assert [(e.vehicle_id, e.action, e.cancel_reason, e.ts) for e in other] == [
        ("CFD-E7", "cancel", "left_emergency", at(5.0))
    ]
    assert driver.live == set() and driver.pending == set()


def test_the_worker_tick_acts_on_a_due_status() -> None:
    driver = Driver(CFG)
    driver.handle(CAD_STATUS, _status(0.0, "responding"))
    driver.handle(POSITIONS, _avl(1.0))
    driver.handle(CAD_STATUS, _status(3.0, "on_scene"))
    assert driver.restate(at(6.0)) == []  # a fix of the status's own instant may still come
    events = driver.restate(at(6.5))
    assert [(e.action, e.kind) for e in events] == [
        ("cancel", "approaching"), ("create", "on_scene")
    ]


def test_a_status_alone_starts_an_alert_from_a_fresh_fix() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(POSITIONS, _avl(0.0))  # no status at all: unknown, no alert
    assert driver.states["CFD-E7"].last_fix.status == "unknown"  # type: ignore[union-attr]
    driver.handle(CAD_STATUS, _status(2.0, "responding"))
    events = driver.drain()
    assert [(e.action, e.ts) for e in events[:1]] == [("create", at(2.0))]


def test_status_events_out_of_order_are_dead_lettered() -> None:
    driver = Driver(CFG)
    assert driver.handle(CAD_STATUS, _status(5.0, "responding")).rejection is None
    late = driver.handle(CAD_STATUS, _status(4.0, "available"))
    assert late.rejection is not None and late.rejection.reason == "stale_status"
    assert driver.states["CFD-E7"].cad.status == "responding"  # type: ignore[union-attr]


def test_with_an_agency_file_only_its_units_are_taken() -> None:
    from broker.agencies import parse_agencies

    agencies = parse_agencies({"agency": [{"id": "cfd", "unit": [{"vehicle_id": "CFD-E7"}]}]})
    driver = Driver(CFG, agencies=agencies)
    assert driver.handle(POSITIONS, _avl(0.0)).rejection is None
    for topic, raw in [(POSITIONS, _avl(1.0, vehicle_id="X-9")),
                       (CAD_STATUS, _status(1.0, "responding", vehicle_id="X-9")),
                       (ROUTES, codec.encode(east_route(vehicle_id="X-9")))]:
        handled = driver.handle(topic, raw)
        assert handled.rejection is not None and handled.rejection.reason == "unknown_unit"
    assert set(driver.states) == {"CFD-E7"}
    merged = driver.states["CFD-E7"].last_fix
    assert merged is not None and merged.agency == "charlotte-fd"  # the fix's own agency


def test_pending_statuses_are_found_again_from_the_states() -> None:
    driver = Driver(CFG)
    driver.handle(CAD_STATUS, _status(0.0, "responding"))
    driver.handle(POSITIONS, _avl(1.0))
    driver.handle(CAD_STATUS, _status(3.0, "available", lights=False, incident=None))
    restarted = Driver(CFG, store=driver.store)
    for k, state in driver.states.items():
        restarted.mark(k, state)  # what the worker's rebuild_index does
    assert restarted.pending == {"CFD-E7"} and restarted.live == {"CFD-E7"}
    assert [e.action for e in restarted.restate(at(6.5))] == ["cancel"]


@pytest.mark.parametrize("then", [2.0, 4.0, 9.0])
def test_a_tick_and_the_next_fix_act_on_a_status_the_same_way(then: float) -> None:
    """A worker that ticked between a status and the next fix, and one that read both in a
    row after a crash, must send the same events (the restatement's trick, like stale)."""
    def run(tick_at: float | None) -> list[tuple[str, int, str, object]]:
        driver = Driver(CFG)
        driver.handle(CAD_STATUS, _status(0.0, "responding"))
        events = driver.handle(POSITIONS, _avl(1.0)).events
        driver.handle(CAD_STATUS, _status(1.5, "on_scene"))
        if tick_at is not None:
            events += driver.restate(at(tick_at))
        events += driver.handle(POSITIONS, _avl(then, 10.0)).events
        return [(e.action, e.version, e.kind, e.ts) for e in events]

    assert run(then - 0.01) == run(None)
    if then <= 1.5 + CFG.status_grace_s:  # a fix within the grace is merged with the status
        assert ("create", 1, "on_scene", at(then)) in run(None)
    else:  # the status acted alone first, at its own time and the last place
        assert ("create", 1, "on_scene", at(1.5)) in run(None)


@pytest.mark.parametrize("cad_incident", [None, "F2"])
def test_a_fix_naming_another_incident_than_cad_makes_one_alert_not_a_flap(
    cad_incident: str | None,
) -> None:
    """A split-form fix that carries an incident of its own (and no status) beside a CAD
    status with none, or with another: CAD's incident is the unit's, the fix's only fills in
    where CAD has none; the restatement before each fix must agree with the merge, or every
    fix cancelled the alert and created it again (kind_changed), twice."""
    import json

    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(CAD_STATUS, _status(0.0, "responding", incident=cad_incident))
    events = []
    for t in range(1, 40):
        pos = json.loads(_avl(float(t), 12.0 * t))
        pos["incident_id"] = "F1"
        events += driver.handle(POSITIONS, json.dumps(pos).encode()).events
    assert [e.action for e in events].count("create") == 1
    assert "cancel" not in [e.action for e in events]
    assert {e.incident_id for e in events} == {cad_incident or "F1"}


def test_a_status_acted_on_before_a_failing_fix_keeps_its_cancel(monkeypatch) -> None:
    """The unit goes available; its next fix comes after the status's grace, so the status is
    acted on first (the cancel made, the state without the alert stored), then the engine
    raises on the fix itself. The cancel must still leave: nothing would ever send it again."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    driver.handle(CAD_STATUS, _status(0.0, "responding"), received_at=None)
    assert [e.action for e in driver.handle(POSITIONS, _avl(1.0), received_at=None).events] == [
        "create"
    ]
    driver.handle(CAD_STATUS, _status(10.0, "available", lights=False), received_at=None)
    step = engine.step

    def failing_on_the_fix(state, msg, **kw):  # an engine bug on this one fix
        if msg.ts == at(20.0):
            raise ZeroDivisionError("engine bug")
        return step(state, msg, **kw)

    monkeypatch.setattr(engine, "step", failing_on_the_fix)
    handled = driver.handle(POSITIONS, _avl(20.0, 100.0), received_at=None)
    assert handled.failed and [r.reason for r in records] == ["engine_error"]
    assert [(e.action, e.cancel_reason, e.ts) for e in handled.events] == [
        ("cancel", "left_emergency", at(10.0))
    ]


def test_a_unit_stood_down_before_its_first_fix_has_its_dispatch_alert_cancelled() -> None:
    """Dispatched and routed, then stood down by CAD (``available``) before its AVL sent a
    single fix: the dispatch alert must end at the status, not warn drivers of a unit that is
    not coming until it expires (``dispatch_cover_s``). The unit still has no fix of its own
    afterwards (nothing stands in for one a jump could be measured from)."""
    driver = Driver(CFG, tick_every_s=1.0)
    events = driver.handle(CAD_STATUS, _status(0.0, "dispatched", lights=False)).events
    events += driver.handle(ROUTES, codec.encode(east_route(t=0.0))).events
    for t in range(1, 20):
        if t == 10:
            stood_down = _status(10.0, "available", lights=False, incident=None)
            events += driver.handle(CAD_STATUS, stood_down).events
        other = fix(float(t), vehicle_id="CFD-L2", status="available", lights_sirens=False)
        events += driver.handle(POSITIONS, codec.encode(other)).events
    assert [(e.action, e.ts, e.cancel_reason) for e in events] == [
        ("create", at(CFG.dispatch_hold_s), None),
        ("cancel", at(10.0), "left_emergency"),
    ]
    state = driver.states["CFD-E7"]
    assert state.alert is None and state.last_fix is None
    assert driver.live == set() and driver.pending == set()


def test_a_stood_down_units_dispatch_alert_ends_the_same_by_tick_or_by_its_next_fix() -> None:
    def run(tick: bool) -> list[tuple[str, int, object]]:
        driver = Driver(CFG)
        events = driver.handle(CAD_STATUS, _status(0.0, "dispatched", lights=False)).events
        events += driver.handle(ROUTES, codec.encode(east_route(t=0.0))).events
        events += driver.tick(at(3.0))
        driver.handle(CAD_STATUS, _status(10.0, "available", lights=False, incident=None))
        if tick:
            events += driver.restate(at(14.0))
        events += driver.handle(POSITIONS, _avl(20.0, 500.0)).events
        return [(e.action, e.version, e.ts) for e in events]

    assert run(tick=True) == run(tick=False)
    assert [(a, ts) for a, _, ts in run(tick=False)] == [
        ("create", at(CFG.dispatch_hold_s)), ("cancel", at(10.0))
    ]


def test_a_status_older_than_the_route_does_not_stand_the_dispatch_down() -> None:
    """CAD's last word before the dispatch (``available``, from the station) is what the route
    supersedes: the dispatch alert it starts stays (until a fix or its expiry)."""
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(CAD_STATUS, _status(0.0, "available", lights=False, incident=None))
    events = driver.handle(ROUTES, codec.encode(east_route(t=5.0))).events
    for t in range(6, 20):
        other = fix(float(t), vehicle_id="CFD-L2", status="available", lights_sirens=False)
        events += driver.handle(POSITIONS, codec.encode(other)).events
    assert [e.action for e in events] == ["create"]
    assert driver.live == {"CFD-E7"}


def test_a_status_due_before_the_next_status_is_acted_on_first() -> None:
    """A unit goes on scene, then available 18 s later, with no fix in between (its AVL
    reports on movement only). A worker that ticked in between made the on-scene alert; one
    that reads both statuses in a row (a backlog after a restart, a replay into Kafka at full
    speed) must make it too: the newer status may not just overwrite one that was due."""
    def run(tick_between: bool) -> list[tuple[str, str, object, object]]:
        driver = Driver(CFG)  # as the worker: no ticks of its own, a trusted clock
        events = driver.handle(CAD_STATUS, _status(0.0, "responding"), received_at=None).events
        events += driver.handle(POSITIONS, _avl(1.0), received_at=None).events
        events += driver.handle(CAD_STATUS, _status(2.0, "on_scene"), received_at=None).events
        if tick_between:
            events += driver.restate(at(10.0))
        available = _status(20.0, "available", lights=False, incident=None)
        events += driver.handle(CAD_STATUS, available, received_at=None).events
        events += driver.restate(at(25.0))
        return [(e.action, e.kind, e.ts, e.cancel_reason) for e in events]

    assert run(tick_between=False) == run(tick_between=True) == [
        ("create", "approaching", at(1.0), None),
        ("cancel", "approaching", at(2.0), "kind_changed"),
        ("create", "on_scene", at(2.0), None),
        ("cancel", "on_scene", at(20.0), "left_emergency"),
    ]


def _by_cadence(messages: list[tuple[float, str, bytes]]) -> dict[float | None, list[tuple]]:
    """CFD-E7's events for ``messages`` (``(t, topic, raw)``; in time order with CFD-L2's
    fixes, not in emergency mode, every second of 0..60 s: they move the driver's clock on),
    for a driver ticking every second, every 7 s, or never (its messages and the drain)."""
    clock = [(float(t), POSITIONS, codec.encode(fix(
        float(t), vehicle_id="CFD-L2", status="available", lights_sirens=False,
    ))) for t in range(61)]  # fmt: skip
    timed = sorted(messages + clock, key=lambda m: m[0])
    out: dict[float | None, list[tuple]] = {}
    for every in (1.0, 7.0, None):
        driver = Driver(CFG, tick_every_s=every)
        events = [e for _, topic, raw in timed for e in driver.handle(topic, raw).events]
        out[every] = [(e.action, e.ts, e.cancel_reason)
                      for e in events + driver.drain() if e.vehicle_id == "CFD-E7"]
    return out


def test_a_tick_inside_a_statuss_grace_waits_for_what_the_status_does_first() -> None:
    """On scene, its AVL silent since 0 s; CAD stands it down at 28 s, 2 s before its alert
    would go stale. The status acts at its own instant once its grace (3 s) has passed without
    a fix of that instant: a tick at 30 s, inside the grace, sent the stale cancel first (the
    status then found no alert), where a driver ticking every 7 s or never ended it
    ``left_emergency`` at 28 s."""
    runs = _by_cadence([
        (-1.0, CAD_STATUS, _status(-1.0, "on_scene")),
        (0.0, POSITIONS, _avl(0.0)),
        (28.0, CAD_STATUS, _status(28.0, "available", lights=False, incident=None)),
    ])
    assert runs[1.0] == runs[7.0] == runs[None] == [
        ("create", at(0.0), None), ("cancel", at(28.0), "left_emergency"),
    ]


@pytest.mark.parametrize("stood_down_at", [1.0, 12.0])
def test_a_dispatch_alert_that_time_starts_is_stood_down_whenever_the_driver_ticks(
    stood_down_at: float,
) -> None:
    """Routed at 0 s, no fix; CAD stands the unit down at 1 s (while its dispatch alert is
    held) or at 12 s (once it lives). The status stands the alert down as soon as both are
    there (2 s, or 12 s), however the driver ticks: it did only when a tick had started the
    held alert before the status was looked at (a driver that never ticked let it expire at
    90 s)."""
    runs = _by_cadence([
        (0.0, ROUTES, codec.encode(east_route(t=0.0))),
        (stood_down_at, CAD_STATUS, _status(stood_down_at, "available", lights=False,
                                            incident=None)),
    ])
    start = at(CFG.dispatch_hold_s)
    ended = max(at(stood_down_at), start + timedelta(milliseconds=1))
    assert runs[1.0] == runs[7.0] == runs[None] == [
        ("create", start, None), ("cancel", ended, "left_emergency"),
    ]


def test_a_status_is_judged_on_the_unit_as_it_is_at_the_statuss_instant() -> None:
    """On scene at 0 s, silent since (stale at 30 s); CAD moves it to another incident at
    38 s. A status does not start an alert from a fix older than the stale timeout (the next
    fix will, ``join.restated``); it was judged on the unit as last stored: a driver that had
    ticked past 30 s found no alert and a stale fix (nothing), one that never ticked found the
    alert still live, then cancelled it stale and started a new one from the 38 s old fix."""
    runs = _by_cadence([
        (-1.0, CAD_STATUS, _status(-1.0, "on_scene")),
        (0.0, POSITIONS, _avl(0.0)),
        (38.0, CAD_STATUS, _status(38.0, "on_scene", incident="F2")),
    ])
    assert runs[1.0] == runs[7.0] == runs[None] == [
        ("create", at(0.0), None), ("cancel", at(CFG.stale_timeout_s), "stale"),
    ]


def test_a_route_after_the_units_last_alert_lapsed_starts_its_dispatch_zone() -> None:
    """A unit's dispatch alert expired unheard (no fix, no tick since), then CAD routes it to
    its next incident. A worker that ticked in between cancelled the old alert and starts the
    new dispatch zone; one that reads the route first (a backlog, a replay into Kafka at full
    speed) must too: the route may not find the lapsed alert still live and start nothing."""
    def run(tick_between: bool) -> list[tuple[str, object, object]]:
        driver = Driver(CFG)  # as the worker: no ticks of its own
        events = driver.handle(ROUTES, codec.encode(east_route(t=0.0)), received_at=None).events
        events += driver.tick(at(CFG.dispatch_hold_s))
        if tick_between:
            events += driver.tick(at(150.0))
        second = east_route(t=200.0)
        events += driver.handle(ROUTES, codec.encode(second), received_at=None).events
        events += driver.tick(at(200.0 + CFG.dispatch_hold_s))
        return [(e.action, e.ts, e.cancel_reason) for e in events]

    assert run(tick_between=False) == run(tick_between=True) == [
        ("create", at(CFG.dispatch_hold_s), None),
        ("cancel", at(CFG.dispatch_cover_s), "expired"),
        ("create", at(200.0 + CFG.dispatch_hold_s), None),
    ]


def test_a_due_status_acts_before_the_tick_a_late_fix_catches_up_on() -> None:
    """The unit is stood down (``available``) just after its last fix, and its next fix comes
    long after (a worker's backlog, no tick between): the status acts first, at its own time
    (left_emergency), as a tick would have had it, before the stale cancel the fix's time makes
    due could end the alert for another reason."""
    def run(tick_between: bool) -> list[tuple[str, object, object]]:
        driver = Driver(CFG)
        events = driver.handle(CAD_STATUS, _status(0.0, "responding"), received_at=None).events
        events += driver.handle(POSITIONS, _avl(1.0), received_at=None).events
        stood_down = _status(2.0, "available", lights=False, incident=None)
        events += driver.handle(CAD_STATUS, stood_down, received_at=None).events
        if tick_between:
            events += driver.restate(at(10.0)) + driver.tick(at(10.0))
        events += driver.handle(POSITIONS, _avl(90.0, 50.0), received_at=None).events
        return [(e.action, e.ts, e.cancel_reason) for e in events]

    assert run(tick_between=False) == run(tick_between=True) == [
        ("create", at(1.0), None), ("cancel", at(2.0), "left_emergency"),
    ]


def test_a_status_older_than_the_route_does_not_cancel_its_dispatch_zone_backdated() -> None:
    """A unit at its station, AVL off since it came back (its last fix says ``returning``),
    CAD ``available`` since; then CAD routes it to an incident. The dispatch zone must stand:
    the status the route came after says nothing of it. It was stated again once the zone
    lived (it differs from the last fix) and cancelled it at once, the cancel dated minutes
    before the create."""
    driver = Driver(CFG, tick_every_s=1.0)
    for topic, raw in [
        (CAD_STATUS, _status(0.0, "returning", lights=False, incident=None)),
        (POSITIONS, _avl(1.0)),
        (CAD_STATUS, _status(60.0, "available", lights=False, incident=None)),
    ]:
        driver.handle(topic, raw, received_at=None)
    route = codec.encode(east_route(t=300.0))
    events = driver.handle(ROUTES, route, received_at=None).events
    for t in range(301, 320):
        other = fix(float(t), vehicle_id="CFD-L2", status="available", lights_sirens=False)
        events += driver.handle(POSITIONS, codec.encode(other), received_at=None).events
    assert [(e.action, e.ts) for e in events] == [("create", at(300.0 + CFG.dispatch_hold_s))]
    assert driver.live == {"CFD-E7"}


# ---- the events of one alert never go back in time (partners time them by ``ts``) -------------
# A message older than the alert's last event (a late fix or status, on a backlog or after a
# tick ran ahead on another unit's clock) still acts, but its event is stamped at that last
# event, not before it: a cancel dated before its create, or before the update it ends, would
# be dropped as too old by the delivery, rendered as sent in the past by CAP, and mistimed by
# the console and ``broker evaluate``.


def _times(events) -> list[tuple[str, int, float]]:
    return [(e.action, e.version, (e.ts - at(0.0)).total_seconds()) for e in events]


def _held_dispatch(driver: Driver) -> None:
    """CFD-E7's route at 0 s, held 2 s; a fix of another unit at 3 s starts its dispatch
    alert (stamped 2 s)."""
    driver.handle(ROUTES, codec.encode(east_route(t=0.0)))
    ticked = driver.handle(POSITIONS, codec.encode(fix(3.0, vehicle_id="CFD-L2"))).events
    assert (ticked[0].vehicle_id, *_times(ticked)[0]) == ("CFD-E7", "create", 1, 2.0)


@pytest.mark.parametrize("status", ["available", "responding"])
def test_a_late_fix_older_than_the_dispatch_create_acts_at_the_create(status: str) -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    _held_dispatch(driver)
    late = codec.encode(fix(1.0, status=status, lights_sirens=status == "responding"))
    events = driver.handle(POSITIONS, late).events
    action = "cancel" if status == "available" else "update"
    assert _times(events) == [(action, 2, 2.0)]  # was stamped at 1 s, before its create
    assert all(e.action == "cancel" or e.expires_at > e.ts for e in events)


def test_a_status_between_the_route_and_the_end_of_its_hold_cancels_at_the_create() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(POSITIONS, _avl(-5.0))  # no status yet: not in emergency mode
    driver.handle(CAD_STATUS, _status(1.0, "available", lights=False, incident=None))
    _held_dispatch(driver)
    events = driver.handle(POSITIONS, codec.encode(fix(6.0, vehicle_id="CFD-L2"))).events
    # the status (1 s) is restated against the dispatch alert created at 2 s: not before it
    assert _times(events) == [("cancel", 2, 2.0)]


def _reckoned(driver: Driver) -> None:
    """CFD-E7 responding on its route from 0 s, then silent: another unit's fix at 50 s sends
    its dead-reckoning updates, stamped 30-50 s."""
    driver.handle(CAD_STATUS, _status(-1.0, "responding"))
    driver.handle(ROUTES, codec.encode(east_route(t=-1.0)))
    assert _times(driver.handle(POSITIONS, _avl(0.0)).events) == [("create", 1, 0.0)]
    ticked = driver.handle(POSITIONS, codec.encode(fix(50.0, vehicle_id="CFD-L2"))).events
    assert _times([e for e in ticked if e.vehicle_id == "CFD-E7"]) == [
        ("update", 2, 30.0), ("update", 3, 35.0), ("update", 4, 40.0), ("update", 5, 45.0),
        ("update", 6, 50.0)]


def test_a_status_received_after_dead_reckoning_updates_cancels_after_them() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    _reckoned(driver)
    driver.handle(CAD_STATUS, _status(33.0, "available", lights=False, incident=None))
    events = driver.handle(POSITIONS, codec.encode(fix(51.0, vehicle_id="CFD-L2"))).events
    assert _times([e for e in events if e.vehicle_id == "CFD-E7"]) == [("cancel", 7, 50.0)]


def test_a_late_fix_after_dead_reckoning_updates_cancels_after_them() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    _reckoned(driver)
    late = fix(33.0, 33.0 * 15.0, status="dispatched", lights_sirens=False)
    assert _times(driver.handle(POSITIONS, codec.encode(late)).events) == [("cancel", 7, 50.0)]


def test_a_new_route_that_ends_dead_reckoning_does_not_date_the_stale_cancel_before_it() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    _reckoned(driver)
    driver.handle(ROUTES, codec.encode(east_route(t=50.0)))  # the reckoning was on the old one
    # stale 30 s after the last fix, as a unit without reckoning is; not before its updates
    drained = [e for e in driver.drain() if e.vehicle_id == "CFD-E7"]
    assert _times(drained) == [("cancel", 7, 50.0)]


def test_a_late_fix_does_not_date_a_re_created_alert_before_its_stale_cancel() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(POSITIONS, codec.encode(fix(0.0, speed_mps=0.0)))
    ticked = driver.handle(POSITIONS, codec.encode(fix(30.0, vehicle_id="CFD-L2"))).events
    assert _times([e for e in ticked if e.vehicle_id == "CFD-E7"]) == [("cancel", 2, 30.0)]
    # a fix from before the stale cancel, newer than the last one: the same alert again, as of
    # the cancel (it goes stale once more 30 s after this fix)
    events = driver.handle(POSITIONS, codec.encode(fix(1.0, speed_mps=0.0))).events
    assert _times(events) == [("create", 3, 30.0)]
    assert events[0].started_at == events[0].ts < events[0].expires_at


@pytest.mark.parametrize(("route_s", "expected"), [(87.0, [("create", 3, 90.0)]), (-5.0, [])])
def test_a_late_route_does_not_date_a_dispatch_alert_before_the_units_last_event(
    route_s: float, expected: list
) -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(ROUTES, codec.encode(east_route(t=0.0)))
    ticked = [e for t in (3.0, 60.0, 91.0)  # the clock moves on (another unit's fixes)
              for e in driver.handle(POSITIONS, codec.encode(fix(t, vehicle_id="CFD-L2"))).events]
    assert _times([e for e in ticked if e.vehicle_id == "CFD-E7"]) == [
        ("create", 1, 2.0), ("cancel", 2, 90.0)]  # the dispatch cover, expired unused
    # a route of the same incident dated before that expiry: a dispatch alert stamped no
    # earlier, or none at all when its own cover ended before it (-5 s: at 85 s)
    driver.handle(ROUTES, codec.encode(east_route(t=route_s)))
    events = driver.handle(POSITIONS, codec.encode(fix(92.0, vehicle_id="CFD-L2"))).events
    assert _times([e for e in events if e.vehicle_id == "CFD-E7"]) == expected
    assert all(e.expires_at > e.ts for e in events)


def test_a_unit_whose_tick_fails_is_dead_lettered_once_and_its_alert_cancelled(monkeypatch):
    """A tick that raises on a unit's state: one dead letter, not one a tick (the unit is
    quarantined), and its live alert is cancelled then, not left to lapse on the partners'
    maps; a new message of the unit lets it be ticked again."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    msgs = [east_route(), *[fix(float(t), 15.0 * t) for t in range(1, 6)]]
    for topic, raw in _raw(msgs):
        driver.handle(topic, raw)
    state = driver.states["CFD-E7"]
    assert state.alert is not None
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    events = [ev for t in range(20, 30) for ev in driver.tick(at(float(t)))]
    assert [(f.reason, f.raw) for f in records] == [("tick_error", codec.dump_state(state))]
    assert [(e.action, e.alert_id, e.cancel_reason, e.ts, e.version) for e in events] == [
        ("cancel", state.alert.alert_id, "stale", at(20.0), state.alert.version + 1)
    ]
    assert driver.states["CFD-E7"].alert is None and driver.live == set()
    assert driver.quarantined == {"CFD-E7"}
    driver.handle(POSITIONS, codec.encode(fix(40.0, 600.0)))  # news of the unit
    assert driver.quarantined == set()


def test_a_status_refused_as_stale_does_not_release_a_quarantined_unit(monkeypatch):
    """Only a message *taken* lets a quarantined unit be ticked again: a CAD status older than
    the one the unit has is refused (``stale_status``) and leaves it quarantined."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    driver.handle(CAD_STATUS, _status(0.0, "responding"))
    for t in range(1, 4):
        driver.handle(POSITIONS, _avl(float(t), 15.0 * t))
    assert driver.states["CFD-E7"].alert is not None
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    driver.tick(at(20.0))
    assert driver.quarantined == {"CFD-E7"}
    late = driver.handle(CAD_STATUS, _status(-1.0, "available", lights=False))
    assert late.rejection is not None and late.rejection.reason == "stale_status"
    assert driver.quarantined == {"CFD-E7"}
    taken = driver.handle(CAD_STATUS, _status(21.0, "available", lights=False))
    assert taken.rejection is None and driver.quarantined == set()


def test_a_quarantined_unit_without_an_alert_is_not_ticked_until_its_next_message(monkeypatch):
    """A held dispatch alert (a route, no fix) whose start raises: one dead letter; the unit
    stays held but unticked until a message of it comes."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    driver.handle(ROUTES, codec.encode(east_route()))
    assert driver.states["CFD-E7"].dispatch_due is not None
    tick = engine.tick
    calls: list[float] = []

    def failing(state, **kw):
        calls.append(1.0)
        raise ZeroDivisionError("engine bug")

    monkeypatch.setattr(engine, "tick", failing)
    due = driver.states["CFD-E7"].dispatch_due
    for s in range(5):
        driver.tick(due + timedelta(seconds=s))
    assert len(records) == 1 and len(calls) == 1
    monkeypatch.setattr(engine, "tick", tick)
    driver.handle(POSITIONS, codec.encode(fix(float(CFG.dispatch_hold_s) + 10.0)))
    assert driver.quarantined == set()


def test_a_quarantined_unit_is_ticked_again_only_after_its_next_message(monkeypatch):
    """A held dispatch alert whose start raises: the unit is quarantined, still held. Its next
    fix is taken first (the catch-up tick on the way to it skips the unit) and only then is the
    unit released: the alert that fix starts is ticked from then on, so a tick still failing
    on it ends it (one more record, its cancel). Released before the fix, the catch-up tick
    failed again, quarantined the unit anew, and the fix's alert was never ticked: it stayed
    on partners' maps until its expires_at."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    driver.handle(ROUTES, codec.encode(east_route()), received_at=None)
    due = driver.states["CFD-E7"].dispatch_due
    assert due is not None
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    driver.tick(due)
    assert len(records) == 1 and driver.quarantined == {"CFD-E7"}
    t = (due - at(0.0)).total_seconds() + 5.0
    handled = driver.handle(POSITIONS, codec.encode(fix(t)), received_at=None)
    assert not handled.failed and len(records) == 1
    assert driver.quarantined == set() and driver.states["CFD-E7"].alert is not None
    events = driver.tick(at(t + 100.0))
    assert len(records) == 2 and [(e.action, e.cancel_reason) for e in events] == [
        ("cancel", "stale")
    ]


@pytest.mark.parametrize("ticks", [[95.0], [95.0, 96.0], []])
def test_a_status_after_a_lapsed_unticked_dispatch_alert_finds_it_expired_whatever_the_ticks(
    ticks: list[float],
) -> None:
    """A route at 0 holds its dispatch alert (started at 2, cover to 90); ticks at 95 (or 95 and
    96, or none); then an "available" status at 100 and a fix at 110. The alert expired at 90
    on every path. Before, a tick at 95 alone only started it, and the status found it live and
    cancelled it as ``left_emergency`` at 100, while ticks at 95 and 96 gave ``expired`` at 90:
    the events depended on when the driver ticked."""
    driver = Driver(CFG)
    out = list(driver.handle(ROUTES, codec.encode(east_route()), received_at=None).events)
    for t in ticks:
        out += driver.tick(at(t))
    status = _status(100.0, "available", lights=False)
    out += driver.handle(CAD_STATUS, status, received_at=None).events
    out += driver.handle(POSITIONS, _avl(110.0), received_at=None).events
    out += driver.drain()
    assert [(e.action, e.cancel_reason, (e.ts - at(0.0)).total_seconds()) for e in out] == [
        ("create", None, CFG.dispatch_hold_s), ("cancel", "expired", CFG.dispatch_cover_s),
    ]


def test_a_message_whose_catch_up_raises_fences_its_unit_off(monkeypatch):
    """A held dispatch alert whose start raises, met first by the unit's own fix: the engine's
    catch-up on the way in (``engine.step``) raises, so the fix is an engine error (dead-
    lettered). The unit is quarantined as a failed tick would be, and the held alert dropped:
    its next fix is taken. Without that, the state still held the alert, and every later
    message of the unit ran the same catch-up and was dead-lettered too."""
    from broker import ticks

    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    driver.handle(ROUTES, codec.encode(east_route()), received_at=None)
    monkeypatch.setattr(ticks, "dispatched", lambda *a, **k: 1 / 0)
    t = CFG.dispatch_hold_s + 5.0
    first = driver.handle(POSITIONS, codec.encode(fix(t)), received_at=None)
    assert first.failed and [r.site for r in records] == ["engine"]
    assert driver.quarantined == {"CFD-E7"} and driver.states["CFD-E7"].dispatch_due is None
    second = driver.handle(POSITIONS, codec.encode(fix(t + 1.0)), received_at=None)
    assert not second.failed and len(records) == 1
    assert [e.action for e in second.events] == ["create"] and driver.quarantined == set()


def test_a_message_whose_catch_up_raises_cancels_its_units_alert(monkeypatch):
    """A live alert whose dead reckoning raises, met by the unit's fix after a silence: that fix
    is dead-lettered, its unit's alert cancelled (``stale``, at the fix's time, as a failed
    tick's quarantine does), and its next fix creates a new one."""
    from broker import ticks

    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    for t in (0.0, 1.0):
        driver.handle(POSITIONS, codec.encode(fix(t, 15.0 * t)), received_at=None)
    monkeypatch.setattr(ticks, "dead_reckon", lambda *a, **k: 1 / 0)
    late = driver.handle(POSITIONS, codec.encode(fix(50.0, 750.0)), received_at=None)
    assert late.failed and len(records) == 1
    assert [(e.action, e.cancel_reason, e.ts) for e in late.events] == [
        ("cancel", "stale", at(50.0))
    ]
    after = driver.handle(POSITIONS, codec.encode(fix(51.0, 765.0)), received_at=None)
    assert not after.failed and len(records) == 1 and [e.action for e in after.events] == [
        "create"
    ]


@pytest.mark.parametrize("tick_every_s", [None, 1.0])
def test_a_message_whose_own_step_raises_after_a_silence_leaves_a_healthy_alert_alone(
    monkeypatch, tick_every_s
):
    """The fix after a silence (a tunnel) raises in its own processing, not in the catch-up:
    that fix alone is dead-lettered; the catch-up's dead-reckoning steps stand and the alert
    lives on under the same life. The fence quarantined the unit whenever a tick was due, so
    it cancelled the healthy alert (``stale``) and the next fix began a new life (a new
    partner-facing id)."""
    records: list[Failure] = []
    driver = Driver(CFG, tick_every_s=tick_every_s,
                    failures=FailurePolicy(dead_letter=records.append))
    out = driver.handle(ROUTES, codec.encode(east_route()), received_at=None).events
    for t in (0.0, 1.0):
        out += driver.handle(POSITIONS, codec.encode(fix(t, 15.0 * t)), received_at=None).events
    step = engine._on_position

    def own_bug(state, pos, *args, **kwargs):
        if pos.ts == at(40.0):
            raise ZeroDivisionError("this fix's own processing")
        return step(state, pos, *args, **kwargs)

    monkeypatch.setattr(engine, "_on_position", own_bug)
    failed = driver.handle(POSITIONS, codec.encode(fix(40.0, 600.0)), received_at=None)
    assert failed.failed and [r.site for r in records] == ["engine"]
    out += failed.events
    out += driver.handle(POSITIONS, codec.encode(fix(41.0, 615.0)), received_at=None).events
    assert driver.quarantined == set()
    assert all(e.action != "cancel" for e in out)
    assert len({(e.alert_id, e.started_at) for e in out}) == 1  # one life throughout
    assert [e.version for e in out] == list(range(1, len(out) + 1))
    assert any(e.ts == at(31.0) for e in out)  # the catch-up's dead-reckoning step stands


def test_every_name_imported_from_broker_drive_is_its_public_name() -> None:
    """``broker.drive`` is a package of one module per concern; each name the shells, the
    benchmarks, the scripts and the tests import from it is re-exported there (in ``__all__``:
    mypy's ``no_implicit_reexport`` checks only broker/ and adapters/), and ``settle_gc`` is an
    attribute of the module itself, where ``bench/engine_run.py`` looks it up in any tree."""
    import ast
    import sys

    import broker.drive

    root = Path(__file__).resolve().parents[2]
    wanted: set[str] = set()
    for folder in ("broker", "adapters", "bench", "scripts", "tests"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "broker.drive":
                    wanted |= {alias.name for alias in node.names}
    assert {"Driver", "POSITIONS", "settle_gc"} <= wanted  # the walk found the callers
    assert wanted <= set(broker.drive.__all__)
    assert all(hasattr(broker.drive, name) for name in broker.drive.__all__)
    assert callable(sys.modules["broker.drive"].settle_gc)


@pytest.mark.parametrize("shell", ["worker", "replay"])
def test_a_status_whose_restatement_raises_is_dead_lettered_once(monkeypatch, shell):
    """A unit with a live alert gets a new CAD status; time for the unit raises (a bug on its
    state), so its restatement (``Restating.elapse``) fails once it is due. One record for the
    one bad input (the unit's state, ``tick_error``), its alert cancelled, the unit quarantined,
    and the stream goes on. Before, the restatement wrote its record and dropped the status
    without quarantining the unit; the tick right after it ran the same time on the same state,
    raised again and wrote a second record (the worker's tick: ``restate`` then ``tick``; the
    replay's clock move: the same two); and the quarantine's cancel left the status pending, so
    every later tick restated it once more: one record a tick until it went stale."""
    records: list[Failure] = []
    driver = Driver(CFG, tick_every_s=1.0 if shell == "replay" else None,
                    failures=FailurePolicy(dead_letter=records.append))
    driver.handle(CAD_STATUS, _status(0.0, "responding"))
    for t in range(1, 4):
        driver.handle(POSITIONS, _avl(float(t), 15.0 * t))
    driver.handle(CAD_STATUS, _status(4.0, "on_scene"))
    state = driver.states["CFD-E7"]
    assert state.alert is not None and driver.pending == {"CFD-E7"}
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    events = []
    for t in range(8, 20):  # the status is due from 7 s (status_grace_s)
        if shell == "worker":  # the worker's tick (broker/streams/agents.py: tick_or_stop)
            events += driver.restate(at(float(t)), set(driver.pending))
            events += driver.tick(at(float(t)), set(driver.live))
        else:  # a clock move: another unit's fix
            events += driver.handle(POSITIONS, _avl(float(t), vehicle_id="CFD-L2")).events
    assert [(f.reason, f.key, f.raw) for f in records] == [
        ("tick_error", "CFD-E7", codec.dump_state(state))
    ]
    assert [(e.vehicle_id, e.action, e.cancel_reason, e.ts) for e in events] == [
        ("CFD-E7", "cancel", "stale", at(8.0))
    ]
    assert driver.quarantined == {"CFD-E7"} and driver.pending == set()
    assert driver.live == set()


def test_a_status_whose_restatement_raises_on_the_units_own_fix_is_dead_lettered_once(
    monkeypatch,
):
    """The same bad restatement met first by the unit's own fix (the status acts on its way
    in, ``restate_before``): the fix is the one record (``engine_error``, its bytes); the
    restatement is run again alone (``Driver.fence``), raises again, and the unit is
    quarantined, so the ticks after it write nothing more. Before, the fence looked only at
    the engine's catch-up (not due here), left the status pending, and the next tick's
    restatement raised again: a second record."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    driver.handle(CAD_STATUS, _status(0.0, "responding"))
    for t in range(1, 4):
        driver.handle(POSITIONS, _avl(float(t), 15.0 * t))
    driver.handle(CAD_STATUS, _status(4.0, "on_scene"))
    alert = driver.states["CFD-E7"].alert
    assert alert is not None
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    raw = _avl(8.0, 60.0)
    handled = driver.handle(POSITIONS, raw)
    assert handled.failed
    events = list(handled.events)
    for t in range(9, 20):
        events += driver.restate(at(float(t)), set(driver.pending))
        events += driver.tick(at(float(t)), set(driver.live))
    assert [(f.reason, f.raw) for f in records] == [("engine_error", raw)]
    assert [(e.alert_id, e.action, e.cancel_reason, e.ts) for e in events] == [
        (alert.alert_id, "cancel", "stale", at(8.0))
    ]
    assert driver.quarantined == {"CFD-E7"} and driver.pending == set()


def _quarantine_cannot_cancel(monkeypatch) -> None:
    """The quarantine's cancel (``engine.withdraw``) raising: a bug in the cancel itself."""
    def failing_cancel(state, **kw):
        raise ZeroDivisionError("cancel bug")

    monkeypatch.setattr(engine, "withdraw", failing_cancel)


def _live_alert_whose_tick_and_cancel_raise(monkeypatch, driver: Driver) -> VehicleState:
    """Two fixes (a live alert), then the unit's tick and the quarantine's cancel both raise."""
    for t in (0.0, 1.0):
        driver.handle(POSITIONS, codec.encode(fix(t, 15.0 * t)))
    state = driver.states["CFD-E7"]
    assert state.alert is not None
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    _quarantine_cannot_cancel(monkeypatch)
    return state


def test_a_quarantine_whose_cancel_raises_stops_the_worker_after_a_failed_tick(monkeypatch):
    """A tick raises on a unit with a live alert, and so does the quarantine's cancel of it:
    the cancel cannot go out, and the alert would stay on the partners' maps until its
    ``expires_at`` (a cancel always goes out: docs/partners.md). The driver stops through the
    failure policy (site ``cancel``, always a stop: ``StopWork``, which the worker turns into a
    loud stop without committing) after the tick's own record. Before, the quarantine logged
    it and went on: the cancel was lost, no record, no count, and the worker acked on."""
    from broker.failure import StopWork

    records: list[Failure] = []
    counts: list[tuple[str, str]] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append,
                                                count=lambda s, d: counts.append((s, d))))
    state = _live_alert_whose_tick_and_cancel_raise(monkeypatch, driver)
    with pytest.raises(StopWork) as stopped:
        driver.tick(at(20.0))
    assert (stopped.value.failure.site, stopped.value.failure.reason) == ("cancel", "cancel_error")
    assert stopped.value.failure.key == "CFD-E7"
    assert stopped.value.failure.raw == codec.dump_state(state)
    assert [(f.reason, f.raw) for f in records] == [("tick_error", codec.dump_state(state))]
    assert counts == [("tick", "skip"), ("cancel", "stop")]


def test_a_fence_whose_cancel_raises_stops_the_worker_without_taking_the_message(monkeypatch):
    """The message path: a fix whose catch-up (dead reckoning after a silence) raises is
    dead-lettered and fenced; the fence's quarantine cannot cancel the alert either. The
    driver stops (``StopWork`` out of ``handle``: the worker leaves the message un-acked, so
    the restarted worker takes it again) rather than going on with a cancel it never sent."""
    from broker import ticks
    from broker.failure import StopWork

    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    for t in (0.0, 1.0):
        driver.handle(POSITIONS, codec.encode(fix(t, 15.0 * t)), received_at=None)
    monkeypatch.setattr(ticks, "dead_reckon", lambda *a, **k: 1 / 0)
    _quarantine_cannot_cancel(monkeypatch)
    raw = codec.encode(fix(50.0, 750.0))
    with pytest.raises(StopWork) as stopped:
        driver.handle(POSITIONS, raw, received_at=None)
    assert stopped.value.failure.site == "cancel"
    assert [(f.reason, f.raw) for f in records] == [("engine_error", raw)]


def test_a_quarantine_whose_cancel_raises_after_the_alert_expired_goes_on(monkeypatch):
    """The same failing tick and cancel, but past the alert's ``expires_at``: every partner
    has dropped the zone, so no cancel is lost; the unit stays quarantined (its tick's one
    record) and the driver goes on. The state is unchanged, so stopping here would stop every
    restarted worker again, for good (found in review: a crash loop with no end)."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    state = _live_alert_whose_tick_and_cancel_raise(monkeypatch, driver)
    expired = state.alert.expires_at + timedelta(seconds=1)
    assert driver.tick(expired) == []
    assert driver.tick(expired + timedelta(seconds=5)) == []
    assert [(f.reason, f.raw) for f in records] == [("tick_error", codec.dump_state(state))]
    assert driver.quarantined == {"CFD-E7"}
