"""Data minimisation: what a partner's view holds, and what it never holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
import shapely
from hypothesis import example, given
from hypothesis import strategies as st

from adapters.policy import Policy, public_alert_id, view_as_dict, view_for
from adapters.zone_rounding import NotAnEmergencyAlert
from tests.unit.adapters.factory import KEY, alert


def test_a_view_without_identifying_fields_has_no_vehicle_incident_or_raw_alert_id() -> None:
    ev = alert("update", 2)
    view = view_for(ev, Policy(fields=frozenset({"position", "path"})), key=KEY)
    text = msgspec.json.encode(view_as_dict(view)).decode()
    for secret in (ev.vehicle_id, ev.incident_id, ev.alert_id, "CFD", "F261125"):
        assert secret not in text
    assert view.alert_id == public_alert_id(ev.alert_id, KEY, ev.started_at)


def test_public_alert_id_is_stable_per_alert_and_depends_on_the_key() -> None:
    start = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    a = public_alert_id("CFD-E7:F1:approaching", KEY, start)
    assert a == public_alert_id("CFD-E7:F1:approaching", KEY, start)
    assert a == public_alert_id("CFD-E7:F1:approaching", KEY,
                                start.astimezone(timezone(timedelta(hours=-5))))
    assert a != public_alert_id("CFD-E7:F1:on_scene", KEY, start)
    assert a != public_alert_id("CFD-E7:F1:approaching", b"another key", start)
    assert a.isalnum()


def test_each_life_of_an_engine_id_has_its_own_partner_id_and_webhook_ids() -> None:
    """An engine id repeats (a unit without a CAD incident; one the engine forgot after hours
    idle starts again at version 1): under one partner id the second life's create had the
    first life's webhook-id, which a de-duplicating partner (``broker sink``) dropped."""
    policy = Policy(fields=frozenset({"position"}))
    morning = alert("create", 1, incident_id=None)
    evening = msgspec.structs.replace(
        morning, ts=morning.ts + timedelta(hours=9), started_at=morning.ts + timedelta(hours=9),
        expires_at=morning.expires_at + timedelta(hours=9),
    )
    first, again = view_for(morning, policy, key=KEY), view_for(evening, policy, key=KEY)
    assert first.alert_id != again.alert_id
    assert first.message_id != again.message_id
    update = view_for(alert("update", 2, incident_id=None), policy, key=KEY)
    assert update.alert_id == first.alert_id  # one id for the whole life


def test_a_cancel_never_carries_the_units_position_or_movement() -> None:
    everything = Policy(fields=frozenset({"position", "speed", "heading", "path", "vehicle_id"}))
    view = view_for(alert("cancel", 4), everything, key=KEY)
    assert view.lat is None and view.lon is None and view.speed_mps is None
    assert view.heading_deg is None and view.path == ()
    assert view.vehicle_id == "CFD-E7"  # allowed for this (agency) policy
    assert "position" not in view.fields_sent


def test_coordinates_are_rounded_to_the_policy_precision() -> None:
    view = view_for(alert(), Policy(frozenset({"position"}), coordinate_decimals=3), key=KEY)
    assert view.lat == round(view.lat, 3)
    for lon, lat in view.zone["coordinates"][0]:
        assert (lon, lat) == (round(lon, 3), round(lat, 3))
    assert view.zone["coordinates"][0][0] == view.zone["coordinates"][0][-1]


def test_anything_but_an_emergency_alert_is_refused() -> None:
    from broker.model import Position
    from tests.unit.adapters.factory import T0

    pos = Position(vehicle_id="CFD-E7", ts=T0, lat=35.2, lon=-80.8, status="available")
    with pytest.raises(NotAnEmergencyAlert):
        view_for(pos, Policy(), key=KEY)  # type: ignore[arg-type]


def test_unknown_policy_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy fields"):
        Policy(fields=frozenset({"driver_name"}))


# ---- coarsening never falls back to precise coordinates -------------------------------------

_lonlat = st.tuples(
    st.floats(-80.9, -80.8, allow_nan=False), st.floats(35.2, 35.3, allow_nan=False)
)


