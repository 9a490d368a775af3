"""The upstream approaches of one route, prepared once and cut per stretch as a unit drives it.

:class:`RouteApproaches` keeps a route's :class:`~broker.geo.roads.matching.PathMatch` and one
upstream tree per junction visit (walked lazily), so each update only unions trees: no matching
and no walking on the engine's hot path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import LineString, MultiLineString
from shapely.geometry.base import BaseGeometry

from broker.geo.roads.graph import RoadGraph
from broker.geo.roads.matching import FAR_SIDE_M, PathMatch
from broker.geo.roads.walks import (
    NO_ROADS,
    assemble,
    assemble_directed,
    oncoming_from,
    path_behind,
    walk_upstream,
)
from broker.geo.route import cumulative_m, stretch_between

FAR_CUT_M = 25.0  # keep a zone's road bands this far (metres) off a divided road's far side


@dataclass(frozen=True, eq=False)
class RouteApproaches:
    """The upstream approaches of one route, prepared once; :meth:`stretch` is cheap.

    Holds the route's :class:`PathMatch` and memoises one upstream walk per junction visit
    (walked to ``max_seconds``; any smaller ``seconds`` is cut from it without walking again).
    """

    graph: RoadGraph
    match: PathMatch
    max_seconds: float
    match_tol_m: float  # the network's settings (see RoadNetwork)
    divided_gap_m: float
    _trees: dict[int, dict[int, float]] = field(default_factory=dict, repr=False)
    _far_trees: dict[int, dict[int, tuple[float, float]]] = field(
        default_factory=dict, repr=False
    )

    def _walk(self, visit: int, also_excluded: frozenset[int]) -> dict[int, float]:
        """The upstream tree of one junction visit, never along ``also_excluded``."""
        at_m = float(self.match.junction_along_m[visit])
        behind = path_behind(self.graph, self.match, at_m, self.max_seconds, self.match_tol_m)
        node = int(self.match.junctions[visit])
        return walk_upstream(self.graph, [(node, 0.0)], self.max_seconds, behind | also_excluded)

    def _tree(self, visit: int) -> dict[int, float]:
        tree = self._trees.get(visit)
        if tree is None:
            tree = self._trees[visit] = self._walk(visit, frozenset())
        return tree

    def _far_only(self, visit: int) -> dict[int, tuple[float, float]]:
        """The edges of a junction's tree reached more cheaply through a median opening.

        Per edge: (its time in the full tree, its time without going into a divided road's
        far carriageway at a median opening; inf if not reached so). The far-side edges left
        out are those beside the route that end across the median from the junction, within
        ``FAR_SIDE_M`` of it but not at it (a ramp or loop merging at the junction is kept).
        """
        found = self._far_trees.get(visit)
        if found is None:
            graph, node = self.graph, int(self.match.junctions[visit])
            far = np.unique(self.match.sample_far[self.match.sample_far >= 0])
            dst = graph.edge_dst[far]
            gap = np.hypot(*(graph.node_xy[dst] - graph.node_xy[node]).T)
            opening = frozenset(far[(dst != node) & (gap <= FAR_SIDE_M)].tolist())
            found = {}
            if opening:
                near = self._walk(visit, opening)
                found = {
                    e: (c, near.get(e, math.inf))
                    for e, c in self._tree(visit).items()
                    if near.get(e, math.inf) > c
                }
            self._far_trees[visit] = found
        return found

    def stretch(
        self,
        along_a_m: float,
        along_b_m: float,
        seconds: float | None = None,
        seconds_at: Callable[[float], float] | None = None,
        *,
        directed: bool = False,
        far_side_s: float | None = None,
    ) -> MultiLineString:
        """Roads feeding the route between ``along_a_m`` and ``along_b_m`` within ``seconds``.

        Unions the upstream trees of the junctions passed in that stretch, plus the oncoming
        carriageway walked upstream from ``along_b_m``. A MultiLineString in metres.
        ``seconds_at`` (optional) gives each junction its own walk, from where it lies along
        the route (metres); never less than ``seconds`` nor more than ``max_seconds``.
        ``directed``: one line per directed edge, in its travel direction (the warning
        segments), instead of pieces merged per road (the zone). ``far_side_s`` (None: no
        limit): a junction's walk goes into a divided road's far carriageway at a median
        opening, and beyond it, only this many seconds (its drivers cross the path only if
        they turn there).
        """
        seconds = self.max_seconds if seconds is None else min(float(seconds), self.max_seconds)
        if seconds <= 0 or along_b_m < along_a_m:
            return NO_ROADS
        graph, m = self.graph, self.match
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
        # so that one assemble over ``top`` cuts every tree at its own time.
        best: dict[int, float] = {}
        # what a walk reaches only through a median opening counts to far_side_s
        far_s = math.inf if far_side_s is None else far_side_s
        for visit, s in walk.items():
            late = top - s
            far = self._far_only(visit) if far_s < s else {}
            for edge, cost in self._tree(visit).items():
                if edge in far:
                    full, near = far[edge]
                    cost = min(near, full + s - far_s)
                if cost + late < best.get(edge, math.inf):
                    best[edge] = cost + late
        len_m = graph.plain.len_m
        pieces = [(e, len_m[e], c) for e, c in best.items()]
        pieces += [
            (e, end, c + top - seconds)
            for e, end, c in oncoming_from(graph, m, along_b_m, seconds, self.match_tol_m)
        ]
        return (assemble_directed if directed else assemble)(graph, pieces, top)

    def street(self, along_a_m: float, along_b_m: float) -> str | None:
        """The name of the road the route runs along at ``along_a_m`` (where the unit is), else
        of the first named road it runs along before ``along_b_m`` (the stretch ahead's end);
        None when none has a name there (or the route leaves the network).

        Reads the match's samples only (no geometry): cheap enough for every update.
        """
        at, edges = self.match.sample_along_m, self.match.sample_along_edge
        i = int(np.searchsorted(at, along_a_m))
        if i > 0 and (i == len(at) or along_a_m - at[i - 1] <= at[i] - along_a_m):
            i -= 1  # the sample nearest the unit
        end = int(np.searchsorted(at, along_b_m, side="right"))
        names, seg = self.graph.seg_name, self.graph.plain.seg
        edge: int
        for edge in edges[i:max(end, i + 1)].tolist():
            if edge >= 0 and names[seg[edge]]:
                return names[seg[edge]]
        return None

    def beyond_median(
        self, route_m: LineString, along_a_m: float, along_b_m: float
    ) -> BaseGeometry:
        """Where a divided road's other carriageway lies beside the route in ``[a, b]``.

        A polygon (metres; empty if none): ``FAR_CUT_M`` either side of the other carriageway's
        pieces beside the route samples in ``[along_a_m, along_b_m]``, minus everything within
        ``divided_gap_m`` of the route itself. The engine takes it out of the road bands along
        the route, so a band wide enough for a two-way road does not warn the drivers beyond
        the median, who never pass the unit. ``route_m`` is the matched route (same frame).
        """
        graph, m = self.graph, self.match
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
            seg = graph.plain.seg[edge]
            if graph.plain.rev[edge]:  # positions run from the segment's end
                lo, hi = float(graph.seg_len[seg]) - hi, float(graph.seg_len[seg]) - lo
            if hi - lo > 1.0:
                pieces.append(
                    stretch_between(
                        graph.seg_xy[seg], graph.seg_cum_m[seg], lo, hi, fast_straight=True
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
            self.divided_gap_m,
            quad_segs=4,
        )
        return shapely.difference(shapely.union_all(far), near)
