"""OpenStreetMap side of the road network: tag semantics and the ``.osm`` / ``.osm.pbf`` reader.

The graph itself lives in :mod:`broker.geo.roads.graph`; this module only turns OSM ways (or
GeoJSON properties that use OSM's vocabulary) into :class:`RawWay` records: lon/lat vertices,
node keys that say where two ways share a junction, a one-way flag and a speed in m/s.

Which ways count: ``highway`` in :data:`DRIVABLE_SPEED_KMH` (the classes a car may drive on),
not ``area=yes``, not closed to motor traffic, not a parking aisle or drive-through.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from broker.geo.roads.check import DropReason, ReadTally
from broker.geo.roads.road_classes import NOT_FOR_CARS, RoadClass, RoadClasses, osmnx_list

OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz", ".osm.xml")
KMH = 1000.0 / 3600.0  # 1 km/h in m/s
MPH = 1609.344 / 3600.0  # 1 mph in m/s
KNOT = 1852.0 / 3600.0  # 1 knot in m/s
# a posted limit above this is a data error (a typo, "5000" for "50"), not a road: walks are
# timed by the speed, and one such road would walk kilometres in a second; the class's default
# speed is taken instead
MAX_ROAD_SPEED_MPS = 250.0 * KMH

# Drivable highway classes and the speed (km/h) assumed where a way carries no usable maxspeed.
# Typical urban/rural limits; a faster guess reaches further upstream (more warning, more area).
DRIVABLE_SPEED_KMH: dict[str, float] = {
    "motorway": 110.0,
    "motorway_link": 60.0,
    "trunk": 90.0,
    "trunk_link": 50.0,
    "primary": 60.0,
    "primary_link": 40.0,
    "secondary": 50.0,
    "secondary_link": 40.0,
    "tertiary": 50.0,
    "tertiary_link": 40.0,
    "unclassified": 40.0,
    "residential": 40.0,
    "living_street": 15.0,
    "service": 20.0,
    "road": 40.0,
}
DEFAULT_HIGHWAY = "unclassified"  # GeoJSON lines without a `highway` property

# Country-coded implicit limits ("FI:urban", "US:rural", "DE:living_street") in km/h.
_IMPLICIT_KMH: dict[str, float] = {
    "urban": 50.0,
    "rural": 80.0,
    "trunk": 100.0,
    "motorway": 120.0,
    "living_street": 20.0,
    "bicycle_road": 30.0,
    "walk": 7.0,
}
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(mph|km/h|kmh|kph|knots)?")
# a road's name as partners show it to drivers (a CIFS item's ``street``, CAP's ``areaDesc``):
# printable text only (what broker.model.PRINTABLE allows), blanks folded, at most this long
MAX_NAME_CHARS = 120
_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# characters a name loses outright: format (bidi overrides and isolates, zero-width, BOM),
# surrogates (a lone one, which json.loads lets through, cannot be encoded as UTF-8: every
# alert naming the road would fail to encode), private use and non-characters. None is shown
# as anything, and some make text read other than it is ("Main St\u202egnp.exe"). Not the rest
# of "unassigned" (Cn): that is unassigned in Python 3.11's Unicode 14 tables, and a name in a
# script added since (Kawi, CJK Extension H) would lose its letters.
_INVISIBLE = frozenset({"Cf", "Cs", "Co"})
# ...except the zero-width joiner and non-joiner: format characters that Persian, Arabic and
# Indic names need to be spelled right (and harmless: they reorder nothing)
_JOINERS = frozenset("\u200c\u200d")
_NO_MOTOR = frozenset({"no", "agricultural", "forestry"})
# the oneway words parse_oneway reads: along the drawing, against it, both ways. Beside OSM's,
# a GIS layer's Y / N flags and ESRI's FT (from-to: along the drawing) and TF (against it)
ONEWAY_ALONG = frozenset({"yes", "true", "1", "y", "ft"})
ONEWAY_AGAINST = frozenset({"-1", "reverse", "tf"})
ONEWAY_BOTH = frozenset({"no", "false", "0", "reversible", "alternating", "n"})
_SKIP_SERVICE = frozenset({"parking_aisle", "drive-through", "emergency_access"})


def parse_maxspeed(value: object) -> float | None:
    """An OSM ``maxspeed`` value in m/s, or None when it says nothing usable.

    Bare numbers are km/h; "30 mph", "10 knots", "FI:urban", "walk" are understood; of several
    values ("50;30", or a list: ``["50", "30"]``, ``"['50', '30']"``) the highest is taken, so
    the walk never reaches less far than traffic can.

    Examples
    --------
    >>> round(parse_maxspeed("50"), 2), round(parse_maxspeed("30 mph"), 2)
    (13.89, 13.41)
    >>> round(parse_maxspeed("FI:urban"), 2), parse_maxspeed("none")
    (13.89, None)
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return _plausible(value, KMH)
    listed = osmnx_list(value)  # osmnx's speeds of the ways it merged: ["30", "50"], or
    if listed is not None:  # that list as text: "['30', '50']"
        value = ";".join(str(item) for item in listed)
    text = str(value).strip().lower()
    speeds: list[float] = []
    for part in text.split(";"):
        part = part.strip()
        found = _NUMBER.search(part)
        if found:
            unit = found.group(2)
            factor = MPH if unit == "mph" else KNOT if unit == "knots" else KMH
            speeds.append(float(found.group(1)) * factor)
        elif part in ("walk",) or ":" in part:
            kmh = _IMPLICIT_KMH.get(part.split(":")[-1])
            if kmh is not None:
                speeds.append(kmh * KMH)
    speeds = [s for s in speeds if _plausible(s) is not None]
    return max(speeds) if speeds else None