@example(  # a bow tie at 2 decimals: made valid as a MultiPolygon (once missed by this test)
    points=[(-80.84375, 35.234375), (-80.8125, 35.25), (-80.8125, 35.234375),
            (-80.875, 35.21875), (-80.875, 35.25)], decimals=2, scale=1.0,
)
@given(
    points=st.lists(_lonlat, min_size=3, max_size=12),
    decimals=st.integers(0, 4),
    scale=st.sampled_from([1.0, 1e-3, 1e-5]),  # full size, small, a few decimetres
)
def test_a_coarse_policy_never_sends_a_coordinate_finer_than_its_grid(
    points: list[tuple[float, float]], decimals: int, scale: float
) -> None:
    lon0, lat0 = points[0]
    ring = [[lon0 + (lon - lon0) * scale, lat0 + (lat - lat0) * scale] for lon, lat in points]
    ring.append(ring[0])
    zone = {"type": "Polygon", "coordinates": [ring]}
    view = view_for(alert(zone=zone), Policy(coordinate_decimals=decimals), key=b"k" * 32)
    # a ring that crosses itself is made valid: two polygons, say, for a bow tie
    polys = [view.zone["coordinates"]] if view.zone["type"] == "Polygon" \
        else view.zone["coordinates"]
    for r in (r for rings in polys for r in rings):
        assert len(r) >= 4 and r[0] == r[-1]
        for lon, lat in r:
            assert round(lon, decimals) == lon and round(lat, decimals) == lat, (lon, lat)


def test_a_collapsed_ring_becomes_the_grid_cell_around_it() -> None:
    # an on-scene circle of ~20 m centred on the unit: 3 decimals (~100 m) collapse it
    from adapters.zone_rounding import round_zone

    lon, lat = -80.84312, 35.22714
    tiny = [[lon + dx, lat + dy] for dx, dy in
            [(0, 0), (1e-4, 0), (1e-4, 1e-4), (0, 1e-4), (0, 0)]]
    zone = {"type": "Polygon", "coordinates": [tiny]}
    assert round_zone(zone, 3)["coordinates"] == [[
        [-80.844, 35.227], [-80.843, 35.227], [-80.843, 35.228], [-80.844, 35.228],
        [-80.844, 35.227]]]
    # an on-scene zone sent to a partner is drawn from the grid point nearest its centroid
    # (-80.843, 35.227): the four cells around it
    view = view_for(alert(zone=zone, kind="on_scene", lon=lon + 5e-5, lat=lat + 5e-5),
                    Policy(coordinate_decimals=3), key=b"k" * 32)
    assert view.zone["coordinates"] == [[
        [-80.844, 35.226], [-80.842, 35.226], [-80.842, 35.228], [-80.844, 35.228],
        [-80.844, 35.226]]]
    # an approaching zone is not moved: the cells it touches
    view = view_for(alert(zone=zone, lon=lon + 5e-5, lat=lat + 5e-5),
                    Policy(coordinate_decimals=3), key=b"k" * 32)
    assert view.zone == round_zone(zone, 3)


def test_an_on_scene_cancel_gets_the_cells_of_its_zone_not_of_the_fix_that_ended_it() -> None:
    """A cancel carries the alert's last zone but the position of the fix that ended it (the
    unit driving off, or a fix out of emergency mode): drawn from that position, a feed's
    cancelled Feature changed shape, and a non-emergency fix moved what partners got."""
    import shapely

    lon, lat = -80.84431, 35.22677
    circle = shapely.orient_polygons(shapely.set_precision(
        shapely.Point(lon, lat).buffer(1.9e-3, quad_segs=4), 1e-6), exterior_cw=False)
    zone = {"type": "Polygon", "coordinates": [[list(p) for p in circle.exterior.coords]]}
    update = view_for(alert("update", 2, zone=zone, kind="on_scene", lon=lon, lat=lat),
                      Policy(coordinate_decimals=3), key=KEY)
    for dx, dy in ((3e-4, 0.0), (0.0, -6e-4), (2.1e-3, 1.3e-3)):
        cancel = view_for(alert("cancel", 3, zone=zone, kind="on_scene", lon=lon + dx,
                                lat=lat + dy), Policy(coordinate_decimals=3), key=KEY)
        assert cancel.zone == update.zone, (dx, dy)


def test_an_approaching_corridor_is_not_moved_off_its_road() -> None:
    """Moving a corridor as if the unit stood at its cell's centre draws the part past a turn
    off its street: with the street map, where the cells fall then says where in its cell the
    unit is. An approaching zone gets the cells it touches, wherever the unit is in its cell."""
    corridor = [[-80.8450, 35.2260], [-80.8400, 35.2262], [-80.8370, 35.2290]]
    line = shapely.buffer(shapely.LineString(corridor), 3.5e-4, cap_style="flat")
    zone = {"type": "Polygon", "coordinates": [[list(p) for p in shapely.orient_polygons(
        line, exterior_cw=False).exterior.coords]]}
    views = {json.dumps(view_for(alert(zone=zone, lon=-80.8450 + fx * 1e-3,
                                       lat=35.2260 + fy * 1e-3),
                                 Policy(coordinate_decimals=3), key=KEY).zone)
             for fx in (0.1, 0.5, 0.9) for fy in (0.1, 0.5, 0.9)}
    assert len(views) == 1
    _coverage_and_grid(zone, json.loads(views.pop()), 3)


