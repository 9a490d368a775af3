"""What a road network file gave, and what is wrong with it.

The readers count what they read and why they left a line out (:class:`ReadTally`); once the
graph is built, :func:`check_graph` adds what the graph says: kilometres per class, junctions,
connected pieces, line ends that stop just short of another line, the one-way share. The result,
a :class:`NetworkCheck`, is what ``broker roads check`` prints and what a load warns with
(:attr:`NetworkCheck.warnings`); a network that cannot serve (:attr:`NetworkCheck.problems`)
is reported, never silently used as if whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import shapely

from broker.geo.roads.road_classes import RoadClass

if TYPE_CHECKING:
    from broker.geo.projection import LocalFrame
    from broker.geo.roads.graph import RoadGraph

DropReason = Literal[
    "not_for_cars", "unknown_class", "area", "no_motor_vehicles", "parking_aisle", "not_a_line",
    "too_few_points", "bad_coordinates", "no_passenger_lanes", "self_loop", "parallel_edge",
    "duplicate_line", "nodes_missing",
]  # fmt: skip
DROP_REASONS: dict[str, str] = {
    "not_for_cars": "a class no car drives on (footway, cycleway, ...)",
    "unknown_class": "a class the table does not know (map it: docs/roads.md)",
    "area": "an area (area=yes), not a line",
    "no_motor_vehicles": "closed to motor vehicles (access, vehicle, motor_vehicle, motorcar)",
    "parking_aisle": "a parking aisle, drive-through or emergency access",
    "not_a_line": "not a LineString or MultiLineString",
    "too_few_points": "fewer than two usable points",
    "nodes_missing": "OSM ways without two nodes in a row in the extract",
    "bad_coordinates": "coordinates that are not [lon, lat] numbers within range (or [0, 0])",
    "no_passenger_lanes": "a SUMO edge none of whose lanes allows passenger cars",
    "self_loop": "a SUMO edge from a junction back to itself",
    "parallel_edge": "a second SUMO edge between the same two junctions",
    "duplicate_line": "a line drawn again over another (same points, either way round)",
}
# reasons that mean the file is broken where it says them (warned about at load); points and
# ways cut by an extract's border are not: they are only counted
MALFORMED: tuple[DropReason, ...] = ("bad_coordinates",)
NEAR_MISS_M = 5.0  # a dead end this close to another line, not joined, is reported
MOSTLY_DISCONNECTED = 0.5  # the largest piece holds less than this share of the km: unusable
CUT_OFF_WARNING = 0.9  # ... less than this: a warning (pieces cut off from the rest)
EXAMPLES = 5  # places listed per finding
# consecutive points of one line this far apart (metres) are a stray vertex (a typo in a
# coordinate, a sign lost), not a road: the longest straight road runs some 250 km
STRAY_STEP_M = 500_000.0


@dataclass
class ReadTally:
    """What a reader saw, filled while reading: lines read and why lines were left out."""

    lines_read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> lines
    not_for_cars: Counter[str] = field(default_factory=Counter)  # class as written -> lines
    unknown: Counter[str] = field(default_factory=Counter)  # class as written -> lines
    mapped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (written, class)
    # lines without the class property a road-class file names (``property = "ROADCLASS"``
    # where the file says ROAD_CLASS: every line was kept as an unclassified road, silently)
    without_property: int = 0
    class_property: str | None = None
    # where the first bad coordinates were and what they said ('feature 3: [-8994000.0,
    # 4191000.0]'), and a GeoJSON file's legacy "crs" member: a file in web mercator or a state
    # plane had every line left out with no word of where or why
    first_bad: str = ""
    crs: str | None = None
    # oneway values the reader does not know ("FT", "B"), as written -> lines: read as two-way
    oneway_unknown: Counter[str] = field(default_factory=Counter)
    # SUMO edges read as the way back of a two-way line read with them: kept, as part of that
    # line (a SUMO edge is one direction; read, kept and left out all count edges)
    folded: int = 0
    # OSM ways that reference nodes the extract does not hold (cut without complete ways):
    # left out whole (no two located nodes in a row) or cut where a node is missing
    missing_nodes_ways: int = 0
    missing_nodes_cut: int = 0

    def drop_bad_coordinates(self, where: str) -> None:
        """Count a line left out for bad coordinates; ``where`` (the place and the value) is
        kept for the first one."""
        self.drop("bad_coordinates")
        self.first_bad = self.first_bad or where

    def bad_coordinates_detail(self) -> str:
        """Where the first bad coordinates were, and the file's CRS when it is not lon/lat
        ("" when no line had bad coordinates)."""
        if not self.first_bad:
            return ""
        detail = f"first: {self.first_bad}"
        if self.crs is not None and not _lonlat_crs(self.crs):
            detail += (
                f"; the file's \"crs\" says {self.crs!r}: road lines must be WGS 84 lon/lat "
                "(RFC 7946), convert the file (ogr2ogr -t_srs EPSG:4326)"
            )
        return detail

    def drop(self, reason: DropReason, lines: int = 1) -> None:
        """Count ``lines`` left out for ``reason``."""
        self.dropped[reason] += lines

    def saw_class(self, cls: RoadClass, lines: int = 1) -> None:
        """Count a line's class; a line the class leaves out is counted as dropped too."""
        if cls.how == "unknown":
            self.unknown[cls.raw] += lines
            if cls.highway is None:
                self.drop("unknown_class", lines)
        elif cls.highway is None:
            self.not_for_cars[cls.raw] += lines
            self.drop("not_for_cars", lines)
        elif cls.how in ("table", "user", "number"):
            self.mapped[cls.raw, cls.highway] += lines


