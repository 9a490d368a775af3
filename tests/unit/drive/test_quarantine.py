"""A unit whose step, tick or restatement raises: dead-lettered once, its alert cancelled,
quarantined until its next message (broker/drive/quarantine.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker import codec, engine
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, Driver
from broker.failure import Failure, FailurePolicy
from broker.model import VehicleState
from broker.settings import EngineConfig
from tests.conftest import at, east_route, fix
from tests.unit.drive.split_form import as_records, cad_status, split_fix

CFG = EngineConfig()


def test_a_unit_whose_tick_fails_is_dead_lettered_once_and_its_alert_cancelled(monkeypatch):
    """A tick that raises on a unit's state: one dead letter, not one a tick (the unit is
    quarantined), and its live alert is cancelled then, not left to lapse on the partners'
    maps; a new message of the unit lets it be ticked again."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    msgs = [east_route(), *[fix(float(t), 15.0 * t) for t in range(1, 6)]]
    for topic, raw in as_records(msgs):
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
    driver.handle(CAD_STATUS, cad_status(0.0, "responding"))
    for t in range(1, 4):
        driver.handle(POSITIONS, split_fix(float(t), 15.0 * t))
    assert driver.states["CFD-E7"].alert is not None
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    driver.tick(at(20.0))
    assert driver.quarantined == {"CFD-E7"}
    late = driver.handle(CAD_STATUS, cad_status(-1.0, "available", lights=False))
    assert late.rejection is not None and late.rejection.reason == "stale_status"
    assert driver.quarantined == {"CFD-E7"}
    taken = driver.handle(CAD_STATUS, cad_status(21.0, "available", lights=False))
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
    status = cad_status(100.0, "available", lights=False)
    out += driver.handle(CAD_STATUS, status, received_at=None).events
    out += driver.handle(POSITIONS, split_fix(110.0), received_at=None).events
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
    driver.handle(CAD_STATUS, cad_status(0.0, "responding"))
    for t in range(1, 4):
        driver.handle(POSITIONS, split_fix(float(t), 15.0 * t))
    driver.handle(CAD_STATUS, cad_status(4.0, "on_scene"))
    state = driver.states["CFD-E7"]
    assert state.alert is not None and driver.pending == {"CFD-E7"}
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    events = []
    for t in range(8, 20):  # the status is due from 7 s (status_grace_s)
        if shell == "worker":  # the worker's tick (broker/streams/agents.py: tick_or_stop)
            events += driver.restate(at(float(t)), set(driver.pending))
            events += driver.tick(at(float(t)), set(driver.live))
        else:  # a clock move: another unit's fix
            events += driver.handle(POSITIONS, split_fix(float(t), vehicle_id="CFD-L2")).events
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
    driver.handle(CAD_STATUS, cad_status(0.0, "responding"))
    for t in range(1, 4):
        driver.handle(POSITIONS, split_fix(float(t), 15.0 * t))
    driver.handle(CAD_STATUS, cad_status(4.0, "on_scene"))
    alert = driver.states["CFD-E7"].alert
    assert alert is not None
    monkeypatch.setattr(engine, "tick", lambda *a, **k: 1 / 0)
    raw = split_fix(8.0, 60.0)
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
