"""The alert lifecycle, GPS sanity and zones of the pure engine: no Kafka, no loop, no clock."""

from __future__ import annotations

import itertools
import typing
from datetime import timedelta

import msgspec
import pytest
import shapely
from shapely.geometry import shape

from broker import engine, lifecycle
from broker.engine import LIFECYCLE, alert_id_for, tick
from broker.geo.memo import GeoMemo
from broker.model import CancelReason
from broker.settings import EngineConfig
from tests.conftest import FROM_FIRST_FIX, LAT0, LON0, M_PER_DEG_LON, at, drive, east_route, fix


def run_east(seconds: int, speed: float = 15.0, start: float = 1.0, **kw):
    """Fixes of a unit driving east at ``speed`` m/s from t=start, one per second."""
    return [fix(start + i, speed * i, speed_mps=speed, **kw) for i in range(seconds)]


def point_east(m: float) -> shapely.Point:
    return shapely.Point(LON0 + m / M_PER_DEG_LON, LAT0)


def test_first_emergency_fix_creates_alert_with_stable_id():
    _, events = drive([east_route(), fix(1.0)])
    assert [e.action for e in events] == ["create"]
    ev = events[0]
    assert ev.alert_id == alert_id_for("CFD-E7", "F1", "approaching")
    assert ev.version == 1 and ev.kind == "approaching"
    assert ev.expires_at > ev.ts


def test_updates_only_after_moving_far_enough_and_versions_increase(cfg):
    _, events = drive([east_route(), *run_east(30)])
    assert events[0].action == "create"
    assert all(e.action == "update" for e in events[1:])
    versions = [e.version for e in events]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    # 15 m/s: 50 m takes 4 fixes, so about one update every 4 s, not one per fix
    gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(events)]
    assert min(gaps) >= cfg.min_update_interval_s
    assert 5 <= len(events) <= 10


def test_min_update_interval_holds_for_a_fast_unit():
    cfg = EngineConfig(dispatch_cover_m=0.0, min_update_interval_s=5.0)
    _, events = drive([east_route(), *run_east(30, speed=40.0)], cfg)
    gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(events)]
    assert gaps and min(gaps) >= 5.0


def test_an_update_interval_of_inf_means_never_not_an_error():
    # a setting may say inf (TOML accepts it): the interval's threshold (broker.durations)
    # once raised on it for every fix after the create
    cfg = msgspec.toml.decode(b"min_update_interval_s = inf\ndispatch_cover_m = 0.0",
                              type=EngineConfig)
    _, events = drive([east_route(), *run_east(30)], cfg)
    assert [e.action for e in events] == ["create"]


def test_an_update_interval_past_half_the_ttl_still_refreshes_the_expiry():
    # "no updates" must not let a responding unit's alert expire at partners every minute
    cfg = msgspec.toml.decode(b"min_update_interval_s = inf\ndispatch_cover_m = 0.0",
                              type=EngineConfig)
    _, events = drive([east_route(), *run_east(150, speed=10.0)], cfg)
    assert [e.action for e in events][:1] == ["create"]
    assert all(e.action == "update" for e in events[1:]) and len(events) >= 4
    for a, b in itertools.pairwise(events):  # each refresh before the last expiry, not sooner
        assert b.ts < a.expires_at
        assert (b.ts - a.ts).total_seconds() >= cfg.alert_ttl_s / 2


def test_standing_unit_is_not_updated_until_its_expiry_needs_refreshing(cfg):
    fixes = [fix(1.0 + i, 0.0, speed_mps=0.0) for i in range(40)]
    _, events = drive([east_route(), *fixes])
    assert [e.action for e in events] == ["create", "update"]
    refresh_after = (events[1].ts - events[0].ts).total_seconds()
    assert refresh_after >= cfg.alert_ttl_s / 2


def test_leaving_emergency_cancels_at_once():
    fixes = [*run_east(5), fix(6.0, 75.0, status="returning", lights_sirens=False)]
    _, events = drive([east_route(), *fixes])
    assert events[-1].action == "cancel"
    assert events[-1].cancel_reason == "left_emergency"
    assert events[-1].ts == at(6.0)


def test_responding_without_lights_is_not_emergency():
    _, events = drive([east_route(), *run_east(10, lights_sirens=False)])
    assert events == []


def test_available_unit_never_produces_events():
    _, events = drive(run_east(20, status="available", lights_sirens=False))
    assert events == []


