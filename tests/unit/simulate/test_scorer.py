"""The scorer on hand-made traffic: a straight road along x (east), metres, 1 s steps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from broker.simulate import scorer
from broker.simulate.scorer import (
    MODE_NONE,
    MODE_ON_SCENE,
    MODE_RESPONDING,
    Traffic,
    UnitTrack,
    Warner,
    ZoneSpan,
)

T = 121  # steps 0..120


def make_traffic(trajectories: dict[int, tuple[int, np.ndarray, np.ndarray, float]]) -> Traffic:
    """civ -> (first step, xs, ys, heading_deg); rows sorted by step."""
    rows = []
    for civ, (k0, xs, ys, heading) in trajectories.items():
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            rows.append((k0 + i, civ, x, y, heading))
    rows.sort()
    arr = np.array(rows, dtype=float)
    return Traffic(
        step=arr[:, 0].astype(int),
        civ=arr[:, 1].astype(int),
        x=arr[:, 2],
        y=arr[:, 3],
        heading_deg=arr[:, 4],
    )


def test_the_limit_starts_at_the_cad_route_when_it_came_before_the_first_fix(road):
    # with a route lead the engine's dispatch zone is live before the unit's first fix: a
    # limit from the first fix was beaten by the engine (130 % of it on a grid row)
    traffic, units = road
    unit = units[0]
    late = replace(unit, mode=np.where(np.arange(T) >= 30, unit.mode, MODE_NONE))
    enc = scorer.find_encounters(traffic, [late])
    from_fix = scorer.score(traffic, [late], scorer.limit_warning([late]), enc)
    routed = replace(late, routed_step=10)
    from_route = scorer.score(traffic, [routed], scorer.limit_warning([routed]), enc)
    assert scorer.limit_warning([routed]).spans[0].start == 10
    assert scorer.limit_warning([late]).spans[0].start == 30
    assert from_route.leads["same"] == [v + 20.0 for v in from_fix.leads["same"]]
    # a route sent after the first fix changes nothing
    after = replace(late, routed_step=40)
    assert scorer.limit_warning([after]).spans[0].start == 30


def line(k0: int, k1: int, x0: float, y0: float, vx: float, vy: float):
    t = np.arange(k1 - k0)
    return x0 + vx * t, y0 + vy * t


def responding_unit() -> UnitTrack:
    """Drives east along y=0 at 10 m/s from x=0, steps 0..120."""
    xs = 10.0 * np.arange(T)
    ys = np.zeros(T)
    return UnitTrack("E1", xs, ys, xs.copy(), ys.copy(), np.full(T, MODE_RESPONDING))


@pytest.fixture
def road() -> tuple[Traffic, list[UnitTrack]]:
    same = (0, *line(0, T, 500.0, 0.0, 5.0, 0.0), 90.0)  # caught up: gap 50 m at step 90
    oncoming = (0, *line(0, T, 1500.0, 1.5, -10.0, 0.0), 270.0)  # closes at 20 m/s
    crossing = (40, *line(40, 100, 800.0, -200.0, 0.0, 5.0), 0.0)  # enters at 40, side street
    parallel = (0, *line(0, T, 300.0, 30.0, 10.0, 0.0), 90.0)  # 30 m off, never on the path
    behind = (0, *line(0, T, -100.0, 0.0, 5.0, 0.0), 90.0)  # behind the unit
    traffic = make_traffic({0: same, 1: oncoming, 2: crossing, 3: parallel, 4: behind})
    return traffic, [responding_unit()]


def test_encounters_are_classified_by_where_the_civilian_stands(road):
    traffic, units = road
    found = {e.civ: e for e in scorer.find_encounters(traffic, units)}
    assert set(found) == {0, 1, 2}
    assert found[0].kind == "same" and found[0].step == 90
    assert found[1].kind == "oncoming" and found[1].step == 73
    assert found[2].kind == "crossing"
    assert 74 <= found[2].step <= 78


@pytest.mark.parametrize("side_road_ends, meets", [((3, 1), True), ((4, 5), False)])
def test_a_crossing_needs_a_road_that_reaches_the_path_not_one_below_a_bridge(
    road, side_road_ends, meets
):
    """The unit drives road 0 (junctions 0 -> 1, junction 1 at x = 800) then road 1 (1 -> 2);
    the northbound car is on road 2: at grade it ends at junction 1, under a bridge it runs
    between junctions 4 and 5 that the unit's roads never touch."""
    traffic, units = road
    unit = units[0]
    unit_road = np.where(unit.x < 800.0, 0, 1).astype(np.int32)
    civ_road = {0: 1, 1: 1, 2: 2, 3: 0, 4: 0}
    graded = Traffic(
        step=traffic.step, civ=traffic.civ, x=traffic.x, y=traffic.y,
        heading_deg=traffic.heading_deg,
        road=np.array([civ_road[int(c)] for c in traffic.civ], dtype=np.int32),
        junctions=np.array([(0, 1), (1, 2), side_road_ends], dtype=np.int32),
    )  # fmt: skip
    on_road = UnitTrack(unit.unit_id, unit.x, unit.y, unit.fix_x, unit.fix_y, unit.mode,
                        road=unit_road)  # fmt: skip
    found = {e.civ: e.kind for e in scorer.find_encounters(graded, [on_road])}
    assert found.get(0) == "same" and found.get(1) == "oncoming"  # on the path: unchanged
    assert (found.get(2) == "crossing") is meets
    plane = {e.civ for e in scorer.find_encounters(traffic, units)}  # roads not recorded
    assert 2 in plane


