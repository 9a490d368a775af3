"""Laying a path onto the road graph: which directed edges it runs along, which flow against it.

Samples the path every few metres and picks, per sample, the nearest segment whose direction
agrees with the path's; :class:`PathMatch` holds the result that every upstream walk starts from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely import LineString

from broker.geo.roads.graph import RoadGraph

ALIGN_COS = math.cos(math.radians(35.0))  # path and road agree if within 35 deg
FAR_SIDE_M = 40.0  # look this far beside a path for a divided road's other carriageway
# a sample projecting within this of a segment's end lies past it (metres; see match_path)
END_CLAMP_M = 0.5
# an edge the path is nearest to runs along it only if the path's samples cover at least this
# share of it (or the path starts or ends on it)
ALONG_SHARE = 0.5


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

    @property
    def nbytes(self) -> int:
        """Memory held by the match's arrays (what a memo of matches is sized by)."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


def directions_at(lines: Any, at_m: np.ndarray, length_m: Any) -> np.ndarray:
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


def match_path(
    graph: RoadGraph,
    path_m: LineString,
    *,
    match_tol_m: float,
    divided_gap_m: float,
    step_m: float = 5.0,
) -> PathMatch:
    """Lay a path (metres, travel order) onto the network.

    Samples the path every ``step_m``; each sample takes the nearest segment within
    ``match_tol_m`` whose direction agrees with the path's (either way round). A directed
    edge counts as *along* the path if it flows with the path, is the nearest for at least
    two samples (or is shorter than two steps) and those samples cover ``ALONG_SHARE`` of it
    (or the path starts or ends on it); *oncoming*: edges flowing against it, nearest for two
    samples likewise (no share asked), but only within ``divided_gap_m`` of the path: the
    other direction of a two-way road, or of a road drawn as two close one-way lines, and not
    the other
    carriageway of a divided road (its drivers never pass the unit; the junctions where they
    can turn across the path are still walked). Junctions are the ends of those edges within
    ``match_tol_m`` of the path.
    """
    length = float(path_m.length)
    n = max(2, math.ceil(length / step_m) + 1)
    along = np.linspace(0.0, length, n)
    pts = shapely.line_interpolate_point(path_m, along)
    tangent = directions_at(path_m, along, length)

    tol = match_tol_m
    s_idx, seg = graph.tree.query(pts, predicate="dwithin", distance=max(tol, FAR_SIDE_M))
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
    lines = graph.seg_lines[seg]
    seg_at = shapely.line_locate_point(lines, pts[s_idx])
    seg_len = graph.seg_len[seg]
    seg_dir = directions_at(lines, seg_at, seg_len)
    cos = np.einsum("ij,ij->i", seg_dir, tangent[s_idx])
    dist = shapely.distance(lines, pts[s_idx])

    # Directed edge flowing with the path / against it, per (sample, segment) pair.
    with_path = np.where(cos > 0, graph.seg_edge_fwd[seg], graph.seg_edge_bwd[seg])
    against = np.where(cos > 0, graph.seg_edge_bwd[seg], graph.seg_edge_fwd[seg])
    aligned = np.abs(cos) >= ALIGN_COS
    oncoming_ok = aligned & (dist <= divided_gap_m)  # not a divided road's far side
    # a divided road's other carriageway: one-way, flowing against the path, beyond the gap
    far_ok = aligned & (with_path < 0) & (dist > divided_gap_m)
    aligned = aligned & (dist <= tol)
    # position of the sample along the against-edge, in that edge's travel order
    against_pos = np.where(cos > 0, seg_len - seg_at, seg_at)

    # A sample past a segment's end (its nearest point is the end point, metres away) does
    # not lie along it: where the path turns at a junction, the side street ending there
    # in line with the path's next road can be the only aligned candidate for the samples
    # on the corner, and as an "along" edge it would be left out of every upstream walk.
    past_end = ((seg_at <= END_CLAMP_M) | (seg_at >= seg_len - END_CLAMP_M)) & (dist > END_CLAMP_M)
    sample_along = _nearest_per_sample(s_idx, dist, with_path, aligned & ~past_end, n)[0]
    on_best, on_which = _nearest_per_sample(s_idx, dist, against, oncoming_ok, n)
    has = on_which >= 0
    on_edge[has] = on_best[has]
    on_pos[has] = against_pos[on_which[has]]
    far_best, far_which = _nearest_per_sample(s_idx, dist, against, far_ok, n)
    has = (far_which >= 0) & (on_edge < 0)  # a road with oncoming lanes here is not divided
    far_edge[has] = far_best[has]
    far_pos[has] = against_pos[far_which[has]]

    edges_along = _runs_along(graph, sample_along, _edges_seen(graph, sample_along), step_m)
    edges_on = _edges_seen(graph, on_edge)
    sample_along[~np.isin(sample_along, edges_along)] = -1

    # Junctions: ends of matched edges that lie within tol of the path.
    ends = np.unique(
        np.concatenate(
            [
                graph.edge_src[edges_along],
                graph.edge_dst[edges_along],
                graph.edge_src[edges_on],
                graph.edge_dst[edges_on],
            ]
        )
    )
    junctions, junction_along = _visits(graph, ends, pts, along, tol, step_m)
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


def _edges_seen(graph: RoadGraph, per_sample: np.ndarray) -> np.ndarray:
    """Edges nearest to >= 2 samples, or to one sample if shorter than 10 m."""
    seen = per_sample[per_sample >= 0]
    if len(seen) == 0:
        return np.zeros(0, dtype=np.int64)
    edges, counts = np.unique(seen, return_counts=True)
    keep: np.ndarray = edges[(counts >= 2) | (graph.edge_len_m[edges] < 10.0)]
    return keep


def _runs_along(
    graph: RoadGraph, per_sample: np.ndarray, edges: np.ndarray, step_m: float
) -> np.ndarray:
    """Of ``edges`` (nearest to some samples), those the path runs along: its samples cover at
    least ``ALONG_SHARE`` of the edge, or the path starts or ends on it (part way along). A ramp
    or a side road that converges with the path at its junction is nearest to the few samples
    there without the path running along it; counted along, it would be left out of every
    upstream walk, and with it the drivers about to merge into the path (a motorway's on-ramp
    queue beside the unit)."""
    valid = per_sample[per_sample >= 0]
    if len(edges) == 0 or len(valid) == 0:
        return edges
    seen, counts = np.unique(valid, return_counts=True)
    covered_m = counts[np.searchsorted(seen, edges)] * step_m
    keep = (covered_m >= ALONG_SHARE * graph.edge_len_m[edges]) | np.isin(edges, valid[[0, -1]])
    kept: np.ndarray = edges[keep]
    return kept


def _visits(
    graph: RoadGraph, nodes: np.ndarray, pts: np.ndarray, along: np.ndarray, tol: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each node within ``tol`` of the path, once per pass of the path near it."""
    if len(nodes) == 0:
        return nodes, np.zeros(0)
    p_xy = shapely.get_coordinates(pts)
    d = np.hypot(
        p_xy[None, :, 0] - graph.node_xy[nodes, 0][:, None],
        p_xy[None, :, 1] - graph.node_xy[nodes, 1][:, None],
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
