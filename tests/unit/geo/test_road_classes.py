"""The road-class table: what other files call a road -> the OSM class the graph keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.geo.roads.road_classes import (
    DRIVABLE_CLASSES,
    NOT_FOR_CARS,
    NUMERIC_SCHEMES,
    SYNONYMS,
    RoadClasses,
    RoadClassesError,
    load_road_classes,
    normalise,
    osmnx_list,
    parse_road_classes,
)

TABLE = RoadClasses()


@given(
    cls=st.sampled_from(DRIVABLE_CLASSES),
    prefix=st.sampled_from(["", "highway.", "highway:", "highway=", "HIGHWAY.", " "]),
    upper=st.booleans(),
    suffix=st.sampled_from(["", "|railway.tram", " "]),
)
def test_every_osm_class_reads_as_itself_however_prefixed_or_cased(
    cls: str, prefix: str, upper: bool, suffix: str
) -> None:
    written = prefix + (cls.upper() if upper else cls) + suffix
    assert TABLE.resolve(written).highway == cls


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Residential Street", "residential"),
        ("Local Road", "residential"),
        ("Minor Arterial", "secondary"),
        ("Principal Arterial", "primary"),
        ("Collector", "tertiary"),
        ("Freeway", "motorway"),
        ("On-Ramp", "motorway_link"),
        ("Alley", "service"),
        ("primary_road", "primary"),
    ],
)
def test_gis_words_map_to_osm_classes(written: str, expected: str) -> None:
    found = TABLE.resolve(written)
    assert (found.highway, found.how) == (expected, "table")


@given(word=st.sampled_from(sorted(NOT_FOR_CARS)), prefix=st.sampled_from(["", "highway."]))
def test_classes_no_car_drives_on_are_left_out_not_unknown(word: str, prefix: str) -> None:
    found = TABLE.resolve(prefix + word)
    assert found.highway is None and found.how != "unknown"


@given(word=st.text(alphabet="qxzjvk", min_size=3, max_size=12))
def test_an_unknown_word_follows_the_policy(word: str) -> None:
    assert TABLE.resolve(word).how == "unknown" and TABLE.resolve(word).highway is None
    kept = RoadClasses(unknown="keep").resolve(word)
    assert (kept.highway, kept.how) == ("unclassified", "unknown")


@given(scheme=st.sampled_from(sorted(NUMERIC_SCHEMES)), data=st.data())
def test_numbered_classes_follow_their_scheme(scheme: str, data: st.DataObject) -> None:
    number = data.draw(st.sampled_from(sorted(NUMERIC_SCHEMES[scheme])))
    target = NUMERIC_SCHEMES[scheme][number]
    found = RoadClasses(scheme=scheme).resolve(str(number))  # type: ignore[arg-type]
    assert found.highway == (None if target == "none" else target)


def test_the_property_name_implies_the_numeric_scheme() -> None:
    assert RoadClasses().of({"FRC": 0}).highway == "motorway"
    assert RoadClasses().of({"F_SYSTEM": 7}).highway == "residential"
    assert RoadClasses().of({"highway": 3}).how == "unknown"  # a bare number, no scheme


def test_a_line_without_class_is_drivable_and_highway_comes_first() -> None:
    assert RoadClasses().of({"name": "Main"}).highway == "unclassified"
    assert RoadClasses().of({"highway": "footway", "class": "primary"}).highway is None
    assert RoadClasses(property="kind").of({"highway": "footway", "kind": "Arterial"}).highway \
        == "primary"


def test_synonyms_only_name_drivable_classes() -> None:
    assert set(SYNONYMS.values()) <= set(DRIVABLE_CLASSES)


def test_a_mapping_file_maps_more_and_wins_over_the_table(tmp_path: Path) -> None:
    path = tmp_path / "classes.toml"
    path.write_text(
        'property = "ROAD_CLASS"\nunknown = "keep"\n[classes]\n'
        '"Ped Mall" = "none"\n"Collector" = "secondary"\n"Highway" = "trunk"\n'
    )
    classes = load_road_classes(path)
    assert classes.of({"ROAD_CLASS": "ped mall"}).highway is None  # normalised form
    assert classes.of({"ROAD_CLASS": "Collector"}).highway == "secondary"
    assert classes.of({"ROAD_CLASS": "HIGHWAY"}).highway == "trunk"
    assert classes.of({"ROAD_CLASS": "Boulevard X"}).highway == "unclassified"  # kept


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[classes]\n"Ped Mall" = "footpath"\n', "want one of"),
        ('unknown = "maybe"\n', "unknown"),
        ('colour = "red"\n', "colour"),
        ('[classes]\n"A Road" = "primary"\n"a-road" = "secondary"\n', "read the same"),
        ("[classes\n", "not valid TOML"),
    ],
)
def test_a_bad_mapping_file_is_refused_naming_the_place(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "classes.toml"
    path.write_text(text)
    with pytest.raises(RoadClassesError, match=says) as info:
        load_road_classes(path)
    assert str(path) in str(info.value)


def test_normalise_reads_prefixes_and_sumo_types() -> None:
    assert normalise("highway.primary|railway.tram") == "primary"
    assert normalise("railway.tram|highway.secondary") == "secondary"
    assert parse_road_classes({}).mapping == {}


@given(
    classes=st.lists(st.sampled_from(DRIVABLE_CLASSES), min_size=1, max_size=4, unique=True),
    extra=st.lists(st.sampled_from(["footway", "Ped Mall", None, ""]), max_size=2),
    data=st.data(),
)
def test_a_class_written_as_a_list_reads_as_its_most_important_drivable_class(
    classes: list[str], extra: list[str | None], data: st.DataObject
) -> None:
    # osmnx merges ways of several classes into one edge and writes their classes as a list:
    # a JSON array in GeoJSON, the list as text in its GeoPackage; every such line was unknown
    written = data.draw(st.permutations([*classes, *extra]))
    best = min(classes, key=DRIVABLE_CLASSES.index)
    as_text = "[" + ", ".join(repr(c) for c in written) + "]"
    for value in (written, as_text):
        found = TABLE.of({"highway": value})
        assert found.highway == best, value
        assert found.how != "unknown"


def test_the_class_and_the_speed_read_an_osmnx_list_alike() -> None:
    # each had a reader of its own, and they stripped an item's ends differently (spaces then
    # quotes; or spaces and quotes, but no tab): "[\t'walk']" was no speed at all
    from broker.geo.roads import parse_maxspeed

    text = "[\t'walk', ' 'residential' ]"
    assert osmnx_list(text) == ["walk", "residential"]
    assert parse_maxspeed(text) == parse_maxspeed("walk") is not None
    assert TABLE.resolve(text).highway == "residential"


def test_a_list_of_classes_no_car_drives_on_is_left_out_and_of_unknown_ones_unknown() -> None:
    assert TABLE.of({"highway": ["footway", "steps"]}).highway is None
    assert TABLE.of({"highway": ["footway", "steps"]}).how != "unknown"
    assert TABLE.of({"highway": ["Ped Mall", "Cart Track"]}).how == "unknown"
    assert RoadClasses(unknown="keep").of({"highway": ["Ped Mall"]}).highway == "unclassified"
    kept = RoadClasses(unknown="keep").of({"highway": ["Ped Mall", "living_street"]})
    assert (kept.highway, kept.how) == ("living_street", "table")  # a known class first


def test_a_bad_mapping_entry_is_named_by_its_key_and_value() -> None:
    """``foo = 3`` under ``[classes]`` said "classes....: want text" (msgspec's path of a
    table's entry has no key: ``$.classes[...]``; a CLI review)."""
    with pytest.raises(RoadClassesError) as err:
        parse_road_classes({"classes": {"bar": "primary", "foo": 3}}, source="int.toml")
    assert str(err.value) == "int.toml: classes.foo: want text, got 3"
