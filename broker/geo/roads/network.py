"""The road network as its callers see it: load a file once, then ask about paths and places.

:class:`RoadNetwork` holds the :class:`~broker.geo.roads.graph.RoadGraph`, its frame and its
settings, and answers with the package's modules: matching, the upstream walks, a route's
approaches (memoised per route) and the walks for a unit on scene.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from cachetools import LRUCache
from shapely import LineString, MultiLineString

from broker.geo.projection import LocalFrame, frame_for
from broker.geo.roads.approaches import RouteApproaches
from broker.geo.roads.check import NEAR_MISS_M, NetworkCheck, ReadTally, SnapCounts, check_graph
from broker.geo.roads.geojson import (
    GEOJSON_SNAP_M,
    GEOJSON_SUFFIXES,
    join_dangling_ends,
    read_geojson_ways,
)
from broker.geo.roads.graph import MIN_SEGMENT_M, RoadGraph, RoadNetworkError
from broker.geo.roads.matching import PathMatch, match_path
from broker.geo.roads.osm import OSM_SUFFIXES, RawWay, read_osm_ways
from broker.geo.roads.placement import NetworkPlacement, place_points
from broker.geo.roads.road_classes import RoadClasses
from broker.geo.roads.scene import road_name_at, snap_radius_m, upstream_of
from broker.geo.roads.sumo import SUMO_SUFFIXES, SumoNetError, read_sumo_ways
from broker.validation import MAX_NESTING, nesting, shown, too_deep

log = logging.getLogger(__name__)

# Opposite one-way centrelines further apart than this (metres) are the two carriageways of a
# divided road: a median wider than a lane lies between them and the other side's drivers never
# pass the unit. Closer, they are one road drawn as two lines (its oncoming lanes). Two lanes
# either way put the lane centres ~7-10 m apart; measured medians on the scenario networks
# (motorway A10/A13, Berlin, Helsinki) put divided carriageways at 8-27 m, median 13-16 m.
DIVIDED_GAP_M = 12.0
# route_approaches remembers routes up to this much memory (least recently used go first): a
# route's match is ~100 bytes per 5 m sample, plus its upstream trees as they are walked
ROUTES_KEPT_BYTES = 64 * 2**20
_TREE_ALLOWANCE = 64 * 1024  # bytes counted per route for the trees walked later


def _why_none(tally: ReadTally) -> str:
    """Why a file gave no drivable roads, from what its reader counted."""
    if not tally.lines_read:  # an empty FeatureCollection, an OSM file without highways
        return " (0 lines read: the file holds no road lines)"
    if not tally.dropped:
        return ""
    reasons = ", ".join(f"{n} {reason}" for reason, n in tally.dropped.most_common(4))
    hint = ""
    if tally.unknown:
        classes = ", ".join(repr(raw) for raw, _ in tally.unknown.most_common(4))
        hint = f"; unknown road classes {classes}: map them (docs/roads.md)"
    detail = tally.bad_coordinates_detail()
    if detail:
        hint += f"; bad coordinates, {detail}"
    return f" ({tally.lines_read} lines read, left out: {reasons}{hint})"


def _if_seq(exc: Exception, path: Path) -> str:
    """What to do when a file that did not parse is a GeoJSON text sequence (ogr2ogr's
    GeoJSONSeq: one Feature per line, each maybe after an RS character, RFC 8142); "" else."""
    if not isinstance(exc, json.JSONDecodeError):
        return ""
    # more JSON on the next line, or an RS first (not lstrip(): str counts RS as whitespace)
    next_line = exc.msg == "Extra data" and exc.colno == 1
    if not next_line and not exc.doc.lstrip(" \t\r\n").startswith("\x1e"):
        return ""
    return (
        ": it looks like a GeoJSON text sequence (one Feature per line); make one "
        f"FeatureCollection of it: ogr2ogr -f GeoJSON roads.geojson {path}"
    )


def _refuse_deep_properties(path: Path, features: list[Any]) -> None:
    """Refuse, naming it, a feature whose properties nest deeper than ``MAX_NESTING``: the
    class reader recurses into lists (a RecursionError traceback at some 500 levels)."""
    for number, feature in enumerate(features):
        props = feature.get("properties") if isinstance(feature, dict) else None
        if (depth := nesting(props)) > MAX_NESTING:
            raise RoadNetworkError(
                f"{path}: feature {number}: its properties have {too_deep(depth)}"
            )


def _read_geojson(path: Path, classes: RoadClasses, tally: ReadTally) -> list[RawWay]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RoadNetworkError(
            f"{path}: not readable as GeoJSON ({exc}){_if_seq(exc, path)}"
        ) from exc
    except RecursionError:  # json recurses once per level: some 1,000 of them
        raise RoadNetworkError(
            f"{path}: not readable as GeoJSON (arrays and objects nested too deeply)"
        ) from None
    if not isinstance(doc, dict):
        raise RoadNetworkError(f"{path}: not a GeoJSON object")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        features = doc.get("features")
    elif kind in ("LineString", "MultiLineString", "GeometryCollection"):  # RFC 7946 allows it
        features = [{"type": "Feature", "properties": {}, "geometry": doc}]
    elif kind == "Feature" or (kind is None and "geometry" in doc):
        features = [doc]
    else:  # a Point, a TopoJSON Topology, an object of no kind: not "1 line, not_a_line"
        raise RoadNetworkError(
            f"{path}: not a GeoJSON FeatureCollection, Feature or line geometry (its \"type\" "
            f"is {shown(kind)}): road lines come as a FeatureCollection of LineStrings"
        )
    if not isinstance(features, list):
        raise RoadNetworkError(f"{path}: a FeatureCollection without a features list")
    crs = doc.get("crs")  # GeoJSON 2008's member; RFC 7946 files are lon/lat and have none
    if isinstance(crs, dict) and isinstance(crs.get("properties"), dict):
        name = crs["properties"].get("name")
        tally.crs = str(name) if name is not None else None
    _refuse_deep_properties(path, features)
    try:  # every entry, so that "feature N" in a message is the file's Nth (0-based)
        return list(read_geojson_ways(features, classes=classes, tally=tally))
    except (KeyError, TypeError, ValueError) as exc:
        raise RoadNetworkError(f"{path}: malformed GeoJSON geometry ({exc})") from exc


def _refuse_origin(path: Path, origin: tuple[float, float] | None) -> None:
    """An origin for a file in lon/lat already is refused (it was ignored without a word)."""
    if origin is not None:
        raise RoadNetworkError(
            f"{path}: an origin (--origin, BROKER_ROADS_ORIGIN) places only a SUMO .net.xml "
            "without geo-reference; this file is in lon/lat already: drop the origin"
        )


def _read_ways(
    path: Path, classes: RoadClasses, tally: ReadTally, origin: tuple[float, float] | None
) -> tuple[str, list[RawWay]]:
    """The file's kind (geojson, sumo, osm) and its drivable ways; errors name the file."""
    name = path.name.lower()
    if path.is_dir():
        raise RoadNetworkError(f"{path}: a directory, not a road network file")
    if not path.is_file():
        raise RoadNetworkError(f"{path}: no such road network file")
    if name.endswith(GEOJSON_SUFFIXES):
        _refuse_origin(path, origin)
        return "geojson", _read_geojson(path, classes, tally)
    if name.endswith(SUMO_SUFFIXES):
        try:
            return "sumo", list(read_sumo_ways(path, classes=classes, tally=tally, origin=origin))
        except SumoNetError as exc:
            raise RoadNetworkError(f"{path}: {exc}") from exc
        except KeyError as exc:  # sumolib reads attributes by name: KeyError('version')
            raise RoadNetworkError(
                f"{path}: not readable as a SUMO network (an element without its {exc} "
                "attribute; netconvert writes every one)") from exc
        except Exception as exc:  # sumolib raises what its XML parser raises
            raise RoadNetworkError(f"{path}: not readable as a SUMO network ({exc})") from exc
    if name.endswith(OSM_SUFFIXES):
        _refuse_origin(path, origin)
        try:
            return "osm", list(read_osm_ways(path, classes=classes, tally=tally))
        except (RuntimeError, OSError, ValueError) as exc:
            raise RoadNetworkError(f"{path}: not readable as OSM data ({exc})") from exc
    raise RoadNetworkError(
        f"{path}: unknown road network file type (expected one of "
        f"{', '.join(OSM_SUFFIXES + GEOJSON_SUFFIXES + SUMO_SUFFIXES)}); a GIS layer "
        f"(shapefile, GeoPackage, CSV, KML) converts to GeoJSON in lon/lat with "
        f"ogr2ogr -f GeoJSON -t_srs EPSG:4326 roads.geojson {path}"
    )