def test_tick_cancels_a_silent_unit_stamped_when_it_went_stale():
    # moving on its route it would dead-reckon first
    cfg = EngineConfig(dispatch_cover_m=0.0, dead_reckoning_max_s=0.0)
    state, _events = drive([east_route(), *run_east(5)], cfg)
    assert state is not None and state.alert is not None
    state2, none_yet = tick(state, now=at(5.0 + cfg.stale_timeout_s - 1), cfg=cfg)
    assert none_yet == [] and state2.alert is not None
    state3, cancelled = tick(state, now=at(500.0), cfg=cfg)
    assert [e.action for e in cancelled] == ["cancel"]
    assert cancelled[0].cancel_reason == "stale"
    assert cancelled[0].ts == at(5.0) + timedelta(seconds=cfg.stale_timeout_s)
    assert state3.alert is None


def test_fix_after_a_long_dropout_cancels_stale_then_recreates_same_id_higher_version(cfg):
    # longer than the dead reckoning too (test_reckoning: the dropouts it bridges)
    fixes = [*run_east(5), fix(5.0 + cfg.dead_reckoning_max_s + 15, 1300.0)]
    _, events = drive([east_route(), *fixes])
    actions = [e.action for e in events]
    assert actions[-2:] == ["cancel", "create"]
    assert events[-2].cancel_reason == "stale"
    assert events[-1].alert_id == events[0].alert_id
    assert events[-1].version == events[-2].version + 1


def test_every_event_carries_the_version_its_life_began_at(cfg):
    """A re-created alert continues its id's version count, so its life need not begin at v1:
    each event says which version its life's create had (CAP feeds reference that message)."""
    fixes = [*run_east(5), *run_east(10, start=5.0 + cfg.dead_reckoning_max_s + 15)]
    _, events = drive([east_route(), *fixes])
    creates = [e for e in events if e.action == "create"]
    assert len(creates) == 2 and creates[1].version > 1
    for e in events:
        began = max((c for c in creates if c.version <= e.version), key=lambda c: c.version)
        assert e.first_version == began.version
        assert e.started_at == began.started_at == began.ts


def test_duplicates_and_out_of_order_fixes_are_counted_and_ignored():
    fixes = [fix(1.0, 0.0), fix(2.0, 15.0), fix(2.0, 15.0), fix(1.5, 7.0), fix(3.0, 30.0)]
    state, events = drive([east_route(), *fixes])
    assert state is not None
    assert state.counters.duplicates == 1
    assert state.counters.out_of_order == 1
    assert state.last_fix is not None and state.last_fix.ts == at(3.0)
    assert [e.action for e in events] == ["create"]


def test_a_single_jump_is_rejected_and_the_track_goes_on():
    fixes = [*run_east(5), fix(6.0, 75.0 + 300.0, north_m=300.0), fix(7.0, 90.0)]
    state, _ = drive([east_route(), *fixes])
    assert state is not None
    assert state.counters.jumps == 1
    assert state.last_fix is not None and state.last_fix.ts == at(7.0)


def test_repeated_jumps_re_anchor_the_unit(cfg):
    far = [fix(6.0 + i, 2_000.0 + 15 * i) for i in range(cfg.jump_reanchor_after)]
    state, _ = drive([east_route(), *run_east(5), *far])
    assert state is not None
    assert state.counters.jumps == cfg.jump_reanchor_after - 1
    assert state.last_fix == far[-1]


def test_arriving_on_scene_cancels_approaching_and_creates_on_scene():
    fixes = [*run_east(5), fix(6.0, 75.0, status="on_scene", lights_sirens=False, speed_mps=0)]
    _, events = drive([east_route(), *fixes])
    cancel, create = events[-2:]
    assert (cancel.action, cancel.kind, cancel.cancel_reason) == (
        "cancel",
        "approaching",
        "kind_changed",
    )
    assert (create.action, create.kind) == ("create", "on_scene")
    assert create.alert_id != cancel.alert_id
    assert create.alert_id == alert_id_for("CFD-E7", "F1", "on_scene")
    zone = shape(create.zone)
    assert zone.covers(point_east(75.0 + 150.0))  # within the 200 m on-scene circle


def test_zone_covers_the_unit_and_the_stretch_ahead(cfg):
    _, events = drive([east_route(), fix(1.0, 0.0, speed_mps=20.0)])
    zone = shape(events[0].zone)
    reach = max(cfg.lookahead_floor_m, 20.0 * cfg.lookahead_s)
    assert zone.covers(point_east(0.0))
    assert zone.covers(point_east(reach - 20.0))
    assert not zone.covers(point_east(reach + cfg.proximity_radius_m + 100.0))


def test_stretch_ahead_never_shrinks_while_the_unit_brakes():
    fast = [fix(1.0 + i, 20.0 * i, speed_mps=20.0) for i in range(10)]
    slow = [fix(11.0 + i, 180.0 + 3.0 * i, speed_mps=3.0) for i in range(30)]
    _, events = drive([east_route(), *fast, *slow])
    far_point = point_east(20.0 * 9 + 20.0 * 45 - 50.0)
    covering = [shape(e.zone).covers(far_point) for e in events if e.action != "cancel"]
    first = covering.index(True)
    assert all(covering[first:]), "a point once warned must stay warned while the unit brakes"