@pytest.mark.parametrize("scene_x, meets", [(780.0, False), (900.0, True)])
def test_a_crossing_at_the_far_end_of_the_scene_road_is_met_only_if_the_unit_gets_there(
    scene_x, meets
):
    """The unit responds east and stops for its scene at ``scene_x``: short of junction 1
    (x = 800, the far end of road 0) or past it on road 1. The northbound car on road 2 ends
    at junction 1, 20 m beyond a unit stopped at 780, and heads into its path in the plane:
    the two never meet there."""
    xs = np.minimum(10.0 * np.arange(T), scene_x)
    ys = np.zeros(T)
    mode = np.where(10.0 * np.arange(T) <= scene_x, MODE_RESPONDING, MODE_ON_SCENE)
    unit = UnitTrack("E1", xs, ys, xs.copy(), ys.copy(), mode.astype(np.int8),
                     road=np.where(xs < 800.0, 0, 1).astype(np.int32))  # fmt: skip
    crossing = make_traffic({2: (60, *line(60, 120, 800.0, -120.0, 0.0, 5.0), 0.0)})
    graded = Traffic(
        step=crossing.step, civ=crossing.civ, x=crossing.x, y=crossing.y,
        heading_deg=crossing.heading_deg, road=np.full(len(crossing.step), 2, dtype=np.int32),
        junctions=np.array([(0, 1), (1, 2), (3, 1)], dtype=np.int32),
    )  # fmt: skip
    found = {e.civ: e.kind for e in scorer.find_encounters(graded, [unit])}
    assert (found.get(2) == "crossing") is meets
    plane = {e.civ for e in scorer.find_encounters(crossing, [unit])}  # roads not recorded
    assert 2 in plane


def test_no_zones_means_every_lead_is_zero(road):
    traffic, units = road
    enc = scorer.find_encounters(traffic, units)
    figs = scorer.score(traffic, units, Warner("none"), enc)
    assert figs.affected.count == 3
    assert all(v == 0 for vs in figs.leads.values() for v in vs)
    assert figs.affected.warned_10 == 0.0
    assert figs.bystanders == 0 and figs.bystander_vehicle_s == 0.0


def test_a_zone_over_everything_gives_the_physical_limit(road):
    traffic, units = road
    enc = scorer.find_encounters(traffic, units)
    everything = shapely.box(-1e5, -1e5, 1e5, 1e5)
    big = Warner("big", spans=[ZoneSpan("E1", 0, T, everything)])
    limit = scorer.limit_warning(units)
    got, lim = (scorer.score(traffic, units, w, enc) for w in (big, limit))
    assert got.leads == lim.leads
    # the crossing car entered the road at step 40: it cannot be warned before that
    crossing = next(e for e in enc if e.civ == 2)
    assert lim.leads["crossing"] == [float(crossing.step - 40)]
    assert lim.leads["same"] == [90.0]
    # the parallel and the trailing car are warned but never meet the unit
    assert lim.bystanders == 2
    assert lim.bystander_vehicle_s == 2 * T


