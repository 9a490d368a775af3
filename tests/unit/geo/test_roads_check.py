"""What ``broker roads check`` finds, on small networks drawn in metres for each finding.

Every network is written to a GeoJSON file and loaded as ``--roads`` loads it, so the checks run
through the same readers, class table and snapping as the engine's roads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.geo.projection import frame_for
from broker.geo.roads import RoadClasses, RoadNetwork, RoadNetworkError
from broker.geo.roads.check import components_of, suggested_snap_m
from broker.geo.roads.osm import oneway_known, parse_oneway

FRAME = frame_for(-80.8, 35.2)
ORIGIN = np.array(FRAME.to_xy(-80.8, 35.2))


def street(xy: list[tuple[float, float]], **props: object) -> dict:
    """A GeoJSON Feature from a polyline in drawing metres (x east, y north)."""
    lonlat = FRAME.coords_to_lonlat(np.asarray(xy, dtype=float) + ORIGIN)
    return {
        "type": "Feature",
        "properties": {"maxspeed_mps": 10.0, **props},
        "geometry": {"type": "LineString", "coordinates": lonlat.tolist()},
    }


def write(tmp: Path, *features: dict) -> Path:
    path = tmp / "roads.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


MAIN = street([(0, 0), (200, 0), (400, 0)], name="Main")


def side(gap_m: float, x: float = 100.0, **props: object) -> dict:
    """A side street from the north that stops ``gap_m`` short of Main."""
    return street([(x, 150.0), (x, gap_m)], **props)


def test_a_connected_network_is_clean() -> None:
    net = RoadNetwork.from_features([MAIN, side(0.0)], frame=FRAME)
    report = net.check
    assert report.usable and not report.warnings
    assert (report.components, report.junctions, report.dead_ends) == (1, 1, 3)
    assert report.km_total == pytest.approx(0.55, abs=1e-3)
    assert report.km_by_class == {"unclassified": pytest.approx(0.55, abs=1e-3)}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(gap=st.floats(1.3, 4.8))
def test_a_line_end_stopping_short_is_a_near_miss_with_a_snap_that_joins_it(
    tmp_path: Path, gap: float
) -> None:
    path = write(tmp_path, MAIN, side(gap))
    report = RoadNetwork.load(path).check
    assert report.components == 2 and len(report.near_misses) == 1
    assert report.near_misses[0].gap_m == pytest.approx(gap, abs=0.05)
    suggestion = suggested_snap_m(report.near_misses)
    assert suggestion is not None and gap <= suggestion <= gap + 0.55
    assert any(f"snap_m = {suggestion}" in w for w in report.warnings)
    snapped = RoadNetwork.load(path, snap_m=suggestion).check
    assert (snapped.components, len(snapped.near_misses), snapped.snap.joined) == (1, 0, 1)
    assert snapped.usable and not snapped.warnings


def test_an_end_within_a_metre_joins_by_default_and_a_far_one_is_no_near_miss(
    tmp_path: Path,
) -> None:
    joined = RoadNetwork.load(write(tmp_path, MAIN, side(0.6))).check
    assert (joined.components, joined.snap.joined, len(joined.near_misses)) == (1, 1, 0)
    far = RoadNetwork.load(write(tmp_path, MAIN, side(30.0, x=100), side(0.0, x=300))).check
    assert far.components == 2 and not far.near_misses


def test_a_mostly_disconnected_network_is_refused_at_load_with_the_fix(tmp_path: Path) -> None:
    # a grid whose streets all stop 3 m short of each other: nothing joins (at the corners the
    # two ends are 3 * sqrt(2) = 4.24 m apart, so the snap that joins everything is 4.5 m)
    lines = [street([(x, 3.0), (x, 297.0)]) for x in (0.0, 100.0, 200.0, 300.0)]
    lines += [street([(x0 + 3.0, y), (x0 + 97.0, y)]) for y in (0.0, 150.0, 300.0)
              for x0 in (0.0, 100.0, 200.0)]  # fmt: skip
    path = write(tmp_path, *lines)
    with pytest.raises(RoadNetworkError, match="mostly disconnected") as info:
        RoadNetwork.load(path)
    assert "snap_m = 4.5" in str(info.value) and str(path) in str(info.value)
    report = RoadNetwork.load(path, allow_unusable=True).check
    assert not report.usable and report.components == len(lines)
    fixed = RoadNetwork.load(path, snap_m=4.5).check
    assert fixed.usable and fixed.components == 1


def test_a_network_cut_apart_by_unknown_classes_says_to_map_them(tmp_path: Path) -> None:
    """The cross streets of a grid in a class the table does not know are left out, and the
    rest falls apart: the refusal suggested a snap that joins nothing (an operator review)."""
    lines = [street([(x, 0.0), (x, 300.0)], highway="residential")
             for x in (0.0, 100.0, 200.0, 300.0, 400.0)]
    lines += [street([(0.0, y), (400.0, y)], highway="strada_comunale")
              for y in (0.0, 150.0, 300.0)]  # fmt: skip
    with pytest.raises(RoadNetworkError, match="mostly disconnected") as info:
        RoadNetwork.load(write(tmp_path, *lines))
    assert "3 lines of unknown class were left out" in str(info.value)
    assert 'unknown = "keep"' in str(info.value)


def test_pieces_cut_off_from_the_rest_are_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    island = street([(0, 500), (100, 500)])  # 100 m of 500 m: 20 % cut off
    with caplog.at_level(logging.WARNING):
        net = RoadNetwork.load(write(tmp_path, MAIN, island))
    report = net.check
    assert report.usable and report.largest_share == pytest.approx(0.8, abs=1e-3)
    assert report.small_components_km == pytest.approx(0.1, abs=1e-3)
    assert any("cut off" in w for w in report.warnings)
    assert any("cut off" in r.getMessage() for r in caplog.records)


def test_unknown_classes_are_counted_and_follow_the_policy(tmp_path: Path) -> None:
    path = write(
        tmp_path, MAIN, side(0.0, highway="Ped Mall"), side(0.0, x=300, highway="footway")
    )
    dropped = RoadNetwork.load(path).check
    assert dropped.unknown_classes == {"Ped Mall": 1}
    assert dropped.dropped == {"unknown_class": 1, "not_for_cars": 1}
    assert dropped.not_for_cars == {"footway": 1}
    assert dropped.lines_read == 3 and dropped.lines_kept == 1
    assert any("'Ped Mall' (1)" in w for w in dropped.warnings)
    kept = RoadNetwork.load(path, classes=RoadClasses(unknown="keep")).check
    assert kept.lines_kept == 2 and kept.junctions == 1
    with pytest.raises(RoadNetworkError, match="unknown road class: 'Ped Mall'"):
        RoadNetwork.load(path, classes=RoadClasses(unknown="error"))


def test_prefixed_classes_load_where_they_were_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        street([(0, 0), (400, 0)], type="highway.primary"),
        street([(200, 200), (200, 0)], type="highway.residential"),
        street([(0, 10), (400, 10)], highway="highway.motorway"),  # OSM's word: one-way
    )
    report = RoadNetwork.load(path).check
    assert set(report.km_by_class) == {"primary", "residential", "motorway"}
    assert report.mapped_classes == {}  # OSM's own words, prefixed
    assert report.oneway_share == pytest.approx(0.4 / 1.0, abs=1e-3)


def test_a_class_property_the_lines_do_not_have_is_a_warning(tmp_path: Path) -> None:
    """A road-class file naming ``ROADCLASS`` where the export says ``ROAD_CLASS`` kept every
    line as an unclassified road, footways too, with no warning and exit 0."""
    path = write(
        tmp_path,
        street([(0, 0), (400, 0)], ROAD_CLASS="Freeway"),
        street([(200, 200), (200, 0)], ROAD_CLASS="Walkway"),
    )
    wrong = RoadNetwork.load(path, classes=RoadClasses(property="ROADCLASS")).check
    assert wrong.lines_kept == 2
    assert any("2 of 2 lines have no 'ROADCLASS' property" in w for w in wrong.warnings)
    right = RoadNetwork.load(path, classes=RoadClasses(property="ROAD_CLASS")).check
    assert not any("property" in w for w in right.warnings)


def test_a_mapped_class_does_not_imply_one_way(tmp_path: Path) -> None:
    path = write(tmp_path, street([(0, 0), (400, 0)], road_class="Freeway"))
    report = RoadNetwork.load(path).check
    assert report.km_by_class == {"motorway": pytest.approx(0.4, abs=1e-3)}
    assert report.mapped_classes == {"Freeway": {"motorway": 1}}
    assert report.oneway_share == 0.0 and report.directed_edges == 2


@pytest.mark.parametrize("blank", [None, "", " "])
def test_a_blank_oneway_says_nothing(tmp_path: Path, blank: object) -> None:
    """GIS exports write every column on every line: ``"oneway": null`` (or ``""``) where the
    source has none. That read as "no oneway given, imply one": a two-way ``Freeway`` (mapped,
    so implying nothing) became one-way, its oncoming lanes never walked. An OSM-word motorway
    stays one-way, as OSM implies."""
    path = write(
        tmp_path, street([(0, 0), (400, 0)], road_class="Freeway", oneway=blank),
        street([(0, 300), (400, 300)], highway="motorway", oneway=blank),
    )  # fmt: skip
    report = RoadNetwork.load(path, allow_unusable=True).check
    assert report.directed_edges == 3  # the Freeway both ways, the motorway one
    assert report.oneway_share == pytest.approx(0.5, abs=1e-3)


def test_one_way_share_is_of_the_km(tmp_path: Path) -> None:
    path = write(tmp_path, MAIN, side(0.0, oneway="yes"), side(0.0, x=300, oneway=True))
    report = RoadNetwork.load(path).check
    assert report.oneway_share == pytest.approx(0.3 / 0.7, abs=1e-3)


def test_nothing_drivable_says_why(tmp_path: Path) -> None:
    path = write(tmp_path, street([(0, 0), (100, 0)], highway="Sidewalk Strip"))
    with pytest.raises(RoadNetworkError, match=r"1 unknown_class.*'Sidewalk Strip'"):
        RoadNetwork.load(path)


def test_bad_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    point = {"type": "Feature", "properties": {}, "geometry": {"type": "Point",
             "coordinates": [-80.8, 35.2]}}  # fmt: skip
    short = street([(0, 0)])
    report = RoadNetwork.load(write(tmp_path, MAIN, point, short)).check
    assert report.dropped == {"not_a_line": 1, "too_few_points": 1}


def _feature(geometry: object, properties: object = None) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def test_malformed_features_are_left_out_and_counted_with_a_warning(tmp_path: Path) -> None:
    line = MAIN["geometry"]["coordinates"]
    bad = [
        _feature("LineString"),  # a string where the geometry goes
        _feature({"type": "LineString"}),  # no coordinates
        _feature({"type": "MultiLineString", "coordinates": "x"}),
        _feature({"type": "LineString", "coordinates": [[c[0]] for c in line]}),  # lon only
        _feature({"type": "LineString", "coordinates": [[200.0, 35.2], [201.0, 35.2]]}),
        _feature({"type": "LineString", "coordinates": [[-80.8, 35.2], [float("nan"), 35.2]]}),
        # RFC 7946 coordinates are numbers: text that float() would read is still not one
        _feature({"type": "LineString", "coordinates": [["-80.8", "35.2"], ["-80.7", "35.2"]]}),
        _feature({"type": "LineString", "coordinates": [[-80.8, 35.2], [-80.7, None]]}),
        _feature({"type": "LineString", "coordinates": line}, properties=["not", "a", "dict"]),
    ]
    report = RoadNetwork.load(write(tmp_path, MAIN, *bad)).check
    # the last one loads (its properties are ignored): Main again, drawn over the first, so
    # read once (a duplicate line)
    assert report.dropped == {"not_a_line": 3, "bad_coordinates": 5, "duplicate_line": 1}
    assert report.lines_kept == 1
    assert any("5 malformed lines left out: coordinates that are not [lon, lat]" in w
               for w in report.warnings)  # fmt: skip


def test_bad_coordinates_are_named_with_the_place_the_value_and_the_files_crs(
    tmp_path: Path,
) -> None:
    """An export left in web mercator (ogr2ogr keeps the source CRS and writes GeoJSON 2008's
    ``crs`` member) was refused as "500 lines read, left out: 500 bad_coordinates": no word of
    which line, what it said, or that the file says its CRS itself."""
    mercator = [[-8994000.0, 4191000.0], [-8993000.0, 4191000.0]]
    features = [MAIN, _feature({"type": "LineString", "coordinates": mercator})]
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": features}))
    warning = next(w for w in RoadNetwork.load(path).check.warnings if "malformed" in w)
    assert "feature 1: [-8994000.0, 4191000.0]" in warning
    assert "'urn:ogc:def:crs:EPSG::3857'" in warning and "lon/lat" in warning
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": features[1:]}))
    with pytest.raises(RoadNetworkError, match=r"feature 0: \[-8994000.0, 4191000.0\].*EPSG::3857"):
        RoadNetwork.load(path)
    lonlat = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": lonlat, "features": features}))
    warning = next(w for w in RoadNetwork.load(path).check.warnings if "malformed" in w)
    assert "feature 1" in warning and "crs" not in warning  # lon/lat: no blame on the CRS


def test_a_zero_length_line_is_left_out_not_counted_as_a_node_and_a_piece(
    tmp_path: Path,
) -> None:
    """A line whose points all lie on one spot (exports have them: a road shortened to nothing)
    made no segment, but its end stayed a node of the graph: the check counted it as kept, as a
    node and as a second connected piece of a network in one piece."""
    dot = street([(900, 900), (900, 900)])
    report = RoadNetwork.load(write(tmp_path, MAIN, dot)).check
    assert (report.nodes, report.components, report.small_components) == (2, 1, 0)
    assert report.lines_kept == 1 and report.dropped == {"too_few_points": 1}
    grid = [street([(0, y), (400, y)]) for y in (0, 300)] + [street([(0, 0), (0, 300)])]
    report = RoadNetwork.load(write(tmp_path, *grid, *[dot] * 3)).check
    assert report.components == 1 and report.nodes == 4


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "coordinates", "geometries", "properties", "geometry"]), inner,
        max_size=3),
    max_leaves=12,
)  # fmt: skip
geometries = st.one_of(
    json_values,
    st.fixed_dictionaries({"type": st.sampled_from(["LineString", "MultiLineString",
                                                    "GeometryCollection"]),
                           "coordinates": json_values, "geometries": json_values}),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(features=st.lists(st.builds(_feature, geometries, json_values), max_size=4))
def test_any_json_in_a_road_file_loads_or_is_refused_by_name(
    tmp_path_factory: pytest.TempPathFactory, features: list[dict]
) -> None:
    path = write(tmp_path_factory.mktemp("roads"), MAIN, *features)
    try:
        net = RoadNetwork.load(path)
    except RoadNetworkError as err:  # the one error a caller is promised, naming the file
        assert str(path) in str(err)
    else:
        assert net.check.lines_kept >= 1  # Main at least


@given(
    n=st.integers(1, 30),
    pairs=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=40),
)
def test_components_agree_with_a_union_find(n: int, pairs: list[tuple[int, int]]) -> None:
    pairs = [(a % n, b % n) for a, b in pairs]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    u = np.array([a for a, _ in pairs], dtype=np.int64)
    v = np.array([b for _, b in pairs], dtype=np.int64)
    label = components_of(n, u, v)
    for i in range(n):
        for j in range(n):
            assert (label[i] == label[j]) == (root(i) == root(j))


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(gaps=st.lists(st.floats(1.5, 3.0), min_size=4, max_size=4))
def test_ends_pulled_back_from_a_crossing_all_meet_again_at_one_junction(
    tmp_path: Path, gaps: list[float]
) -> None:
    # four arms of a crossing, each stopping short of the centre (as traffic-model exports
    # draw them): every end is nearest another arm's end, so the joins must chain
    arms = [
        street([(-200.0, 0.0), (-gaps[0], 0.0)]), street([(gaps[1], 0.0), (200.0, 0.0)]),
        street([(0.0, -200.0), (0.0, -gaps[2])]), street([(0.0, gaps[3]), (0.0, 200.0)]),
    ]  # fmt: skip
    path = write(tmp_path, *arms)
    report = RoadNetwork.load(path, allow_unusable=True).check
    assert report.components == 4 and len(report.near_misses) == 4
    snap = suggested_snap_m(report.near_misses)
    joined = RoadNetwork.load(path, snap_m=snap).check
    assert (joined.components, joined.junctions, joined.dead_ends) == (1, 1, 4)
    assert not joined.near_misses


@pytest.mark.parametrize("kind", ["LineString", "MultiLineString", "GeometryCollection"])
def test_a_file_that_is_one_bare_geometry_loads_its_lines(tmp_path: Path, kind: str) -> None:
    """RFC 7946 lets a GeoJSON text be a geometry; such a file was refused as "1 not_a_line":
    a LineString said not to be a LineString."""
    line = MAIN["geometry"]
    geometry = {
        "LineString": line,
        "MultiLineString": {"type": "MultiLineString", "coordinates": [line["coordinates"]]},
        "GeometryCollection": {"type": "GeometryCollection", "geometries": [line]},
    }[kind]
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps(geometry))
    report = RoadNetwork.load(path).check
    assert (report.lines_read, report.lines_kept) == (1, 1)


@pytest.mark.parametrize("doc", [{}, {"type": "Topology", "objects": {}}, {"type": "Point"}])
def test_an_object_that_holds_no_lines_says_what_it_is(tmp_path: Path, doc: dict) -> None:
    # was: "no drivable roads (1 lines read, left out: 1 not_a_line)" for a TopoJSON file
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(RoadNetworkError) as err:
        RoadNetwork.load(path)
    message = str(err.value)
    assert "roads.geojson" in message and "not_a_line" not in message
    assert repr(doc.get("type")) in message and "FeatureCollection" in message


def test_a_file_with_no_lines_at_all_says_so(tmp_path: Path) -> None:
    # was: "roads.geojson: no drivable roads" and nothing more, as if roads had been filtered
    path = write(tmp_path)
    with pytest.raises(RoadNetworkError, match=r"roads\.geojson: no drivable roads \(0 lines read"):
        RoadNetwork.load(path)


@pytest.mark.parametrize("name", ["roads.shp", "roads.gpkg", "roads.csv", "roads.kml"])
def test_a_gis_layer_is_refused_saying_how_to_convert_it(tmp_path: Path, name: str) -> None:
    # was: the list of suffixes alone, nothing on how to get there from the layer a city has
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(RoadNetworkError) as err:
        RoadNetwork.load(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "unknown road network file type" in message
    assert f"ogr2ogr -f GeoJSON -t_srs EPSG:4326 roads.geojson {path}" in message


@given(value=st.sampled_from(["B", "T", "F", "One Way", "yes;no", "2", "Both"]))
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_oneway_value_the_reader_does_not_know_is_a_warning(
    tmp_path: Path, value: str
) -> None:
    """Exports write direction in their own words (HERE's "B" / "F" / "T", "One Way"); one the
    reader does not know reads as two-way, which errs toward warning, but it did so without a
    word: a city's one-way streets loaded at 0 % one-way, "nothing looks wrong"."""
    path = write(tmp_path, MAIN, side(0.0, ONEWAY=value), side(0.0, x=300, oneway="yes"))
    report = RoadNetwork.load(path).check
    warning = next(w for w in report.warnings if "oneway" in w)
    assert f"{value!r} (1)" in warning and "two-way" in warning
    assert report.to_dict()["oneway_unknown"] == {value: 1}


@given(
    written=st.sampled_from([("Y", 1), ("N", 0), ("FT", 1), ("TF", -1)]),
    case=st.sampled_from([str.upper, str.lower, str.title]),
    pad=st.sampled_from(["", " "]),
)
def test_gis_oneway_flags_read_as_they_say(
    written: tuple[str, int], case: object, pad: str
) -> None:
    """A city layer's ONEWAY column of Y / N flags, or ESRI's FT (one-way along the drawing)
    and TF (against it): "Y" read as two-way, and FT / TF said nothing of the direction."""
    value, direction = written
    text = pad + case(value) + pad  # type: ignore[operator]
    assert parse_oneway(text) == direction
    assert oneway_known(text)


@pytest.mark.parametrize(
    "stray",
    [[[0.0, 0.0], [0.001, 0.0]], [[0, 0], [0, 0]], "spike"],
    ids=["a line at null island", "a point there twice", "one vertex there"],
)
def test_a_point_at_null_island_is_a_bad_coordinate(tmp_path: Path, stray: object) -> None:
    """Exports write a missing point as [0, 0]. Such a line was kept: a 9,000 km "road" from
    Charlotte to the Gulf of Guinea at "nothing looks wrong", and the frame's centre (the middle
    of the bounding box) dragged halfway there, every street's length off by 5 %."""
    alone = RoadNetwork.load(write(tmp_path, MAIN, side(0.0))).check.km_total
    if stray == "spike":
        stray = [*MAIN["geometry"]["coordinates"][-1:], [0.0, 0.0]]
    report = RoadNetwork.load(write(tmp_path, MAIN, side(0.0), _feature(
        {"type": "LineString", "coordinates": stray}))).check  # fmt: skip
    assert report.dropped == {"bad_coordinates": 1}
    assert report.km_total == pytest.approx(alone, rel=1e-6)
    assert any("feature 2: [0" in w for w in report.warnings)


def _reversed(feature: dict) -> dict:
    coords = feature["geometry"]["coordinates"][::-1]
    return {**feature, "geometry": {**feature["geometry"], "coordinates": coords}}


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(gap=st.floats(1.3, 4.8), flip=st.booleans())
def test_a_road_drawn_twice_is_read_once(tmp_path: Path, gap: float, flip: bool) -> None:
    """osmnx's edges (graph_to_gdfs) draw every two-way street twice, once per direction, and
    tiles merged with overlap draw roads twice. Both lines were kept: the km doubled, and a
    dead end met by two lines was no dead end, so a line end stopping short was never a near
    miss and never snapped: 'no line ends stop close to another line: check the file'."""
    once = RoadNetwork.load(write(tmp_path, MAIN, side(gap))).check
    again = [_reversed(f) if flip else f for f in (MAIN, side(gap))]
    twice = RoadNetwork.load(write(tmp_path, MAIN, side(gap), *again)).check
    assert twice.km_total == pytest.approx(once.km_total, rel=1e-9)
    assert (twice.dead_ends, len(twice.near_misses)) == (once.dead_ends, 1)
    assert twice.dropped == {"duplicate_line": 2} and twice.lines_kept == 2
    snapped = RoadNetwork.load(tmp_path / "roads.geojson", snap_m=5.0).check
    assert snapped.components == 1


def test_a_line_drawn_again_with_a_direction_it_lacked_is_kept(tmp_path: Path) -> None:
    # a two-way road drawn as two opposite one-way lines on one centreline: both directions
    path = write(tmp_path, MAIN, side(0.0, oneway="yes"), _reversed(side(0.0, oneway="yes")))
    report = RoadNetwork.load(path).check
    assert report.lines_kept == 3 and not report.dropped


@pytest.mark.parametrize("stray", [(-80.8, 3.52), (8.08, 35.2), (-80.8, -35.2)])
def test_a_stray_vertex_thousands_of_km_away_is_a_warning(
    tmp_path: Path, stray: tuple[float, float]
) -> None:
    """A typo in one vertex (35.2 written 3.52, a sign or a digit lost) drew a road thousands
    of km long: 'road km 7,021', 'ok: usable, nothing looks wrong'."""
    coords = MAIN["geometry"]["coordinates"]
    typo = _feature({"type": "LineString", "coordinates": [coords[0], list(stray), coords[-1]]})
    report = RoadNetwork.load(write(tmp_path, MAIN, side(0.0), typo)).check
    warning = next(w for w in report.warnings if "stray" in w)
    assert "1 line" in warning and f"{stray[0]:.4f}, {stray[1]:.4f}" in warning
    clean = RoadNetwork.load(write(tmp_path, MAIN, side(0.0))).check
    assert not clean.warnings


@pytest.mark.parametrize("separator", ["", "\x1e"], ids=["newline-delimited", "RFC 8142"])
def test_a_geojson_text_sequence_is_refused_saying_what_it_is(
    tmp_path: Path, separator: str
) -> None:
    # ogr2ogr -f GeoJSONSeq writes one Feature per line; it was refused as "Extra data: line 2
    # column 1" (or "Expecting value: line 1 column 1"), nothing on what the file is or the fix
    path = tmp_path / "roads.geojson"
    path.write_text("".join(f"{separator}{json.dumps(f)}\n" for f in (MAIN, side(0.0))))
    with pytest.raises(RoadNetworkError) as err:
        RoadNetwork.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not readable as GeoJSON")
    assert "one Feature per line" in message and "ogr2ogr -f GeoJSON" in message