def test_new_route_triggers_an_update():
    msgs = [east_route(), *run_east(3)]
    new_route = east_route(2_000.0, t=3.5)
    _, events = drive([*msgs, new_route, fix(4.5, 50.0)])
    assert events[-1].action == "update"


def test_without_route_the_zone_reaches_ahead_along_the_heading(cfg):
    _, events = drive([fix(1.0, 0.0, speed_mps=15.0, heading_deg=90.0)])
    zone = shape(events[0].zone)
    assert zone.covers(point_east(cfg.lookahead_floor_m + 200.0))
    assert not zone.covers(point_east(-(cfg.proximity_radius_m + 50.0)))
    assert len(events[0].path) == 2


def test_poor_accuracy_widens_the_zone():
    _, good = drive([east_route(), fix(1.0, accuracy_m=3.0)])
    _, poor = drive([east_route(), fix(1.0, accuracy_m=60.0)])
    assert shape(poor[0].zone).area > shape(good[0].zone).area * 1.3


def test_zone_is_valid_ccw_and_under_the_vertex_cap(cfg):
    _, events = drive([east_route(), *run_east(60)])
    for ev in events:
        zone = shape(ev.zone)
        assert zone.is_valid
        assert shapely.get_num_coordinates(zone) <= cfg.max_vertices
        for poly in shapely.get_parts(zone):
            assert poly.exterior.is_ccw


def test_route_of_another_incident_is_not_used():
    other = east_route()
    other = type(other)(
        vehicle_id=other.vehicle_id,
        incident_id="F-other",
        ts=other.ts,
        destination=other.destination,
        route=other.route,
    )
    _, events = drive([other, fix(1.0)])
    assert len(events[0].path) == 2  # dead-reckoned, not along the other incident's route


def test_engine_is_deterministic():
    msgs = [east_route(), *run_east(40)]
    assert drive(msgs)[1] == drive(msgs)[1]


def test_lifecycle_table_matches_what_the_engine_does():
    # every cancel reason the engine can emit (the model's CancelReason) is a trigger the table
    # knows, and the table names no cancel the engine cannot emit
    cancel_reasons = set(typing.get_args(CancelReason))
    assert cancel_reasons == set(LIFECYCLE["active"]) - {"moved", "reckoned"}
    for reason in ("left_emergency", "stale", "expired"):
        assert LIFECYCLE["active"][reason] == ("idle", "cancel")  # type: ignore[index]
    assert LIFECYCLE["active"]["kind_changed"] == ("active", "replace")
    assert LIFECYCLE["active"]["moved"] == ("active", "update")
    assert LIFECYCLE["idle"]["emergency"] == ("active", "create")
    assert LIFECYCLE["active"]["reckoned"] == ("active", "update")  # test_reckoning walks these
    assert LIFECYCLE["idle"]["dispatched"] == ("active", "create")
    # and the engine does walk those edges: create, update, cancel(kind_changed) + create,
    # cancel(left_emergency)
    scene = fix(7.0, 90.0, status="on_scene", speed_mps=0.0)
    done = fix(8.0, 90.0, status="returning", lights_sirens=False)
    _, events = drive([east_route(), *run_east(6), scene, done])
    steps = [(e.action, e.kind, e.cancel_reason) for e in events]
    assert steps[0] == ("create", "approaching", None)
    assert ("update", "approaching", None) in steps
    assert steps[-3:] == [
        ("cancel", "approaching", "kind_changed"),
        ("create", "on_scene", None),
        ("cancel", "on_scene", "left_emergency"),
    ]


def test_the_engine_consults_the_lifecycle_table(monkeypatch):
    # take the edge "active --kind_changed-->" out of the table: the engine refuses to walk it
    table = {phase: dict(edges) for phase, edges in LIFECYCLE.items()}
    del table["active"]["kind_changed"]
    monkeypatch.setattr(lifecycle, "LIFECYCLE", table)  # where it lives
    scene = fix(7.0, 90.0, status="on_scene", speed_mps=0.0)
    with pytest.raises(AssertionError, match="no transition from 'active' on 'kind_changed'"):
        drive([east_route(), *run_east(6), scene])


