"""GeoJSON centrelines -> :class:`~broker.geo.roads.osm.RawWay` records, and their T-junctions.

Hand-drawn or exported GeoJSON names no junctions: two lines join where they share a vertex
(packed lon/lat keys), and :func:`join_dangling_ends` joins a line that stops on another one.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import shapely

from broker.geo.projection import LocalFrame
from broker.geo.roads.check import ReadTally
from broker.geo.roads.osm import RawWay, closed_to_cars, oneway_known, way_from_tags
from broker.geo.roads.road_classes import RoadClasses
from broker.geo.route import cumulative_m, line_array

GEOJSON_SUFFIXES = (".geojson", ".json")
GEOJSON_SNAP_M = 1.0  # a GeoJSON line ending this close to another line joins it (T-junction)


def _coord_keys(lonlat: np.ndarray) -> np.ndarray:
    """Pack lon/lat (1e-7 deg, ~1 cm) into one int64 per vertex, so shared vertices match."""
    lon_i = np.rint((lonlat[:, 0] + 180.0) * 1e7).astype(np.int64)  # < 3.6e9 < 2**32
    lat_i = np.rint((lonlat[:, 1] + 90.0) * 1e7).astype(np.int64)  # < 1.8e9 < 2**31
    return lon_i * (1 << 31) + lat_i  # < 7.8e18, fits int64


def _feature_lines(geometry: object) -> Iterator[object]:
    """The coordinate lists of a geometry's lines; nothing for what is not a line (a file's
    geometry may be anything: missing coordinates, a string, a list of numbers)."""
    if not isinstance(geometry, Mapping):
        return
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "LineString" and coords is not None:
        yield coords
    elif kind == "MultiLineString" and isinstance(coords, list):
        yield from coords
    elif kind == "GeometryCollection" and isinstance(parts := geometry.get("geometries"), list):
        for part in parts:
            yield from _feature_lines(part)


def _lonlat(coords: object) -> np.ndarray | None:
    """``[[lon, lat], ...]`` (extra numbers such as an altitude ignored) as an (n, 2) array
    of finite degrees within range; None when it is anything else, or holds ``[0, 0]`` (null
    island, in the sea: how exports write a point they have no coordinates for)."""
    if not isinstance(coords, list) or not all(
        isinstance(c, list | tuple) and len(c) >= 2 for c in coords
    ):
        return None
    try:
        # no dtype: numbers give an int or float array, and anything else (a string such as
        # "-80.8", which float() would take, a null, an int past 64 bits) another kind
        pairs = np.asarray([c[:2] for c in coords])
    except ValueError:  # ragged: a pair that holds a list
        return None
    if pairs.dtype.kind not in "iuf" or pairs.size == 0:
        return None
    lonlat = pairs.astype(float).reshape(-1, 2)
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    if not (np.all(np.abs(lon) <= 180.0) and np.all(np.abs(lat) <= 90.0)):  # NaN fails too
        return None
    if np.any((lon == 0.0) & (lat == 0.0)):
        return None
    return lonlat


def _blank(value: object) -> bool:
    """True when a property says nothing: absent, null or an empty string.

    GIS exports write every column on every line, ``"oneway": null`` or ``""`` where the source
    has no value; that is no direction given, so a mapped class must not imply one either.
    """
    return value is None or (isinstance(value, str) and not value.strip())


# the OSM keys the reader reads (way_from_tags, closed_to_cars), matched ignoring case as the
# class property is: GIS exports often write their columns in upper case ("ONEWAY": "yes")
OSM_KEYS = frozenset({
    "name", "ref", "oneway", "junction", "maxspeed", "maxspeed_mps",
    "area", "service", "motorcar", "motor_vehicle", "vehicle", "access",
})  # fmt: skip


def _osm_tags(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` with each key of :data:`OSM_KEYS` written in another case also under its
    lower-case name: the lower-case key as written first, else the first other spelling with
    a value (``{"oneway": null, "ONEWAY": "yes"}`` is one-way)."""
    other = [k for k in props if k not in OSM_KEYS and str(k).lower() in OSM_KEYS]
    if not other:
        return props
    tags = dict(props)
    for key in other:
        low = str(key).lower()
        if _blank(tags.get(low)) and not _blank(props[key]):
            tags[low] = props[key]
    return tags