def _plausible(value: float, unit_mps: float = 1.0) -> float | None:
    """``value`` in ``unit_mps`` as a road's speed in m/s when it is one (above 0, at most
    ``MAX_ROAD_SPEED_MPS``), else None: NaN fails too, and so does an int past a float's
    range (a JSON file may hold one)."""
    try:
        speed = float(value) * unit_mps
    except OverflowError:
        return None
    return speed if 0.0 < speed <= MAX_ROAD_SPEED_MPS else None


def parse_oneway(value: object, *, highway: str = "", junction: str = "") -> int:
    """Direction of travel: 1 along the digitised order, -1 against it, 0 both ways.

    Accepts booleans (GeoJSON), OSM strings ("yes", "true", "1", "-1", "reverse", "no") and
    GIS ones ("Y", "N"; ESRI's "FT" along the drawing, "TF" against it), in any case.
    Without a tag, motorways and roundabouts are one-way along the drawing, as OSM implies.
    """
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 1 if value > 0 else -1 if value < 0 else 0
    text = str(value).strip().lower() if value is not None else ""
    if text in ONEWAY_ALONG:
        return 1
    if text in ONEWAY_AGAINST:
        return -1
    if text in ONEWAY_BOTH:
        return 0
    if highway == "motorway" or junction in ("roundabout", "circular"):
        return 1
    return 0


_ONEWAY_WORDS = ONEWAY_ALONG | ONEWAY_AGAINST | ONEWAY_BOTH  # every oneway word known


def oneway_known(value: object) -> bool:
    """Whether :func:`parse_oneway` reads ``value`` for what it says: a bool, a number, a word
    it knows, or nothing (absent, blank). False for a word it does not know, which it reads as
    two-way (or as the class implies)."""
    if value is None or isinstance(value, bool | int | float):
        return True
    text = str(value).strip().lower()
    return not text or text in _ONEWAY_WORDS


def closed_to_cars(tags: Mapping[str, object]) -> DropReason | None:
    """Why a way of a drivable class carries no ordinary motor traffic, or None when it does."""
    if _word(tags.get("area")) == "yes":
        return "area"
    if tags.get("highway") == "service" and _word(tags.get("service")) in _SKIP_SERVICE:
        return "parking_aisle"
    for key in ("motorcar", "motor_vehicle", "vehicle", "access"):
        if key in tags and tags[key] is not None:
            return "no_motor_vehicles" if _word(tags[key]) in _NO_MOTOR else None
    return None