def test_a_unit_remembers_a_bounded_number_of_alert_versions():
    # one unit serving many incidents one after another: its state does not grow with them
    msgs = []
    for i in range(3 * engine.REMEMBERED_ALERTS):
        msgs.append(fix(10.0 * i, incident_id=f"F{i}"))
        msgs.append(fix(10.0 * i + 1, status="available", lights_sirens=False, incident_id=None))
    state, events = drive(msgs)
    assert len([e for e in events if e.action == "create"]) == 3 * engine.REMEMBERED_ALERTS
    assert len(state.versions) == engine.REMEMBERED_ALERTS
    # the newest are the ones kept: the last incident's alert id is there with its version
    assert state.versions[events[-1].alert_id] == events[-1].version


def test_step_rejects_unknown_message_types():
    import pytest

    with pytest.raises(TypeError):
        engine.step(None, "not a message", now=at(0), cfg=FROM_FIRST_FIX)  # type: ignore[arg-type]


def _network_with_side_street():
    """Main street along the route (two-way) and a one-way side street flowing into it at
    600 m east, from 400 m north; plus a parallel street 400 m south that never joins."""
    from broker.geo.roads import RoadNetwork

    def line(*pts: list[float]) -> dict:
        return {"type": "LineString", "coordinates": list(pts)}

    return RoadNetwork.from_features(
        [
            {
                "properties": {"name": "Main", "maxspeed_mps": 15},
                "geometry": line(ll(-200), ll(600), ll(3_000)),
            },
            {
                "properties": {"name": "Side", "oneway": True, "maxspeed_mps": 12},
                "geometry": line(ll(600, 400), ll(600)),
            },
            {
                "properties": {"name": "Parallel", "maxspeed_mps": 15},
                "geometry": line(ll(-200, -400), ll(3_000, -400)),
            },
        ]
    )


def test_with_roads_the_zone_covers_the_side_street_feeding_the_path_ahead():
    roads = _network_with_side_street()
    msgs = [east_route(), fix(1.0, 0.0, speed_mps=15.0)]
    with_roads = shape(drive(msgs, FROM_FIRST_FIX, roads=roads)[1][0].zone)
    without = shape(drive(msgs)[1][0].zone)
    side_point = shapely.Point(LON0 + 600 / M_PER_DEG_LON, LAT0 + 200 / 110_950.0)
    parallel_point = shapely.Point(LON0 + 600 / M_PER_DEG_LON, LAT0 - 400 / 110_950.0)
    assert with_roads.covers(side_point) and not without.covers(side_point)
    assert not with_roads.covers(parallel_point)
    assert with_roads.is_valid
    assert shapely.get_num_coordinates(with_roads) <= FROM_FIRST_FIX.max_vertices


def test_with_roads_a_junction_reached_later_is_walked_for_its_eta_up_to_approach_far_s():
    # Side joins 600 m ahead: at 15 m/s an ETA of 40 s, so its walk is approach_far_s (25 s,
    # 300 m at 12 m/s) rather than approach_s (20 s, 240 m); + the 20 m road band.
    roads = _network_with_side_street()
    msgs = [east_route(), fix(1.0, 0.0, speed_mps=15.0)]
    far_point = shapely.Point(LON0 + 600 / M_PER_DEG_LON, LAT0 + 280 / 110_950.0)
    covered = {}
    for far_s in (0.0, 25.0):
        cfg = EngineConfig(dispatch_cover_m=0.0, approach_far_s=far_s)
        covered[far_s] = shape(drive(msgs, cfg, roads=roads)[1][0].zone).covers(far_point)
    assert covered == {0.0: False, 25.0: True}


def test_with_roads_a_stopped_responding_unit_covers_its_road_behind_it():
    # Main is two-way at 15 m/s: 10 s (stopped_walk_s) behind the unit is 150 m; the point
    # 130 m behind is outside the 100 m circle and the stretch ahead, the one 200 m behind is
    # beyond the walk.
    roads = _network_with_side_street()
    behind = shapely.Point(LON0 + 1_370 / M_PER_DEG_LON, LAT0)
    beyond = shapely.Point(LON0 + 1_300 / M_PER_DEG_LON, LAT0)
    covered = {}
    for speed in (0.0, 15.0):
        msgs = [east_route(), fix(1.0, 1_500.0, speed_mps=speed)]
        zone = shape(drive(msgs, FROM_FIRST_FIX, roads=roads)[1][0].zone)
        assert zone.is_valid
        covered[speed] = (zone.covers(behind), zone.covers(beyond))
    assert covered == {0.0: (True, False), 15.0: (False, False)}


def test_with_roads_an_on_scene_unit_reaches_upstream_on_its_road():
    roads = _network_with_side_street()
    cfg = FROM_FIRST_FIX
    scene = fix(1.0, 1_500.0, status="on_scene", speed_mps=0.0, heading_deg=90.0)
    _, events = engine.step(None, scene, now=scene.ts, cfg=cfg, roads=roads)
    zone = shape(events[0].zone)
    upstream = shapely.Point(LON0 + (1_500 - 350) / M_PER_DEG_LON, LAT0)  # beyond the 200 m circle
    assert zone.covers(upstream)