# ---- a coarse zone is grid cells: it covers the zone and says nothing finer than a cell -------

def _coverage_and_grid(zone: dict, out: dict, decimals: int) -> None:
    import shapely
    from shapely.geometry import shape

    from adapters.zone_rounding import COARSE_MAX_POSITIONS

    _assert_valid_on_grid(out, decimals)
    real, coarse = shape(zone), shape(out)
    assert coarse.covers(real), real.difference(coarse).area / real.area
    assert shapely.get_num_coordinates(coarse) <= COARSE_MAX_POSITIONS
    parts = [coarse] if out["type"] == "Polygon" else list(coarse.geoms)
    assert [p.area for p in parts] == sorted((p.area for p in parts), reverse=True)
    for part in parts:  # RFC 7946: holes clockwise; and no point where two edges run on
        for ring in (part.exterior, *part.interiors):
            assert shapely.get_num_coordinates(ring) == \
                shapely.get_num_coordinates(shapely.simplify(ring, 0))
        assert all(not r.is_ccw for r in part.interiors)


@example(  # a collinear point left where the outline's ring began (simplify keeps it)
    points=[(-80.875, 35.21875), (-80.875, 35.28125), (-80.8125, 35.28125),
            (-80.8125, 35.265625), (-80.859375, 35.203125)],
    half_width=3e-4, decimals=4, anchored=False,
)
@given(
    points=st.lists(_lonlat, min_size=1, max_size=6),
    half_width=st.sampled_from([3e-4, 4e-4, 2e-3]),  # a corridor's ~40 m, ~200 m (on scene)
    decimals=st.integers(0, 4),
    anchored=st.booleans(),
)
def test_a_coarse_zone_covers_the_zone_with_grid_cells(
    points: list[tuple[float, float]], half_width: float, decimals: int, anchored: bool
) -> None:
    """Rounded vertex by vertex (snap-rounded where that folded a ring), the open-data zone of
    a corridor narrower than a grid cell missed up to two thirds of it."""
    import shapely

    shape_ = shapely.LineString(points) if len(points) > 1 else shapely.Point(points[0])
    zone_geom = shapely.buffer(shape_, half_width, quad_segs=4)
    zone_geom = shapely.orient_polygons(shapely.set_precision(zone_geom, 1e-6), exterior_cw=False)
    if not isinstance(zone_geom, shapely.Polygon) or not zone_geom.is_valid:
        return
    zone = {"type": "Polygon",
            "coordinates": [[list(p) for p in r.coords]
                            for r in (zone_geom.exterior, *zone_geom.interiors)]}
    lon, lat = points[0]
    if anchored:  # on scene: drawn from the grid point nearest the zone's centroid (moved)
        ev = alert(zone=zone, lon=lon, lat=lat, kind="on_scene")
        out = view_for(ev, Policy(coordinate_decimals=decimals), key=KEY).zone
    else:
        from adapters.zone_rounding import round_zone

        out = round_zone(zone, decimals)
    _coverage_and_grid(zone, out, decimals)


def test_a_corridor_narrower_than_a_cell_is_covered_whole() -> None:
    """An ~80 m corridor turning a corner, as the engine draws a unit's road ahead: snapped to
    the 3-decimal grid, the published zone covered 49 % of it (the reviewer's recorded zones:
    median 65 %, min 34 %, with roads)."""
    import shapely

    line = shapely.LineString([(-80.8512, 35.2193), (-80.8430, 35.2193), (-80.8430, 35.2260)])
    corridor = shapely.orient_polygons(
        shapely.set_precision(shapely.buffer(line, 4e-4, quad_segs=4), 1e-6), exterior_cw=False)
    zone = {"type": "Polygon", "coordinates": [[list(p) for p in corridor.exterior.coords]]}
    view = view_for(alert(zone=zone, lon=-80.8512, lat=35.2193),
                    Policy(coordinate_decimals=3), key=KEY)
    _coverage_and_grid(zone, view.zone, 3)