def _word(value: object) -> str | None:
    """A tag's value as OSM writes it (lower case, no spaces around): GIS exports write
    ``access = "No"`` or ``"Agricultural "``, which compared as written kept such a way for cars."""
    return None if value is None else str(value).strip().lower()


def is_drivable(tags: Mapping[str, object]) -> bool:
    """True when a way with these tags carries ordinary motor traffic."""
    return tags.get("highway") in DRIVABLE_SPEED_KMH and closed_to_cars(tags) is None


@dataclass(frozen=True, slots=True)
class RawWay:
    """One drivable way before it is split at junctions.

    ``lonlat`` is an (n, 2) array of [lon, lat] degrees; ``keys`` an (n,) int64 array naming each
    vertex so that two ways meeting at a vertex share its key (OSM node id, or packed coords).
    """

    lonlat: np.ndarray
    keys: np.ndarray
    name: str
    highway: str
    oneway: int  # 1 along the drawing, -1 against, 0 both
    speed_mps: float


def _invisible(c: str) -> bool:
    """Whether ``c`` is one a name loses (``_INVISIBLE``, or a Unicode non-character)."""
    cp = ord(c)
    return (unicodedata.category(c) in _INVISIBLE or 0xFDD0 <= cp <= 0xFDEF
            or cp & 0xFFFE == 0xFFFE)