def test_with_roads_an_on_scene_unit_walks_side_streets_only_for_on_scene_branch_s():
    """Main carries its traffic past the unit for on_scene_upstream_s; only part of a side
    street's traffic turns onto Main, so side streets get on_scene_branch_s from the unit."""
    roads = _network_with_side_street()
    scene = fix(1.0, 900.0, status="on_scene", speed_mps=0.0, heading_deg=90.0)
    # Side joins Main 300 m upstream (20 s at 15 m/s); this point is 100 m up Side (8.3 s)
    side = shapely.Point(LON0 + 600 / M_PER_DEG_LON, LAT0 + 100 / 110_950.0)
    on_main = point_east(900.0 - 400.0)  # 27 s upstream on Main, beyond the 200 m circle
    zones_by_branch = {}
    for branch_s in (20.0, 30.0):
        cfg = EngineConfig(dispatch_cover_m=0.0, on_scene_branch_s=branch_s)
        _, events = engine.step(None, scene, now=scene.ts, cfg=cfg, roads=roads)
        zones_by_branch[branch_s] = shape(events[0].zone)
    assert zones_by_branch[20.0].covers(on_main) and zones_by_branch[30.0].covers(on_main)
    assert not zones_by_branch[20.0].covers(side)
    assert zones_by_branch[30.0].covers(side)


def test_with_roads_the_on_scene_circle_is_the_road_circle():
    """The walk covers the drivers who will pass; the circle only the unit's surroundings."""
    roads = _network_with_side_street()
    scene = fix(1.0, 1_500.0, status="on_scene", speed_mps=0.0, heading_deg=90.0)
    off_road = shapely.Point(LON0 + 1_500 / M_PER_DEG_LON, LAT0 + 150 / 110_950.0)  # 150 m N
    near = shapely.Point(LON0 + 1_500 / M_PER_DEG_LON, LAT0 + 80 / 110_950.0)  # 80 m N
    _, with_roads = engine.step(None, scene, now=scene.ts, cfg=FROM_FIRST_FIX, roads=roads)
    _, without = engine.step(None, scene, now=scene.ts, cfg=FROM_FIRST_FIX)
    assert shape(without[0].zone).covers(off_road)
    assert not shape(with_roads[0].zone).covers(off_road)
    assert shape(with_roads[0].zone).covers(near)


def ll(east: float, north: float = 0.0) -> list[float]:
    """[lon, lat] of a point ``east`` / ``north`` metres from the Square."""
    return [LON0 + east / M_PER_DEG_LON, LAT0 + north / 110_950.0]


def way(*pts: list[float], **props: object) -> dict:
    """A GeoJSON road feature through ``pts`` at 15 m/s."""
    return {
        "properties": {"maxspeed_mps": 15, **props},
        "geometry": {"type": "LineString", "coordinates": list(pts)},
    }


def test_with_roads_the_zone_stops_at_a_divided_roads_median_but_keeps_its_cross_street():
    """The other carriageway 18 m north never meets the unit; a cross street through a
    median opening at 600 m still feeds the path (its drivers cross it)."""
    from broker.geo.roads import RoadNetwork

    roads = RoadNetwork.from_features(
        [
            way(ll(-200), ll(600), ll(3_000), oneway=True),  # eastbound, the unit's
            way(ll(3_000, 18), ll(600, 18), ll(-200, 18), oneway=True),  # westbound
            way(ll(600, -300), ll(600), ll(600, 18), ll(600, 300)),  # cross street
        ]
    )
    zone = _first_zone([east_route(), fix(1.0, 0.0, speed_mps=15.0)], roads)
    north = lambda east, m: shapely.Point(*ll(east, m))  # noqa: E731
    assert zone.covers(north(400, 0)) and zone.covers(north(400, 8))  # own carriageway
    assert not zone.covers(north(400, 18))  # the far carriageway, beyond the 100 m circle
    assert zone.covers(north(600, 40)) and zone.covers(north(600, -100))  # the cross street
    assert zone.is_valid