def test_an_on_scene_circle_says_only_which_cell_the_unit_is_in() -> None:
    """Without roads the on-scene zone is a circle around the unit. Its rounded outline's
    centroid found the unit within ~10 m where the rounding is ~100 m (the reviewer's 36
    zones: median 10 m, max 20 m). Drawn from the grid point nearest the unit, every position
    that rounds to that point gives the same zone, centred on it."""
    import shapely
    from shapely.geometry import shape

    west, south = -80.845, 35.226  # the 3-decimal grid point positions round to here
    zones, drawn = set(), []
    for fx in (-0.49, -0.2, 0.0, 0.27, 0.49):
        for fy in (-0.48, -0.1, 0.1, 0.48):
            lon, lat = west + fx * 1e-3, south + fy * 1e-3
            # ~190 m, 16 sides (not a whole number of cells: on a cell edge, the 0.1 m of
            # the 6-decimal rounding picks the side)
            circle = shapely.Point(lon, lat).buffer(1.9e-3, quad_segs=4)
            circle = shapely.orient_polygons(shapely.set_precision(circle, 1e-6),
                                             exterior_cw=False)
            zone = {"type": "Polygon",
                    "coordinates": [[list(p) for p in circle.exterior.coords]]}
            view = view_for(alert(zone=zone, kind="on_scene", lon=lon, lat=lat),
                            Policy(coordinate_decimals=3), key=KEY)
            zones.add(json.dumps(view.zone))
            drawn.append((zone, view.zone))
    assert len(zones) == 1, f"{len(zones)} different zones for positions in one cell"
    for zone, out in drawn:
        _coverage_and_grid(zone, out, 3)
    centre = shape(json.loads(zones.pop())).centroid
    assert (round(centre.x, 4), round(centre.y, 4)) == (west, south)


def test_a_coarse_partner_given_the_position_learns_no_more_from_the_on_scene_zone() -> None:
    """The position rounds to the nearest grid point; the on-scene zone was drawn from the
    unit's cell (rounded down), so the two together placed the unit in a quarter of a cell
    (a privacy review: one cell's positions in 4 groups). Both now say the nearest point."""
    import shapely

    seen: dict[tuple[str, float | None, float | None], int] = {}
    for fx in (-0.45, -0.15, 0.15, 0.45):
        for fy in (-0.45, -0.15, 0.15, 0.45):
            lon, lat = -80.843 + fx * 1e-3, 35.227 + fy * 1e-3
            circle = shapely.set_precision(shapely.Point(lon, lat).buffer(1.9e-3, quad_segs=4),
                                           1e-6)
            circle = shapely.orient_polygons(circle, exterior_cw=False)
            zone = {"type": "Polygon", "coordinates": [[list(p) for p in circle.exterior.coords]]}
            view = view_for(alert(zone=zone, kind="on_scene", lon=lon, lat=lat),
                            Policy(fields=frozenset({"position"}), coordinate_decimals=3),
                            key=KEY)
            key = (json.dumps(view.zone), view.lat, view.lon)
            seen[key] = seen.get(key, 0) + 1
    assert len(seen) == 1, f"one grid point's positions in {len(seen)} (zone, position) groups"
    assert next(iter(seen))[1:] == (35.227, -80.843)


def test_a_hole_larger_than_the_cells_stays_a_clockwise_hole_and_cap_drops_it() -> None:
    from lxml import etree

    from adapters import cap
    from adapters.zone_rounding import round_zone

    outer = [[-80.86, 35.21], [-80.83, 35.21], [-80.83, 35.24], [-80.86, 35.24], [-80.86, 35.21]]
    inner = [[-80.85, 35.22], [-80.85, 35.23], [-80.84, 35.23], [-80.84, 35.22], [-80.85, 35.22]]
    zone = {"type": "Polygon", "coordinates": [outer, inner]}
    out = round_zone(zone, 3)
    _coverage_and_grid(zone, out, 3)
    assert len(out["coordinates"]) == 2  # the hole kept (the ring on it is its own cells')
    view = view_for(alert(zone=zone), Policy(coordinate_decimals=3), key=KEY)
    _coverage_and_grid(zone, view.zone, 3)
    doc = etree.fromstring(cap.render(view, sender="s").body)
    assert len(doc.findall(".//c:polygon", namespaces={"c": cap.CAP_NS})) == 1


