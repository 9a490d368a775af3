"""The split form through the driver: fixes and cad.status joined per unit (broker.join), statuses
due by time, the dispatch zone stood down."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker import codec, engine
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, Driver
from broker.failure import Failure, FailurePolicy
from broker.settings import EngineConfig
from tests.conftest import at, east_route, fix
from tests.unit.drive.split_form import cad_status, split_fix

CFG = EngineConfig()


def test_a_status_alone_cancels_at_once_without_waiting_for_a_fix() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(CAD_STATUS, cad_status(0.0, "responding"))
    created = driver.handle(POSITIONS, split_fix(1.0)).events
    assert [e.action for e in created] == ["create"]
    driver.handle(CAD_STATUS, cad_status(5.0, "available", lights=False, incident=None))
    assert driver.pending == {"CFD-E7"}
    # once the clock has passed the status by its grace (a message of any unit), it acts alone,
    # stamped at the status's time, at the unit's last place
    other = driver.handle(POSITIONS, split_fix(8.5, vehicle_id="CFD-L2")).events
    assert [(e.vehicle_id, e.action, e.cancel_reason, e.ts) for e in other] == [
        ("CFD-E7", "cancel", "left_emergency", at(5.0))
    ]
    assert driver.live == set() and driver.pending == set()


def test_the_worker_tick_acts_on_a_due_status() -> None:
    driver = Driver(CFG)
    driver.handle(CAD_STATUS, cad_status(0.0, "responding"))
    driver.handle(POSITIONS, split_fix(1.0))
    driver.handle(CAD_STATUS, cad_status(3.0, "on_scene"))
    assert driver.restate(at(6.0)) == []  # a fix of the status's own instant may still come
    events = driver.restate(at(6.5))
    assert [(e.action, e.kind) for e in events] == [
        ("cancel", "approaching"), ("create", "on_scene")
    ]


def test_a_status_alone_starts_an_alert_from_a_fresh_fix() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(POSITIONS, split_fix(0.0))  # no status at all: unknown, no alert
    assert driver.states["CFD-E7"].last_fix.status == "unknown"  # type: ignore[union-attr]
    driver.handle(CAD_STATUS, cad_status(2.0, "responding"))
    events = driver.drain()
    assert [(e.action, e.ts) for e in events[:1]] == [("create", at(2.0))]


def test_status_events_out_of_order_are_dead_lettered() -> None:
    driver = Driver(CFG)
    assert driver.handle(CAD_STATUS, cad_status(5.0, "responding")).rejection is None
    late = driver.handle(CAD_STATUS, cad_status(4.0, "available"))
    assert late.rejection is not None and late.rejection.reason == "stale_status"
    assert driver.states["CFD-E7"].cad.status == "responding"  # type: ignore[union-attr]


def _actions(driver: Driver, log: list[tuple[str, bytes]]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for topic, raw in log:
        handled = driver.handle(topic, raw)
        out += [(e.action, e.incident_id) for e in handled.events]
        if handled.rejection is not None:
            out.append(("refused", handled.rejection.reason))
    return out


def test_two_statuses_of_one_instant_appended_again_change_nothing() -> None:
    """The forwarder appends ``cad.status`` to the unit's log at least once: after a restart
    its uncommitted tail comes again, after what the log holds. A unit cleared from F1 and sent
    to F2 in one second (CAD stamps whole seconds) had its ``available`` taken again (not older
    than the stored status, the same instant): a false cancel of a responding unit, then a
    re-create."""
    sent_on = [(CAD_STATUS, cad_status(0.0, "responding", incident="F1")),
               (POSITIONS, split_fix(1.0, 10)), (POSITIONS, split_fix(2.0, 20)),
               (CAD_STATUS, cad_status(5.0, "available", lights=False, incident=None)),
               (CAD_STATUS, cad_status(5.0, "responding", incident="F2")),
               (POSITIONS, split_fix(6.0, 60))]
    again = [(CAD_STATUS, cad_status(5.0, "available", lights=False, incident=None)),
             (POSITIONS, split_fix(10.0, 100)),
             (CAD_STATUS, cad_status(5.0, "responding", incident="F2"))]
    after = [(POSITIONS, split_fix(float(t), 10 * t)) for t in range(11, 14)]
    once = _actions(Driver(CFG, tick_every_s=1.0), sent_on + again[1:2] + after)
    twice = _actions(Driver(CFG, tick_every_s=1.0), sent_on + again + after)
    assert once[:3] == [("create", "F1"), ("cancel", "F1"), ("create", "F2")]
    assert [a for a in twice if a[0] != "refused"] == once
    assert twice.count(("refused", "stale_status")) == 1  # the repeated `available`


def test_a_status_of_the_same_instant_that_differs_is_taken() -> None:
    """Of one instant the log's order decides: a new status of the stored one's second is a
    change (only one taken before it, again, is a repeat); a later instant forgets them."""
    driver = Driver(CFG)
    driver.handle(CAD_STATUS, cad_status(5.0, "responding", incident="F1"))
    assert driver.handle(CAD_STATUS, cad_status(5.0, "on_scene", incident="F1")).rejection is None
    assert driver.handle(CAD_STATUS, cad_status(5.0, "on_scene", incident="F1")).rejection is None
    repeat = driver.handle(CAD_STATUS, cad_status(5.0, "responding", incident="F1"))
    assert repeat.rejection is not None and "repeats" in repeat.rejection.detail
    assert driver.handle(CAD_STATUS, cad_status(6.0, "responding", incident="F1")).rejection is None
    assert driver.states["CFD-E7"].cad_same_ts == ()


def test_with_an_agency_file_only_its_units_are_taken() -> None:
    from broker.agencies import parse_agencies

    agencies = parse_agencies({"agency": [{"id": "cfd", "unit": [{"vehicle_id": "CFD-E7"}]}]})
    driver = Driver(CFG, agencies=agencies)
    assert driver.handle(POSITIONS, split_fix(0.0)).rejection is None
    for topic, raw in [(POSITIONS, split_fix(1.0, vehicle_id="X-9")),
                       (CAD_STATUS, cad_status(1.0, "responding", vehicle_id="X-9")),
                       (ROUTES, codec.encode(east_route(vehicle_id="X-9")))]:
        handled = driver.handle(topic, raw)
        assert handled.rejection is not None and handled.rejection.reason == "unknown_unit"
    assert set(driver.states) == {"CFD-E7"}
    merged = driver.states["CFD-E7"].last_fix
    assert merged is not None and merged.agency == "charlotte-fd"  # the fix's own agency


def test_pending_statuses_are_found_again_from_the_states() -> None:
    driver = Driver(CFG)
    driver.handle(CAD_STATUS, cad_status(0.0, "responding"))
    driver.handle(POSITIONS, split_fix(1.0))
    driver.handle(CAD_STATUS, cad_status(3.0, "available", lights=False, incident=None))
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
        driver.handle(CAD_STATUS, cad_status(0.0, "responding"))
        events = driver.handle(POSITIONS, split_fix(1.0)).events
        driver.handle(CAD_STATUS, cad_status(1.5, "on_scene"))
        if tick_at is not None:
            events += driver.restate(at(tick_at))
        events += driver.handle(POSITIONS, split_fix(then, 10.0)).events
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
    driver.handle(CAD_STATUS, cad_status(0.0, "responding", incident=cad_incident))
    events = []
    for t in range(1, 40):
        pos = json.loads(split_fix(float(t), 12.0 * t))
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
    driver.handle(CAD_STATUS, cad_status(0.0, "responding"), received_at=None)
    handled = driver.handle(POSITIONS, split_fix(1.0), received_at=None)
    assert [e.action for e in handled.events] == ["create"]
    driver.handle(CAD_STATUS, cad_status(10.0, "available", lights=False), received_at=None)
    step = engine.step

    def failing_on_the_fix(state, msg, **kw):  # an engine bug on this one fix
        if msg.ts == at(20.0):
            raise ZeroDivisionError("engine bug")
        return step(state, msg, **kw)

    monkeypatch.setattr(engine, "step", failing_on_the_fix)
    handled = driver.handle(POSITIONS, split_fix(20.0, 100.0), received_at=None)
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
    events = driver.handle(CAD_STATUS, cad_status(0.0, "dispatched", lights=False)).events
    events += driver.handle(ROUTES, codec.encode(east_route(t=0.0))).events
    for t in range(1, 20):
        if t == 10:
            stood_down = cad_status(10.0, "available", lights=False, incident=None)
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
        events = driver.handle(CAD_STATUS, cad_status(0.0, "dispatched", lights=False)).events
        events += driver.handle(ROUTES, codec.encode(east_route(t=0.0))).events
        events += driver.tick(at(3.0))
        driver.handle(CAD_STATUS, cad_status(10.0, "available", lights=False, incident=None))
        if tick:
            events += driver.restate(at(14.0))
        events += driver.handle(POSITIONS, split_fix(20.0, 500.0)).events
        return [(e.action, e.version, e.ts) for e in events]

    assert run(tick=True) == run(tick=False)
    assert [(a, ts) for a, _, ts in run(tick=False)] == [
        ("create", at(CFG.dispatch_hold_s)), ("cancel", at(10.0))
    ]


def test_a_status_older_than_the_route_does_not_stand_the_dispatch_down() -> None:
    """CAD's last word before the dispatch (``available``, from the station) is what the route
    supersedes: the dispatch alert it starts stays (until a fix or its expiry)."""
    driver = Driver(CFG, tick_every_s=1.0)
    driver.handle(CAD_STATUS, cad_status(0.0, "available", lights=False, incident=None))
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
        events = driver.handle(CAD_STATUS, cad_status(0.0, "responding"), received_at=None).events
        events += driver.handle(POSITIONS, split_fix(1.0), received_at=None).events
        events += driver.handle(CAD_STATUS, cad_status(2.0, "on_scene"), received_at=None).events
        if tick_between:
            events += driver.restate(at(10.0))
        available = cad_status(20.0, "available", lights=False, incident=None)
        events += driver.handle(CAD_STATUS, available, received_at=None).events
        events += driver.restate(at(25.0))
        return [(e.action, e.kind, e.ts, e.cancel_reason) for e in events]

    assert run(tick_between=False) == run(tick_between=True) == [
        ("create", "approaching", at(1.0), None),
        ("cancel", "approaching", at(2.0), "kind_changed"),
        ("create", "on_scene", at(2.0), None),
        ("cancel", "on_scene", at(20.0), "left_emergency"),
    ]


def _by_cadence(
    messages: list[tuple[float, str, bytes]],
) -> dict[float | None, list[tuple]]:
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
        (-1.0, CAD_STATUS, cad_status(-1.0, "on_scene")),
        (0.0, POSITIONS, split_fix(0.0)),
        (28.0, CAD_STATUS, cad_status(28.0, "available", lights=False, incident=None)),
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
        (stood_down_at, CAD_STATUS, cad_status(stood_down_at, "available", lights=False,
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
        (-1.0, CAD_STATUS, cad_status(-1.0, "on_scene")),
        (0.0, POSITIONS, split_fix(0.0)),
        (38.0, CAD_STATUS, cad_status(38.0, "on_scene", incident="F2")),
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
        events = driver.handle(CAD_STATUS, cad_status(0.0, "responding"), received_at=None).events
        events += driver.handle(POSITIONS, split_fix(1.0), received_at=None).events
        stood_down = cad_status(2.0, "available", lights=False, incident=None)
        events += driver.handle(CAD_STATUS, stood_down, received_at=None).events
        if tick_between:
            events += driver.restate(at(10.0)) + driver.tick(at(10.0))
        events += driver.handle(POSITIONS, split_fix(90.0, 50.0), received_at=None).events
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
        (CAD_STATUS, cad_status(0.0, "returning", lights=False, incident=None)),
        (POSITIONS, split_fix(1.0)),
        (CAD_STATUS, cad_status(60.0, "available", lights=False, incident=None)),
    ]:
        driver.handle(topic, raw, received_at=None)
    route = codec.encode(east_route(t=300.0))
    events = driver.handle(ROUTES, route, received_at=None).events
    for t in range(301, 320):
        other = fix(float(t), vehicle_id="CFD-L2", status="available", lights_sirens=False)
        events += driver.handle(POSITIONS, codec.encode(other), received_at=None).events
    assert [(e.action, e.ts) for e in events] == [("create", at(300.0 + CFG.dispatch_hold_s))]
    assert driver.live == {"CFD-E7"}
