"""The alert lifecycle's invariants through the driver, CAD statuses included (property tests):
a unit's fixes in the combined or the split form, its CAD statuses (before any fix too, a
little late or early, standing it down, sending it again, another incident) and routes, mostly
in time order with duplicates, steps back and gaps past the stale timeout. Per unit: never two
live alerts, versions strictly increasing per alert id, nothing after a cancel but a new create
(``tests.unit.test_lifecycle_props.Ledger``); an accepted emergency fix leaves an alert; a
stand-down status, once due, leaves none (with a tick every second, which acts on it); and the
drain ends every alert."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.drive import CAD_STATUS, POSITIONS, ROUTES, Driver
from broker.engine import DISPATCH_KEEPS
from broker.model import Position, VehicleState
from broker.reckoning import is_emergency
from broker.settings import EngineConfig
from tests.conftest import LAT0
from tests.unit.messages import STATUSES, _ll, _ts
from tests.unit.test_lifecycle_props import Ledger

ROUTE = [_ll(100.0 * i, 0.0) for i in range(31)]
STEPS = [0.0, 0.5, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 29.0, 31.0, 45.0, 61.0, 95.0, -3.0, -40.0]


@st.composite
def unit_timelines(draw: st.DrawFn) -> list[tuple[str, dict]]:
    """One unit's fixes, CAD statuses and routes along one street."""
    out: list[tuple[str, dict]] = []
    t, east = 0.0, 0.0
    for _ in range(draw(st.integers(1, 30))):
        t += draw(st.sampled_from(STEPS))
        what = draw(st.sampled_from(["fix"] * 5 + ["status"] * 3 + ["route"]))
        if what == "route":
            out.append((ROUTES, {
                "vehicle_id": "E1", "incident_id": draw(st.sampled_from(["F1", "F2"])),
                "ts": _ts(t), "destination": dict(zip(("lon", "lat"), ROUTE[-1], strict=True)),
                "route": {"type": "LineString", "coordinates": ROUTE},
            }))  # fmt: skip
        elif what == "status":
            lights = draw(st.none() | st.booleans())
            incident = draw(st.sampled_from([None, "F1", "F2"]))
            out.append((CAD_STATUS, {
                "vehicle_id": "E1", "ts": _ts(t + draw(st.sampled_from([0.0, 0.0, -1.0, 2.0]))),
                "status": draw(st.sampled_from([*STATUSES, "responding", "on_scene"])),
                **({} if lights is None else {"lights_sirens": lights}),
                **({} if incident is None else {"incident_id": incident}),
            }))  # fmt: skip
        else:
            east += draw(st.sampled_from([0.0, 10.0, 20.0, 50.0, 900.0]))
            body = {"vehicle_id": "E1", "ts": _ts(t), "lon": _ll(east, 0.0)[0], "lat": LAT0,
                    "speed_mps": draw(st.sampled_from([0.0, 15.0])), "heading_deg": 90.0}
            lightbar = draw(st.none() | st.booleans())
            if lightbar is not None:
                body["lights_sirens"] = lightbar
            if draw(st.booleans()):  # the combined form
                body |= {"status": draw(st.sampled_from(STATUSES)),
                         "lights_sirens": draw(st.booleans()),
                         "incident_id": draw(st.sampled_from(["F1", None]))}
            out.append((POSITIONS, body))
    return out


def _due_stand_down(state: VehicleState, clock, cfg: EngineConfig) -> bool:
    """A CAD status that ends any alert, newer than the unit's last fix and past its grace,
    on a unit in the split form (the combined form's own status wins), not older than a
    dispatch zone's route (which supersedes it)."""
    cad, last, alert = state.cad, state.last_fix, state.alert
    if cad is None or last is None or state.fix_status or cad.ts < last.ts:
        return False
    if clock <= cad.ts + timedelta(seconds=cfg.status_grace_s):
        return False
    if cad.status in ("responding", "on_scene", "dispatched"):
        return False
    return not (alert is not None and alert.from_dispatch and state.route is not None
                and cad.ts < state.route.ts)  # fmt: skip


@settings(max_examples=250, deadline=None)
@given(stream=unit_timelines(), tick_every_s=st.sampled_from([None, 1.0, 7.0]),
       lights_without_cad=st.booleans())  # fmt: skip
def test_the_lifecycle_holds_through_the_driver_with_cad_statuses(
    stream: list[tuple[str, dict]], tick_every_s: float | None, lights_without_cad: bool
) -> None:
    cfg = EngineConfig(lights_without_cad=lights_without_cad)
    driver: Driver[str] = Driver(cfg, tick_every_s=tick_every_s)
    ledgers: defaultdict[str, Ledger] = defaultdict(Ledger)
    for topic, body in stream:
        handled = driver.handle(topic, msgspec.json.encode(body))
        for e in handled.events:
            ledgers[e.vehicle_id].take([e])
        taken, state = handled.msg, handled.state
        if isinstance(taken, Position) and state is not None and state.last_fix is taken:
            if is_emergency(taken):
                assert state.alert is not None, ("an emergency fix left no alert", taken)
            elif taken.status not in DISPATCH_KEEPS:
                assert state.alert is None, ("a stand-down fix left the alert", taken)
        if tick_every_s == 1.0 and driver.clock is not None:
            for s in driver.states.values():
                if _due_stand_down(s, driver.clock, cfg):
                    assert s.alert is None, ("a due stand-down status left the alert", s)
    for e in driver.drain():
        ledgers[e.vehicle_id].take([e])
    assert all(ledger.live is None for ledger in ledgers.values()), ledgers
    assert all(s.alert is None and s.dispatch_due is None for s in driver.states.values())


def test_a_status_taken_past_its_grace_acts_at_once() -> None:
    """A CAD status that comes already past its grace by the driver's clock (a later route
    came first) stands the unit down as it is taken, not at some later message: the tick that
    passed its grace has gone by (found by the property test above with a random seed)."""
    cfg = EngineConfig(lights_without_cad=True)
    driver: Driver[str] = Driver(cfg, tick_every_s=1.0)
    route = {"vehicle_id": "E1", "incident_id": "F1", "ts": _ts(40.0),
             "destination": dict(zip(("lon", "lat"), ROUTE[-1], strict=True)),
             "route": {"type": "LineString", "coordinates": ROUTE}}
    lit = {"vehicle_id": "E1", "ts": _ts(10.5), "lon": ROUTE[0][0], "lat": LAT0,
           "speed_mps": 0.0, "heading_deg": 90.0, "lights_sirens": True}
    driver.handle(ROUTES, msgspec.json.encode(route))
    created = driver.handle(POSITIONS, msgspec.json.encode(lit))
    assert [e.action for e in created.events] == ["create"]
    handled = driver.handle(CAD_STATUS, msgspec.json.encode(
        {"vehicle_id": "E1", "ts": _ts(10.5), "status": "available"}))
    assert [e.action for e in handled.events] == ["cancel"]
    assert handled.state is not None and handled.state.alert is None
    assert driver.states["E1"].alert is None
