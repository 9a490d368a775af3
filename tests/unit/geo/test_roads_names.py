"""Road names: read from each kind of network file, kept per segment (one string per name), and
the street a zone is about (``broker.geo.zoning.street_of``, ``AlertEvent.street``).

Partners show that name to drivers (a Waze CIFS item's required ``street``, CAP's ``areaDesc``):
only a road's own ``name`` (else ``ref``), printable, never an id the file uses for its lines.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import codec
from broker.geo.memo import GeoMemo
from broker.geo.roads import RoadNetwork
from broker.geo.roads.osm import MAX_NAME_CHARS, road_name
from broker.geo.route import ProjectedRoute
from broker.geo.zone_batch import ZoneBatch
from broker.geo.zoning import ZoneRequest, street_of, warning_zone
from broker.model import PRINTABLE, LatLon, LineStringGeometry, Route
from broker.settings import EngineConfig
from tests.unit.geo.test_roads import FRAME, ORIGIN, X0, Y0
from tests.unit.geo.test_roads import street as feature  # drawing metres -> a Feature

CFG = EngineConfig()


def names_near(net: RoadNetwork, x: float, y: float) -> set[str]:
    """The names of the segments within 1 m of the drawing point (x, y)."""
    segs = net.graph.tree.query(shapely.Point(x + X0, y + Y0), predicate="dwithin", distance=1.0)
    return {net.graph.seg_name[s] for s in segs.tolist()}


# ---- reading names ----------------------------------------------------------------------------

OSM_XML = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="hand">
  <node id="1" lat="35.2000" lon="-80.8000"/>
  <node id="2" lat="35.2000" lon="-80.7950"/>
  <node id="3" lat="35.2000" lon="-80.7900"/>
  <node id="4" lat="35.2050" lon="-80.7950"/>
  <node id="5" lat="35.1950" lon="-80.7950"/>
  <node id="6" lat="35.1950" lon="-80.7900"/>
  <way id="10"><nd ref="1"/><nd ref="2"/>
    <tag k="highway" v="primary"/><tag k="name" v="  Trade&#9;St "/><tag k="ref" v="NC 27"/></way>
  <way id="11"><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="primary"/><tag k="name" v="Trade St"/></way>
  <way id="12"><nd ref="2"/><nd ref="4"/><tag k="highway" v="trunk"/><tag k="ref" v="US 74"/></way>
  <way id="13"><nd ref="2"/><nd ref="5"/><tag k="highway" v="service"/></way>
  <way id="14"><nd ref="5"/><nd ref="6"/><tag k="highway" v="residential"/>
    <tag k="name" v="Line&#10;Break Ave"/></way>
</osm>
"""


def test_osm_names_come_from_name_else_ref_cleaned_and_shared(tmp_path: Path) -> None:
    file = tmp_path / "named.osm"
    file.write_text(OSM_XML)
    net = RoadNetwork.load(file, frame=FRAME, log_warnings=False)
    names = net.graph.seg_name
    assert sorted(set(names)) == ["", "Line Break Ave", "Trade St", "US 74"]
    trade = [n for n in names if n == "Trade St"]
    assert len(trade) == 2 and trade[0] is trade[1]  # two ways, one string (interned)


def test_geojson_names_come_from_name_else_ref_in_any_case() -> None:
    net = RoadNetwork.from_features([
        feature([(0, 0), (300, 0)], NAME="Main St"),  # a GIS export's upper-case column
        feature([(300, 0), (600, 0)], ref=77),  # a route number
        feature([(300, 0), (300, 300)], name=["Side St", "Old Rd"]),  # not a name: none
        feature([(300, 0), (300, -300)], name="\u2028 ", ref="SR 1"),  # blank name: the ref
        feature([(0, 0), (0, 300)]),
    ], frame=FRAME)  # fmt: skip
    assert names_near(net, 150, 0) == {"Main St"}
    assert names_near(net, 450, 0) == {"77"}
    assert names_near(net, 300, 150) == {""}
    assert names_near(net, 300, -150) == {"SR 1"}
    assert names_near(net, 0, 150) == {""}


def test_sumo_names_are_the_edges_name_never_their_id(tmp_path: Path) -> None:
    sumo = pytest.importorskip("sumo")
    pytest.importorskip("sumolib")
    (tmp_path / "p.nod.xml").write_text(
        '<nodes><node id="w" x="-300" y="0"/><node id="c" x="0" y="0"/>'
        '<node id="e" x="300" y="0"/><node id="n" x="0" y="200"/></nodes>'
    )
    (tmp_path / "p.edg.xml").write_text(
        "<edges>"
        '<edge id="wc" from="w" to="c" name="Main St"/>'
        '<edge id="cw" from="c" to="w" name="Main St"/>'
        '<edge id="ce" from="c" to="e"/><edge id="ec" from="e" to="c"/>'
        '<edge id="nc" from="n" to="c"/>'
        "</edges>"
    )
    subprocess.run(
        [str(Path(sumo.SUMO_HOME) / "bin" / "netconvert"), "--node-files", "p.nod.xml",
         "--edge-files", "p.edg.xml", "-o", "p.net.xml"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    net = RoadNetwork.load(tmp_path / "p.net.xml", frame=FRAME,
                           origin=(-80.8, 35.2), log_warnings=False)  # fmt: skip
    assert sorted(net.graph.seg_name) == ["", "", "Main St"]  # ce/ec and nc: no name, no id


ANY_CHAR = st.characters(blacklist_categories=())  # lone surrogates, bidi overrides too
INVISIBLE = {"Cf", "Cs", "Co"}  # and non-characters; the rest of Cn is a newer script's


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(ANY_CHAR, max_size=200), st.integers(), st.floats(), st.booleans(),
                 st.none(), st.lists(st.text(max_size=5), max_size=2)))  # fmt: skip