def _first_bad(coords: object) -> str:
    """The first position of ``coords`` that is not a ``[lon, lat]`` pair of numbers within
    range, as written (cut to 60 characters), or the whole value when it is no list of them."""
    if isinstance(coords, list) and coords:
        for position in coords:
            if _lonlat([position]) is None:
                return reprlib.repr(position)[:60]
    return reprlib.repr(coords)[:60]


def _note_oneway(value: object, tally: ReadTally, lines: int) -> None:
    """Count a oneway value the reader does not know ("FT", "B"): it reads as none given."""
    if not oneway_known(value):
        tally.oneway_unknown[str(value)] += lines


def read_geojson_ways(
    features: Iterable[Mapping[str, Any]],
    *,
    classes: RoadClasses | None = None,
    tally: ReadTally | None = None,
) -> Iterator[RawWay]:
    """Drivable ways of GeoJSON Features (LineString / MultiLineString, [lon, lat] order).

    Properties (all optional, names compared without case: ``ONEWAY`` is ``oneway``, the
    lower-case spelling first): ``name``, ``oneway`` (bool, or OSM "yes"/"-1"/"no"),
    ``maxspeed_mps`` (number) or ``maxspeed`` (OSM string, "50", "30 mph"), and a road class
    (``highway`` or another property :data:`~broker.geo.roads.road_classes.CLASS_PROPERTIES`
    names, read by ``classes``: OSM's words, prefixed forms like ``highway.residential``, GIS
    words, numbered classes; a line without one is drivable). Lines of a class no car drives on
    are left out, and so are lines of an unknown class unless ``classes`` says keep; ``tally``
    counts both (``broker roads check`` shows them).
    Two lines join where they share a vertex (equal to ~1 cm), or where one ends within 1 m of
    the other (a T-junction drawn without a shared vertex); lines that only cross do not join.
    """
    classes = classes or RoadClasses()
    tally = tally if tally is not None else ReadTally()
    for number, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, Mapping) else None
        raw_props = feature.get("properties") if isinstance(feature, Mapping) else None
        props = _osm_tags(dict(raw_props)) if isinstance(raw_props, Mapping) else {}
        lines = list(_feature_lines(geometry))
        if not lines:
            tally.lines_read += 1
            tally.drop("not_a_line")
            continue
        tally.lines_read += len(lines)
        cls = classes.of(props)
        tally.saw_class(cls, len(lines))
        if cls.how == "none_given" and classes.property is not None:
            tally.without_property += len(lines)
            tally.class_property = classes.property
        if cls.highway is None:
            continue
        tags = {**props, "highway": cls.highway}
        if cls.how not in ("osm", "none_given") and _blank(props.get("oneway")):
            tags["oneway"] = "no"  # a mapped class does not imply OSM's one-way motorways
        closed = closed_to_cars(tags)
        if closed is not None:
            tally.drop(closed, len(lines))
            continue
        _note_oneway(tags.get("oneway"), tally, len(lines))
        for coords in lines:
            lonlat = _lonlat(coords)
            if lonlat is None:
                tally.drop_bad_coordinates(f"feature {number}: {_first_bad(coords)}")
                continue
            if len(lonlat) < 2:
                tally.drop("too_few_points")
                continue
            yield way_from_tags(lonlat, _coord_keys(lonlat), tags)


