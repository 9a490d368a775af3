"""The alert lifecycle's invariants over any sequence of a unit's fixes, CAD routes and ticks
(property tests on the pure engine, with a fake event-time clock): per unit at most one live
alert, created before it is updated or cancelled and never created twice; versions strictly
increasing per alert id, also across a cancel and a re-create; nothing after a cancel but a new
create; the engine's state agreeing with the events; an accepted fix in emergency mode leaving
a live alert of its kind and incident (drivers are not stopped being warned while the unit runs
with lights), and a stand-down no older than the last fix leaving none, also one of the last
fix's instant or one refused as a GPS jump (but a dispatch alert a turn-out status keeps); no
stale or expired cancel while the unit's fixes are fresh; and every alert cancelled once the
fixes stop (a zone never stands forever at partners).

The messages come mostly in time order, with duplicates, older fixes, gaps past the stale
timeout and the dead reckoning, clock jumps of an hour either way, GPS jumps, routes replaced
mid-response (another incident's too), and every status; ticks run at the newest time seen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from broker import engine
from broker.engine import DISPATCH_KEEPS
from broker.model import AlertEvent, LatLon, LineStringGeometry, Position, Route, VehicleState
from broker.reckoning import is_emergency
from broker.settings import EngineConfig
from tests.conftest import LAT0, LON0, M_PER_DEG_LAT, M_PER_DEG_LON, at, fix

CFG = EngineConfig()
STATUSES = ["available", "dispatched", "responding", "on_scene", "returning",
            "out_of_service", "unknown"]  # fmt: skip
# seconds between one message and the next: the same instant (a duplicate), a step back (an
# older fix), a second, gaps past the stale timeout and the dead reckoning, an hour either way
STEPS = [0.0, 0.5, 1.0, 1.0, 1.0, 2.0, 5.0, 29.0, 31.0, 45.0, 61.0, 95.0, -3.0, -40.0,
         3_600.0, -3_600.0]  # fmt: skip


def _route(incident: str, heading: str, t: float) -> Route:
    """A 3 km CAD route from the Square, east or north."""
    de, dn = {"east": (1.0, 0.0), "north": (0.0, 1.0)}[heading]
    coords = [(LON0 + de * 100.0 * i / M_PER_DEG_LON, LAT0 + dn * 100.0 * i / M_PER_DEG_LAT)
              for i in range(31)]  # fmt: skip
    return Route(vehicle_id="CFD-E7", incident_id=incident, ts=at(t),
                 destination=LatLon(lat=coords[-1][1], lon=coords[-1][0]),
                 route=LineStringGeometry(coordinates=coords))  # fmt: skip


@st.composite
def timelines(draw: st.DrawFn) -> list[tuple[str, float, object]]:
    """A unit's messages and the driver's ticks: ``(what, t, message or None)``."""
    out: list[tuple[str, float, object]] = []
    t, east, north = 0.0, 0.0, 0.0
    for _ in range(draw(st.integers(1, 30))):
        t += draw(st.sampled_from(STEPS))
        what = draw(st.sampled_from(["fix"] * 6 + ["route", "tick", "tick"]))
        if what == "route":
            out.append(("route", t, _route(draw(st.sampled_from(["F1", "F1", "F2"])),
                                           draw(st.sampled_from(["east", "north"])), t)))
        elif what == "tick":
            out.append(("tick", t, None))
        else:
            east += draw(st.sampled_from([0.0, 10.0, 20.0, 50.0, 900.0, -300.0]))
            north = draw(st.sampled_from([0.0, 0.0, 0.0, 150.0]))
            status = draw(st.sampled_from(["responding"] * 3 + ["on_scene"] * 2 + STATUSES))
            out.append(("fix", t, fix(
                t, east, north_m=north, status=status,
                lights_sirens=draw(st.sampled_from([True, True, False])),
                incident_id=draw(st.sampled_from(["F1", "F1", "F2", None])),
                speed_mps=draw(st.sampled_from([0.0, 15.0])),
                heading_deg=draw(st.sampled_from([90.0, 0.0, None])),
            )))  # fmt: skip
    return out


@dataclass
class Ledger:
    """What partners would have been told of one unit, checked event by event."""

    live: str | None = None  # the alert id a create opened and no cancel closed yet
    versions: dict[str, int] = field(default_factory=dict)
    last_ts: dict[str, datetime] = field(default_factory=dict)
    creates: int = 0
    cancels: int = 0

    def take(self, events: list[AlertEvent]) -> None:
        for e in events:
            before = self.versions.get(e.alert_id)
            assert before is None or e.version > before, ("version not increasing", before, e)
            self.versions[e.alert_id] = e.version
            stamped = self.last_ts.get(e.alert_id)
            assert stamped is None or e.ts >= stamped, ("went back in time", stamped, e)
            self.last_ts[e.alert_id] = e.ts
            if e.action == "create":
                assert self.live is None, ("created while one lives", self.live, e)
                assert e.first_version == e.version, e
                self.live, self.creates = e.alert_id, self.creates + 1
            else:
                assert self.live == e.alert_id, (f"{e.action} without a live create", self.live, e)
                if e.action == "cancel":
                    self.live, self.cancels = None, self.cancels + 1

    def agrees_with(self, state: VehicleState) -> None:
        alive = state.alert.alert_id if state.alert is not None else None
        assert alive == self.live, ("state and events disagree", alive, self.live)
        if state.alert is not None:
            assert state.versions[state.alert.alert_id] == self.versions[self.live]


def _fresh_stale_cancels(events: list[AlertEvent], last: Position | None) -> list[AlertEvent]:
    """Stale or expired cancels of an alert made by fixes, stamped while the unit's last fix
    was less than the stale timeout old."""
    if last is None:
        return []
    return [e for e in events if e.action == "cancel" and e.cancel_reason in ("stale", "expired")
            and not e.before_emergency
            and (e.ts - last.ts).total_seconds() < CFG.stale_timeout_s - 1e-3]  # fmt: skip


def _news(pos: Position, last: Position) -> bool:
    return (pos.status, pos.lights_sirens, pos.incident_id) != (
        last.status, last.lights_sirens, last.incident_id
    )


def run(timeline: list[tuple[str, float, object]], cfg: EngineConfig = CFG) -> Ledger:
    ledger = Ledger()
    state: VehicleState | None = None
    clock: datetime | None = None  # the newest time seen: ticks run there
    for what, _t, msg in timeline:
        if what == "tick":
            if state is None or clock is None:
                continue
            before = state
            state, events = engine.tick(state, now=clock, cfg=cfg)
            ledger.take(events)
            ledger.agrees_with(state)
            assert not _fresh_stale_cancels(events, before.last_fix), (before.last_fix, events)
            continue
        assert isinstance(msg, Position | Route)
        last = state.last_fix if state is not None else None
        state, events = engine.step(state, msg, now=msg.ts, cfg=cfg)
        clock = msg.ts if clock is None else max(clock, msg.ts)
        ledger.take(events)
        ledger.agrees_with(state)
        if isinstance(msg, Position) and state.last_fix is msg:  # the fix was accepted
            alert = state.alert
            if is_emergency(msg):
                kind = "on_scene" if msg.status == "on_scene" else "approaching"
                assert alert is not None, ("an emergency fix left no alert", msg, events)
                assert (alert.kind, alert.incident_id) == (kind, msg.incident_id), (alert, msg)
            elif msg.status in DISPATCH_KEEPS:
                assert alert is None or alert.from_dispatch, ("kept by a non-emergency fix", msg)
            else:
                assert alert is None, ("a unit out of emergency mode kept its alert", msg)
        if (isinstance(msg, Position) and not is_emergency(msg) and msg.status not in DISPATCH_KEEPS
                and (last is None or msg.ts > last.ts or (msg.ts == last.ts and _news(msg, last)))):
            # a stand-down no older than the last fix acts, whatever its place (a GPS jump) says
            assert state.alert is None, ("a stand-down left the alert", last, msg, events)
    if state is not None and clock is not None:
        # the fixes stop: ticks on to a day later end every alert
        for s in (1, 10, 31, 61, 95, 200, 86_400):
            state, events = engine.tick(state, now=clock + timedelta(seconds=s), cfg=cfg)
            ledger.take(events)
            ledger.agrees_with(state)
        assert state.alert is None and state.dispatch_due is None, state
    assert ledger.live is None and ledger.creates == ledger.cancels, ledger
    return ledger


@settings(max_examples=400, deadline=None)
@given(timeline=timelines())
def test_the_lifecycle_holds_for_any_sequence_of_a_units_messages(timeline) -> None:
    run(timeline)


@settings(max_examples=200, deadline=None)
@given(timeline=timelines(), hold=st.sampled_from([0.0, 2.0]))
def test_the_lifecycle_holds_without_dead_reckoning_or_with_the_dispatch_zone_at_once(
    timeline, hold: float
) -> None:
    run(timeline, EngineConfig(dead_reckoning_max_s=0.0, dispatch_hold_s=hold))
