"""The CAD route standing in for the GPS: dead reckoning when the fixes stop, the dispatch zone
before the first fix (broker.reckoning, through the engine and the driver)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from broker import codec, engine, lifecycle
from broker.drive import POSITIONS, ROUTES, Driver
from broker.model import AlertEvent, Position, Route
from broker.settings import EngineConfig
from tests.conftest import LAT0, LON0, M_PER_DEG_LON, at, drive, east_route, fix

CFG = EngineConfig()


def point_east(m: float) -> shapely.Point:
    return shapely.Point(LON0 + m / M_PER_DEG_LON, LAT0)


def run_east(seconds: int, speed: float = 15.0, start: float = 1.0, **kw) -> list[Position]:
    return [fix(start + i, speed * (start + i - 1), speed_mps=speed, **kw) for i in range(seconds)]


def ticked(messages: list[Position | Route], tick_at: list[float], cfg: EngineConfig = CFG):
    """Step the messages, ticking at the given seconds (in time order with them)."""
    timeline = sorted(
        [(m.ts, 1, m) for m in messages] + [(at(t), 0, None) for t in tick_at],
        key=lambda item: (item[0], item[1]),
    )
    state, events = None, []
    for ts, _, msg in timeline:
        if msg is None:
            if state is not None:
                state, evs = engine.tick(state, now=ts, cfg=cfg)
                events += evs
        else:
            state, evs = engine.step(state, msg, now=ts, cfg=cfg)
            events += evs
    return state, events


# ---- dead reckoning -------------------------------------------------------------------------


def test_a_silent_moving_unit_keeps_its_zone_moving_along_the_route_then_goes_stale():
    moving = run_east(10)  # 15 m/s, last fix at t=10, 135 m east
    state, events = ticked([east_route(), *moving], [float(t) for t in range(11, 120)])
    gap = [e for e in events if e.ts > at(10.0)]
    updates = [e for e in gap if e.action == "update"]
    steps = [(e.ts - at(10.0)).total_seconds() for e in updates]
    # from when it would have gone stale (30 s: until then the zone stays), every 5 s, up to 60 s
    assert steps == [5.0 * k for k in range(6, 12)]
    east = [(e.lon - LON0) * M_PER_DEG_LON for e in updates]
    assert east == pytest.approx([135.0 + 15.0 * s for s in steps], abs=1.0)  # at its speed
    # the far end runs ahead of the reckoned position, and the unit's slowest place is covered
    for e, s in zip(updates, steps, strict=True):
        zone = shape(e.zone)
        assert zone.contains(point_east(135.0 + 15.0 * s + 300.0))
        assert zone.contains(point_east(135.0 + 7.5 * s))
    (cancel,) = [e for e in gap if e.action == "cancel"]
    assert cancel.cancel_reason == "stale" and cancel.ts == at(10.0 + CFG.dead_reckoning_max_s)
    assert state is not None and state.alert is None


def test_dead_reckoning_widens_the_accuracy_the_zone_is_built_with():
    _, events = ticked([east_route(), *run_east(10)], [float(t) for t in range(11, 70)])
    updates = [e for e in events if e.ts > at(10.0) and e.action == "update"]
    assert len(updates) >= 3
    widths = []
    for e in updates:  # the band's width across the road ahead, beyond the circle
        zone = shape(e.zone)
        lon = e.lon + 400.0 / M_PER_DEG_LON
        across = shapely.LineString([(lon, LAT0 - 0.01), (lon, LAT0 + 0.01)])
        widths.append(zone.intersection(across).length)
    assert widths == sorted(widths) and widths[-1] > widths[0]


@settings(max_examples=25, deadline=None)
@given(
    tick_at=st.lists(st.floats(min_value=10.0, max_value=120.0), max_size=12),
    resume=st.one_of(st.none(), st.floats(min_value=14.0, max_value=90.0)),
)
def test_ticks_at_any_moments_or_none_give_the_same_events(tick_at, resume):
    # (the fixes may resume before the unit would go stale, during the reckoning, or after it)
    messages: list[Position | Route] = [east_route(), *run_east(10)]
    if resume is not None:  # the fixes come back (a fix catches up on the steps due before it)
        messages.append(fix(10.0 + resume, 135.0 + 15.0 * resume))
    every_second = [float(t) for t in range(11, 131)]
    _, reference = ticked(messages, every_second)
    _, events = ticked(messages, [*tick_at, 130.0])
    assert [codec.encode(e) for e in events] == [codec.encode(e) for e in reference]


def test_the_distance_bound_ends_it_sooner_on_a_fast_unit():
    cfg = EngineConfig(dead_reckoning_max_m=1200.0)  # 30 m/s: 40 s, not 60
    _, events = ticked([east_route(length_m=5000.0), *run_east(10, speed=30.0)], [200.0], cfg)
    gap = [e for e in events if e.ts > at(10.0)]
    assert [(e.action, (e.ts - at(10.0)).total_seconds()) for e in gap] == [
        ("update", 30.0), ("update", 35.0), ("cancel", 40.0),
    ]
    short = EngineConfig(dead_reckoning_max_m=600.0)  # 20 s: over before it would go stale
    _, events = ticked([east_route(), *run_east(10, speed=30.0)], [200.0], short)
    gap = [e for e in events if e.ts > at(10.0)]
    assert [(e.action, e.ts) for e in gap] == [("cancel", at(10.0 + short.stale_timeout_s))]


@pytest.mark.parametrize("why", ["stopped", "no route", "off"])
def test_no_dead_reckoning_for_a_stopped_unit_a_unit_without_route_or_when_off(why):
    cfg = EngineConfig(dead_reckoning_max_s=0.0) if why == "off" else CFG
    fixes = run_east(10, speed=0.0 if why == "stopped" else 15.0)
    messages: list[Position | Route] = fixes if why == "no route" else [east_route(), *fixes]
    _, events = ticked(messages, [200.0], cfg)
    gap = [e for e in events if e.ts > at(10.0)]
    assert [(e.action, e.ts) for e in gap] == [("cancel", at(10.0 + cfg.stale_timeout_s))]


def test_the_fixes_take_over_again_when_they_resume():
    moving = run_east(10)
    back = [fix(55.0 + i, 135.0 + 15.0 * (45 + i)) for i in range(10)]
    _, events = drive([east_route(), *moving, *back])
    assert [e.action for e in events].count("cancel") == 0
    assert len({e.alert_id for e in events}) == 1
    later = [e for e in events if e.ts >= at(55.0)]
    assert later and all(e.lat == pytest.approx(LAT0) for e in later)
    assert any(e.ts > at(10.0) and e.ts < at(55.0) for e in events)  # reckoned in the gap


def test_the_driver_sends_the_same_events_with_any_tick_period():
    messages = [(ROUTES, codec.encode(east_route()))]
    messages += [(POSITIONS, codec.encode(f)) for f in run_east(10)]
    messages += [(POSITIONS, codec.encode(fix(62.0, 135.0 + 15.0 * 52)))]

    def events(tick_every_s: float) -> list[AlertEvent]:
        driver: Driver[str] = Driver(CFG, tick_every_s=tick_every_s)
        out = [ev for topic, raw in messages for ev in driver.handle(topic, raw).events]
        return out + driver.drain()

    one = events(1.0)
    assert [codec.encode(e) for e in events(7.0)] == [codec.encode(e) for e in one]
    assert sum(1 for e in one if at(10.0) < e.ts < at(62.0)) >= 5
    assert [e.cancel_reason for e in one if e.action == "cancel"] == ["stale"]  # drained
    assert one[-1].ts == at(62.0) + timedelta(seconds=CFG.dead_reckoning_max_s)


# ---- warn from dispatch ---------------------------------------------------------------------

# the dispatch zone at the route itself (no hold), as these tests read it; the hold below
DISPATCH = EngineConfig(dispatch_cover_m=500.0, dispatch_cover_s=90.0, dispatch_hold_s=0.0)
HELD = EngineConfig(dispatch_cover_m=500.0, dispatch_cover_s=90.0, dispatch_hold_s=2.0)


def test_a_route_before_any_fix_warns_the_start_of_the_route_until_it_expires():
    state, events = engine.step(None, east_route(), now=at(0.0), cfg=DISPATCH)
    (created,) = events
    assert created.action == "create" and created.ts == at(0.0) and created.kind == "approaching"
    assert created.expires_at == at(DISPATCH.dispatch_cover_s)
    zone = shape(created.zone)
    assert zone.contains(point_east(480.0)) and not zone.contains(point_east(700.0))
    assert created.alert_id == engine.alert_id_for("CFD-E7", "F1", "approaching")
    state, none_yet = engine.tick(state, now=at(89.0), cfg=DISPATCH)
    assert none_yet == []
    state, ended = engine.tick(state, now=at(200.0), cfg=DISPATCH)  # the unit never moved
    assert [(e.action, e.cancel_reason, e.ts) for e in ended] == [
        ("cancel", "expired", at(DISPATCH.dispatch_cover_s))
    ]
    assert state.alert is None


def test_the_first_emergency_fix_takes_over_at_once_and_turnout_fixes_keep_it():
    turnout = [fix(t, 0.0, status="dispatched", lights_sirens=False, speed_mps=0.0)
               for t in (5.0, 10.0, 20.0)]
    _, events = drive([east_route(), *turnout, *run_east(10, start=30.0)], DISPATCH)
    assert [e.action for e in events[:2]] == ["create", "update"]
    assert events[1].ts == at(30.0) and events[1].version == 2  # the first emergency fix
    assert len({e.alert_id for e in events}) == 1
    _, quick = drive([east_route(), fix(0.5, 0.0)], DISPATCH)  # within min_update_interval_s
    assert [e.action for e in quick] == ["create", "update"]


def test_a_unit_stood_down_before_it_moves_cancels_the_dispatch_alert():
    stood_down = fix(10.0, 0.0, status="available", lights_sirens=False, incident_id=None)
    _, events = drive([east_route(), stood_down], DISPATCH)
    assert [(e.action, e.cancel_reason) for e in events] == [
        ("create", None), ("cancel", "left_emergency")
    ]


@pytest.mark.parametrize("why", ["off", "unit elsewhere", "alert live", "route came late"])
def test_no_dispatch_alert_when_off_for_a_unit_elsewhere_or_one_already_warning(why):
    cfg = EngineConfig(dispatch_cover_m=0.0) if why == "off" else DISPATCH
    before: list[Position | Route] = {
        "off": [],
        "unit elsewhere": [fix(0.0, 0.0, north_m=400.0, status="available",
                               lights_sirens=False, incident_id=None)],
        "alert live": [fix(0.0, 0.0)],
        # back at its start, idle, a cover's length after the route was sent: the route only
        # reaches the engine now (a backlog), and its incident is over
        "route came late": [fix(1.0 + DISPATCH.dispatch_cover_s, 0.0, status="available",
                                lights_sirens=False, incident_id=None)],
    }[why]
    state, _ = drive(before, cfg)
    _, events = engine.step(state, east_route(t=1.0), now=at(1.0), cfg=cfg)
    assert events == []


@pytest.mark.parametrize("cfg, starts", [(DISPATCH, 0.0), (HELD, HELD.dispatch_hold_s)])
def test_dispatch_events_are_the_same_with_any_tick_period(cfg, starts):
    messages = [(ROUTES, codec.encode(east_route(vehicle_id=v))) for v in ("CFD-E7", "CFD-E8")]
    messages += [(POSITIONS, codec.encode(f)) for f in run_east(10, start=40.0)]  # E7 only

    def events(tick_every_s: float) -> list[AlertEvent]:
        driver: Driver[str] = Driver(cfg, tick_every_s=tick_every_s)
        out = [ev for topic, raw in messages for ev in driver.handle(topic, raw).events]
        return out + driver.drain()

    one = events(1.0)
    assert [codec.encode(e) for e in events(13.0)] == [codec.encode(e) for e in one]
    e8 = [(e.action, e.cancel_reason, e.ts) for e in one if e.vehicle_id == "CFD-E8"]
    assert e8 == [("create", None, at(starts)), ("cancel", "expired", at(cfg.dispatch_cover_s))]


@pytest.mark.parametrize("phase, trigger", [("idle", "dispatched"), ("active", "reckoned")])
def test_the_engine_consults_the_lifecycle_table_for_both(monkeypatch, phase, trigger):
    table = {p: dict(edges) for p, edges in engine.LIFECYCLE.items()}
    del table[phase][trigger]
    monkeypatch.setattr(lifecycle, "LIFECYCLE", table)  # where it lives
    with pytest.raises(AssertionError, match=f"no transition from '{phase}' on '{trigger}'"):
        ticked([east_route(), *run_east(10)], [60.0], DISPATCH)


# ---- the dispatch hold: the unit's own fix may come first -------------------------------------


def test_a_held_dispatch_alert_starts_at_its_due_time_stamped_then():
    state, events = engine.step(None, east_route(), now=at(0.0), cfg=HELD)
    assert events == [] and state.dispatch_due == at(2.0)
    state, early = engine.tick(state, now=at(1.9), cfg=HELD)
    assert early == [] and state.dispatch_due == at(2.0)
    state, (created,) = engine.tick(state, now=at(5.0), cfg=HELD)
    assert (created.action, created.ts, created.kind) == ("create", at(2.0), "approaching")
    assert created.expires_at == at(HELD.dispatch_cover_s)  # from the route, as unheld
    assert state.dispatch_due is None and state.alert is not None
    assert state.alert.from_dispatch
    assert engine.tick(state, now=at(6.0), cfg=HELD)[1] == []  # once


def test_the_units_own_emergency_fix_within_the_hold_makes_the_only_zone():
    _, events = ticked([east_route(), *run_east(10, start=0.5)], [1.0, 2.0, 3.0, 30.0], HELD)
    creates = [e for e in events if e.action == "create"]
    assert len(creates) == 1 and creates[0].ts == at(0.5)  # the fix's, not a dispatch zone
    assert creates[0].lat == pytest.approx(LAT0) and events[0] is creates[0]
    # unheld: a dispatch create, then the fix's update (two zones, two messages)
    _, unheld = ticked([east_route(), *run_east(10, start=0.5)], [1.0, 2.0, 3.0, 30.0], DISPATCH)
    assert [e.action for e in unheld[:2]] == ["create", "update"]


def test_a_fix_past_the_due_time_catches_up_on_the_held_dispatch_alert_without_a_tick():
    turnout = [fix(t, 0.0, status="dispatched", lights_sirens=False, speed_mps=0.0)
               for t in (1.0, 5.0)]
    _, events = ticked([east_route(), *turnout, *run_east(5, start=30.0)], [], HELD)
    assert [(e.action, e.ts) for e in events[:2]] == [("create", at(2.0)), ("update", at(30.0))]


def test_a_driver_ticks_a_unit_whose_dispatch_alert_is_held():
    driver: Driver[str] = Driver(HELD)
    driver.handle(ROUTES, codec.encode(east_route()))
    assert driver.live == {"CFD-E7"}  # held: the tick must look at it
    assert [e.action for e in driver.tick(at(3.0))] == ["create"]
    assert driver.live == {"CFD-E7"} and driver.store.get("CFD-E7").alert is not None


def test_zones_built_at_once_go_through_engine_warning_zone_for_steps_and_ticks(monkeypatch):
    """bench/engine_run.py times zone builds by replacing ``engine.warning_zone`` (in this tree
    and in old ones): the zones of fixes and of dead-reckoning ticks (``broker.ticks``, which
    the engine hands its zone builder) must all be built through it."""
    built: list[str] = []
    real = engine.warning_zone

    def counted(req, **kw):
        built.append(req.kind)
        return real(req, **kw)

    monkeypatch.setattr(engine, "warning_zone", counted)
    _, events = ticked([east_route(), *run_east(10)], [float(t) for t in range(11, 120)])
    made = [e for e in events if e.action != "cancel"]
    assert any(e.ts > at(10.0) for e in made)  # dead-reckoning steps among them
    assert len(built) == len(made)


def _story(events: list) -> list[tuple[str, str | None, float]]:
    return [(e.action, e.cancel_reason, (e.ts - at(0.0)).total_seconds()) for e in events]


@pytest.mark.parametrize("ticks", [[], [95.0], [60.0, 95.0]])
def test_a_dispatch_zone_kept_by_turn_out_fixes_expires_at_its_cover_with_or_without_ticks(
    ticks: list[float],
) -> None:
    """``engine.step`` alone does what a tick would have done by each message's time: a
    dispatch alert kept by "dispatched" fixes (at 50 and 100) past its cover (90 s) expires at
    90 whether a tick ran (at 95, at 60 and 95) or none did. Before, only a tick ended it: with
    no tick the fix at 100 found it live and it never ended."""
    state, events = engine.step(None, east_route(), now=at(0.0), cfg=DISPATCH)
    for t in sorted([50.0, 100.0, *ticks]):
        if t in ticks:
            state, evs = engine.tick(state, now=at(t), cfg=DISPATCH)
        else:
            f = fix(t, 0.0, status="dispatched", lights_sirens=False)
            state, evs = engine.step(state, f, now=f.ts, cfg=DISPATCH)
        events += evs
    assert _story(events) == [("create", None, 0.0), ("cancel", "expired", 90.0)]