def join_dangling_ends(
    ways: Sequence[RawWay], all_xy: np.ndarray, snap_m: float, frame: LocalFrame
) -> tuple[list[RawWay], np.ndarray, int]:
    """Join line ends that stop on another line without sharing a vertex (T-junctions).

    Hand-drawn or exported centrelines often end a side street on the main street's middle
    rather than on one of its vertices. An end that shares no vertex with any other line and lies
    within ``snap_m`` of another line joins it: at that line's vertex if one is that close, else
    at a vertex inserted there. Joins chain: an end joined to another line's end that itself
    joins a third line meets them both (keys joined in a forest, each vertex renamed to its
    tree's root), so ends pulled back from a junction all meet again. Lines that merely cross
    (bridges) are left alone. OSM data needs none of this (ways share node ids). Also returns
    how many ends were joined.
    """
    sizes = np.array([len(w.keys) for w in ways])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    keys = np.concatenate([w.keys for w in ways])
    owner = np.repeat(np.arange(len(ways)), sizes)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    ends = np.unique(np.concatenate([starts, starts + sizes - 1]))
    lonely = ends[counts[inverse[ends]] == 1]
    if len(lonely) == 0:
        return list(ways), all_xy, 0
    lines = line_array(all_xy, owner)
    pts = shapely.points(all_xy[lonely])
    e_idx, w_idx = shapely.STRtree(lines).query(pts, predicate="dwithin", distance=snap_m)
    other = owner[lonely[e_idx]] != w_idx
    e_idx, w_idx = e_idx[other], w_idx[other]
    if len(e_idx) == 0:
        return list(ways), all_xy, 0
    dist = shapely.distance(lines[w_idx], pts[e_idx])
    order = np.lexsort((dist, e_idx))  # nearest line per end
    first = order[np.concatenate([[True], e_idx[order][1:] != e_idx[order][:-1]])]
    forest = _KeyForest()
    inserts: dict[int, list[tuple[float, int, np.ndarray]]] = {}
    for e, w in zip(e_idx[first].tolist(), w_idx[first].tolist(), strict=True):
        end_vertex = int(lonely[e])
        xy = all_xy[starts[w] : starts[w] + sizes[w]]
        near = np.hypot(*(xy - all_xy[end_vertex]).T)
        if near.min() <= snap_m:  # join the end to that vertex (and to what it joins)
            forest.join(int(keys[end_vertex]), int(keys[starts[w] + int(np.argmin(near))]))
        else:  # put a vertex on the line, named like the end
            along = float(shapely.line_locate_point(lines[w], pts[e]))
            at = np.asarray(
                shapely.get_coordinates(shapely.line_interpolate_point(lines[w], along))
            )
            inserts.setdefault(w, []).append((along, int(keys[end_vertex]), at[0]))
    joined = len(first)
    # ends close to each other meet too, not only each end with its nearest line: four arms
    # stopping short of a crossing pair up two by two above (ties), and become one junction here
    e_a, e_b = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=snap_m)
    pair = (e_a < e_b) & (owner[lonely[e_a]] != owner[lonely[e_b]])
    for a_end, b_end in zip(lonely[e_a[pair]].tolist(), lonely[e_b[pair]].tolist(), strict=True):
        joined += forest.join(int(keys[a_end]), int(keys[b_end]))
    return (*_rebuilt(ways, all_xy, starts, sizes, inserts, forest, frame), joined)


class _KeyForest:
    """Vertex keys joined to one another: each key's tree root names the junction they form."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}  # key -> the key it was joined to

    def root(self, key: int) -> int:
        """The key that names ``key``'s junction."""
        while key in self.parent:
            key = self.parent[key]
        return key

    def join(self, key: int, to: int) -> bool:
        """Join ``key``'s junction to ``to``'s (``to``'s name stays); False if already one."""
        key_root, to_root = self.root(key), self.root(to)
        if key_root == to_root:
            return False
        self.parent[key_root] = to_root
        return True


def _rebuilt(
    ways: Sequence[RawWay],
    all_xy: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    inserts: dict[int, list[tuple[float, int, np.ndarray]]],
    forest: _KeyForest,
    frame: LocalFrame,
) -> tuple[list[RawWay], np.ndarray]:
    """The ways again with joined keys renamed to their root and the vertices put on lines."""
    out: list[RawWay] = []
    out_xy: list[np.ndarray] = []
    for w, way in enumerate(ways):
        xy = all_xy[starts[w] : starts[w] + sizes[w]]
        way_keys, lonlat = way.keys, way.lonlat
        if forest.parent:  # every key joined to another takes its tree's root: the ends meet
            way_keys = np.array([forest.root(k) for k in way_keys.tolist()], dtype=np.int64)
        if w in inserts:
            cum = cumulative_m(xy)
            items = sorted(inserts[w], key=lambda item: item[0])
            where = np.searchsorted(cum, [a for a, _, _ in items], side="right")
            add_xy = np.array([p for _, _, p in items])
            xy = np.insert(xy, where, add_xy, axis=0)
            way_keys = np.insert(way_keys, where, [forest.root(k) for _, k, _ in items])
            lonlat = np.insert(lonlat, where, frame.coords_to_lonlat(add_xy), axis=0)
        out.append(replace(way, keys=way_keys, lonlat=lonlat))
        out_xy.append(xy)
    return out, np.vstack(out_xy)