def _without_zero_length(
    ways: list[RawWay], all_xy: np.ndarray, tally: ReadTally
) -> tuple[list[RawWay], np.ndarray]:
    """The ways (and their rows of ``all_xy``, metres) that are longer than ``MIN_SEGMENT_M``.

    A line whose points all lie on one spot makes no segment, but its end would still become a
    node of the graph: the check counted it as a line kept, a node and a connected piece of its
    own. It is left out and counted as ``too_few_points`` (fewer than two distinct points).
    """
    sizes = np.array([len(w.keys) for w in ways])
    owner = np.repeat(np.arange(len(ways)), sizes)
    step = np.hypot(*np.diff(all_xy, axis=0).T)  # metres between consecutive vertices
    same = owner[1:] == owner[:-1]  # steps within a way, not from one way to the next
    length = np.bincount(owner[1:][same], weights=step[same], minlength=len(ways))
    keep = length > MIN_SEGMENT_M
    if keep.all():
        return ways, all_xy
    tally.drop("too_few_points", int((~keep).sum()))
    return [w for w, k in zip(ways, keep.tolist(), strict=True) if k], all_xy[keep[owner]]


def _drawn_once(ways: list[RawWay], tally: ReadTally) -> list[RawWay]:
    """The ways without those drawn again over an earlier one: the same vertices (keys), in
    the same or the reverse order, adding no direction of travel to it (a ``duplicate_line``).

    osmnx's edges draw every two-way street twice, once per direction; tiles merged with
    overlap draw roads twice. Kept, the km doubled, and an end met by both copies was no dead
    end: line ends stopping short were never near misses and never snapped. Two opposite
    one-way lines on one centreline are both kept: together they are the two-way road.
    """
    seen: dict[bytes, set[int]] = {}  # keys in one orientation -> directions drawn so far
    out: list[RawWay] = []
    for way in ways:
        along, back = way.keys.tobytes(), way.keys[::-1].tobytes()
        oneway = -way.oneway if back < along else way.oneway
        directions = {1, -1} if oneway == 0 else {oneway}
        drawn = seen.setdefault(min(along, back), set())
        if directions <= drawn:
            tally.drop("duplicate_line")
            continue
        drawn |= directions
        out.append(way)
    return out