def test_a_cancel_is_honoured(road):
    traffic, units = road
    enc = scorer.find_encounters(traffic, units)
    everything = shapely.box(-1e5, -1e5, 1e5, 1e5)
    # live 0..50, cancelled at 50, re-created at 85
    spans = [ZoneSpan("E1", 0, 50, everything), ZoneSpan("E1", 85, T, everything)]
    figs = scorer.score(traffic, units, Warner("w", spans=spans), enc)
    assert figs.leads["same"] == [5.0]  # encounter at 90, inside since 85
    assert figs.leads["oncoming"] == [0.0]  # encounter at 73: nothing live
    assert figs.zone_km2_s == pytest.approx(4e10 * (50 + 36) / 1e6)


def test_a_zone_that_misses_the_driver_gives_no_lead(road):
    traffic, units = road
    enc = scorer.find_encounters(traffic, units)
    corridor = shapely.box(0, -15, 3000, 15)  # the road itself, not the side street
    figs = scorer.score(traffic, units, Warner("w", spans=[ZoneSpan("E1", 0, T, corridor)]), enc)
    assert figs.leads["same"] == [90.0]
    assert figs.leads["oncoming"] == [73.0]
    crossing = next(e for e in enc if e.civ == 2)
    assert figs.leads["crossing"] == [0.0] or figs.leads["crossing"][0] < crossing.step - 40
    assert figs.bystanders == 1  # the trailing car on the road; the parallel one is outside


def test_proximity_circle_warns_from_300_m(road):
    traffic, units = road
    enc = scorer.find_encounters(traffic, units)
    figs = scorer.score(traffic, units, scorer.circle_warning(300.0), enc)
    # oncoming, 1.5 m off the axis: within 300 m from t = 61 (gap 1500 - 20 t); meets at 73
    assert figs.leads["oncoming"] == [12.0]
    assert figs.zone_km2_s == pytest.approx(np.pi * 0.09 * T)


def test_on_scene_passers_only_count_when_the_unit_is_on_their_path():
    xs = np.zeros(T)
    mode = np.full(T, MODE_ON_SCENE)
    mode[:10] = MODE_NONE
    unit = UnitTrack("E2", xs, xs.copy(), xs.copy(), xs.copy(), mode)
    passer = (0, *line(0, T, -1000.0, 3.0, 10.0, 0.0), 90.0)  # x = -40 (49.9 m) at step 96
    parallel = (0, *line(0, T, -1000.0, 40.0, 10.0, 0.0), 90.0)  # 40 m off the unit
    leaving = (0, *line(0, T, 20.0, 3.0, 10.0, 0.0), 90.0)  # already past it
    traffic = make_traffic({0: passer, 1: parallel, 2: leaving})
    enc = scorer.find_encounters(traffic, [unit])
    assert [(e.civ, e.kind, e.step) for e in enc] == [(0, "on_scene", 96)]
    lim = scorer.score(traffic, [unit], scorer.limit_warning([unit]), enc)
    assert lim.passers.count == 1 and lim.leads["on_scene"] == [86.0]
    assert lim.affected.count == 0


def test_group_figures_shares():
    g = scorer.group_figures([0, 10, 20, 40])
    assert g.count == 4
    assert (g.warned_10, g.warned_15, g.warned_30) == (0.75, 0.5, 0.25)
    assert g.median_lead_s == 15.0
    assert np.isnan(scorer.group_figures([]).median_lead_s)


# --------------------------------------------------------------------------- heading-aware


def test_the_heading_aware_receiver_warns_only_on_a_segment_moving_its_way_before_the_eta(road):
    traffic, units = road
    enc = scorer.find_encounters(traffic, units)
    east = shapely.LineString([(0, 0), (3000, 0)])  # the road ahead, eastbound
    side = shapely.LineString([(800, -300), (800, 0)])  # the side street, northbound to it
    everything = shapely.box(-1e5, -1e5, 1e5, 1e5)
    rx = scorer.Receiver(hold_s=0.0)

    def leads(segs):
        span = ZoneSpan("E1", 0, T, everything, segments=segs)
        return scorer.score(traffic, units, Warner("h", spans=[span], heading_aware=rx), enc)

    one_way = leads([scorer.Segment(east, both=False, until=None)])
    assert one_way.leads["same"] == [90.0]  # eastbound on the segment the whole time
    assert one_way.leads["oncoming"] == [0.0]  # westbound: not its direction
    assert one_way.leads["crossing"] == [0.0]  # on the side street, not on the segment
    # the parallel car (30 m off) and the trailing one (behind, but on the line) : only the
    # trailing one is on the segment, moving its way
    assert one_way.bystanders == 1
    both = leads([scorer.Segment(east, both=True, until=None),
                  scorer.Segment(side, both=False, until=None)])  # fmt: skip
    assert both.leads["oncoming"] == [73.0]
    crossing = next(e for e in enc if e.civ == 2)
    assert both.leads["crossing"] == [float(crossing.step - 40)]
    ended = leads([scorer.Segment(east, both=False, until=60)])  # ETA passed at step 60
    assert ended.leads["same"] == [0.0]
    # the polygon of the same span warns everyone inside, whatever the heading
    polygon = scorer.score(traffic, units, Warner("p", spans=[ZoneSpan("E1", 0, T, everything)]),
                           enc)  # fmt: skip
    assert polygon.bystanders == 2 and polygon.leads["oncoming"] == [73.0]