def test_a_long_diagonal_corridor_at_4_decimals_takes_coarser_cells() -> None:
    """A 10 km diagonal corridor needs hundreds of staircase vertices at ~10 m cells: it gets
    cells 2, 4, ... times as large, still on the 4-decimal grid, at most 100 positions."""
    import shapely

    line = shapely.LineString([(-80.90, 35.20), (-80.80, 35.29)])
    corridor = shapely.orient_polygons(
        shapely.set_precision(shapely.buffer(line, 4e-4, quad_segs=4), 1e-6), exterior_cw=False)
    zone = {"type": "Polygon", "coordinates": [[list(p) for p in corridor.exterior.coords]]}
    view = view_for(alert(zone=zone, lon=-80.90, lat=35.20), Policy(coordinate_decimals=4),
                    key=KEY)
    _coverage_and_grid(zone, view.zone, 4)


# ---- coarsening keeps the zone a valid polygon ------------------------------------------------

# A zone with a narrow notch (two corridors meeting in a V): rounded vertex by vertex to 3
# decimals, the notch's two sides land on one grid line and the ring folds back over itself.
_NOTCH = [[-80.846, 35.225], [-80.840, 35.225], [-80.840, 35.230], [-80.8426, 35.230],
          [-80.8430, 35.226], [-80.8434, 35.230], [-80.846, 35.230], [-80.846, 35.225]]


def _assert_valid_on_grid(zone: dict, decimals: int) -> None:
    import shapely
    from shapely.geometry import shape

    geom = shape(zone)
    assert geom.is_valid, shapely.is_valid_reason(geom)
    polys = [geom] if zone["type"] == "Polygon" else list(geom.geoms)
    for poly in polys:
        assert poly.exterior.is_ccw  # RFC 7946: exteriors counter-clockwise
    for lon, lat in shapely.get_coordinates(geom).tolist():
        assert round(lon, decimals) == lon and round(lat, decimals) == lat, (lon, lat)


def test_a_rounded_zone_never_folds_over_itself() -> None:
    """Rounding each vertex to the open-data grid (3 decimals) folded the rings of about half
    the engine's zones over themselves (spikes, crossing edges): the open-data GeoJSON feed
    published invalid polygons, some of them reading as clockwise."""
    zone = {"type": "Polygon", "coordinates": [_NOTCH]}
    view = view_for(alert(zone=zone), Policy(coordinate_decimals=3), key=KEY)
    _assert_valid_on_grid(view.zone, 3)


@given(
    points=st.lists(_lonlat, min_size=2, max_size=8),
    half_width=st.sampled_from([2e-4, 4e-4, 1e-3]),  # ~20 m, a corridor's ~40 m, ~100 m
    decimals=st.integers(2, 5),
)
# rounded vertex by vertex this corridor stays valid but winds clockwise (a different shape)
@example(points=[(-80.828125, 35.28125), (-80.8984375, 35.23828125), (-80.8828125, 35.25)],
         half_width=2e-4, decimals=2)
def test_a_valid_zone_stays_valid_at_any_coarser_precision(
    points: list[tuple[float, float]], half_width: float, decimals: int
) -> None:
    import shapely

    corridor = shapely.buffer(shapely.LineString(points), half_width, quad_segs=4)
    if not isinstance(corridor, shapely.Polygon) or corridor.is_empty:
        return
    corridor = shapely.orient_polygons(shapely.set_precision(corridor, 1e-6), exterior_cw=False)
    if not corridor.is_valid:
        return
    zone = {"type": "Polygon", "coordinates": [[list(p) for p in corridor.exterior.coords]]}
    view = view_for(alert(zone=zone), Policy(coordinate_decimals=decimals), key=KEY)
    _assert_valid_on_grid(view.zone, decimals)


def test_path_points_that_round_together_are_merged() -> None:
    """Two path points closer than the policy's grid became a zero-length leg: a repeated pair
    in the CIFS polyline and in the webhook's path (the warning segments merged them)."""
    from zoneinfo import ZoneInfo

    from adapters import waze_cifs
    from tests.unit.adapters.factory import LAT0, LON0

    path = [(LON0, LAT0), (LON0 + 2e-6, LAT0 + 1e-6), (LON0 + 0.001, LAT0 + 0.0005)]
    view = view_for(alert(path=path), Policy(frozenset({"path"}), coordinate_decimals=5),
                    key=KEY)
    assert view.path == ((round(LON0, 5), round(LAT0, 5)),
                         (round(LON0 + 0.001, 5), round(LAT0 + 0.0005, 5)))
    item = waze_cifs.item(view, subtype="HAZARD_ON_ROAD", tz=ZoneInfo("UTC"))
    pairs = item["polyline"].split()
    pairs = list(zip(pairs[::2], pairs[1::2], strict=True))
    assert len(pairs) == 2 and pairs[0] != pairs[1]


