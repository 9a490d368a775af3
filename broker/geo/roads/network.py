"""Road network: OSM extract or GeoJSON centrelines -> a directed graph in a local metric frame.

Why: the drivers who will meet a fire engine are often not on its route yet. They join it from
side streets, or come the other way. Given the network, the zone can cover the roads *upstream*
of the path ahead: every lane whose traffic reaches the path within a few seconds.

Theory of operation
-------------------
* **Load once.** :meth:`RoadNetwork.load` reads drivable ways (:mod:`broker.geo.roads.osm` for
  OSM, :func:`read_geojson_ways` for GeoJSON), splits them at shared vertices (junctions),
  projects everything to one :class:`~broker.geo.projection.LocalFrame` and keeps *segments*
  (undirected pieces between junctions, with an STRtree over their lines) and *directed
  edges* (one per allowed direction of a segment: two for a two-way road, one for a one-way).
* **Match.** :meth:`RoadNetwork.match` samples a path (metres, travel order) every few metres,
  finds the segments within ``tol_m`` whose direction agrees with the path (within 35 deg), and
  names the directed edges the path runs along, the edges flowing against it (oncoming
  carriageway), and the junctions on it with their positions along the path.
* **Walk upstream.** From each junction on the path a Dijkstra runs over *incoming* edges only
  (traffic flowing toward the junction), by travel time (length / speed), until ``seconds``;
  the last edge is cut partially. Path edges in the travel direction are not walked (that traffic
  is on the corridor already), oncoming ones are. Beyond the end of the stretch the oncoming
  carriageway is walked upstream by the same time. Streets that never join the path are never
  reached, because the walk only follows the graph.
* **Per route, not per fix.** :meth:`RoadNetwork.route_approaches` matches a whole CAD route once
  and memoises one upstream tree per junction; :meth:`RouteApproaches.stretch` then unions the
  trees of the junctions in ``[along_a, along_b]`` (milliseconds, no new matching).

Everything is in metres of ``network.frame`` (x east, y north); inputs on disk are lon/lat.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely import LineString, MultiLineString

from broker.geo.projection import LocalFrame, frame_for
from broker.geo.roads.osm import RawWay, is_drivable, read_osm_ways, way_from_tags
from broker.geo.route import cumulative_m, stretch_between

__all__ = [
    "PathMatch",
    "RoadNetwork",
    "RoadNetworkError",
    "RouteApproaches",
    "read_geojson_ways",
]

OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz", ".osm.xml")
GEOJSON_SUFFIXES = (".geojson", ".json")
ALIGN_COS = math.cos(math.radians(35.0))  # path and road agree if within 35 deg
HEADING_COS = math.cos(math.radians(60.0))  # a unit's heading picks a carriageway within 60 deg
STRAIGHT_COS = math.cos(math.radians(45.0))  # at a junction, the road goes on within 45 deg
GEOJSON_SNAP_M = 1.0  # a GeoJSON line ending this close to another line joins it (T-junction)
# Opposite one-way centrelines further apart than this (metres) are the two carriageways of a
# divided road: a median wider than a lane lies between them and the other side's drivers never
# pass the unit. Closer, they are one road drawn as two lines (its oncoming lanes). Two lanes
# either way put the lane centres ~7-10 m apart; measured medians on the scenario networks
# (motorway A10/A13, Berlin, Helsinki) put divided carriageways at 8-27 m, median 13-16 m.
DIVIDED_GAP_M = 12.0
FAR_SIDE_M = 40.0  # look this far beside a path for a divided road's other carriageway
FAR_CUT_M = 25.0  # ...and keep a zone's road bands this far (metres) off that carriageway
# a sample projecting within this of a segment's end lies past it (metres; see match)
END_CLAMP_M = 0.5
_EMPTY = MultiLineString()


class RoadNetworkError(Exception):
    """A road network file that cannot be used; the message names the file and the problem."""


# --------------------------------------------------------------------------------------------
# GeoJSON reader
# --------------------------------------------------------------------------------------------


def _coord_keys(lonlat: np.ndarray) -> np.ndarray:
    """Pack lon/lat (1e-7 deg, ~1 cm) into one int64 per vertex, so shared vertices match."""
    lon_i = np.rint((lonlat[:, 0] + 180.0) * 1e7).astype(np.int64)  # < 3.6e9 < 2**32
    lat_i = np.rint((lonlat[:, 1] + 90.0) * 1e7).astype(np.int64)  # < 1.8e9 < 2**31
    return lon_i * (1 << 31) + lat_i  # < 7.8e18, fits int64


def _feature_lines(geometry: Mapping[str, Any]) -> Iterator[list[Any]]:
    kind = geometry.get("type")
    if kind == "LineString":
        yield geometry["coordinates"]
    elif kind == "MultiLineString":
        yield from geometry["coordinates"]
    elif kind == "GeometryCollection":
        for part in geometry.get("geometries", []):
            yield from _feature_lines(part)


def read_geojson_ways(features: Iterable[Mapping[str, Any]]) -> Iterator[RawWay]:
    """Drivable ways of GeoJSON Features (LineString / MultiLineString, [lon, lat] order).

    Properties (all optional): ``name``, ``oneway`` (bool, or OSM "yes"/"-1"/"no"),
    ``maxspeed_mps`` (number) or ``maxspeed`` (OSM string, "50", "30 mph"), ``highway``
    (lines of a non-drivable class, e.g. "footway", are skipped; no class = drivable).
    Two lines join where they share a vertex (equal to ~1 cm), or where one ends within 1 m of
    the other (a T-junction drawn without a shared vertex); lines that only cross do not join.
    """
    for feature in features:
        geometry = feature.get("geometry") or {}
        props = dict(feature.get("properties") or {})
        if "highway" in props and not is_drivable(props):
            continue
        for coords in _feature_lines(geometry):
            lonlat = np.asarray([c[:2] for c in coords], dtype=float).reshape(-1, 2)
            if len(lonlat) < 2 or not np.isfinite(lonlat).all():
                continue
            yield way_from_tags(lonlat, _coord_keys(lonlat), props)


def _join_dangling_ends(
    ways: Sequence[RawWay], all_xy: np.ndarray, snap_m: float, frame: LocalFrame
) -> tuple[list[RawWay], np.ndarray]:
    """Join line ends that stop on another line without sharing a vertex (T-junctions).

    Hand-drawn or exported centrelines often end a side street on the main street's middle
    rather than on one of its vertices. An end that shares no vertex with any other line and lies
    within ``snap_m`` of another line joins it: at that line's vertex if one is that close, else
    at a vertex inserted there. Lines that merely cross (bridges) are left alone. OSM data needs
    none of this (ways share node ids).
    """
    sizes = np.array([len(w.keys) for w in ways])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    keys = np.concatenate([w.keys for w in ways])
    owner = np.repeat(np.arange(len(ways)), sizes)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    ends = np.unique(np.concatenate([starts, starts + sizes - 1]))
    lonely = ends[counts[inverse[ends]] == 1]
    if len(lonely) == 0:
        return list(ways), all_xy
    lines = shapely.linestrings(all_xy, indices=owner)
    pts = shapely.points(all_xy[lonely])
    e_idx, w_idx = shapely.STRtree(lines).query(pts, predicate="dwithin", distance=snap_m)
    other = owner[lonely[e_idx]] != w_idx
    e_idx, w_idx = e_idx[other], w_idx[other]
    if len(e_idx) == 0:
        return list(ways), all_xy
    dist = shapely.distance(lines[w_idx], pts[e_idx])
    order = np.lexsort((dist, e_idx))  # nearest line per end
    first = order[np.concatenate([[True], e_idx[order][1:] != e_idx[order][:-1]])]
    new_keys = [w.keys.copy() for w in ways]
    inserts: dict[int, list[tuple[float, int, np.ndarray]]] = {}
    for e, w in zip(e_idx[first].tolist(), w_idx[first].tolist(), strict=True):
        end_vertex = int(lonely[e])
        end_way, end_pos = int(owner[end_vertex]), end_vertex - int(starts[owner[end_vertex]])
        xy = all_xy[starts[w] : starts[w] + sizes[w]]
        near = np.hypot(*(xy - all_xy[end_vertex]).T)
        if near.min() <= snap_m:  # join the end to that vertex
            new_keys[end_way][end_pos] = new_keys[w][int(np.argmin(near))]
        else:  # put a vertex on the line, named like the end
            along = float(shapely.line_locate_point(lines[w], pts[e]))
            at = np.asarray(
                shapely.get_coordinates(shapely.line_interpolate_point(lines[w], along))
            )
            inserts.setdefault(w, []).append((along, int(keys[end_vertex]), at[0]))
    out: list[RawWay] = []
    out_xy: list[np.ndarray] = []
    for w, way in enumerate(ways):
        xy = all_xy[starts[w] : starts[w] + sizes[w]]
        way_keys, lonlat = new_keys[w], way.lonlat
        if w in inserts:
            cum = cumulative_m(xy)
            items = sorted(inserts[w], key=lambda item: item[0])
            where = np.searchsorted(cum, [a for a, _, _ in items], side="right")
            add_xy = np.array([p for _, _, p in items])
            xy = np.insert(xy, where, add_xy, axis=0)
            way_keys = np.insert(way_keys, where, [k for _, k, _ in items])
            lonlat = np.insert(lonlat, where, frame.coords_to_lonlat(add_xy), axis=0)
        out.append(replace(way, keys=way_keys, lonlat=lonlat))
        out_xy.append(xy)
    return out, np.vstack(out_xy)


# --------------------------------------------------------------------------------------------
# Small geometry helpers (numpy, metres)
# --------------------------------------------------------------------------------------------


def _heading_vector(heading_deg: float) -> np.ndarray:
    """Compass heading (0 = north, clockwise) -> unit vector (x east, y north)."""
    rad = math.radians(heading_deg)
    return np.array([math.sin(rad), math.cos(rad)])


def _directions_at(lines: Any, at_m: np.ndarray, length_m: Any) -> np.ndarray:
    """Unit direction (n, 2) of each line at ``at_m`` metres along it, from the points 1 m
    behind and ahead (clamped to the line's ends); ``lines`` may be one line or an array."""
    fore = shapely.get_coordinates(
        shapely.line_interpolate_point(lines, np.minimum(at_m + 1.0, length_m))
    )
    back = shapely.get_coordinates(
        shapely.line_interpolate_point(lines, np.maximum(at_m - 1.0, 0.0))
    )
    d = fore - back
    d /= np.maximum(np.hypot(*d.T), 1e-9)[:, None]
    return d


def _merge_lines(*parts: MultiLineString) -> MultiLineString:
    """One MultiLineString of the parts of several (possibly empty) MultiLineStrings."""
    lines = [g for part in parts for g in shapely.get_parts(part)]
    return MultiLineString(lines) if lines else _EMPTY


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PathMatch:
    """How a path (metres, travel order) lies on the network.

    ``along_edges``: directed edges the path runs along, in its direction of travel.
    ``oncoming_edges``: directed edges beside the path flowing the other way (the other direction
    of a two-way road, or of a road drawn as two close one-way lines; not the other carriageway
    of a divided road).
    ``junctions`` / ``junction_along_m``: junction nodes on the path and where along the path
    (metres) it passes them; a junction the path visits twice appears twice.
    ``sample_along_m``: where the path samples are (every few metres); per sample,
    ``sample_along_edge`` is the along edge it lies on, ``sample_oncoming`` the oncoming edge
    beside it (-1 if none) and ``sample_oncoming_pos_m`` its position along that edge;
    ``sample_far`` / ``sample_far_pos_m`` likewise name the other carriageway of a divided road
    beside the sample (a one-way road flowing against the path, ``divided_gap_m`` to
    ``FAR_SIDE_M`` away), -1 if none.
    """

    length_m: float
    along_edges: np.ndarray
    oncoming_edges: np.ndarray
    junctions: np.ndarray
    junction_along_m: np.ndarray
    sample_along_m: np.ndarray
    sample_along_edge: np.ndarray
    sample_oncoming: np.ndarray
    sample_oncoming_pos_m: np.ndarray
    sample_far: np.ndarray
    sample_far_pos_m: np.ndarray


@dataclass(frozen=True, eq=False)
class RouteApproaches:
    """The upstream approaches of one route, prepared once; :meth:`stretch` is cheap.

    Holds the route's :class:`PathMatch` and memoises one upstream walk per junction visit
    (walked to ``max_seconds``; any smaller ``seconds`` is cut from it without walking again).
    """

    network: RoadNetwork
    match: PathMatch
    max_seconds: float
    _trees: dict[int, dict[int, float]] = field(default_factory=dict, repr=False)

    def _tree(self, visit: int) -> dict[int, float]:
        tree = self._trees.get(visit)
        if tree is None:
            at_m = float(self.match.junction_along_m[visit])
            behind = self.network._path_behind(self.match, at_m, self.max_seconds)
            node = int(self.match.junctions[visit])
            tree = self.network._walk_upstream([(node, 0.0)], self.max_seconds, behind)
            self._trees[visit] = tree
        return tree

    def stretch(
        self,
        along_a_m: float,
        along_b_m: float,
        seconds: float | None = None,
        seconds_at: Callable[[float], float] | None = None,
    ) -> MultiLineString:
        """Roads feeding the route between ``along_a_m`` and ``along_b_m`` within ``seconds``.

        Unions the upstream trees of the junctions passed in that stretch, plus the oncoming
        carriageway walked upstream from ``along_b_m``. A MultiLineString in metres.
        ``seconds_at`` (optional) gives each junction its own walk, from where it lies along
        the route (metres); never less than ``seconds`` nor more than ``max_seconds``.
        """
        seconds = self.max_seconds if seconds is None else min(float(seconds), self.max_seconds)
        if seconds <= 0 or along_b_m < along_a_m:
            return _EMPTY
        net = self.network
        m = self.match
        pick = np.flatnonzero((m.junction_along_m >= along_a_m) & (m.junction_along_m <= along_b_m))
        walk = {
            visit: seconds
            if seconds_at is None
            else min(max(float(seconds_at(float(m.junction_along_m[visit]))), seconds),
                     self.max_seconds)
            for visit in pick.tolist()
        }  # fmt: skip
        top = max([seconds, *walk.values()])
        # A junction walked for fewer seconds than ``top`` starts its tree ``top - s`` late,
        # so that one _assemble over ``top`` cuts every tree at its own time.
        best: dict[int, float] = {}
        for visit, s in walk.items():
            late = top - s
            for edge, cost in self._tree(visit).items():
                if cost + late < best.get(edge, math.inf):
                    best[edge] = cost + late
        pieces = [(e, net._edge_len[e], c) for e, c in best.items()]
        pieces += [
            (e, end, c + top - seconds) for e, end, c in net._oncoming_from(m, along_b_m, seconds)
        ]
        return net._assemble(pieces, top)

    def beyond_median(
        self, route_m: LineString, along_a_m: float, along_b_m: float
    ) -> shapely.Geometry:
        """Where a divided road's other carriageway lies beside the route in ``[a, b]``.

        A polygon (metres; empty if none): ``FAR_CUT_M`` either side of the other carriageway's
        pieces beside the route samples in ``[along_a_m, along_b_m]``, minus everything within
        ``divided_gap_m`` of the route itself. The engine takes it out of the road bands along
        the route, so a band wide enough for a two-way road does not warn the drivers beyond
        the median, who never pass the unit. ``route_m`` is the matched route (same frame).
        """
        net, m = self.network, self.match
        pick = (
            (m.sample_along_m >= along_a_m) & (m.sample_along_m <= along_b_m) & (m.sample_far >= 0)
        )
        if not pick.any():
            return shapely.Polygon()
        edges, pos = m.sample_far[pick], m.sample_far_pos_m[pick]
        pieces: list[np.ndarray] = []
        for edge in np.unique(edges).tolist():
            at = pos[edges == edge]
            lo, hi = float(at.min()), float(at.max())
            seg = net._edge_seg[edge]
            if net._edge_rev[edge]:  # positions run from the segment's end
                lo, hi = float(net.seg_len[seg]) - hi, float(net.seg_len[seg]) - lo
            if hi - lo > 1.0:
                pieces.append(
                    stretch_between(
                        net._seg_xy[seg], net._seg_cum[seg], lo, hi, fast_straight=True
                    )
                )
        if not pieces:
            return shapely.Polygon()
        lines = np.array([LineString(piece) for piece in pieces], dtype=object)
        far = shapely.buffer(lines, FAR_CUT_M, cap_style="flat", quad_segs=2)
        lo_m, hi_m = max(0.0, along_a_m - FAR_SIDE_M), min(m.length_m, along_b_m + FAR_SIDE_M)
        xy = shapely.get_coordinates(route_m)
        near = shapely.buffer(
            LineString(stretch_between(xy, cumulative_m(xy), lo_m, hi_m, fast_straight=True)),
            net.divided_gap_m,
            quad_segs=4,
        )
        return shapely.difference(shapely.union_all(far), near)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class RoadNetwork:
    """A directed road graph in a local metric frame, shared read-only by every vehicle.

    Build it with :meth:`load` (a file) or :meth:`from_features` (GeoJSON Features).

    Parameters
    ----------
    ways : drivable ways (lon/lat) from :func:`read_geojson_ways` or ``read_osm_ways``.
    frame : the metric frame; default ``frame_for`` the centre of the data's bounding box.
        Paths given to :meth:`match`, :meth:`approaches` ... must be in this frame.
    source : the file name, for error messages.
    match_tol_m : how far (metres) a path may lie from a road and still run along it.
    snap_m : join line ends that stop this close to another line (GeoJSON T-junctions); 0 = off.
    divided_gap_m : a one-way road flowing against a path counts as the path's oncoming lanes
        only within this distance (metres) of it; further away it is the other carriageway of
        a divided road. The reverse direction of a two-way road always lies within it.

    Examples
    --------
    >>> main = [[-80.80, 35.2], [-80.795, 35.2], [-80.79, 35.2]]  # lon, lat
    >>> side = [[-80.795, 35.21], [-80.795, 35.2]]  # ends on Main's middle vertex
    >>> line = lambda coords: {"type": "LineString", "coordinates": coords}
    >>> net = RoadNetwork.from_features([
    ...     {"properties": {"name": "Main"}, "geometry": line(main)},
    ...     {"properties": {"oneway": "yes"}, "geometry": line(side)},
    ... ])
    >>> net.n_nodes, net.n_edges  # Main splits at the junction: 2 two-way segments + 1 one-way
    (4, 5)
    """

    def __init__(
        self,
        ways: Iterable[RawWay],
        *,
        frame: LocalFrame | None = None,
        source: str = "<memory>",
        match_tol_m: float = 20.0,
        snap_m: float = 0.0,
        divided_gap_m: float = DIVIDED_GAP_M,
    ) -> None:
        ways = [w for w in ways if len(w.keys) >= 2]
        if not ways:
            raise RoadNetworkError(f"{source}: no drivable roads")
        self.source = source
        self.match_tol_m = float(match_tol_m)
        self.divided_gap_m = float(divided_gap_m)
        all_ll = np.vstack([w.lonlat for w in ways])
        if frame is None:
            lo, hi = all_ll.min(axis=0), all_ll.max(axis=0)
            frame = frame_for(float(lo[0] + hi[0]) / 2.0, float(lo[1] + hi[1]) / 2.0)
        self.frame = frame
        all_xy = frame.coords_to_xy(all_ll)
        if snap_m > 0:
            ways, all_xy = _join_dangling_ends(ways, all_xy, snap_m, frame)
        self._build(ways, all_xy)
        self._cache: OrderedDict[tuple[bytes, float], RouteApproaches] = OrderedDict()

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, frame: LocalFrame | None = None) -> RoadNetwork:
        """Read an OSM extract (``.osm.pbf``, ``.osm``) or GeoJSON centrelines (``.geojson``).

        Raises :class:`RoadNetworkError` naming the file when it is missing, unreadable, of an
        unknown kind, or holds no drivable roads.
        """
        path = Path(path)
        name = path.name.lower()
        if not path.is_file():
            raise RoadNetworkError(f"{path}: no such road network file")
        if name.endswith(GEOJSON_SUFFIXES):
            try:
                doc = json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise RoadNetworkError(f"{path}: not readable as GeoJSON ({exc})") from exc
            if not isinstance(doc, dict):
                raise RoadNetworkError(f"{path}: not a GeoJSON object")
            features = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
            if not isinstance(features, list):
                raise RoadNetworkError(f"{path}: a FeatureCollection without a features list")
            try:
                ways = list(read_geojson_ways(f for f in features if isinstance(f, dict)))
            except (KeyError, TypeError, ValueError) as exc:
                raise RoadNetworkError(f"{path}: malformed GeoJSON geometry ({exc})") from exc
        elif name.endswith(OSM_SUFFIXES):
            try:
                ways = list(read_osm_ways(path))
            except (RuntimeError, OSError, ValueError) as exc:
                raise RoadNetworkError(f"{path}: not readable as OSM data ({exc})") from exc
        else:
            raise RoadNetworkError(
                f"{path}: unknown road network file type (expected one of "
                f"{', '.join(OSM_SUFFIXES + GEOJSON_SUFFIXES)})"
            )
        snap_m = GEOJSON_SNAP_M if name.endswith(GEOJSON_SUFFIXES) else 0.0
        return cls(ways, frame=frame, source=str(path), snap_m=snap_m)

    @classmethod
    def from_features(
        cls, features: Iterable[Mapping[str, Any]], frame: LocalFrame | None = None
    ) -> RoadNetwork:
        """A network from GeoJSON Features already in memory (see :func:`read_geojson_ways`)."""
        return cls(read_geojson_ways(features), frame=frame, snap_m=GEOJSON_SNAP_M)

    def _build(self, ways: Sequence[RawWay], all_xy: np.ndarray) -> None:
        """Split ways at junctions; fill segment, edge and adjacency arrays."""
        sizes = np.array([len(w.keys) for w in ways])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        keys = np.concatenate([w.keys for w in ways])
        _, vertex_node = np.unique(keys, return_inverse=True)
        uses = np.bincount(vertex_node)
        is_end = np.zeros(len(keys), dtype=bool)
        is_end[starts] = True
        is_end[starts + sizes - 1] = True
        junction_vertex = (uses[vertex_node] >= 2) | is_end
        node_of = np.full(len(uses), -1, dtype=np.int64)
        junction_keys = np.unique(vertex_node[junction_vertex])
        node_of[junction_keys] = np.arange(len(junction_keys))
        node_xy = np.zeros((len(junction_keys), 2))
        node_xy[node_of[vertex_node[junction_vertex]]] = all_xy[junction_vertex]

        seg_xy: list[np.ndarray] = []
        seg_u: list[int] = []
        seg_v: list[int] = []
        seg_way: list[int] = []
        for w_idx, (start, size) in enumerate(zip(starts.tolist(), sizes.tolist(), strict=True)):
            vn = vertex_node[start : start + size]
            keep = np.concatenate([[True], vn[1:] != vn[:-1]])  # drop repeated vertices
            vn = vn[keep]
            xy = all_xy[start : start + size][keep]
            cuts = np.flatnonzero(junction_vertex[start : start + size][keep])
            for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
                piece = xy[a : b + 1]
                if len(piece) < 2 or cumulative_m(piece)[-1] <= 0.01:
                    continue
                seg_xy.append(piece)
                seg_u.append(int(node_of[vn[a]]))
                seg_v.append(int(node_of[vn[b]]))
                seg_way.append(w_idx)
        if not seg_xy:
            raise RoadNetworkError(f"{self.source}: no drivable roads (all ways degenerate)")

        self.node_xy = node_xy
        self._seg_xy = seg_xy
        self._seg_cum = [cumulative_m(xy) for xy in seg_xy]
        self.seg_lines = shapely.linestrings(
            np.vstack(seg_xy), indices=np.repeat(np.arange(len(seg_xy)), [len(xy) for xy in seg_xy])
        )
        self.seg_len = np.array([c[-1] for c in self._seg_cum])
        self.seg_u = np.array(seg_u, dtype=np.int64)
        self.seg_v = np.array(seg_v, dtype=np.int64)
        way_idx = np.array(seg_way)
        self.seg_name = [ways[i].name for i in seg_way]
        self.seg_highway = [ways[i].highway for i in seg_way]
        oneway = np.array([ways[i].oneway for i in way_idx.tolist()], dtype=np.int64)
        speed = np.array([ways[i].speed_mps for i in way_idx.tolist()])
        self.seg_speed_mps = speed
        self.tree = shapely.STRtree(self.seg_lines)

        n_seg = len(seg_xy)
        fwd = oneway >= 0
        bwd = oneway <= 0
        fwd_ids = np.flatnonzero(fwd)
        bwd_ids = np.flatnonzero(bwd)
        self.edge_seg = np.concatenate([fwd_ids, bwd_ids])
        self.edge_rev = np.concatenate([np.zeros(len(fwd_ids), bool), np.ones(len(bwd_ids), bool)])
        self.edge_src = np.where(
            self.edge_rev, self.seg_v[self.edge_seg], self.seg_u[self.edge_seg]
        )
        self.edge_dst = np.where(
            self.edge_rev, self.seg_u[self.edge_seg], self.seg_v[self.edge_seg]
        )
        self.edge_len_m = self.seg_len[self.edge_seg]
        self.edge_speed_mps = speed[self.edge_seg]
        self.edge_time_s = self.edge_len_m / self.edge_speed_mps
        self.seg_edge_fwd = np.full(n_seg, -1, dtype=np.int64)
        self.seg_edge_bwd = np.full(n_seg, -1, dtype=np.int64)
        self.seg_edge_fwd[fwd_ids] = np.arange(len(fwd_ids))
        self.seg_edge_bwd[bwd_ids] = len(fwd_ids) + np.arange(len(bwd_ids))

        # Plain Python lists for the Dijkstra inner loop (numpy scalars are slow there).
        self._in_edges: list[list[int]] = [[] for _ in range(len(node_xy))]
        for e, dst in enumerate(self.edge_dst.tolist()):
            self._in_edges[dst].append(e)
        self._src = self.edge_src.tolist()
        self._time = self.edge_time_s.tolist()
        self._edge_len = self.edge_len_m.tolist()
        self._edge_speed = self.edge_speed_mps.tolist()
        self._edge_seg = self.edge_seg.tolist()
        self._edge_rev = self.edge_rev.tolist()
        # Unit direction (x, y) of each edge where it leaves its source and enters its target,
        # in travel order: which incoming edge is the straight continuation at a junction.
        first = np.array([xy[1] - xy[0] for xy in seg_xy])
        last = np.array([xy[-1] - xy[-2] for xy in seg_xy])
        first /= np.maximum(np.hypot(*first.T), 1e-9)[:, None]
        last /= np.maximum(np.hypot(*last.T), 1e-9)[:, None]
        rev = self.edge_rev[:, None]
        self._edge_dir_start = np.where(rev, -last[self.edge_seg], first[self.edge_seg]).tolist()
        self._edge_dir_end = np.where(rev, -first[self.edge_seg], last[self.edge_seg]).tolist()

    # ---- facts -------------------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        """Number of junction nodes (including dead ends)."""
        return len(self.node_xy)

    @property
    def n_edges(self) -> int:
        """Number of directed edges (a two-way segment counts twice)."""
        return len(self.edge_seg)

    @property
    def max_speed_mps(self) -> float:
        """Fastest edge speed; bounds how far any walk can reach."""
        return float(self.edge_speed_mps.max())

    def geometry(self) -> MultiLineString:
        """Every segment, as one MultiLineString in metres (for maps and tests)."""
        return MultiLineString(list(self._seg_xy))

    def __repr__(self) -> str:
        return (
            f"RoadNetwork({self.source!r}, nodes={self.n_nodes}, edges={self.n_edges}, "
            f"frame={self.frame.key})"
        )

    # ---- matching ----------------------------------------------------------------------------

    def match(self, path_m: LineString, *, step_m: float = 5.0) -> PathMatch:
        """Lay a path (metres, travel order) onto the network.

        Samples the path every ``step_m``; each sample takes the nearest segment within
        ``match_tol_m`` whose direction agrees with the path's (either way round). A directed
        edge counts as *along* the path if it flows with the path and is the nearest for at
        least two samples (or is shorter than two steps); *oncoming* likewise for edges flowing
        against it, but only within ``divided_gap_m`` of the path: the other direction of a
        two-way road, or of a road drawn as two close one-way lines, and not the other
        carriageway of a divided road (its drivers never pass the unit; the junctions where they
        can turn across the path are still walked). Junctions are the ends of those edges within
        ``match_tol_m`` of the path.
        """
        length = float(path_m.length)
        n = max(2, math.ceil(length / step_m) + 1)
        along = np.linspace(0.0, length, n)
        pts = shapely.line_interpolate_point(path_m, along)
        tangent = _directions_at(path_m, along, length)

        tol = self.match_tol_m
        s_idx, seg = self.tree.query(pts, predicate="dwithin", distance=max(tol, FAR_SIDE_M))
        empty = np.zeros(0, dtype=np.int64)
        on_edge = np.full(n, -1, dtype=np.int64)
        on_pos = np.zeros(n)
        far_edge = np.full(n, -1, dtype=np.int64)
        far_pos = np.zeros(n)
        if len(s_idx) == 0:
            return PathMatch(
                length, empty, empty, empty, np.zeros(0), along, on_edge.copy(), on_edge, on_pos,
                far_edge, far_pos,
            )  # fmt: skip
        lines = self.seg_lines[seg]
        seg_at = shapely.line_locate_point(lines, pts[s_idx])
        seg_len = self.seg_len[seg]
        seg_dir = _directions_at(lines, seg_at, seg_len)
        cos = np.einsum("ij,ij->i", seg_dir, tangent[s_idx])
        dist = shapely.distance(lines, pts[s_idx])

        # Directed edge flowing with the path / against it, per (sample, segment) pair.
        with_path = np.where(cos > 0, self.seg_edge_fwd[seg], self.seg_edge_bwd[seg])
        against = np.where(cos > 0, self.seg_edge_bwd[seg], self.seg_edge_fwd[seg])
        aligned = np.abs(cos) >= ALIGN_COS
        oncoming_ok = aligned & (dist <= self.divided_gap_m)  # not a divided road's far side
        # a divided road's other carriageway: one-way, flowing against the path, beyond the gap
        far_ok = aligned & (with_path < 0) & (dist > self.divided_gap_m)
        aligned = aligned & (dist <= tol)
        # position of the sample along the against-edge, in that edge's travel order
        against_pos = np.where(cos > 0, seg_len - seg_at, seg_at)

        # A sample past a segment's end (its nearest point is the end point, metres away) does
        # not lie along it: where the path turns at a junction, the side street ending there
        # in line with the path's next road can be the only aligned candidate for the samples
        # on the corner, and as an "along" edge it would be left out of every upstream walk.
        past_end = ((seg_at <= END_CLAMP_M) | (seg_at >= seg_len - END_CLAMP_M)) & (
            dist > END_CLAMP_M
        )
        sample_along = self._nearest_per_sample(s_idx, dist, with_path, aligned & ~past_end, n)[0]
        on_best, on_which = self._nearest_per_sample(s_idx, dist, against, oncoming_ok, n)
        has = on_which >= 0
        on_edge[has] = on_best[has]
        on_pos[has] = against_pos[on_which[has]]
        far_best, far_which = self._nearest_per_sample(s_idx, dist, against, far_ok, n)
        has = (far_which >= 0) & (on_edge < 0)  # a road with oncoming lanes here is not divided
        far_edge[has] = far_best[has]
        far_pos[has] = against_pos[far_which[has]]

        edges_along = self._edges_seen(sample_along)
        edges_on = self._edges_seen(on_edge)
        sample_along[~np.isin(sample_along, edges_along)] = -1

        # Junctions: ends of matched edges that lie within tol of the path.
        ends = np.unique(
            np.concatenate(
                [
                    self.edge_src[edges_along],
                    self.edge_dst[edges_along],
                    self.edge_src[edges_on],
                    self.edge_dst[edges_on],
                ]
            )
        )
        junctions, junction_along = self._visits(ends, pts, along, tol, step_m)
        return PathMatch(
            length,
            edges_along,
            edges_on,
            junctions,
            junction_along,
            along,
            sample_along,
            on_edge,
            on_pos,
            far_edge,
            far_pos,
        )

    @staticmethod
    def _nearest_per_sample(
        s_idx: np.ndarray, dist: np.ndarray, edge: np.ndarray, ok: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per sample, the nearest usable edge (-1 if none) and the index of its pair."""
        usable = ok & (edge >= 0)
        best_edge = np.full(n, -1, dtype=np.int64)
        best_pair = np.full(n, -1, dtype=np.int64)
        idx = np.flatnonzero(usable)
        if len(idx):
            order = idx[np.lexsort((dist[idx], s_idx[idx]))]
            first = np.concatenate([[True], s_idx[order][1:] != s_idx[order][:-1]])
            chosen = order[first]
            best_edge[s_idx[chosen]] = edge[chosen]
            best_pair[s_idx[chosen]] = chosen
        return best_edge, best_pair

    def _edges_seen(self, per_sample: np.ndarray) -> np.ndarray:
        """Edges nearest to >= 2 samples, or to one sample if shorter than 10 m."""
        seen = per_sample[per_sample >= 0]
        if len(seen) == 0:
            return np.zeros(0, dtype=np.int64)
        edges, counts = np.unique(seen, return_counts=True)
        return edges[(counts >= 2) | (self.edge_len_m[edges] < 10.0)]

    def _visits(
        self, nodes: np.ndarray, pts: np.ndarray, along: np.ndarray, tol: float, step: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each node within ``tol`` of the path, once per pass of the path near it."""
        if len(nodes) == 0:
            return nodes, np.zeros(0)
        p_xy = shapely.get_coordinates(pts)
        d = np.hypot(
            p_xy[None, :, 0] - self.node_xy[nodes, 0][:, None],
            p_xy[None, :, 1] - self.node_xy[nodes, 1][:, None],
        )  # nodes x samples
        out_nodes: list[int] = []
        out_along: list[float] = []
        gap = 2.0 * tol + 2.0 * step
        for row, node in zip(d, nodes.tolist(), strict=True):
            near = np.flatnonzero(row <= tol)
            if len(near) == 0:
                continue
            runs = np.split(near, np.flatnonzero(np.diff(along[near]) > gap) + 1)
            for run in runs:
                out_nodes.append(node)
                out_along.append(float(along[run[np.argmin(row[run])]]))
        order = np.argsort(out_along, kind="stable")
        return np.asarray(out_nodes, dtype=np.int64)[order], np.asarray(out_along)[order]

    # ---- walking -----------------------------------------------------------------------------

    def _path_behind(self, m: PathMatch, at_m: float, seconds: float) -> frozenset[int]:
        """Along edges of the path behind ``at_m``, as far back as a walk of ``seconds`` reaches.

        A walk upstream from a junction must not run back along the path the engine has just
        driven (that traffic follows the engine and never meets it), nor out through the side
        streets behind it. Edges further back are left walkable, so a route that comes back
        across itself later still gets the cross traffic at the crossing.
        """
        reach = seconds * self.max_speed_mps + self.match_tol_m
        near = (m.sample_along_m >= at_m - reach) & (m.sample_along_m <= at_m + self.match_tol_m)
        edges = m.sample_along_edge[near]
        return frozenset(edges[edges >= 0].tolist())

    def _walk_upstream(
        self, seeds: Sequence[tuple[int, float]], budget_s: float, excluded: frozenset[int]
    ) -> dict[int, float]:
        """Dijkstra against edge direction by travel time from ``seeds`` (node, start cost).

        Returns, for every edge whose traffic reaches a seed within ``budget_s``, the travel time
        from that edge's downstream end to the seed (seconds). Edges in ``excluded`` are not
        walked.
        """
        best_node: dict[int, float] = {}
        reached: dict[int, float] = {}
        heap: list[tuple[float, int]] = []
        for node, cost in seeds:
            if cost < budget_s and cost < best_node.get(node, math.inf):
                best_node[node] = cost
                heap.append((cost, node))
        heapq.heapify(heap)
        in_edges, src, time = self._in_edges, self._src, self._time
        while heap:
            cost, node = heapq.heappop(heap)
            if cost > best_node.get(node, math.inf):
                continue
            for e in in_edges[node]:
                if e in excluded:
                    continue
                if cost < reached.get(e, math.inf):
                    reached[e] = cost
                nxt = cost + time[e]
                u = src[e]
                if nxt < budget_s and nxt < best_node.get(u, math.inf):
                    best_node[u] = nxt
                    heapq.heappush(heap, (nxt, u))
        return reached

    def _oncoming_from(
        self, m: PathMatch, at_m: float, seconds: float
    ) -> list[tuple[int, float, float]]:
        """Pieces of the oncoming carriageway upstream of the path point ``at_m``.

        The sample nearest ``at_m`` (or a neighbour) names the oncoming edge beside it; its part
        before that point is covered, then the walk goes on upstream from the edge's start.
        Items are (edge, end position along the edge in metres, travel time from there).
        """
        if len(m.sample_along_m) == 0:
            return []
        k = int(np.clip(np.searchsorted(m.sample_along_m, at_m), 0, len(m.sample_along_m) - 1))
        for j in (k, k - 1, k + 1, k - 2, k + 2):
            if 0 <= j < len(m.sample_oncoming) and m.sample_oncoming[j] >= 0:
                edge = int(m.sample_oncoming[j])
                pos = float(m.sample_oncoming_pos_m[j])
                break
        else:
            return []
        pieces: list[tuple[int, float, float]] = [(edge, pos, 0.0)]
        start_cost = pos / self._edge_speed[edge]
        behind = self._path_behind(m, at_m, seconds)
        tree = self._walk_upstream([(self._src[edge], start_cost)], seconds, behind)
        pieces += [(e, self._edge_len[e], c) for e, c in tree.items()]
        return pieces

    def _assemble(
        self, pieces: Iterable[tuple[int, float, float]], seconds: float
    ) -> MultiLineString:
        """Turn (edge, end position m, time from end s) items into merged line pieces.

        Each item covers the ``(seconds - time) x speed`` metres of the edge before ``end``.
        Pieces on the same segment (both directions, or several walks) are merged per segment.
        """
        spans: dict[int, list[tuple[float, float]]] = {}
        for edge, end, cost in pieces:
            remaining = seconds - cost
            if remaining <= 0:
                continue
            start = max(0.0, end - remaining * self._edge_speed[edge])
            if end - start <= 1e-6:
                continue
            seg = self._edge_seg[edge]
            seg_len = float(self.seg_len[seg])
            if self._edge_rev[edge]:  # edge travel order runs from the segment's end
                start, end = seg_len - end, seg_len - start
            spans.setdefault(seg, []).append((start, end))
        lines: list[np.ndarray] = []
        for seg, items in spans.items():
            items.sort()
            merged: list[list[float]] = [list(items[0])]
            for lo, hi in items[1:]:
                if lo <= merged[-1][1] + 1e-6:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            xy, cum = self._seg_xy[seg], self._seg_cum[seg]
            for lo, hi in merged:
                if lo <= 1e-6 and hi >= cum[-1] - 1e-6:
                    lines.append(xy)
                else:
                    lines.append(stretch_between(xy, cum, lo, hi, fast_straight=True))
        if not lines:
            return _EMPTY
        parts = np.repeat(np.arange(len(lines)), [len(line) for line in lines])
        return shapely.multilinestrings(shapely.linestrings(np.vstack(lines), indices=parts))

    # ---- public queries ----------------------------------------------------------------------

    def route_approaches(self, route_m: LineString, max_seconds: float) -> RouteApproaches:
        """Match a route once and get an object that answers stretches of it cheaply.

        Memoised on the route's coordinates (the last 256 routes), so an engine may call it on
        every fix: only the first call for a route pays for the matching.
        """
        key = (shapely.to_wkb(route_m), float(max_seconds))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        prepared = RouteApproaches(self, self.match(route_m), float(max_seconds))
        self._cache[key] = prepared
        if len(self._cache) > 256:
            self._cache.popitem(last=False)
        return prepared

    def approaches(self, path_m: LineString, seconds: float) -> MultiLineString:
        """Roads from which traffic reaches the path within ``seconds`` (MultiLineString, m).

        From each junction on the path: upstream along edges flowing toward it, by travel time,
        cut partially at ``seconds``; plus the oncoming carriageway beside the path and beyond
        its end. Path edges in the travel direction and streets that never join are left out.

        Examples
        --------
        >>> main = [[-80.80, 35.2], [-80.795, 35.2], [-80.79, 35.2]]  # lon, lat
        >>> side = [[-80.795, 35.21], [-80.795, 35.2]]  # one-way, flows into Main
        >>> net = RoadNetwork.from_features([
        ...     {"properties": {"maxspeed_mps": 10}, "geometry": {"type": "LineString",
        ...      "coordinates": main}},
        ...     {"properties": {"maxspeed_mps": 10, "oneway": True}, "geometry": {"type":
        ...      "LineString", "coordinates": side}},
        ... ])
        >>> x0, y0 = net.frame.to_xy(-80.799, 35.2); x1, y1 = net.frame.to_xy(-80.797, 35.2)
        >>> round(net.approaches(LineString([(x0, y0), (x1, y1)]), seconds=5).length)
        50
        >>> x1, y1 = net.frame.to_xy(-80.794, 35.2)  # now past the side street's junction
        >>> round(net.approaches(LineString([(x0, y0), (x1, y1)]), seconds=5).length)
        150

        The second path passes the junction: 50 m of the side street, 50 m of the oncoming lane
        upstream of the junction and 50 m upstream of the path's end.
        """
        return self.route_approaches(path_m, seconds).stretch(0.0, float(path_m.length), seconds)

    def upstream_of(
        self,
        x: float,
        y: float,
        heading_deg: float | None,
        seconds: float,
        branch_seconds: float | None = None,
    ) -> MultiLineString:
        """Roads whose traffic passes the point (x, y) (metres) within ``seconds``.

        For a unit stopped on scene: snap to the nearest segment (with a heading, the nearest
        carriageway within 60 deg of it and at most ``match_tol_m`` further than the nearest
        road, so a divided road picks the right side); walk its carriageway upstream by travel
        time, through junctions. Where the road is not divided, the other direction too: the
        reverse edge of a two-way segment, or an opposite one-way line within ``divided_gap_m``
        (one road drawn as two lines); a divided road's other carriageway is left out. Empty if
        the network has no road within 200 m.

        ``branch_seconds`` (default: ``seconds``) bounds the roads that *join* the unit's road
        upstream: the walk follows the unit's road itself (at each junction the incoming edge
        that goes on straight, within 45 deg) for ``seconds``, and the side branches at its
        junctions only as far as ``branch_seconds`` from the unit. Only part of a branch's
        traffic turns onto the unit's road, so a dense grid's every branch walked for the full
        time warns many drivers who never pass the unit.
        """
        if seconds <= 0:
            return _EMPTY
        pt = shapely.Point(x, y)
        segs = self.tree.query(pt, predicate="dwithin", distance=max(self.match_tol_m * 2.5, 50.0))
        if len(segs) == 0:
            segs = self.tree.query_nearest(pt, max_distance=200.0)
            if len(segs) == 0:
                return _EMPTY
        lines = self.seg_lines[segs]
        dist = shapely.distance(lines, pt)
        at = shapely.line_locate_point(lines, pt)
        seg_len = self.seg_len[segs]
        d = _directions_at(lines, at, seg_len)  # segment direction at the point
        i = int(np.argmin(dist))
        if heading_deg is not None:
            cos = d @ _heading_vector(heading_deg)
            # an edge flowing with the heading: forward with cos > 0, backward with cos < 0
            fits = ((cos >= HEADING_COS) & (self.seg_edge_fwd[segs] >= 0)) | (
                (cos <= -HEADING_COS) & (self.seg_edge_bwd[segs] >= 0)
            )
            fits &= dist <= dist.min() + self.match_tol_m  # not a far road over a near one
            if fits.any():
                i = int(np.flatnonzero(fits)[np.argmin(dist[fits])])
        seg, pos = int(segs[i]), float(at[i])
        # (edge, position along it in its travel order) for each direction that passes the unit
        carriageways: list[tuple[int, float]] = []
        for edge, edge_pos in (
            (int(self.seg_edge_fwd[seg]), pos),
            (int(self.seg_edge_bwd[seg]), float(self.seg_len[seg]) - pos),
        ):
            if edge >= 0:
                carriageways.append((edge, edge_pos))
        if len(carriageways) == 1:
            carriageways += self._close_opposite(carriageways[0][0], segs, d, at, i)
        pieces: list[tuple[int, float, float]] = []
        seeds: list[tuple[int, float]] = []
        for edge, edge_pos in carriageways:
            pieces.append((edge, edge_pos, 0.0))
            seeds.append((self._src[edge], edge_pos / self._edge_speed[edge]))
        if branch_seconds is None or branch_seconds >= seconds:
            tree = self._walk_upstream(seeds, seconds, frozenset())
            pieces += [(e, self._edge_len[e], c) for e, c in tree.items()]
            return self._assemble(pieces, seconds)
        road, joins = self._follow_road([e for e, _ in carriageways], seeds, seconds)
        pieces += [(e, self._edge_len[e], c) for e, c in road.items()]
        on_road = frozenset(
            e
            for edge in (*road, *(e for e, _ in carriageways))
            for e in (
                self.seg_edge_fwd[self._edge_seg[edge]],
                self.seg_edge_bwd[self._edge_seg[edge]],
            )
            if e >= 0
        )
        branches = self._walk_upstream(joins, max(float(branch_seconds), 0.0), on_road)
        side = [(e, self._edge_len[e], c) for e, c in branches.items()]
        return _merge_lines(self._assemble(pieces, seconds), self._assemble(side, branch_seconds))

    def _follow_road(
        self, edges: Sequence[int], seeds: Sequence[tuple[int, float]], seconds: float
    ) -> tuple[dict[int, float], list[tuple[int, float]]]:
        """Walk upstream from each of ``edges`` along its own road, by travel time.

        At each junction (seed node, start cost) the incoming edge whose end direction is
        closest to straight on (within 45 deg, never a U-turn onto the same segment) continues
        the road. Returns the road's edges with the time from their downstream end, and every
        junction passed with its time: the seeds for the branch walk.
        """
        road: dict[int, float] = {}
        joins: list[tuple[int, float]] = []
        for edge, (node, cost) in zip(edges, seeds, strict=True):
            seen: set[int] = set()
            while cost < seconds and node not in seen:
                seen.add(node)
                joins.append((node, cost))
                ox, oy = self._edge_dir_start[edge]
                best, best_cos = -1, STRAIGHT_COS
                for e in self._in_edges[node]:
                    if self._edge_seg[e] == self._edge_seg[edge]:
                        continue  # the other direction of the same street: a U-turn
                    ix, iy = self._edge_dir_end[e]
                    cos = ix * ox + iy * oy
                    if cos >= best_cos:
                        best, best_cos = e, cos
                if best < 0:
                    break
                if cost < road.get(best, math.inf):
                    road[best] = cost
                edge, node, cost = best, self._src[best], cost + self._time[best]
        return road, joins

    def _close_opposite(
        self,
        edge: int,
        segs: np.ndarray,
        seg_dir: np.ndarray,
        at: np.ndarray,
        i: int,
    ) -> list[tuple[int, float]]:
        """The opposite direction of one-way ``edge`` drawn as its own line (undivided road).

        Among the candidate segments ``segs`` (direction ``seg_dir`` and position ``at`` nearest
        the unit; ``segs[i]`` is the unit's), the nearest one-way line flowing against ``edge``
        within ``divided_gap_m`` of the unit's place on its line. Further apart, it is a divided
        road's other carriageway: nothing.
        """
        flow = seg_dir[i] if not self._edge_rev[edge] else -seg_dir[i]
        snapped = shapely.line_interpolate_point(self.seg_lines[segs[i]], float(at[i]))
        best: tuple[float, int, float] | None = None
        for j in range(len(segs)):
            other = int(segs[j])
            if j == i:
                continue
            gap = float(shapely.distance(self.seg_lines[other], snapped))
            if gap > self.divided_gap_m:
                continue
            cos = float(seg_dir[j] @ flow)
            fwd, bwd = int(self.seg_edge_fwd[other]), int(self.seg_edge_bwd[other])
            if cos <= -ALIGN_COS and fwd >= 0 and bwd < 0:
                cand = (gap, fwd, float(at[j]))
            elif cos >= ALIGN_COS and bwd >= 0 and fwd < 0:
                cand = (gap, bwd, float(self.seg_len[other]) - float(at[j]))
            else:
                continue
            if best is None or cand[0] < best[0]:
                best = cand
        return [] if best is None else [(best[1], best[2])]