@pytest.mark.parametrize("cut", [False, True])
def test_with_roads_the_circle_stops_at_a_divided_roads_median_if_asked(cut: bool):
    """road_circle_median_cut: the 100 m circle around the unit leaves out the far
    carriageway beside it (ahead and behind), and nothing else."""
    from broker.geo.roads import RoadNetwork

    roads = RoadNetwork.from_features(
        [
            way(ll(-200), ll(3_000), oneway=True),  # eastbound, the unit's
            way(ll(3_000, 18), ll(-200, 18), oneway=True),  # westbound, 18 m north
        ]
    )
    cfg = msgspec.structs.replace(FROM_FIRST_FIX, road_circle_median_cut=cut)
    zone = _first_zone([east_route(), fix(1.0, 1_000.0, speed_mps=15.0)], roads, cfg)
    north = lambda east, m: shapely.Point(*ll(east, m))  # noqa: E731
    assert zone.covers(north(950, 8)) and zone.covers(north(1_050, 8))  # own carriageway
    assert zone.covers(north(1_000, -60))  # the circle's other side
    for east in (950, 1_050):  # the far carriageway behind and ahead of the unit
        assert zone.covers(north(east, 18)) is not cut
    assert zone.is_valid


def test_two_routes_under_the_same_name_are_not_confused():
    a = east_route(2_000.0)
    b = east_route(3_000.0)
    assert (a.vehicle_id, a.incident_id, a.ts) == (b.vehicle_id, b.incident_id, b.ts)
    memo = GeoMemo()
    assert memo.projected_route(a).length_m != memo.projected_route(b).length_m


def _first_zone(msgs, roads, cfg=None):
    return shape(drive(msgs, cfg, roads=roads)[1][0].zone)


def test_with_roads_a_unit_near_its_scene_warns_the_drivers_upstream_of_the_scene():
    """The scene (route end, 1000 m) is within reach: the drivers who will pass the unit there
    are upstream of it now, also behind the unit on its own road (beyond its small circle)."""
    roads = _network_with_side_street()
    behind = point_east(700.0 - 150.0)  # 150 m behind a unit at 700 m, on Main
    near_scene = _first_zone([east_route(1_000.0), fix(1.0, 700.0)], roads)
    far_from_scene = _first_zone([east_route(3_000.0), fix(1.0, 700.0)], roads)
    assert near_scene.covers(behind)
    assert not far_from_scene.covers(behind)


def test_with_roads_the_circle_and_bands_are_the_road_settings():
    """The network already covers the approaches: a small circle and narrow road bands."""
    roads = _network_with_side_street()
    msgs = [east_route(), fix(1.0, 0.0, speed_mps=15.0)]
    off_road = shapely.Point(LON0 - 20 / M_PER_DEG_LON, LAT0 + 130 / 110_950.0)  # 130 m north
    beside_path = shapely.Point(LON0 + 400 / M_PER_DEG_LON, LAT0 + 35 / 110_950.0)  # 35 m off
    with_roads = _first_zone(msgs, roads)
    without = shape(drive(msgs)[1][0].zone)
    assert without.covers(off_road) and not with_roads.covers(off_road)
    assert without.covers(beside_path) and not with_roads.covers(beside_path)
    wide = _first_zone(
        msgs, roads,
        EngineConfig(dispatch_cover_m=0.0, road_half_width_m=40.0, road_proximity_radius_m=150.0),
    )
    assert wide.covers(off_road) and wide.covers(beside_path)


def test_a_unit_crossing_into_another_grid_cell_keeps_heading_forward():
    """Frames are per 0.5 degree cell: measuring across the boundary must not point backwards."""
    from broker.model import Position

    def east_fix(t: float, lon: float) -> Position:
        return Position(
            vehicle_id="E9",
            ts=at(t),
            lat=35.2,
            lon=lon,
            status="responding",
            lights_sirens=True,
            speed_mps=0.5,
            heading_deg=None,
            incident_id="F9",
        )

    step_deg = 30.0 / 90_960.0  # 30 m east per fix
    fixes = [east_fix(1.0 + i, -80.5 - 3 * step_deg + i * step_deg) for i in range(7)]
    _, events = drive(fixes)
    updates = [e for e in events if e.action == "update"]
    assert len(updates) >= 3
    for ev in updates:
        assert ev.path, "a moving unit without heading still gets a dead-reckoned path"
        (lon0, _), (lon1, _) = ev.path[0], ev.path[-1]
        assert lon1 > lon0, f"the path at {ev.ts} must point east, the way the unit drives"


def _braking_to_the_scene(roads, cfg):
    """A unit on a 3 km route that brakes from 15 to 7.5 m/s at 1.8 km: its stretch ahead,
    675 m at 15 m/s, reaches 2,475 m and holds there until the unit, now 337.5 m short of it
    at 7.5 m/s, catches up (2,138 m); from 2,663 m it reaches the scene. Meanwhile updates
    only trim the zone behind the unit."""
    msgs: list = [east_route()]
    east, t = 0.0, 0.0
    while east < 2_950.0:
        speed = 15.0 if east < 1_800.0 else 7.5
        t += 1.0
        east += speed
        msgs.append(fix(t, east, speed_mps=speed))
    return drive(msgs, cfg, roads=roads)[1]


