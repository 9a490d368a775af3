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
    _near_trees: dict[int, dict[int, float]] = field(default_factory=dict, repr=False)

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

    def _near_tree(self, visit: int) -> dict[int, float]:
        """As :meth:`_tree`, but not into a divided road's far carriageway at a median opening.

        Left out: the far-side edges (beside the route) that end across the median from the
        junction, within ``FAR_SIDE_M`` of it but not at it (a ramp or loop merging into the
        route at the junction itself is kept), and whatever the walk reaches only through them.
        """
        tree = self._near_trees.get(visit)
        if tree is None:
            graph, node = self.graph, int(self.match.junctions[visit])
            far = np.unique(self.match.sample_far[self.match.sample_far >= 0])
            dst = graph.edge_dst[far]
            gap = np.hypot(*(graph.node_xy[dst] - graph.node_xy[node]).T)
            opening = far[(dst != node) & (gap <= FAR_SIDE_M)]
            tree = self._near_trees[visit] = self._walk(visit, frozenset(opening.tolist()))
        return tree

    def _junction_tree(
        self, visit: int, seconds: float, far_side_s: float | None
    ) -> dict[int, float]:
        """A junction's tree for a walk of ``seconds``, where whatever it reaches only through a
        divided road's far carriageway at a median opening counts only to ``far_side_s``
        (None: as any road)."""
        tree = self._tree(visit)
        if far_side_s is None or far_side_s >= seconds or not (self.match.sample_far >= 0).any():
            return tree
        near, extra = self._near_tree(visit), seconds - far_side_s  # s, the far side's late start
        return {e: min(near.get(e, math.inf), c + extra) for e, c in tree.items()}

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
        for visit, s in walk.items():
            late = top - s
            for edge, cost in self._junction_tree(visit, s, far_side_s).items():
                if cost + late < best.get(edge, math.inf):
                    best[edge] = cost + late
        len_m = graph.plain.len_m
        pieces = [(e, len_m[e], c) for e, c in best.items()]
        pieces += [
            (e, end, c + top - seconds)
            for e, end, c in oncoming_from(graph, m, along_b_m, seconds, self.match_tol_m)
        ]
        return (assemble_directed if directed else assemble)(graph, pieces, top)

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