def _lonlat_crs(name: str) -> bool:
    """True when a GeoJSON ``crs`` name is WGS 84 lon/lat (CRS84, or EPSG:4326 as GeoJSON 2008
    files use it: in lon/lat order all the same)."""
    upper = name.upper()
    return upper.endswith(("CRS84", ":4326"))


@dataclass(frozen=True)
class SnapCounts:
    """What joining line ends did (:func:`~broker.geo.roads.geojson.join_dangling_ends`)."""

    snap_m: float = 0.0  # the tolerance used (0: none)
    joined: int = 0  # dead ends joined to a line within snap_m


@dataclass(frozen=True)
class NearMiss:
    """A dead end that stops ``gap_m`` from another line without joining it."""

    lon: float
    lat: float
    gap_m: float


@dataclass(frozen=True)
class NetworkCheck:
    """Everything ``broker roads check`` reports about one loaded network."""

    source: str
    kind: str  # geojson | osm | sumo | memory
    lines_read: int
    lines_kept: int
    dropped: dict[str, int]  # reason -> lines
    not_for_cars: dict[str, int]  # class as written -> lines
    unknown_classes: dict[str, int]  # class as written -> lines
    unknown_policy: str
    mapped_classes: dict[str, dict[str, int]]  # class as written -> {OSM class: lines}
    km_by_class: dict[str, float]
    km_total: float
    nodes: int
    junctions: int  # nodes where three or more segment ends meet
    dead_ends: int
    segments: int
    directed_edges: int
    oneway_share: float  # of the km
    components: int
    largest_share: float  # of the km, in the largest connected piece
    small_components: int  # every other piece
    small_components_km: float
    snap: SnapCounts
    near_miss_m: float
    near_misses: tuple[NearMiss, ...]  # every dead end within near_miss_m of a line
    problems: tuple[str, ...]  # why the network cannot serve: empty when usable
    warnings: tuple[str, ...]
    oneway_unknown: dict[str, int] = field(default_factory=dict)  # value as written -> lines

    @property
    def usable(self) -> bool:
        """True when nothing stops the network from serving (warnings may remain)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``broker roads check --json``)."""
        return {
            "source": self.source,
            "kind": self.kind,
            "usable": self.usable,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "lines": {
                "read": self.lines_read,
                "kept": self.lines_kept,
                "dropped": dict(sorted(self.dropped.items())),
                "not_for_cars": dict(sorted(self.not_for_cars.items())),
            },
            "classes": {
                "km": {k: round(v, 3) for k, v in self.km_by_class.items()},
                "unknown": dict(sorted(self.unknown_classes.items())),
                "unknown_policy": self.unknown_policy,
                "mapped": self.mapped_classes,
            },
            "km_total": round(self.km_total, 3),
            "nodes": self.nodes,
            "junctions": self.junctions,
            "dead_ends": self.dead_ends,
            "segments": self.segments,
            "directed_edges": self.directed_edges,
            "oneway_share": round(self.oneway_share, 4),
            "oneway_unknown": dict(sorted(self.oneway_unknown.items())),
            "components": {
                "count": self.components,
                "largest_share": round(self.largest_share, 4),
                "small": self.small_components,
                "small_km": round(self.small_components_km, 3),
            },
            "snap": {"snap_m": self.snap.snap_m, "joined": self.snap.joined},
            "near_misses": {
                "within_m": self.near_miss_m,
                "count": len(self.near_misses),
                "suggested_snap_m": suggested_snap_m(self.near_misses),
                "examples": [
                    {"lon": round(m.lon, 6), "lat": round(m.lat, 6), "gap_m": round(m.gap_m, 2)}
                    for m in self.near_misses[:EXAMPLES]
                ],
            },
        }