def test_with_roads_an_update_that_only_trims_behind_the_unit_is_not_sent():
    roads = _network_with_side_street()
    on = _braking_to_the_scene(roads, FROM_FIRST_FIX)
    off = _braking_to_the_scene(roads, EngineConfig(dispatch_cover_m=0.0, min_update_reach_m=0.0))

    def east_of(events, a_m, b_m):
        return [e for e in events
                if LON0 + a_m / M_PER_DEG_LON < e.lon <= LON0 + b_m / M_PER_DEG_LON]

    # the first update after braking goes (slower: the junction walks lengthen by ETA), then
    # only the expiry's refresh
    assert len(east_of(off, 1_850, 2_130)) >= 5 and len(east_of(on, 1_850, 2_130)) <= 2
    assert len(east_of(off, 2_700, 2_950)) >= 4 and len(east_of(on, 2_700, 2_950)) <= 1  # refresh
    assert east_of(on, 0, 1_750) == east_of(off, 0, 1_750)  # while the stretch reaches further
    assert len(east_of(on, 2_200, 2_600)) >= 4  # ...and again once it does


def test_without_roads_every_update_along_the_route_is_sent():
    assert _braking_to_the_scene(None, FROM_FIRST_FIX) == _braking_to_the_scene(
        None, EngineConfig(dispatch_cover_m=0.0, min_update_reach_m=0.0)
    )


def _grows_only_behind(**kw):
    from broker.geo.zoning import grows_only_behind

    args = dict(speed_mps=10.0, accuracy_m=5.0, along_m=1_000.0, length_m=3_000.0,
                sent_end_m=1_500.0, sent_speed_mps=10.0, sent_accuracy_m=5.0,
                cfg=FROM_FIRST_FIX, roads=True)
    return grows_only_behind(**{**args, **kw})


def test_what_counts_as_growing_only_behind_the_unit():
    # 1,000 m along at 10 m/s reaches 1,450 m: the far end stays at 1,500 m
    assert _grows_only_behind()
    assert not _grows_only_behind(speed_mps=12.0)  # 1,540 m: it reaches 40 m further
    assert _grows_only_behind(speed_mps=12.0, sent_speed_mps=11.0, sent_end_m=1_538.0)
    assert not _grows_only_behind(length_m=1_403.0, sent_end_m=1_400.0)  # the scene in reach now
    assert not _grows_only_behind(accuracy_m=30.0)  # a wider band
    assert not _grows_only_behind(speed_mps=0.5)  # stopped: the walk behind it joins
    assert not _grows_only_behind(speed_mps=8.0)  # slower: the junction walks lengthen
    assert _grows_only_behind(speed_mps=8.0, roads=False)  # ...which without roads do not exist
    assert _grows_only_behind(speed_mps=5.0)  # crawling: every walk is the shortest
    assert not _grows_only_behind(speed_mps=8.0, sent_speed_mps=5.0)  # no longer crawling


@pytest.mark.parametrize("speed", [70.0, 150.0])
def test_a_reported_speed_past_max_implied_speed_reaches_as_far_as_that_speed(speed: float):
    # 45 s at 70 m/s is 3,150 m ahead (the band ends with the stretch); a glitch of 150 m/s
    # made a 6,750 m stretch
    msgs = [east_route(length_m=10_000.0), fix(1.0, 0.0, speed_mps=speed)]
    events = drive(msgs, cfg=FROM_FIRST_FIX)[1]
    zone = shape(events[0].zone)
    assert zone.covers(point_east(3_000.0))
    assert not zone.covers(point_east(3_400.0))


def test_a_fix_of_the_same_instant_that_changes_the_status_is_not_a_duplicate():
    # an AVL that reports a status change in its own message, stamped the same second as the
    # periodic fix before it (second-resolution clocks): that fix was dropped as a duplicate, so
    # a unit stood down and then quiet kept its zone at partners until the stale cancel, 30 s on
    fixes = [*run_east(5), fix(5.0, 60.0, status="available", lights_sirens=False)]
    state, events = drive([east_route(), *fixes])
    assert state is not None and state.alert is None
    assert events[-1].action == "cancel" and events[-1].cancel_reason == "left_emergency"
    assert events[-1].ts == at(5.0)
    assert state.counters.duplicates == 0
    # ...and one of the same instant that starts responding warns at once, also from a few
    # metres on (stamped to the second, the two may be a second apart: no GPS jump)
    for moved_m in (0.0, 15.0):
        fixes = [fix(1.0, 0.0, status="dispatched", lights_sirens=False), fix(1.0, moved_m)]
        state, events = drive([east_route(), *fixes])
        assert [e.action for e in events] == ["create"] and events[0].ts == at(1.0)
        assert state is not None and state.counters.jumps == 0