def _route_bytes(prepared: RouteApproaches) -> int:
    return prepared.match.nbytes + _TREE_ALLOWANCE


class RoadNetwork:
    """A directed road graph in a local metric frame, shared read-only by every vehicle.

    Build it with :meth:`load` (a file) or :meth:`from_features` (GeoJSON Features). The graph
    itself (nodes, segments, directed edges as read-only arrays) is :attr:`graph`, a
    :class:`~broker.geo.roads.graph.RoadGraph`; ``frame`` is the frame of its metres.

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
    tally : what the reader counted (lines read, left out and why, classes), for :attr:`check`.
    kind : the file's kind (geojson, osm, sumo, memory), for :attr:`check`.
    unknown_policy : what the reader did with unknown classes (drop, keep, error).

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
        tally: ReadTally | None = None,
        kind: str = "memory",
        unknown_policy: str = "drop",
    ) -> None:
        ways = [w for w in ways if len(w.keys) >= 2]
        self.tally = tally if tally is not None else ReadTally(lines_read=len(ways))
        ways = _drawn_once(ways, self.tally)
        if not ways:
            raise RoadNetworkError(f"{source}: no drivable roads{_why_none(self.tally)}")
        self.source = source
        self.kind = kind
        self.unknown_policy = unknown_policy
        self.match_tol_m = float(match_tol_m)
        self.divided_gap_m = float(divided_gap_m)
        all_ll = np.vstack([w.lonlat for w in ways])
        if frame is None:
            lo, hi = all_ll.min(axis=0), all_ll.max(axis=0)
            frame = frame_for(float(lo[0] + hi[0]) / 2.0, float(lo[1] + hi[1]) / 2.0)
        self.frame = frame
        all_xy = frame.coords_to_xy(all_ll)
        ways, all_xy = _without_zero_length(ways, all_xy, self.tally)
        if not ways:
            raise RoadNetworkError(f"{source}: no drivable roads{_why_none(self.tally)}")
        self.lines_kept = len(ways) + self.tally.folded  # a SUMO two-way line: two edges read
        joined = 0
        if snap_m > 0:
            ways, all_xy, joined = join_dangling_ends(ways, all_xy, snap_m, frame)
        self.snap = SnapCounts(float(snap_m), joined)
        self.graph = RoadGraph.build(ways, all_xy, source=source)
        self._routes: LRUCache[tuple[bytes, float], RouteApproaches] = LRUCache(
            ROUTES_KEPT_BYTES, getsizeof=_route_bytes
        )

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path,
        frame: LocalFrame | None = None,
        *,
        classes: RoadClasses | None = None,
        snap_m: float | None = None,
        origin: tuple[float, float] | None = None,
        allow_unusable: bool = False,
        log_warnings: bool = True,
    ) -> RoadNetwork:
        """Read GeoJSON centrelines (``.geojson``), an OSM extract (``.osm.pbf``, ``.osm``) or
        a SUMO network (``.net.xml``).

        ``classes`` maps road classes beyond the built-in table (docs/roads.md); ``snap_m``
        joins line ends that stop this close to another line (default: 1 m for GeoJSON, 0 for
        OSM and SUMO, whose lines share junctions by id); ``origin`` places a SUMO net without
        geo-reference. The load runs :attr:`check`: its warnings are logged (unless
        ``log_warnings`` is off: a caller that shows them itself), and a network it finds
        unusable (mostly disconnected; unknown classes under ``unknown = "error"``) raises
        unless ``allow_unusable`` (``broker roads check`` reports it instead).

        Raises :class:`RoadNetworkError` naming the file when it is missing, unreadable, of an
        unknown kind, holds no drivable roads, or is unusable.
        """
        path = Path(path)
        classes = classes or RoadClasses()
        tally = ReadTally()
        kind, ways = _read_ways(path, classes, tally, origin)
        snap_default = GEOJSON_SNAP_M if kind == "geojson" else 0.0
        if classes.unknown == "error" and tally.unknown:
            listed = ", ".join(f"{raw!r} ({n})" for raw, n in tally.unknown.most_common(8))
            raise RoadNetworkError(
                f"{path}: lines of unknown road class: {listed}; map them in the road-class "
                f"file{f' {classes.source}' if classes.source else ''} (docs/roads.md)"
            )
        net = cls(
            ways, frame=frame, source=str(path),
            snap_m=snap_default if snap_m is None else snap_m, tally=tally, kind=kind,
            unknown_policy=classes.unknown,
        )  # fmt: skip
        report = net.check
        if report.problems and not allow_unusable:
            raise RoadNetworkError(
                f"{path}: {'; '.join(report.problems)} (broker roads check {path} says more)"
            )
        for warning in (*report.problems, *report.warnings) if log_warnings else ():
            log.warning("%s: %s", path, warning)
        return net

    @classmethod
    def from_features(
        cls,
        features: Iterable[Mapping[str, Any]],
        frame: LocalFrame | None = None,
        *,
        classes: RoadClasses | None = None,
        snap_m: float = GEOJSON_SNAP_M,
    ) -> RoadNetwork:
        """A network from GeoJSON Features already in memory (see :func:`read_geojson_ways`).

        Unlike :meth:`load` it never refuses a network :attr:`check` finds unusable.
        """
        classes = classes or RoadClasses()
        tally = ReadTally()
        ways = list(read_geojson_ways(features, classes=classes, tally=tally))
        return cls(
            ways, frame=frame, snap_m=snap_m, tally=tally, kind="memory",
            unknown_policy=classes.unknown,
        )  # fmt: skip

    # ---- facts -------------------------------------------------------------------------------

    @cached_property
    def check(self) -> NetworkCheck:
        """What was loaded and what is wrong with it (``broker roads check`` prints it)."""
        return self.check_with(NEAR_MISS_M)

    def check_with(self, near_miss_m: float) -> NetworkCheck:
        """:attr:`check` with line ends reported as near misses within ``near_miss_m``."""
        g = self.graph
        return check_graph(
            g, self.frame, self.tally, source=self.source, kind=self.kind,
            lines_kept=self.lines_kept, unknown_policy=self.unknown_policy, snap=self.snap,
            oneway_seg=(g.seg_edge_fwd < 0) | (g.seg_edge_bwd < 0), near_miss_m=near_miss_m,
        )  # fmt: skip

    @property
    def n_nodes(self) -> int:
        """Number of junction nodes (including dead ends)."""
        return self.graph.n_nodes

    @property
    def n_edges(self) -> int:
        """Number of directed edges (a two-way segment counts twice)."""
        return self.graph.n_edges

    @property
    def max_speed_mps(self) -> float:
        """Fastest edge speed; bounds how far any walk can reach."""
        return self.graph.max_speed_mps

    @cached_property
    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of every road vertex, in degrees."""
        lonlat = self.frame.coords_to_lonlat(np.concatenate(self.graph.seg_xy))
        (west, south), (east, north) = lonlat.min(axis=0), lonlat.max(axis=0)
        return float(west), float(south), float(east), float(north)

    def placement(self, points: Iterable[tuple[float, float]]) -> NetworkPlacement:
        """How many of ``points`` (lon, lat: an incident's fixes) lie within the network's
        extent, and how many would if its coordinates were read the other way round
        (:func:`~broker.geo.roads.placement.place_points`)."""
        return place_points(self.lonlat_bounds, points)

    def overlaps(self, area: tuple[float, float, float, float]) -> bool:
        """Whether the network's extent meets ``area`` (west, south, east, north)."""
        w, s, e, n = self.lonlat_bounds
        return w <= area[2] and area[0] <= e and s <= area[3] and area[1] <= n

    def geometry(self) -> MultiLineString:
        """Every segment, as one MultiLineString in metres (for maps and tests)."""
        return MultiLineString(list(self.graph.seg_xy))

    def __repr__(self) -> str:
        return (
            f"RoadNetwork({self.source!r}, nodes={self.n_nodes}, edges={self.n_edges}, "
            f"frame={self.frame.key})"
        )

    # ---- public queries ----------------------------------------------------------------------

    def match(self, path_m: LineString, *, step_m: float = 5.0) -> PathMatch:
        """Lay a path (metres, travel order) onto the network.

        :func:`~broker.geo.roads.matching.match_path` with this network's ``match_tol_m`` and
        ``divided_gap_m``: the edges along the path and against it, and its junctions.
        """
        return match_path(
            self.graph,
            path_m,
            match_tol_m=self.match_tol_m,
            divided_gap_m=self.divided_gap_m,
            step_m=step_m,
        )

    def route_approaches(self, route_m: LineString, max_seconds: float) -> RouteApproaches:
        """Match a route once and get an object that answers stretches of it cheaply.

        Memoised on the route's coordinates (up to ``ROUTES_KEPT_BYTES`` of matches, least
        recently used dropped first), so an engine may call it on every fix: only the first call
        for a route pays for the matching.
        """
        key = (shapely.to_wkb(route_m), float(max_seconds))
        hit = self._routes.get(key)
        if hit is not None:
            return hit
        prepared = RouteApproaches(
            self.graph, self.match(route_m), float(max_seconds), self.match_tol_m,
            self.divided_gap_m,
        )  # fmt: skip
        if _route_bytes(prepared) <= ROUTES_KEPT_BYTES:  # a giant route is not kept
            self._routes[key] = prepared
        return prepared

    def forget_routes(self) -> None:
        """Drop the routes :meth:`route_approaches` remembers (benchmarks time a first call)."""
        self._routes.clear()

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

    def reaches(self, x: float, y: float, within_m: float) -> bool:
        """Whether a road of the network lies within ``within_m`` of (x, y) (metres, in this
        network's frame)."""
        return bool(self.graph.tree.query(shapely.Point(x, y), predicate="dwithin",
                                          distance=within_m).size)

    @property
    def snap_radius_m(self) -> float:
        """How far from a stopped unit :meth:`upstream_of` looks for its road first (metres)."""
        return snap_radius_m(self.match_tol_m)

    def street_at(
        self, x: float, y: float, heading_deg: float | None, *, within_m: float,
        keep: str | None = None,
    ) -> str | None:
        """The name of the road a unit at (x, y) (metres) is on: the road :meth:`upstream_of`
        walks from, if it lies within ``within_m`` and has a name (None otherwise). ``keep``
        (the name given last) stays while a road of that name lies within ``within_m``
        (:func:`~broker.geo.roads.scene.road_name_at`)."""
        return road_name_at(
            self.graph, x, y, heading_deg, match_tol_m=self.match_tol_m, within_m=within_m,
            keep=keep,
        )

    def upstream_of(
        self,
        x: float,
        y: float,
        heading_deg: float | None,
        seconds: float,
        branch_seconds: float | None = None,
        *,
        directed: bool = False,
        turn_offs: int | None = None,
        opposite_only: bool = False,
    ) -> MultiLineString:
        """Roads whose traffic passes the point (x, y) (metres) within ``seconds``.

        For a unit stopped on scene, facing ``heading_deg`` if known: its carriageway walked
        upstream by travel time (through at most ``turn_offs`` junctions where its traffic can
        leave it; None: no limit), the side roads that join it only for ``branch_seconds``
        (default: ``seconds``). See :func:`~broker.geo.roads.scene.upstream_of`; ``directed``:
        one line per directed edge, in travel direction (the warning segments);
        ``opposite_only``: only the other direction drawn as its own line, if any.
        """
        return upstream_of(
            self.graph,
            x,
            y,
            heading_deg,
            seconds,
            branch_seconds,
            match_tol_m=self.match_tol_m,
            divided_gap_m=self.divided_gap_m,
            directed=directed,
            turn_offs=turn_offs,
            opposite_only=opposite_only,
        )