def test_a_zone_geos_cannot_snap_round_still_reaches_the_partner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GEOS's snap-rounding can give up on a near-degenerate ring ("side location conflict");
    the partner's coarser zone raised out of ``view_for`` then, and its delivery failed, where
    the engine's own snap already rounded point by point and mended the result."""
    import shapely

    real = shapely.set_precision

    def gives_up(geom, grid_size, mode="valid_output"):  # type: ignore[no-untyped-def]
        if mode == "valid_output":
            raise shapely.errors.GEOSException("TopologyException: side location conflict")
        return real(geom, grid_size, mode=mode)

    monkeypatch.setattr(shapely, "set_precision", gives_up)
    zone = {"type": "Polygon", "coordinates": [_NOTCH]}
    view = view_for(alert(zone=zone), Policy(coordinate_decimals=3), key=KEY)
    _assert_valid_on_grid(view.zone, 3)


_coord = st.one_of(st.floats(-180, 180, allow_nan=False), st.integers(-180, 180))
_point = st.one_of(
    st.tuples(_coord, _coord), st.lists(_coord, min_size=2, max_size=3),
    st.tuples(st.floats(-180, 180, allow_nan=False), st.floats(-90, 90, allow_nan=False)),
)


@given(ring=st.lists(_point, max_size=12), decimals=st.integers(0, 7))
def test_a_ring_is_rounded_as_every_number_of_it_would_be(
    ring: list[tuple[float, float]], decimals: int
) -> None:
    """The fast path for float pairs gives the numbers of the recursive rounding (ints, 3-D
    points and lists included), as lists, so the JSON bytes stay the same."""
    from adapters.zone_rounding import _round_coords, _round_ring

    fast = _round_ring(ring, decimals)
    assert fast == _round_coords(ring, decimals)
    assert msgspec.json.encode(fast) == msgspec.json.encode(_round_coords(ring, decimals))


def test_a_rounded_zone_is_checked_as_the_same_geometry_shape_makes() -> None:
    from shapely.geometry import shape

    from adapters.zone_rounding import _geometry

    box = [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]]
    hole = [[1.0, 1.0], [1.0, 2.0], [2.0, 2.0], [2.0, 1.0], [1.0, 1.0]]
    bow = [[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]  # invalid: crosses
    far = [[[10.0, 10.0], [11.0, 10.0], [11.0, 11.0], [10.0, 10.0]]]
    for zone in ({"type": "Polygon", "coordinates": [box]},
                 {"type": "Polygon", "coordinates": [box, hole]},
                 {"type": "Polygon", "coordinates": [bow]},
                 {"type": "MultiPolygon", "coordinates": [[box, hole], far]}):
        made, want = _geometry(zone), shape(zone)
        assert made.wkb == want.wkb and made.is_valid == want.is_valid, zone


def test_a_multipolygon_with_empty_parts_is_rounded_as_before() -> None:
    # found in review: the array-built check raised on a part without rings, where shape()
    # made an empty polygon and the zone came back as it was
    from adapters.zone_rounding import round_zone

    for zone in ({"type": "MultiPolygon", "coordinates": [[]]},
                 {"type": "MultiPolygon", "coordinates": [[], []]}):
        assert round_zone(zone, 4) == zone


def test_segments_that_all_collapse_at_the_precision_are_not_named_as_sent() -> None:
    """A ~30 m segment rounds to one point at 3 decimals and is left out; the view still named
    ``segments`` among the fields sent, so the audit listed a field no byte carried (a privacy
    and audit review)."""
    from msgspec.structs import replace

    from adapters.carried import fields_carried
    from broker.model import WarningSegment
    from tests.unit.adapters.factory import LAT0, LON0

    short = WarningSegment(line=[(LON0, LAT0), (LON0 + 0.0003, LAT0 + 0.0001)],
                           directions="forward", eta_s=5.0)  # fmt: skip
    ev = replace(alert("create", 1), segments=[short])
    coarse = view_for(ev, Policy(fields=frozenset({"segments"}), coordinate_decimals=3), key=KEY)
    assert coarse.segments == () and "segments" not in coarse.fields_sent
    assert "segments" not in fields_carried("webhook", coarse)
    fine = view_for(ev, Policy(fields=frozenset({"segments"}), coordinate_decimals=5), key=KEY)
    assert len(fine.segments) == 1 and "segments" in fine.fields_sent