def test_the_receiver_holds_a_warning_across_a_short_gap():
    # one car eastbound along y=0, off the segment (a junction box) for steps 10..12 only
    xs = 10.0 * np.arange(30)
    ys = np.where((np.arange(30) >= 10) & (np.arange(30) <= 12), 40.0, 0.0)
    traffic = make_traffic({0: (0, xs, ys, 90.0)})
    unit = UnitTrack("E1", np.full(30, 5000.0), np.zeros(30), np.full(30, 5000.0), np.zeros(30),
                     np.full(30, MODE_RESPONDING))  # fmt: skip
    span = ZoneSpan("E1", 0, 30, shapely.box(-1e5, -1e5, 1e5, 1e5),
                    segments=[scorer.Segment(shapely.LineString([(0, 0), (400, 0)]), False, None)])
    masks = {
        hold: scorer.inside_masks(traffic, [unit], Warner(
            "h", spans=[span], heading_aware=scorer.Receiver(hold_s=hold)))["E1"]
        for hold in (0.0, 3.0, 2.0)
    }  # fmt: skip
    assert not masks[0.0][10:13].any() and masks[0.0][:10].all()
    assert masks[3.0][:30].all()  # the gap of 3 steps is held
    assert masks[2.0][10:12].all() and not masks[2.0][12]


def test_the_hold_ends_with_the_alert():
    # the same car on the segment throughout; the alert is cancelled at step 20 (its span ends)
    xs = 10.0 * np.arange(30)
    traffic = make_traffic({0: (0, xs, np.zeros(30), 90.0)})
    unit = UnitTrack("E1", np.full(30, 5000.0), np.zeros(30), np.full(30, 5000.0), np.zeros(30),
                     np.full(30, MODE_RESPONDING))  # fmt: skip
    seg = [scorer.Segment(shapely.LineString([(0, 0), (400, 0)]), False, None)]
    everything = shapely.box(-1e5, -1e5, 1e5, 1e5)
    rx = scorer.Receiver(hold_s=3.0)
    spans = [ZoneSpan("E1", 0, 20, everything, seg)]
    warner = Warner("h", spans=spans, heading_aware=rx)
    cancelled = scorer.inside_masks(traffic, [unit], warner)["E1"]
    assert cancelled[:20].all() and not cancelled[20:].any()  # a cancel carries no segments
    # a version without segments (a circle) keeps the alert live: the hold bridges into it
    bridged = scorer.inside_masks(traffic, [unit], Warner("h", spans=[
        ZoneSpan("E1", 0, 20, everything, seg), ZoneSpan("E1", 20, 30, everything)],
        heading_aware=rx))["E1"]  # fmt: skip
    assert bridged[:23].all() and not bridged[23:].any()


# --------------------------------------------------------------------------- standing drivers


def _queued_then_moving(d: float, stand_steps: int, heading: float = 0.0):
    """A car on a northbound side street at x=800, ``d`` m south of the path (y=0): standing
    for ``stand_steps``, then driving north at 10 m/s."""
    ys = np.concatenate([np.full(stand_steps, -d), -d + 10.0 * np.arange(1, 11)])
    return make_traffic({0: (0, np.full(len(ys), 800.0), ys, heading)})


def _unit_far_away(steps: int) -> UnitTrack:
    return UnitTrack("E1", np.full(steps, 5000.0), np.zeros(steps), np.full(steps, 5000.0),
                     np.zeros(steps), np.full(steps, MODE_RESPONDING))  # fmt: skip


def _side_street_span(steps: int, path: shapely.LineString | None, unit_xy=None) -> ZoneSpan:
    side = shapely.LineString([(800, -1000), (800, 0)])  # northbound, toward the path
    return ZoneSpan("E1", 0, steps, shapely.box(-1e5, -1e5, 1e5, 1e5),
                    segments=[scorer.Segment(side, both=False, until=None)], path=path,
                    unit_xy=unit_xy)  # fmt: skip