def test_a_road_name_is_printable_folded_short_and_stable(value: object) -> None:
    name = road_name(value)
    assert re.fullmatch(PRINTABLE, name)
    # the joiners Persian, Arabic and Indic names need are kept, no other invisible character
    assert not {unicodedata.category(c) for c in name if c not in "\u200c\u200d"} & INVISIBLE
    assert not any(0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE for c in name)
    assert not name or any(c.isalnum() for c in name)
    raw = codec.encode(StreetOnly(street=name))  # as the worker writes alerts and states
    assert msgspec.json.decode(raw, type=StreetOnly).street == name
    assert len(name) <= MAX_NAME_CHARS and name == name.strip() and "  " not in name
    assert road_name(name) == name  # cleaning twice changes nothing
    if (isinstance(value, str) and value.isprintable() and len(value) < 100
            and any(c.isalnum() for c in value)):
        assert name == " ".join(value.split())  # a plain name is kept as written
    if isinstance(value, bool | float) or value is None:
        assert name == ""


class StreetOnly(msgspec.Struct):
    street: str


def test_a_name_with_invisible_or_unencodable_characters_loses_them() -> None:
    """A lone surrogate (json.loads reads "\\ud800" as one) made every alert naming the road fail
    to encode (the worker's alert and state writes: a restart loop); a bidi override makes a
    partner's driver read "Main Stexe.png" as something else; zero-width text passes as a name.
    """
    text = json.dumps({"type": "FeatureCollection", "features": [
        feature([(0, 0), (300, 0)], name="Elm \ud800St"),
        feature([(300, 0), (600, 0)], name="Main St\u202egnp.exe\u2069"),
        feature([(0, 0), (0, 300)], name="\u200b\u200b\ufeff", ref="SR 7"),  # nothing: the ref
        feature([(0, 0), (0, -300)], name="\u202e\ud800", ref="\u2066"),  # nothing at all
    ]})  # as a GeoJSON file has them: "\\ud800", which json.loads reads back as it is
    assert "\\ud800" in text
    net = RoadNetwork.from_features(json.loads(text)["features"], frame=FRAME)
    assert names_near(net, 150, 0) == {"Elm St"}
    assert names_near(net, 450, 0) == {"Main Stgnp.exe"}
    assert names_near(net, 0, 150) == {"SR 7"}
    assert names_near(net, 0, -150) == {""}
    assert street_of(request(0, -150), None, CFG, net) is None
    for x in (150, 450):
        street = street_of(request(x, 3), None, CFG, net)
        assert street is not None and codec.encode(StreetOnly(street=street))


# ---- the street a zone is about ---------------------------------------------------------------

# Main St east-west; Cross St north-south through x=300; an unnamed lane east of x=600
GRID = (
    feature([(0, 0), (300, 0), (600, 0)], name="Main St"),
    feature([(300, -300), (300, 0), (300, 300)], name="Cross St"),
    feature([(600, 0), (900, 0)]),
)


@pytest.fixture(scope="module")
def grid() -> RoadNetwork:
    return RoadNetwork.from_features(list(GRID), frame=FRAME)


def request(x: float, y: float, kind: str = "on_scene", **kw: object) -> ZoneRequest:
    return ZoneRequest(kind=kind, frame=FRAME, x=x + X0, y=y + Y0, speed_mps=kw.pop("speed", 0.0),
                       accuracy_m=5.0, **kw)  # type: ignore[arg-type]


def route_along(*xy: tuple[float, float]) -> ProjectedRoute:
    lonlat = FRAME.coords_to_lonlat(np.asarray(xy, dtype=float) + ORIGIN)
    end = lonlat[-1]
    route = Route(vehicle_id="E1", incident_id="I1", ts=datetime(2026, 1, 1, tzinfo=UTC),
                  destination=LatLon(lon=float(end[0]), lat=float(end[1])),
                  route=LineStringGeometry(coordinates=[tuple(p) for p in lonlat.tolist()]))
    return GeoMemo().projected_route(route)


def test_on_scene_the_street_is_the_road_the_unit_stands_on(grid: RoadNetwork) -> None:
    assert street_of(request(150, 8), None, CFG, grid) == "Main St"
    assert street_of(request(300, 150), None, CFG, grid) == "Cross St"
    assert street_of(request(750, 5), None, CFG, grid) is None  # a road without a name
    assert street_of(request(150, 200), None, CFG, grid) is None  # no road within 50 m
    assert street_of(request(150, 8), None, CFG, None) is None  # no road network


