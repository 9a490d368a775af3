"""The one driver loop: decode by topic, step, keep states, tick the live units only, build a
tick's zones together."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from broker import codec, engine
from broker.drive import CAD_STATUS, POSITIONS, ROUTES, DictStore, Driver
from broker.failure import Failure, FailurePolicy, StopWork
from broker.geo.roads import RoadNetwork
from broker.geo.zone_batch import ZoneBatch
from broker.replay import load_messages
from broker.settings import EngineConfig
from tests.conftest import at, drive, east_route, fix
from tests.unit.drive.split_form import as_records, cad_status

CFG = EngineConfig()


def test_handling_messages_gives_what_folding_the_engine_gives() -> None:
    msgs = [east_route(), *[fix(float(t), 15.0 * t) for t in range(1, 30)]]
    driver = Driver(CFG)
    events = [ev for topic, raw in as_records(msgs) for ev in driver.handle(topic, raw).events]
    state, expected = drive(msgs, CFG)
    assert events == expected
    assert driver.states["CFD-E7"] == state
    assert driver.live == {"CFD-E7"}


def test_the_drivers_memo_keeps_each_route_projected_once() -> None:
    driver = Driver(CFG)
    for topic, raw in as_records([east_route(), *[fix(float(t), 15.0 * t) for t in range(1, 5)]]):
        driver.handle(topic, raw)
    assert len(driver.memo) == 1  # an empty memo is falsy: it must still be the one used


def test_a_refused_message_is_a_rejection_and_changes_nothing() -> None:
    driver = Driver(CFG)
    handled = driver.handle(POSITIONS, b'{"vehicle_id": "X"}')
    assert handled.rejection is not None and handled.rejection.reason == "missing_field"
    assert handled.events == [] and driver.states == {} and driver.clock is None


def test_a_message_on_another_partition_than_its_vehicles_is_misrouted_and_changes_nothing(
) -> None:
    """The worker's driver knows each vehicle id's partition: a fix, route or status that came
    on another (a producer not keying by the vehicle id) is refused before it touches a state.
    Taken, the worker owning that partition made a second create of the unit's alert id and
    wrote the unit's state into the owner's changelog partition. The replay (no partitions)
    takes it as before."""
    partition_of = {"CFD-E7": 3}.__getitem__
    worker = Driver(CFG, partition_of=partition_of)
    created = fix(0.0)
    messages = [(POSITIONS, codec.encode(created)), (ROUTES, codec.encode(east_route())),
                (CAD_STATUS, cad_status(0.0, "responding"))]
    for topic, raw in messages:
        handled = worker.handle(topic, raw, received_at=at(1.0), partition=1)
        assert handled.rejection is not None and handled.rejection.reason == "misrouted"
        assert handled.rejection.raw == raw and handled.events == []
        assert "belongs to input partition 3" in handled.rejection.detail
        assert "came on partition 1" in handled.rejection.detail
    assert worker.states == {} and worker.live == set() and worker.clock is None
    taken = worker.handle(POSITIONS, codec.encode(created), received_at=at(1.0), partition=3)
    assert taken.rejection is None and [e.action for e in taken.events] == ["create"]
    replay = Driver(CFG)  # no partition_of: nothing to judge by
    for topic, raw in messages:
        assert replay.handle(topic, raw, partition=1).rejection is None
    assert Driver(CFG, partition_of=partition_of).handle(*messages[0]).rejection is None


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


@pytest.mark.parametrize(("topic", "decoder"), [
    (POSITIONS, "decode_position"), (ROUTES, "decode_route"), (CAD_STATUS, "decode_status"),
])
def test_a_decoder_bug_goes_through_the_failure_policy(monkeypatch, topic, decoder) -> None:
    """Junk is a Rejection; a decoder that raises is a bug of ours on these bytes: parked as
    ``decode_error`` with them (or a stop, for an outage), the driver going on. It was raised
    out of ``handle`` (the decoding sat before its ``try``): in the worker, out of the agent's
    loop, which Faust restarted with the message un-acked, the partition's commits frozen
    behind it and nothing stopping."""
    records: list[Failure] = []
    driver = Driver(CFG, failures=FailurePolicy(dead_letter=records.append))
    monkeypatch.setattr(codec, decoder, lambda *a, **k: 1 / 0)
    raw = b'{"vehicle_id": "CFD-E7"}'
    handled = driver.handle(topic, raw, key="CFD-E7")
    assert handled.failed and handled.msg is None and handled.rejection is None
    assert handled.events == [] and driver.states == {}
    # the record's own key kept with it: a dead letter replayed needs it (it was "")
    assert [(f.reason, f.key, f.raw, f.source) for f in records] == [
        ("decode_error", "CFD-E7", raw, topic)]
    monkeypatch.undo()
    assert not driver.handle(POSITIONS, codec.encode(fix(0.0))).failed  # and it goes on


def test_a_decoder_outage_stops_and_by_default_a_decoder_bug_propagates(monkeypatch) -> None:
    """An outage is a stop, never parked; the in-process tools (replay, simulate) raise it as
    it happened, as an engine bug."""
    def down(*a: object, **k: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(codec, "decode_position", down)
    records: list[Failure] = []
    with pytest.raises(StopWork) as stop:
        Driver(CFG, failures=FailurePolicy(dead_letter=records.append)).handle(POSITIONS, b"{}")
    assert stop.value.failure.site == "decode" and records == []
    with pytest.raises(OSError, match="disk gone"):
        Driver(CFG).handle(POSITIONS, b"{}")


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


INCIDENTS = Path(__file__).resolve().parents[3] / "fixtures" / "incidents"
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


def test_every_name_imported_from_broker_drive_is_its_public_name() -> None:
    """``broker.drive`` is a package of one module per concern; each name the shells, the
    benchmarks, the scripts and the tests import from it is re-exported there (in ``__all__``:
    mypy's ``no_implicit_reexport`` checks only broker/ and adapters/), and ``settle_gc`` is an
    attribute of the module itself, where ``bench/engine_run.py`` looks it up in any tree."""
    import ast
    import sys

    import broker.drive

    root = Path(__file__).resolve().parents[3]
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
