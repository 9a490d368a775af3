"""Warning segments: in travel direction, on the zone's roads, ETAs growing along the route."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
import shapely
from hypothesis import assume, given
from hypothesis import strategies as st
from shapely.geometry import shape

from broker import codec
from broker.geo import segments, zoning
from broker.geo.roads import RoadNetwork
from broker.model import AlertEvent, LatLon, LineStringGeometry, Route, WarningSegment
from broker.settings import EngineConfig
from tests.conftest import LAT0, LON0, M_PER_DEG_LON, at, drive, east_route, fix

M_PER_DEG_LAT = 110_950.0
# built only when asked (partners take them); from the first fix: a dispatch zone's unit stands
# at its station and has no ETA yet (tests/unit/test_reckoning.py)
SEGMENTS = EngineConfig(warning_segments=True, dispatch_cover_m=0.0)


def ll(east: float, north: float = 0.0) -> list[float]:
    return [LON0 + east / M_PER_DEG_LON, LAT0 + north / M_PER_DEG_LAT]


def xy(lon: float, lat: float) -> tuple[float, float]:
    """Degrees back to metres east/north of the Square (the tests' flat frame)."""
    return (lon - LON0) * M_PER_DEG_LON, (lat - LAT0) * M_PER_DEG_LAT


def network() -> RoadNetwork:
    """Main (two-way, along the route); Side, one-way *into* Main at 600 m from the north; Out,
    one-way *out of* Main at 1,000 m to the south; Parallel, 400 m south, never joins."""

    def road(name: str, *pts: list[float], oneway: bool = False) -> dict:
        props = {"name": name, "maxspeed_mps": 12, "oneway": oneway}
        return {"properties": props, "geometry": {"type": "LineString", "coordinates": list(pts)}}

    return RoadNetwork.from_features([
        road("Main", ll(-200), ll(600), ll(1_000), ll(3_000)),
        road("Side", ll(600, 400), ll(600), oneway=True),
        road("Out", ll(1_000), ll(1_000, -400), oneway=True),
        road("Parallel", ll(-200, -400), ll(3_000, -400)),
    ])  # fmt: skip


def first_event(
    roads: RoadNetwork | None, speed: float = 15.0, cfg: EngineConfig = SEGMENTS
) -> AlertEvent:
    return drive([east_route(), fix(1.0, 0.0, speed_mps=speed)], cfg, roads=roads)[1][0]


def etas_of(ev: AlertEvent) -> list[float]:
    """The event's segment ETAs (each must have one)."""
    out = [s.eta_s for s in ev.segments]
    assert out and all(e is not None for e in out), out
    return [float(e) for e in out if e is not None]


def heading_of(line: list[tuple[float, float]]) -> tuple[float, float]:
    (x0, y0), (x1, y1) = xy(*line[0]), xy(*line[-1])
    n = math.hypot(x1 - x0, y1 - y0)
    return (x1 - x0) / n, (y1 - y0) / n


def test_segments_run_in_travel_direction_and_only_toward_the_path():
    ev = first_event(network())
    assert ev.segments
    side = [s for s in ev.segments if abs(xy(*s.line[0])[0] - 600) < 5 and xy(*s.line[0])[1] > 50]
    assert side, "the side street feeding the path is a segment"
    for s in side:  # flows south, toward Main: it ends at the junction
        assert heading_of(s.line)[1] < -0.99 and abs(xy(*s.line[-1])[1]) < 2.0
        assert s.directions == "forward"
    # Out flows away from the path: its drivers never meet the unit; Parallel never joins
    for s in ev.segments:
        assert all(xy(*p)[1] > -5.0 for p in s.line), s
    # the stretch ahead starts at the unit, runs east, both ways on a two-way road
    head = ev.segments[0]
    assert abs(xy(*head.line[0])[0]) < 5 and heading_of(head.line)[0] > 0.99
    assert head.directions == "both"


def test_segments_lie_on_the_zones_roads_and_inside_the_zone():
    roads = network()
    ev = first_event(roads)
    zone = shape(ev.zone).buffer(1e-5)  # ~1 m: segment coordinates are rounded to 5 decimals
    net = shapely.MultiLineString(
        [[ll(-200), ll(3_000)], [ll(600, 400), ll(600)], [ll(1_000), ll(1_000, -400)],
         [ll(-200, -400), ll(3_000, -400)]]
    )  # fmt: skip
    for s in ev.segments:
        line = shapely.LineString(s.line)
        assert zone.covers(line), s
        assert shapely.hausdorff_distance(line, shapely.intersection(net.buffer(3e-5), line)) < 1e-5
        assert all(round(c, 5) == c for p in s.line for c in p)


def test_etas_grow_along_the_route_and_follow_the_units_speed():
    ev = first_event(network(), speed=15.0)
    ahead = [s for s in ev.segments if abs(xy(*s.line[0])[1]) < 2 and abs(xy(*s.line[-1])[1]) < 2
             and heading_of(s.line)[0] > 0.99]  # fmt: skip
    etas = [s.eta_s for s in ahead]
    assert len(etas) >= 3 and all(e is not None for e in etas)
    assert etas == sorted(etas)
    far_end_m = xy(*ahead[-1].line[-1])[0]
    slack = SEGMENTS.segment_eta_slack_s
    assert etas[-1] == pytest.approx(far_end_m / 15.0 + slack, abs=1.5)
    side = [s for s in ev.segments if heading_of(s.line)[1] < -0.99]
    assert side[0].eta_s == pytest.approx(600 / 15.0 + slack, abs=1.5)


@pytest.mark.parametrize("roads", [network(), None], ids=["side-street", "no-roads"])
def test_every_eta_carries_segment_eta_slack_s_side_streets_and_corridors_too(roads):
    """``segment_eta_slack_s`` reaches every ETA: the stretch ahead's, a side street's (walked
    from a junction) and a corridor's without roads; the lines are the same."""
    base = first_event(roads)
    later = first_event(roads, cfg=msgspec.structs.replace(SEGMENTS, segment_eta_slack_s=35.0))
    shift = 35.0 - SEGMENTS.segment_eta_slack_s
    assert [(s.line, s.directions) for s in later.segments] == [
        (s.line, s.directions) for s in base.segments
    ]
    # each ETA leaves rounded up to a whole second: an ETA on a whole second may round either way
    moved = [b - a for a, b in zip(etas_of(base), etas_of(later), strict=True)]
    assert moved == pytest.approx([shift] * len(moved), abs=1.0)
    if roads is not None:  # the side street is there, with its own ETA
        side = [s for s in base.segments if heading_of(s.line)[1] < -0.99]
        assert side and all(s.directions == "forward" for s in side)
    else:
        assert base.segments and all(s.directions == "both" for s in base.segments)


def test_a_unit_on_scene_names_its_road_upstream_without_an_end():
    roads = network()
    msgs = [
        east_route(),
        fix(1.0, 0.0, speed_mps=15.0),
        fix(60.0, 800.0, speed_mps=0.0, status="on_scene"),
    ]
    events = drive(msgs, SEGMENTS, roads=roads)[1]
    scene = next(e for e in events if e.kind == "on_scene")
    assert scene.segments and all(s.eta_s is None for s in scene.segments)
    own = [s for s in scene.segments if abs(xy(*s.line[-1])[0] - 800) < 5]
    assert own and all(s.directions == "forward" for s in own)


def test_without_roads_a_corridor_names_its_path_both_ways_and_a_circle_nothing():
    ev = drive([east_route(), fix(1.0, 0.0, speed_mps=15.0)], SEGMENTS)[1][0]
    assert ev.segments and all(s.directions == "both" for s in ev.segments)
    assert [s.eta_s for s in ev.segments] == sorted(s.eta_s for s in ev.segments)  # type: ignore
    circle = drive([fix(1.0, 0.0, speed_mps=0.0, heading_deg=None)], SEGMENTS)[1][0]
    assert circle.segments == []


def test_a_cancel_carries_no_segments():
    msgs = [east_route(), fix(1.0, 0.0, speed_mps=15.0), fix(2.0, 15.0, status="available")]
    events = drive(msgs, SEGMENTS)[1]
    assert events[0].segments and events[-1].action == "cancel" and events[-1].segments == []


def test_segments_round_trip_through_the_codec_with_the_alert():
    ev = first_event(network())
    back = codec.decode_alert(codec.encode(ev))
    assert back.segments == ev.segments and codec.encode(back) == codec.encode(ev)
    raw = msgspec.json.decode(codec.encode(ev))
    assert raw["segments"][0][1] in ("forward", "both")  # compact: [line, directions, eta_s]


@given(
    st.lists(
        st.tuples(st.floats(-2_000, 2_000), st.floats(-2_000, 2_000)), min_size=2, max_size=12
    ),
    st.floats(1.0, 40.0),
    st.floats(0.0, 60.0),
)
def test_the_stretch_ahead_in_pieces_keeps_the_path_and_grows_its_etas(pts, speed, slack):
    path = np.array(pts)
    length = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
    pieces = segments.along_path(path, speed, "forward", slack_s=slack)
    if length < segments.MIN_LENGTH_M:
        assert pieces == []
        return
    lengths = [float(shapely.LineString(p.xy).length) for p in pieces]
    assert sum(lengths) == pytest.approx(length, rel=1e-6, abs=1e-6)
    assert max(lengths) <= segments.PIECE_M * (1 + 1e-9) + 1e-6 or len(pieces) == 1
    etas = [p.eta_s for p in pieces]
    assert etas == sorted(etas)  # type: ignore[type-var]
    assert etas[-1] == pytest.approx(length / speed + slack)
    np.testing.assert_allclose(pieces[0].xy[0], path[0], atol=1e-6)
    np.testing.assert_allclose(pieces[-1].xy[-1], path[-1], atol=1e-6)


def test_an_alert_carries_a_bounded_number_of_segments_the_nearest_kept():
    from broker.geo.projection import frame_for

    frame = frame_for(LON0, LAT0)
    many = [
        segments.Piece(np.array([[0.0, 10.0 * k], [50.0, 10.0 * k]]), "forward", float(k))
        for k in range(segments.MAX_SEGMENTS + 20, 0, -1)
    ]
    out = segments.to_lonlat(many, frame)
    assert len(out) == segments.MAX_SEGMENTS
    assert max(s.eta_s for s in out if s.eta_s is not None) == segments.MAX_SEGMENTS
    assert all(isinstance(s, WarningSegment) and len(s.line) == 2 for s in out)


def test_segments_are_built_only_when_asked_and_the_zone_is_the_same_either_way() -> None:
    msgs = [east_route(), fix(1.0, 0.0, speed_mps=15.0)]
    for roads in (None, network()):
        plain, with_segments = (drive(msgs, cfg, roads=roads)[1][0]
                                for cfg in (EngineConfig(dispatch_cover_m=0.0), SEGMENTS))
        assert plain.segments == [] and with_segments.segments
        assert plain.zone == with_segments.zone and plain.path == with_segments.path


@given(
    st.lists(st.tuples(st.floats(-1_500, 1_500), st.floats(-1_500, 1_500)), min_size=2, max_size=8),
    st.lists(st.booleans(), min_size=1, max_size=60),
    st.floats(0.0, 3_000.0),
    st.floats(1.0, 40.0),
    st.floats(0.0, 60.0),
)
def test_same_way_pieces_start_within_their_reach_and_two_way_ones_run_on(
    pts, oncoming, reach, speed, slack
):
    """``same_way_m``: of the pieces naming the unit's direction alone, those that start that
    far ahead or more are left out and the ones before it kept whole (the last may end past
    the reach); a two-way piece is kept wherever it is; every ETA carries ``slack_s``."""
    path = np.array(pts)
    length = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
    assume(length >= 20.0)
    # the match's samples along the path, each with oncoming lanes or not
    two_way = (np.linspace(0.0, length, len(oncoming)), np.array(oncoming, dtype=bool))
    every = segments.along_path(path, speed, "forward", two_way, slack_s=slack)
    kept = segments.along_path(path, speed, "forward", two_way, slack_s=slack, same_way_m=reach)
    ends = np.cumsum([shapely.LineString(p.xy).length for p in every])
    starts = np.concatenate([[0.0], ends[:-1]])
    assume(np.min(np.abs(starts - reach)) > 1e-6)  # not on a cut (rounding decides there)
    want = [p for p, a in zip(every, starts, strict=True) if p.directions == "both" or a < reach]
    assert len(kept) == len(want)
    for got, exp in zip(kept, want, strict=True):
        np.testing.assert_allclose(got.xy, exp.xy)
        assert (got.directions, got.eta_s) == (exp.directions, exp.eta_s)
    for p, end in zip(every, ends, strict=True):
        assert p.eta_s == pytest.approx(end / speed + slack)


def test_a_unit_names_its_own_direction_only_on_pieces_starting_within_its_same_way_reach():
    """With ``segment_same_way_s`` the stretch ahead on a one-way road names the unit's
    direction only on the pieces that start within max(floor, speed x that) ahead (None: all
    of it); the zone is the same, and every ETA carries ``segment_eta_slack_s``."""
    one_way = RoadNetwork.from_features([{
        "properties": {"name": "Main", "maxspeed_mps": 25, "oneway": True},
        "geometry": {"type": "LineString", "coordinates": [ll(-200), ll(3_000)]},
    }])  # fmt: skip

    def event(cfg: EngineConfig, speed: float = 20.0) -> AlertEvent:
        return first_event(one_way, speed, cfg)

    def starts(ev: AlertEvent) -> list[float]:
        """Where the pieces naming the unit's direction alone start (metres east of it)."""
        return sorted(xy(*s.line[0])[0] for s in ev.segments if s.directions == "forward")

    def last_within(ev: AlertEvent, reach_m: float) -> float:
        """The furthest start of ``ev``'s pieces that start within ``reach_m``."""
        return max(a for a in starts(ev) if a < reach_m)

    whole = event(msgspec.structs.replace(SEGMENTS, segment_same_way_s=None))
    near = event(msgspec.structs.replace(SEGMENTS, segment_same_way_s=20.0))
    assert near.zone == whole.zone
    # 45 s at 20 m/s: 900 m of stretch; 20 s at 20 m/s: 400 m, above the 300 m floor, so the
    # pieces that start within 400 m are kept (the last of them ends past it) and no further
    assert starts(whole)[-1] > 600.0
    assert starts(near)[-1] == pytest.approx(last_within(whole, 400.0), abs=1.0)
    assert 300.0 < starts(near)[-1] < 400.0
    # 5 m/s with a 100 s lookahead: 500 m of stretch; 30 s at 5 m/s is 150 m, below the floor
    # of 300 m, which governs: the pieces that start within 300 m are kept
    slow = msgspec.structs.replace(SEGMENTS, lookahead_s=100.0, segment_same_way_s=30.0)
    slow_whole = event(msgspec.structs.replace(slow, segment_same_way_s=None), speed=5.0)
    assert starts(slow_whole)[-1] > 300.0
    assert starts(event(slow, speed=5.0))[-1] == pytest.approx(
        last_within(slow_whole, 300.0), abs=1.0
    )
    assert last_within(slow_whole, 300.0) > 150.0  # what 150 m alone would keep differs
    later = event(msgspec.structs.replace(SEGMENTS, segment_eta_slack_s=35.0))
    assert [s.eta_s for s in later.segments] == [
        None if s.eta_s is None else s.eta_s + 35.0 - SEGMENTS.segment_eta_slack_s
        for s in event(SEGMENTS).segments
    ]


def test_the_same_way_reach_is_the_reported_speed_times_segment_same_way_s_at_least_the_floor():
    """``segments.same_way_m``: max(floor, speed x ``segment_same_way_s``), None when off. A
    speed past ``max_implied_speed_mps`` counts as that speed, as in the stretch's reach
    (``zoning.lookahead_m``): uncapped, a glitch named the whole stretch the unit's own
    direction alone, and its oncoming drivers went unwarned."""
    cfg = msgspec.structs.replace(SEGMENTS, segment_same_way_s=30.0, lookahead_floor_m=300.0)
    assert segments.same_way_m(5.0, cfg) == 300.0  # 150 m at 5 m/s: the floor governs
    assert segments.same_way_m(20.0, cfg) == 600.0
    fast = 2 * cfg.max_implied_speed_mps
    capped = cfg.max_implied_speed_mps * 30.0
    assert segments.same_way_m(fast, cfg) == capped < zoning.lookahead_m(fast, cfg)
    assert segments.same_way_m(20.0, msgspec.structs.replace(cfg, segment_same_way_s=None)) is None


@given(st.floats(0.0, 40.0), st.floats(0.0, 60.0))
def test_pieces_carry_an_eta_unless_the_unit_crawls_or_stays(speed, slack):
    """Below the speed the stretch's floor assumes (``lookahead_floor_m / lookahead_s``) a
    unit crawls: the stretch, corridor and feeder pieces have no ETA; at or above it each ends
    ``slack`` after the unit reaches it. The roads where the unit stands never have one. The
    corridor names both ways (no lanes known), the stretch on a one-way road the unit's way."""
    cfg = msgspec.structs.replace(SEGMENTS, segment_eta_slack_s=slack, segment_same_way_s=None)
    crawls = speed < cfg.lookahead_floor_m / cfg.lookahead_s
    path = np.array([[0.0, 0.0], [400.0, 0.0], [400.0, 300.0]])
    side = shapely.MultiLineString([[(200.0, 120.0), (200.0, 5.0)]])  # into the path at 200 m
    one_way = (np.array([0.0, 700.0]), np.array([False, False]))
    corridor = segments.corridor_pieces(path, speed, cfg)
    stretch = segments.stretch_pieces(path, speed, one_way, cfg)
    feeders = segments.feeder_pieces(side, path, 0.0, speed, cfg)
    assert {p.directions for p in corridor} == {"both"} and len(corridor) == len(stretch) == 5
    assert {p.directions for p in stretch} == {"forward"} and len(feeders) == 1
    for pieces in (corridor, stretch, feeders):
        if crawls:
            assert all(p.eta_s is None for p in pieces)
        else:
            assert pieces[-1].eta_s == pytest.approx(
                (700.0 if pieces is not feeders else 200.0) / speed + slack
            )
    standing = segments.standing_pieces(side, cfg)
    assert len(standing) == 1 and standing[0].eta_s is None
    np.testing.assert_allclose(standing[0].xy, [[200.0, 120.0], [200.0, 5.0]])


def _stopped_at_800(cfg: EngineConfig) -> AlertEvent:
    """The event of a responding unit standing on Main 800 m east (a queue), heading east."""
    msgs = [east_route(), fix(1.0, 0.0, speed_mps=15.0), fix(60.0, 800.0, speed_mps=0.0)]
    return drive(msgs, cfg, roads=network())[1][-1]


def test_a_stopped_unit_names_its_road_behind_it_only_when_set():
    """``segment_stopped_behind`` (off by default): the walk up a stopped unit's road (its
    drivers are behind it and follow it) is named in the segments or not; the zone is the
    same either way."""
    named = _stopped_at_800(msgspec.structs.replace(SEGMENTS, segment_stopped_behind=True))
    unnamed = _stopped_at_800(SEGMENTS)
    assert named.kind == unnamed.kind == "approaching" and named.speed_mps == 0.0

    def behind(ev: AlertEvent) -> list[WarningSegment]:  # on Main, from the west up to it
        return [s for s in ev.segments
                if all(abs(xy(*p)[1]) < 5 and xy(*p)[0] < 805 for p in s.line)
                and xy(*s.line[0])[0] < 795]  # fmt: skip

    eastbound = [s.eta_s is None and s.directions == "forward" and heading_of(s.line)[0] > 0.99
                 for s in behind(named)]  # fmt: skip
    assert eastbound and all(eastbound)
    assert behind(unnamed) == []
    assert all(s in named.segments for s in unnamed.segments)  # nothing else named instead
    assert unnamed.zone == named.zone and unnamed.path == named.path


def _crossing() -> RoadNetwork:
    """Main (two-way, east-west) crossed at 600 m by Cross (two-way, north-south, 400 m each
    side): a four-way junction."""

    def road(name: str, *pts: list[float]) -> dict:
        props = {"name": name, "maxspeed_mps": 12, "oneway": False}
        return {"properties": props, "geometry": {"type": "LineString", "coordinates": list(pts)}}

    return RoadNetwork.from_features([
        road("Main", ll(-200), ll(600), ll(3_000)),
        road("Cross", ll(600, 400), ll(600), ll(600, -400)),
    ])  # fmt: skip


def _stopped_in_junction(
    at: tuple[float, float], heading: float, route: Route, cfg: EngineConfig = SEGMENTS
) -> AlertEvent:
    """The event of a responding unit standing at ``at`` (metres east, north) on the crossing."""
    msgs = [route, fix(1.0, 0.0, speed_mps=15.0),
            fix(60.0, at[0], north_m=at[1], speed_mps=0.0, heading_deg=heading)]  # fmt: skip
    events = drive(msgs, cfg, roads=_crossing())[1]
    assert events[-1].speed_mps == 0.0
    return events[-1]


def _into_junction(ev: AlertEvent, dx: float, dy: float) -> list[WarningSegment]:
    """The event's segments running toward the junction at 600 m in direction (dx, dy) and
    ending there (within 10 m)."""
    out = []
    for s in ev.segments:
        hx, hy = heading_of(s.line)
        ex, ey = xy(*s.line[-1])
        if hx * dx + hy * dy > 0.99 and math.hypot(ex - 600.0, ey) < 10.0:
            out.append(s)
    return out


def _turning_north_route() -> Route:
    """East from the Square to Cross at 600 m, then north up it."""
    coords = [(ll(e)[0], ll(e)[1]) for e in range(0, 601, 100)]
    coords += [(ll(600, n)[0], ll(600, n)[1]) for n in range(100, 401, 100)]
    end = coords[-1]
    return Route(
        vehicle_id="CFD-E7", incident_id="F1", ts=at(0.0),
        destination=LatLon(lat=end[1], lon=end[0]), route=LineStringGeometry(coordinates=coords),
    )  # fmt: skip


@pytest.mark.parametrize("east", [598.0, 600.0, 604.0, 608.0])
def test_a_unit_stopped_in_a_junction_still_names_its_cross_traffic(east):
    """A unit standing in a junction (or just short of it: its GPS says which by chance) names
    the cross street's drivers about to enter it, from both sides; its own road behind it is
    not named (``segment_stopped_behind`` off)."""
    ev = _stopped_in_junction((east, 0.0), 90.0, east_route())
    assert _into_junction(ev, 0.0, -1.0), "Cross from the north, southbound"
    assert _into_junction(ev, 0.0, 1.0), "Cross from the south, northbound"
    behind = [s for s in ev.segments
              if all(abs(xy(*p)[1]) < 5 and xy(*p)[0] < east + 5 for p in s.line)
              and xy(*s.line[0])[0] < east - 50]  # fmt: skip
    assert behind == [], "Main from the west, behind the unit, stays unnamed"


def test_a_unit_stopped_mid_turn_names_the_traffic_entering_its_junction():
    """Turning north from Main onto Cross, standing in the junction at 45 degrees: Main's
    westbound drivers from the east and Cross's northbound ones from the south enter where
    it stands."""
    ev = _stopped_in_junction((600.0, 5.0), 45.0, _turning_north_route())
    assert _into_junction(ev, -1.0, 0.0), "Main from the east, westbound"
    assert _into_junction(ev, 0.0, 1.0), "Cross from the south, northbound"


def _two_lines() -> RoadNetwork:
    """Main drawn as two one-way lines 10 m apart (one undivided road): East at 0 m north,
    West at 10 m north; Spur (two-way) joins West from the north at 1,000 m."""

    def road(name: str, *pts: list[float], oneway: bool = True) -> dict:
        props = {"name": name, "maxspeed_mps": 12, "oneway": oneway}
        return {"properties": props, "geometry": {"type": "LineString", "coordinates": list(pts)}}

    return RoadNetwork.from_features([
        road("Main", ll(-200), ll(3_000)),
        road("Main", ll(3_000, 10), ll(1_000, 10), ll(-200, 10)),
        road("Spur", ll(1_000, 300), ll(1_000, 10), oneway=False),
    ])  # fmt: skip


def _route_south_of(north_m: float) -> Route:
    coords = [(ll(e, north_m)[0], ll(e, north_m)[1]) for e in range(0, 3_001, 100)]
    end = coords[-1]
    return Route(
        vehicle_id="CFD-E7", incident_id="F1", ts=at(0.0),
        destination=LatLon(lat=end[1], lon=end[0]), route=LineStringGeometry(coordinates=coords),
    )  # fmt: skip


@pytest.mark.parametrize("route_north_m", [0.0, -4.0])
def test_a_unit_stopped_on_a_road_drawn_as_two_lines_names_its_oncoming_lanes_ahead(
    route_north_m,
):
    """One road drawn as two one-way lines 10 m apart: the CAD route 4 m off to the far side
    is 14 m from the oncoming line (past ``divided_gap_m``: divided, as the route is matched),
    the unit's own line 10 m (undivided, as its walk judges). Stopped, its oncoming lanes
    ahead are named either way: by the stretch ahead (both ways) or by its walk."""
    msgs = [_route_south_of(route_north_m), fix(1.0, 0.0, speed_mps=15.0),
            fix(60.0, 800.0, speed_mps=0.0)]  # fmt: skip
    ev = drive(msgs, SEGMENTS, roads=_two_lines())[1][-1]
    assert ev.speed_mps == 0.0

    def oncoming(s: WarningSegment) -> bool:  # a westbound line ahead of the unit, reaching it
        pts = [xy(*p) for p in s.line]
        on_main = all(abs(py - 10.0) < 12.0 and px > 790.0 for px, py in pts)
        west = s.directions == "both" or heading_of(s.line)[0] < -0.99
        return on_main and west and min(px for px, _ in pts) < 830.0

    assert any(oncoming(s) for s in ev.segments), [s.line for s in ev.segments]


def _on_scene_at_800(cfg: EngineConfig) -> AlertEvent:
    msgs = [east_route(), fix(1.0, 0.0, speed_mps=15.0),
            fix(60.0, 800.0, speed_mps=0.0, status="on_scene")]  # fmt: skip
    events = drive(msgs, cfg, roads=network())[1]
    return next(e for e in events if e.kind == "on_scene")


def test_the_scenes_road_is_named_upstream_for_segment_scene_upstream_s_the_zone_unchanged():
    """``segment_scene_upstream_s`` (25 s): the scene's road is named as far upstream as a
    driver covers in that many seconds (Main: 12 m/s, so 300 m west of a unit at 800 m), not
    the zone's ``on_scene_upstream_s`` (30 s: 360 m); None: as the zone. The zone is the same."""
    short = _on_scene_at_800(SEGMENTS)
    whole = _on_scene_at_800(msgspec.structs.replace(SEGMENTS, segment_scene_upstream_s=None))
    assert SEGMENTS.segment_scene_upstream_s == 25.0 < SEGMENTS.on_scene_upstream_s == 30.0

    def west_end(ev: AlertEvent) -> float:  # where Main's eastbound segments start
        return min(xy(*p)[0] for s in ev.segments for p in s.line
                   if abs(xy(*p)[1]) < 5 and heading_of(s.line)[0] > 0.99)  # fmt: skip

    assert west_end(short) == pytest.approx(800.0 - 25.0 * 12.0, abs=5.0)
    assert west_end(whole) == pytest.approx(800.0 - 30.0 * 12.0, abs=5.0)
    assert short.zone == whole.zone


def _arriving_at_400(cfg: EngineConfig) -> AlertEvent:
    """A unit 400 m short of its scene (an 800 m route), its stretch ahead reaching the scene:
    the scene's road upstream is named while it arrives."""
    msgs = [east_route(800.0), fix(1.0, 400.0, speed_mps=15.0)]
    return drive(msgs, cfg, roads=network())[1][-1]


def test_an_arriving_unit_names_the_scenes_road_upstream_for_segment_scene_upstream_s():
    """While arriving, the scene's road upstream (no ETA: named until the alert ends) reaches
    ``segment_scene_upstream_s`` x 12 m/s back from the scene at 800 m, and never past the
    zone's ``on_scene_upstream_s``; the zone is the same."""
    cfgs = {
        "short": SEGMENTS,  # 25 s: 300 m
        "zone's": msgspec.structs.replace(SEGMENTS, segment_scene_upstream_s=None),  # 30 s
        "past the zone's": msgspec.structs.replace(  # capped at the zone's 22 s: 264 m
            SEGMENTS, segment_scene_upstream_s=28.0, on_scene_upstream_s=22.0),
    }
    events = {name: _arriving_at_400(cfg) for name, cfg in cfgs.items()}

    def west_end(ev: AlertEvent) -> float:  # where Main's eastbound open-ended pieces start
        return min(xy(*p)[0] for s in ev.segments if s.eta_s is None for p in s.line
                   if abs(xy(*p)[1]) < 5 and heading_of(s.line)[0] > 0.99)  # fmt: skip

    assert west_end(events["short"]) == pytest.approx(800.0 - 25.0 * 12.0, abs=5.0)
    assert west_end(events["zone's"]) == pytest.approx(800.0 - 30.0 * 12.0, abs=5.0)
    assert west_end(events["past the zone's"]) == pytest.approx(800.0 - 22.0 * 12.0, abs=5.0)
    assert events["short"].zone == events["zone's"].zone