def test_a_dispatch_zone_names_no_street(grid: RoadNetwork) -> None:
    pr = route_along((0, 0), (300, 0), (300, 300))
    req = request(0, 0, "approaching", route=pr, along_m=0.0, ahead_end_m=300.0, named=False)
    assert street_of(req, 300.0, CFG, grid) is None
    assert warning_zone(req, CFG, grid, GeoMemo()).street is None
    assert ZoneBatch(CFG, grid, GeoMemo()).defer(req).street is None


def test_along_a_route_the_street_is_the_units_road_then_the_next_named_one(
    grid: RoadNetwork,
) -> None:
    pr = route_along((0, 0), (300, 0), (300, 300))  # Main St, then left onto Cross St
    for along, want in ((10.0, "Main St"), (250.0, "Main St"), (350.0, "Cross St")):
        req = request(0, 0, "approaching", route=pr, along_m=along, speed=10.0)
        ahead = min(along + 300.0, pr.length_m)
        assert street_of(req, ahead, CFG, grid) == want
        assert warning_zone(req, CFG, grid, GeoMemo()).street == want
        batch = ZoneBatch(CFG, grid, GeoMemo())
        assert batch.defer(req).street == want  # known before build(): the event needs it
    # from the unnamed lane toward Main St: the first named road ahead
    pr = route_along((900, 0), (600, 0), (300, 0))
    req = request(900, 0, "approaching", route=pr, along_m=10.0, speed=10.0)
    assert street_of(req, 400.0, CFG, grid) == "Main St"
    assert street_of(req, 100.0, CFG, grid) is None  # not within the stretch ahead


def test_the_last_name_stays_while_its_road_is_near(grid: RoadNetwork) -> None:
    # on scene at the corner, GPS putting it nearer Cross St: Main St stays if it was given
    assert street_of(request(308, 14), None, CFG, grid) == "Cross St"
    assert street_of(request(308, 14, street="Main St"), None, CFG, grid) == "Main St"
    assert street_of(request(312, 120, street="Main St"), None, CFG, grid) == "Cross St"


def test_the_last_name_does_not_stick_to_a_road_the_unit_is_not_on() -> None:
    """A motorway bridge over a street (no shared node): without a heading, GPS at the crossing
    can name the street underneath (a known limit: OSM's layer/bridge tags are not read); the
    name must not then stick once the unit is clearly on the motorway (until 2026-12-07 the
    last name was kept while its road was within 50 m, heading or not)."""
    net = RoadNetwork.from_features([
        feature([(0, 0), (600, 0)], name="I-77", highway="motorway", oneway=False),
        feature([(300, -300), (300, 300)], name="Elm St"),
    ], frame=FRAME)  # fmt: skip
    assert street_of(request(301, 3), None, CFG, net) == "Elm St"  # the known limit
    assert street_of(request(301, 3, fix_heading_deg=90.0), None, CFG, net) == "I-77"
    for heading in (None, 90.0):  # 40 m on: Elm St is 38 m further than the unit's road
        req = request(340, 2, fix_heading_deg=heading, street="Elm St")
        assert street_of(req, None, CFG, net) == "I-77"


@settings(max_examples=60, deadline=None)
@given(x=st.floats(20.0, 580.0), off=st.floats(-15.0, 15.0),
       heading=st.one_of(st.none(), st.sampled_from([90.0, 270.0])))  # fmt: skip
def test_a_unit_on_a_named_road_away_from_corners_gets_its_name(
    grid: RoadNetwork, x: float, off: float, heading: float | None
) -> None:
    if abs(x - 300.0) < 60.0:
        x = 240.0 if x < 300.0 else 360.0  # away from the corner: one road within reach
    for kind in ("on_scene", "approaching"):
        req = request(x, off, kind, fix_heading_deg=heading, heading_deg=heading)
        assert street_of(req, None, CFG, grid) == "Main St"
    far = request(x, math.copysign(80.0, off or 1.0), "approaching", heading_deg=heading)
    assert street_of(far, None, CFG, grid) is None  # off every road: nothing named


def test_a_name_keeps_the_joiners_its_script_needs_and_joiners_alone_are_no_name() -> None:
    persian = "\u0645\u06cc\u200c\u0631\u0648\u062f"  # with a zero-width non-joiner
    assert road_name(persian) == persian
    assert road_name("\u200d\u200c\u00ad") == "" and road_name("\u200b\u200dx") == "\u200dx"


def test_a_name_in_a_script_newer_than_pythons_tables_is_kept() -> None:
    """Unassigned in Python 3.11's Unicode 14 tables is not unassigned: a CJK Extension H
    ideograph (Unicode 15) was dropped, changing the name; non-characters still go."""
    assert road_name("\U00031350\u8def") == "\U00031350\u8def"
    assert road_name("x\ufdd0y\uffff") == "xy"