def road_name(value: object) -> str:
    """A road's name as a partner may show it, from a ``name`` or ``ref`` value; "" for none.

    Text (or a whole number: a GeoJSON ``ref`` of 77) with control characters and line breaks
    turned into blanks, invisible characters dropped (Unicode categories Cf, Cs, Co, Cn: bidi
    overrides, zero-width, lone surrogates; what is left always encodes as UTF-8), blanks
    folded, cut to ``MAX_NAME_CHARS``; anything else (a list, a bool, a float) names nothing,
    and so does a name with nothing visible in it (the way falls back to its ``ref``, then to
    no name). Interned: a street drawn as a hundred ways keeps one string.

    Examples
    --------
    >>> road_name("  S Tryon\tSt "), road_name(77), road_name(["A", "B"]), road_name(None)
    ('S Tryon St', '77', '', '')
    >>> road_name("Main St\\u202egnp.exe"), road_name("\\u200b\\u200b"), road_name("Elm \\ud800St")
    ('Main Stgnp.exe', '', 'Elm St')
    >>> persian = "\\u0645\\u06cc\\u200c\\u0631\\u0648\\u062f"  # a non-joiner inside: kept
    >>> road_name(persian) == persian, road_name("\\u200d\\u200c")
    (True, '')
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return ""
    if not value.isprintable():  # else none to drop (printable: no Cc, Cf, Cs, Co, Cn)
        value = "".join(c for c in value if c in _JOINERS or not _invisible(c))
    text = " ".join(_NOT_PRINTABLE.sub(" ", value).split())[:MAX_NAME_CHARS].rstrip()
    # nothing to read (punctuation, joiners or marks alone) is no name: the partner's fallback
    return sys.intern(text) if any(c.isalnum() for c in text) else ""


def way_from_tags(lonlat: np.ndarray, keys: np.ndarray, tags: Mapping[str, object]) -> RawWay:
    """A :class:`RawWay` from OSM-style tags (also used for GeoJSON properties)."""
    highway = str(tags.get("highway") or DEFAULT_HIGHWAY)
    speed = None
    if "maxspeed_mps" in tags:
        raw = tags["maxspeed_mps"]
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            speed = _plausible(raw)
    if speed is None:
        speed = parse_maxspeed(tags.get("maxspeed"))
    if speed is None:
        speed = DRIVABLE_SPEED_KMH.get(highway, DRIVABLE_SPEED_KMH[DEFAULT_HIGHWAY]) * KMH
    name = road_name(tags.get("name")) or road_name(tags.get("ref"))
    oneway = parse_oneway(
        tags.get("oneway"), highway=highway, junction=str(tags.get("junction", ""))
    )
    return RawWay(lonlat, keys, name, highway, oneway, speed)


def osm_class(value: str, classes: RoadClasses) -> RoadClass:
    """The class of an OSM way: the user's mapping first, then OSM's own words only.

    OSM data speaks OSM's vocabulary, so the synonym table for other files does not apply
    (``highway=driveway`` stays unknown unless mapped); OSM's classes no car drives on
    (footway, cycleway, ...) are counted as such, any other value as unknown.
    """
    user = classes.mapping.get(value)
    if user is not None:
        return RoadClass(None if user == "none" else user, value, "user")
    if value in DRIVABLE_SPEED_KMH:
        return RoadClass(value, value, "osm")
    if value in NOT_FOR_CARS:
        return RoadClass(None, value, "osm")
    return classes.resolve_unknown(value)


def read_osm_ways(
    path: Path, *, classes: RoadClasses | None = None, tally: ReadTally | None = None
) -> Iterator[RawWay]:
    """Drivable ways of an OSM file (``.osm``, ``.osm.pbf``, ``.osm.bz2`` ...) via osmium.

    Node locations come from osmium's location cache; a way is cut where its nodes lie outside
    the extract, each run of at least two located nodes a line of its own (counted as a line
    read).
    ``classes`` may map more ``highway`` values (:func:`osm_class`); ``tally`` counts what was
    read and why ways were left out. Raises whatever osmium raises on an unreadable file (the
    caller names the file).
    """
    import osmium  # local: only OSM inputs need it

    classes = classes or RoadClasses()
    tally = tally if tally is not None else ReadTally()
    processor = (
        osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
        .with_locations()
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        .with_filter(osmium.filter.KeyFilter("highway"))
    )
    for way in processor:
        tags = dict(way.tags)
        tally.lines_read += 1
        cls = osm_class(str(tags.get("highway", "")), classes)
        tally.saw_class(cls)
        if cls.highway is None:
            continue
        tags["highway"] = cls.highway
        closed = closed_to_cars(tags)
        if closed is not None:
            tally.drop(closed)
            continue
        runs, missing = _located_runs(way.nodes)  # type: ignore[union-attr]  # ways only
        if missing:  # they were dropped as too_few_points at "nothing looks wrong"
            tally.missing_nodes_ways += 1
            tally.missing_nodes_cut += bool(runs)
        if not runs:
            tally.drop("nodes_missing" if missing else "too_few_points")
            continue
        tally.lines_read += len(runs) - 1  # a way cut into pieces counts a line per piece
        oneway = tags.get("oneway")
        if not oneway_known(oneway):  # "maybe", "One Way": counted as GeoJSON's are
            tally.oneway_unknown[str(oneway)] += len(runs)
        for refs, coords in runs:
            yield way_from_tags(
                np.asarray(coords, dtype=float), np.asarray(refs, dtype=np.int64), tags
            )


def _located_runs(
    nodes: Iterable[Any],
) -> tuple[list[tuple[list[int], list[tuple[float, float]]]], bool]:
    """The runs of two or more consecutive nodes that have a location: (node ids, lon/lat),
    and whether any node had none (it lies outside the extract).

    An extract cut without complete ways keeps references to nodes outside it. Joining the
    located nodes either side of a missing one would draw a straight line where no road is (a
    chord across the block the road goes around), so the way is cut there instead.
    """
    runs: list[tuple[list[int], list[tuple[float, float]]]] = []
    refs: list[int] = []
    coords: list[tuple[float, float]] = []
    missing = False
    for nd in nodes:
        if nd.location.valid():
            refs.append(nd.ref)
            coords.append((nd.lon, nd.lat))  # lon/lat order
            continue
        missing = True
        if len(refs) >= 2:
            runs.append((refs, coords))
        refs, coords = [], []
    if len(refs) >= 2:
        runs.append((refs, coords))
    return runs, missing
