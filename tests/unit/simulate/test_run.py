"""The simulator's run (broker/simulate/run.py) in the parts that need no SUMO."""

from __future__ import annotations

from broker.simulate.run import _shape_upto


def test_the_cad_route_stops_where_the_unit_will_stop_on_the_scene_edge() -> None:
    edge = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)]  # 200 m, bent halfway
    assert _shape_upto(edge, 0.25) == [(0.0, 0.0), (50.0, 0.0)]
    assert _shape_upto(edge, 0.75) == [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)]
    assert _shape_upto(edge, 1.5) == edge  # never past the edge's end


def _split(msg) -> tuple[str, bytes]:
    """A message of the split ingest form: a fix without its status, or a CAD status."""
    import json

    from broker import codec
    from broker.drive import CAD_STATUS, POSITIONS
    from broker.model import UnitStatus

    if isinstance(msg, UnitStatus):
        return CAD_STATUS, codec.encode(msg)
    pos = json.loads(codec.encode(msg))
    for key in ("status", "lights_sirens", "incident_id"):
        del pos[key]
    return POSITIONS, json.dumps(pos).encode()


def test_a_status_of_a_unit_without_a_live_alert_acts_at_the_simulators_clock_move() -> None:
    """A unit heard at 0 s with no status (no alert), CAD's ``responding`` at 2 s, no fix
    after it: the status acts at the simulator's first clock move past its grace (its alert
    created, stamped 2 s), as at the worker's tick and the replay's clock move. Before, the
    simulator's clock move only ticked the live units (``Driver.tick``): the status waited for
    the unit's next message."""
    from broker.drive import Driver
    from broker.model import UnitStatus
    from broker.settings import EngineConfig
    from broker.simulate.run import EngineFeed
    from tests.conftest import at, fix

    cfg = EngineConfig()
    msgs = [fix(0.0), UnitStatus(vehicle_id="CFD-E7", ts=at(2.0), status="responding",
                                 incident_id="F1", lights_sirens=True)]
    feed = EngineFeed(cfg, None)
    worker = Driver(cfg)  # the worker's driver: its tick timer moves the clock
    replay = Driver(cfg, tick_every_s=1.0)  # the replay's: its event clock does
    for msg in msgs:
        topic, raw = _split(msg)
        feed.send(raw, topic, msg.ts)
        worker.handle(topic, raw, received_at=msg.ts)
        replay.handle(topic, raw, received_at=msg.ts)
    assert feed.events == []
    moved = at(2.0 + cfg.status_grace_s + 0.5)
    feed.tick(moved)
    by_worker = worker.pass_time(moved, worker.live, worker.pending)
    by_replay = replay.handle(*_split(fix(moved.timestamp() - at(0.0).timestamp(),
                                          vehicle_id="CFD-L2")), received_at=moved).events
    assert [(e.action, e.ts) for e in feed.events] == [("create", at(2.0))]
    assert feed.events == by_worker == by_replay
