"""The events of one alert never go back in time: a late message acts at the alert's last event
(partners time events by ``ts``)."""

from __future__ import annotations

import pytest

from broker import codec
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, Driver
from broker.settings import EngineConfig
from tests.conftest import at, east_route, fix
from tests.unit.drive.split_form import cad_status, split_fix

CFG = EngineConfig()


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
    driver.handle(POSITIONS, split_fix(-5.0))  # no status yet: not in emergency mode
    driver.handle(CAD_STATUS, cad_status(1.0, "available", lights=False, incident=None))
    _held_dispatch(driver)
    events = driver.handle(POSITIONS, codec.encode(fix(6.0, vehicle_id="CFD-L2"))).events
    # the status (1 s) is restated against the dispatch alert created at 2 s: not before it
    assert _times(events) == [("cancel", 2, 2.0)]


def _reckoned(driver: Driver) -> None:
    """CFD-E7 responding on its route from 0 s, then silent: another unit's fix at 50 s sends
    its dead-reckoning updates, stamped 30-50 s."""
    driver.handle(CAD_STATUS, cad_status(-1.0, "responding"))
    driver.handle(ROUTES, codec.encode(east_route(t=-1.0)))
    assert _times(driver.handle(POSITIONS, split_fix(0.0)).events) == [("create", 1, 0.0)]
    ticked = driver.handle(POSITIONS, codec.encode(fix(50.0, vehicle_id="CFD-L2"))).events
    assert _times([e for e in ticked if e.vehicle_id == "CFD-E7"]) == [
        ("update", 2, 30.0), ("update", 3, 35.0), ("update", 4, 40.0), ("update", 5, 45.0),
        ("update", 6, 50.0)]


def test_a_status_received_after_dead_reckoning_updates_cancels_after_them() -> None:
    driver = Driver(CFG, tick_every_s=1.0)
    _reckoned(driver)
    # past its grace by the driver's clock (50 s) as it comes: it acts as it is taken
    events = driver.handle(
        CAD_STATUS, cad_status(33.0, "available", lights=False, incident=None)).events
    assert _times(events) == [("cancel", 7, 50.0)]
    later = driver.handle(POSITIONS, codec.encode(fix(51.0, vehicle_id="CFD-L2"))).events
    assert [e for e in later if e.vehicle_id == "CFD-E7"] == []


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