@given(d=st.floats(0.0, 900.0), far=st.floats(20.0, 400.0), stand=st.integers(3, 40))
def test_a_standing_driver_far_from_the_path_is_warned_only_once_it_moves(d, far, stand):
    traffic = _queued_then_moving(d, stand)
    steps = int(traffic.step.max()) + 1
    path = shapely.LineString([(0, 0), (3000, 0)])
    rx = scorer.Receiver(hold_s=0.0, standing_far_m=far)
    warner = Warner("h", spans=[_side_street_span(steps, path)], heading_aware=rx)
    mask = scorer.inside_masks(traffic, [_unit_far_away(steps)], warner)["E1"]
    # row 0 has no speed (unknown: not standing); rows 1..stand-1 stand still at distance d
    standing = mask[1:stand]
    if d > far + 1e-6:
        assert not standing.any()
    elif d < far - 1e-6:
        assert standing.all()
    on_street = traffic.y <= 0.0
    assert mask[stand:][on_street[stand:]].all()  # moving toward the path: warned at once
    off = Warner("h", spans=[_side_street_span(steps, path)],
                 heading_aware=scorer.Receiver(hold_s=0.0, standing_far_m=None))  # fmt: skip
    assert scorer.inside_masks(traffic, [_unit_far_away(steps)], off)["E1"][on_street].all()


def test_without_a_path_a_standing_driver_is_warned_unless_measured_from_the_unit():
    traffic = _queued_then_moving(300.0, 10)
    steps = int(traffic.step.max()) + 1

    def standing_warned(unit_xy, scene_m=150.0):
        rx = scorer.Receiver(hold_s=0.0, standing_far_m=150.0, standing_scene_m=scene_m)
        span = _side_street_span(steps, None, unit_xy)
        warner = Warner("h", spans=[span], heading_aware=rx)
        return scorer.inside_masks(traffic, [_unit_far_away(steps)], warner)["E1"][1:10]

    assert standing_warned((800.0, 0.0), scene_m=None).all()  # the default: on scene, warned
    assert not standing_warned((800.0, 0.0)).any()  # 300 m from the unit on scene
    assert standing_warned((800.0, -200.0)).all()  # 100 m from it
    assert standing_warned(None).all()  # nothing to measure from: warned


def test_the_rule_judges_each_driver_by_its_own_rows_in_a_span_that_starts_late():
    """Two drivers on the side street, rows interleaved, the span live from step 5 on: the
    one standing 400 m off the path is not warned, the one driving toward it is."""
    ys_moving = -600.0 + 10.0 * np.arange(40)
    traffic = make_traffic({
        0: (0, np.full(40, 800.0), np.full(40, -400.0), 0.0),  # queued, 400 m off
        1: (0, np.full(40, 800.0), ys_moving, 0.0),  # driving north toward the path
    })  # fmt: skip
    path = shapely.LineString([(0, 0), (3000, 0)])
    side = shapely.LineString([(800, -1000), (800, 0)])
    span = ZoneSpan("E1", 5, 40, shapely.box(-1e5, -1e5, 1e5, 1e5),
                    segments=[scorer.Segment(side, both=False, until=None)], path=path)
    warner = Warner("h", spans=[span], heading_aware=scorer.Receiver(hold_s=0.0))
    mask = scorer.inside_masks(traffic, [_unit_far_away(40)], warner)["E1"]
    live = traffic.step >= 5
    assert not mask[live & (traffic.civ == 0)].any()
    assert mask[live & (traffic.civ == 1)].all()


def test_by_default_the_rule_holds_on_the_approach_and_not_on_scene():
    rx = scorer.Receiver()
    assert rx.standing_far_m == 120.0 and rx.standing_scene_m is None
    traffic = _queued_then_moving(300.0, 10)
    steps = int(traffic.step.max()) + 1
    on_scene = _side_street_span(steps, None, (800.0, 0.0))
    warner = Warner("h", spans=[on_scene], heading_aware=scorer.Receiver(hold_s=0.0))
    assert scorer.inside_masks(traffic, [_unit_far_away(steps)], warner)["E1"][1:10].all()
    scene_only = scorer.Receiver(hold_s=0.0, standing_far_m=None, standing_scene_m=150.0)
    warner = Warner("h", spans=[on_scene], heading_aware=scene_only)
    assert not scorer.inside_masks(traffic, [_unit_far_away(steps)], warner)["E1"][1:10].any()