def test_a_fix_of_the_same_instant_saying_the_same_is_still_a_duplicate():
    fixes = [*run_east(5), fix(5.0, 60.0, speed_mps=3.0, heading_deg=80.0)]
    state, _ = drive([east_route(), *fixes])
    assert state is not None and state.counters.duplicates == 1
    assert state.last_fix == fixes[-2]


def test_a_stand_down_on_a_fix_refused_as_a_gps_jump_still_cancels_at_once():
    # the fix's place is not believed, its status is (it is not the GPS's): refused whole, the
    # stand-down was lost, and a unit quiet after it had its zone dead-reckoned on along the
    # route for a minute, then cancelled as stale
    jump = fix(6.0, 75.0 + 500.0, north_m=500.0, status="available", lights_sirens=False)
    state, events = drive([east_route(), *run_east(5), jump])
    assert state is not None and state.alert is None and state.counters.jumps == 1
    assert events[-1].action == "cancel" and events[-1].cancel_reason == "left_emergency"
    assert events[-1].ts == at(6.0)
    last = state.last_fix  # still the fix before the jump: the cancel is placed there
    assert last is not None and last.ts == at(5.0)
    assert (events[-1].lon, events[-1].lat) == (last.lon, last.lat)
    state, ticked = tick(state, now=at(200.0), cfg=FROM_FIRST_FIX)
    assert ticked == []
    # a jump saying what the last fix said, or an emergency status, still changes nothing
    for said in ({}, {"status": "on_scene"}):
        state, events = drive([east_route(), *run_east(5), fix(6.0, 575.0, north_m=500.0, **said)])
        assert state is not None and state.alert is not None and events[-1].action != "cancel"


def test_a_jump_saying_what_the_last_fix_said_stands_down_a_dispatch_alert_made_since():
    # an available unit, then a CAD route (a dispatch alert at once), then a newer fix still
    # available but refused as a GPS jump: accepted, it would stand the dispatch alert down;
    # refused, it was skipped as "saying nothing new" and the alert stood (hypothesis found it)
    at_once = EngineConfig(dispatch_hold_s=0.0, dead_reckoning_max_s=0.0)
    stood = fix(0.0, status="available", lights_sirens=False, speed_mps=0.0)
    jump = fix(0.5, north_m=150.0, status="available", lights_sirens=False, speed_mps=0.0)
    state, events = drive([stood, east_route(), jump], cfg=at_once)
    assert state is not None and state.counters.jumps == 1
    assert [e.action for e in events] == ["create", "cancel"]
    assert events[0].from_dispatch and events[-1].cancel_reason == "left_emergency"
    assert state.alert is None
    # the same fix again: nothing left to stand down (the last believed fix is still t=0)
    state, again = engine.step(state, jump, now=jump.ts, cfg=at_once)
    assert again == [] and state.counters.jumps == 2


def test_a_stand_down_refused_as_older_or_as_a_duplicate_changes_nothing():
    # only a GPS jump's stand-down acts when the fix is refused: an older fix stands nothing
    # down (the unit's newer fix said otherwise), nor does a duplicate of a stand-down fix
    # after a CAD route made a dispatch alert since (its stand-down was taken already)
    older = fix(3.5, 45.0, status="available", lights_sirens=False)
    state, events = drive([east_route(), *run_east(5), older])
    assert state is not None and state.counters.out_of_order == 1
    assert state.alert is not None and events[-1].action != "cancel"
    at_once = EngineConfig(dispatch_hold_s=0.0, dead_reckoning_max_s=0.0)
    stood = fix(0.0, status="available", lights_sirens=False, speed_mps=0.0)
    state, events = drive([stood, east_route(), stood], cfg=at_once)
    assert state is not None and state.counters.duplicates == 1
    assert [e.action for e in events] == ["create"] and state.alert is not None


def test_a_route_older_than_the_one_kept_is_out_of_order_and_changes_nothing():
    newer, older = east_route(t=45.0), east_route(length_m=1_000.0, t=5.0)
    state, events = drive([newer, older], cfg=EngineConfig(dispatch_hold_s=0.0))
    assert state is not None and state.route == newer
    assert [e.action for e in events] == ["create"] and state.counters.out_of_order == 1
    # one of the same instant (CAD sent a corrected route) is taken
    same = east_route(length_m=1_000.0, t=45.0)
    state, _ = engine.step(state, same, now=same.ts, cfg=EngineConfig(dispatch_hold_s=0.0))
    assert state.route == same and state.counters.out_of_order == 1
