"""Time in the worker: what a fix's timestamp is judged against, how clocks seed, the feed clock.

A fix dated in the future must never silence a unit, a partition or a feed (issue 14).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker import codec
from broker.drive import POSITIONS, Driver
from broker.engine import forget_future_fix
from broker.model import VehicleState
from broker.settings import EngineConfig
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.states import newest_fixes
from broker.streams.topics import TopicNames
from broker.streams.web import FeedClock
from tests.conftest import at, fix
from tests.unit.adapters.factory import alert

CFG = EngineConfig()
WALL = at(3600.0)  # the worker's wall clock in these tests


def runtime() -> Runtime:
    return Runtime(settings=StreamSettings(), names=TopicNames.for_prefix(), utc=lambda: WALL)


def test_a_fix_is_judged_against_its_record_timestamp_never_later_than_the_wall_clock() -> None:
    rt = runtime()
    sent = (WALL - timedelta(minutes=5)).timestamp()
    assert rt.received_at(sent) == WALL - timedelta(minutes=5)  # a backlog: when it was sent
    assert rt.received_at((WALL + timedelta(days=30)).timestamp()) == WALL  # a producer's lie
    assert rt.received_at(None) == WALL and rt.received_at(0.0) == WALL  # no timestamp
    # any CreateTime a producer sets, past the year 9999 too (fromtimestamp raised ValueError
    # out of the agent there: the partition stalled, its record never dead-lettered)
    assert rt.received_at(253402300800.0) == WALL and rt.received_at(1e300) == WALL


def test_a_year_9000_fix_is_refused_whatever_the_stream_carried_before() -> None:
    rt = runtime()
    future = codec.encode(fix(0.0)).replace(b"2026-11-25", b"9000-11-25")
    driver = Driver(CFG)  # a fresh worker: no partition clock, no state
    handled = driver.handle(POSITIONS, future, received_at=rt.received_at(None))
    assert handled.rejection is not None and handled.rejection.reason == "future_timestamp"
    # a sequence of fixes each just inside the skew cannot walk the reference forward
    ahead = WALL + timedelta(seconds=CFG.max_future_skew_s - 1)
    assert driver.handle(POSITIONS, codec.encode(fix(3659.0)), received_at=WALL).rejection is None
    step = fix((ahead - at(0)).total_seconds() + 50)
    refused = driver.handle(POSITIONS, codec.encode(step), received_at=rt.received_at(None))
    assert refused.rejection is not None


def test_a_stored_future_fix_is_forgotten_and_its_alert_cancelled() -> None:
    """A state from before the wall-clock check (a device clock years ahead, in the changelog)."""
    state = Driver(CFG).step(fix(10 ** 9))[0]  # year ~2058: accepted with no reference at all
    assert state.alert is not None
    repaired, events = forget_future_fix(state, now=WALL, cfg=CFG)
    assert repaired.last_fix is None and repaired.alert is None
    assert [(e.action, e.cancel_reason, e.ts) for e in events] == [("cancel", "stale", WALL)]
    assert forget_future_fix(repaired, now=WALL, cfg=CFG) == (repaired, [])


def test_a_unit_silenced_by_a_future_fix_speaks_again_through_the_worker_driver() -> None:
    driver = Driver(CFG)
    driver.step(fix(10 ** 9))  # the legacy future state
    real = driver.handle(POSITIONS, codec.encode(fix(3600.0, 10.0)), received_at=WALL)
    actions = [e.action for e in real.events]
    assert actions == ["cancel", "create"]  # the bogus alert ends, the real one starts
    assert real.state is not None and real.state.last_fix is not None
    assert real.state.last_fix.ts == at(3600.0)


def test_partition_clocks_seed_from_the_newest_trusted_fix() -> None:
    def state(vid: str, t: float) -> VehicleState:
        return VehicleState(vehicle_id=vid, last_fix=fix(t, vehicle_id=vid))

    states = {
        b"OLD": state("OLD", 10.0),  # a unit parked since morning: not the partition's clock
        b"NEW": state("NEW", 3500.0),
        b"LIAR": state("LIAR", 10 ** 9),  # dated beyond the wall clock: never a clock
        b"OTHER": state("OTHER", 3000.0),
    }
    part = {b"OLD": 1, b"NEW": 1, b"LIAR": 1, b"OTHER": 2}
    trusted = WALL + timedelta(seconds=60)
    assert newest_fixes(states, part.__getitem__, trusted) == {1: at(3500.0), 2: at(3000.0)}
    # a device ahead within the skew (taken, its record's time the wall clock's): a clock seeded
    # from it put every other unit of its partition 45 s behind, cancelled as stale by the
    # tick or refused as late (Driver.late) until the wall clock caught up
    states[b"AHEAD"] = state("AHEAD", 3645.0)
    part[b"AHEAD"] = 2
    assert newest_fixes(states, part.__getitem__, trusted) == {1: at(3500.0), 2: at(3645.0)}
    assert newest_fixes(states, part.__getitem__, trusted, upto=WALL) == {
        1: at(3500.0), 2: WALL}


def test_the_feed_clock_ignores_alerts_dated_beyond_the_wall_clock() -> None:
    """With ``BROKER_FEED_CLOCK=event`` (the worker's default is the wall clock itself)."""
    mono = [100.0]
    clock = FeedClock(event_time=True, wall=lambda: mono[0],
                      utc=lambda: datetime(2026, 11, 25, 14, 5, tzinfo=UTC))
    live = alert("create", 1)
    hostile = alert("create", 1, at=live.ts + timedelta(days=365 * 70))
    assert clock.now([live, hostile]) == live.ts  # the year-2096 alert does not move it
    mono[0] += 5.0
    assert clock.now([live, hostile]) == live.ts + timedelta(seconds=5)


def test_a_unit_cad_spoke_of_recently_is_not_idle() -> None:
    """The join keeps a unit's CAD status in its state: that counts as hearing of it, and a
    unit CAD alone speaks of still leaves the table once CAD falls silent (bounded state)."""
    from broker.model import UnitStatus, VehicleState
    from broker.streams.states import is_idle

    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    said = UnitStatus(vehicle_id="E1", ts=now - timedelta(hours=1), status="available")
    state = VehicleState(vehicle_id="E1", cad=said)
    assert not is_idle(state, now, timedelta(hours=6))
    assert is_idle(state, now, timedelta(minutes=30))


def test_a_device_running_ahead_does_not_move_its_partitions_clock() -> None:
    """A fix 45 s ahead of its record's time is taken (the codec allows 60 s), but the
    partition's clock, which every unit on it is ticked by, goes no further than the record's
    time: else the other units' last fixes looked 45 s old and were cancelled as stale."""
    rt = runtime()
    rt.processed("avl.positions", 0, 0, WALL + timedelta(seconds=45), WALL)
    assert rt.clocks.event_time(0) == WALL
    rt.processed("avl.positions", 0, 1, WALL - timedelta(minutes=5), WALL)  # a backlog: as is
    rt.processed("avl.positions", 1, 0, WALL - timedelta(minutes=5), WALL)
    assert rt.clocks.event_time(1) == WALL - timedelta(minutes=5)