def suggested_snap_m(near_misses: tuple[NearMiss, ...]) -> float | None:
    """The tolerance (to the next half metre) that would join every near miss, or None."""
    if not near_misses:
        return None
    return float(np.ceil(max(m.gap_m for m in near_misses) * 2.0 + 1e-9) / 2.0)


def components_of(n_nodes: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A label per node: nodes joined by segments (either direction) share it.

    Examples
    --------
    >>> components_of(5, np.array([0, 1, 3]), np.array([1, 2, 4])).tolist()
    [0, 0, 0, 3, 3]
    """
    label = np.arange(n_nodes)
    while True:
        low = np.minimum(label[u], label[v])
        new = label.copy()
        np.minimum.at(new, label[u], low)  # hook each root under the lowest label it touches
        np.minimum.at(new, label[v], low)
        while True:  # then point every node at its root
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, label):
            return label
        label = new


def near_misses(graph: RoadGraph, frame: LocalFrame, within_m: float) -> tuple[NearMiss, ...]:
    """Dead ends that stop within ``within_m`` of a segment they do not join, nearest first.

    A segment at the dead end's own node, or at the node its one segment leads to, does not
    count (a short spur lies close to the roads at its junction by nature).
    """
    degree = np.bincount(np.concatenate([graph.seg_u, graph.seg_v]), minlength=graph.n_nodes)
    ends = np.flatnonzero(degree == 1)
    if len(ends) == 0 or within_m <= 0:
        return ()
    own = np.full(graph.n_nodes, -1)
    own[graph.seg_u] = np.arange(len(graph.seg_u))  # a dead end has exactly one segment
    own[graph.seg_v] = np.arange(len(graph.seg_v))
    seg = own[ends]
    other = np.where(graph.seg_u[seg] == ends, graph.seg_v[seg], graph.seg_u[seg])
    pts: np.ndarray = np.asarray(shapely.points(graph.node_xy[ends]))
    e_idx, s_idx = graph.tree.query(pts, predicate="dwithin", distance=within_m)
    touches = (
        (graph.seg_u[s_idx] == ends[e_idx]) | (graph.seg_v[s_idx] == ends[e_idx])
        | (graph.seg_u[s_idx] == other[e_idx]) | (graph.seg_v[s_idx] == other[e_idx])
    )  # fmt: skip
    e_idx, s_idx = e_idx[~touches], s_idx[~touches]
    if len(e_idx) == 0:
        return ()
    gap = shapely.distance(pts[e_idx], graph.seg_lines[s_idx])
    best = np.full(len(ends), np.inf)
    np.minimum.at(best, e_idx, gap)
    found = np.flatnonzero(np.isfinite(best))
    found = found[np.argsort(best[found], kind="stable")]
    lonlat = frame.coords_to_lonlat(graph.node_xy[ends[found]])
    return tuple(
        NearMiss(float(lon), float(lat), float(g))
        for (lon, lat), g in zip(lonlat.tolist(), best[found].tolist(), strict=True)
    )


def stray_steps(graph: RoadGraph, frame: LocalFrame) -> list[str]:
    """The warning for segments that step more than ``STRAY_STEP_M`` between two consecutive
    points, naming the longest step's two places; [] when none."""
    sizes = np.array([len(xy) for xy in graph.seg_xy])
    xy = np.vstack(graph.seg_xy)
    owner = np.repeat(np.arange(len(sizes)), sizes)
    step = np.hypot(*np.diff(xy, axis=0).T)
    step[owner[1:] != owner[:-1]] = 0.0  # from one segment's end to the next one's start
    far = step > STRAY_STEP_M
    if not far.any():
        return []
    i = int(np.argmax(step))
    (lon_a, lat_a), (lon_b, lat_b) = frame.coords_to_lonlat(xy[i : i + 2]).tolist()
    strays = len(np.unique(owner[1:][far]))
    return [
        f"{strays} line{'s' if strays > 1 else ''} with two consecutive points more than "
        f"{STRAY_STEP_M / 1000:g} km apart: a stray vertex (a typo in a coordinate?), not a "
        f"road; the longest step from {lon_a:.4f}, {lat_a:.4f} to {lon_b:.4f}, {lat_b:.4f} "
        f"({step[i] / 1000:,.0f} km): fix or remove it"
    ]


def _missing_nodes(tally: ReadTally) -> list[str]:
    """The warning of OSM ways whose nodes the extract lacks (the roads at its edge, or a broken
    extract): they were left out as too_few_points at "nothing looks wrong"."""
    if not tally.missing_nodes_ways:
        return []
    return [
        f"{tally.missing_nodes_ways} ways with nodes missing from the extract: "
        f"{tally.dropped['nodes_missing']} left out, {tally.missing_nodes_cut} cut where a node "
        "is missing (an extract cut without complete ways: osmium extract --strategy "
        "complete_ways, or a larger one)"
    ]


def check_graph(
    graph: RoadGraph,
    frame: LocalFrame,
    tally: ReadTally,
    *,
    source: str,
    kind: str,
    lines_kept: int,
    unknown_policy: str,
    snap: SnapCounts,
    oneway_seg: np.ndarray,
    near_miss_m: float = NEAR_MISS_M,
) -> NetworkCheck:
    """The facts, warnings and problems of a built graph (``oneway_seg``: bool per segment)."""
    km = graph.seg_len / 1000.0
    km_total = float(km.sum())
    by_class: Counter[str] = Counter()
    for cls, length in zip(graph.seg_highway, km.tolist(), strict=True):
        by_class[cls] += length
    degree = np.bincount(np.concatenate([graph.seg_u, graph.seg_v]), minlength=graph.n_nodes)
    label = components_of(graph.n_nodes, graph.seg_u, graph.seg_v)
    piece_km = np.bincount(label[graph.seg_u], weights=km, minlength=graph.n_nodes)
    pieces = len(np.unique(label))
    largest = float(piece_km.max()) if km_total > 0 else 0.0
    share = largest / km_total if km_total > 0 else 0.0
    misses = near_misses(graph, frame, near_miss_m)
    mapped: dict[str, dict[str, int]] = {}
    for (raw, cls), n in sorted(tally.mapped.items()):
        mapped.setdefault(raw, {})[cls] = n
    problems: list[str] = []
    warnings: list[str] = []
    if share < MOSTLY_DISCONNECTED:
        dropped_unknown = sum(tally.unknown.values()) if unknown_policy != "keep" else 0
        problems.append(
            f"mostly disconnected: the largest connected piece holds {share:.0%} of the "
            f"{km_total:.1f} km ({pieces} pieces); "
            # lines left out for an unknown class leave gaps no snapping closes: say so first
            + (f"{dropped_unknown} lines of unknown class were left out, which may be the gaps: "
               "map their classes (a classes file, docs/roads.md) or keep them "
               '(unknown = "keep"); ' if dropped_unknown else "")
            + (f"{len(misses)} line ends stop within {near_miss_m:g} m of another line, "
               f"snapping them (snap_m = {suggested_snap_m(misses)}) would join them"
               if misses else "no line ends stop close to another line: check the file")
        )
    elif share < CUT_OFF_WARNING:
        warnings.append(
            f"{pieces - 1} {'piece holds' if pieces == 2 else 'pieces hold'} {1 - share:.0%} of "
            "the km, cut off from the largest "
            "(approaches never cross from one piece to another)"
        )
    if misses and share >= MOSTLY_DISCONNECTED:
        warnings.append(
            f"{len(misses)} line ends stop within {near_miss_m:g} m of another line without "
            f"joining it; snap_m = {suggested_snap_m(misses)} would join them"
        )
    malformed = {r: tally.dropped[r] for r in MALFORMED if tally.dropped[r]}
    if malformed:  # a broken export, not the filtering of roads no car drives on
        listed = ", ".join(f"{DROP_REASONS[r]} ({n})" for r, n in malformed.items())
        detail = tally.bad_coordinates_detail()
        warnings.append(
            f"{sum(malformed.values())} malformed lines left out: {listed}"
            + (f" ({detail})" if detail else "")
        )
    if tally.without_property:
        warnings.append(
            f"{tally.without_property} of {tally.lines_read} lines have no "
            f"{tally.class_property!r} property, the one the road-class file names: kept as "
            "unclassified roads (is it spelt as in the file? docs/roads.md)"
        )
    if tally.unknown:
        listed = ", ".join(f"{raw!r} ({n})" for raw, n in tally.unknown.most_common(8))
        fate = "kept as unclassified" if unknown_policy == "keep" else "left out"
        warnings.append(
            f"{sum(tally.unknown.values())} lines of unknown class {fate}: {listed}; map them "
            "in a road-class file (docs/roads.md)"
        )
    warnings += _missing_nodes(tally)
    warnings += stray_steps(graph, frame)
    if tally.oneway_unknown:
        listed = ", ".join(f"{raw!r} ({n})" for raw, n in tally.oneway_unknown.most_common(8))
        warnings.append(
            f"{sum(tally.oneway_unknown.values())} lines have a oneway value the reader does "
            "not know, read as none given (two-way but for motorways and roundabouts): "
            f"{listed}; write yes, -1 or no (docs/roads.md)"
        )
    return NetworkCheck(
        source=source,
        kind=kind,
        lines_read=tally.lines_read,
        lines_kept=lines_kept,
        dropped=dict(tally.dropped),
        not_for_cars=dict(tally.not_for_cars),
        unknown_classes=dict(tally.unknown),
        unknown_policy=unknown_policy,
        mapped_classes=mapped,
        km_by_class=dict(by_class.most_common()),
        km_total=km_total,
        nodes=graph.n_nodes,
        junctions=int((degree >= 3).sum()),
        dead_ends=int((degree == 1).sum()),
        segments=len(graph.seg_len),
        directed_edges=graph.n_edges,
        oneway_share=float(km[oneway_seg].sum() / km_total) if km_total > 0 else 0.0,
        components=pieces,
        largest_share=share,
        small_components=pieces - 1,
        small_components_km=max(km_total - largest, 0.0),
        snap=snap,
        near_miss_m=near_miss_m,
        near_misses=misses,
        problems=tuple(problems),
        warnings=tuple(warnings),
        oneway_unknown=dict(tally.oneway_unknown),
    )
