"""The directed road graph: ways split at junctions into segments and directed edges.

Built once per network (:meth:`RoadGraph.build`) and then only read: matching, the upstream
walks and the on-scene walks all take a :class:`RoadGraph` and share its arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from broker.geo.roads.osm import RawWay
from broker.geo.route import cumulative_m, line_array

# a piece of road shorter than this (metres) is no road: points that coincide (a vertex drawn
# twice, two node ids on one spot) make no segment
MIN_SEGMENT_M = 0.01


class RoadNetworkError(Exception):
    """A road network file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class PlainEdges:
    """Per-edge values of a :class:`RoadGraph` again, as tuples of Python numbers.

    The walks look at one edge at a time in a Python loop, where indexing a numpy array costs
    more than the arithmetic and hands back numpy scalars.
    """

    src: tuple[int, ...]  # RoadGraph.edge_src
    time_s: tuple[float, ...]  # RoadGraph.edge_time_s
    len_m: tuple[float, ...]  # RoadGraph.edge_len_m
    speed_mps: tuple[float, ...]  # RoadGraph.edge_speed_mps
    seg: tuple[int, ...]  # RoadGraph.edge_seg
    rev: tuple[bool, ...]  # RoadGraph.edge_rev
    # Unit direction (x, y) of each edge where it leaves its source and where it enters its
    # target, in travel order: which incoming edge is the straight continuation at a junction.
    dir_start: tuple[tuple[float, float], ...]
    dir_end: tuple[tuple[float, float], ...]


@dataclass(frozen=True, eq=False)
class RoadGraph:
    """A directed road graph in metres of one local frame; read-only (its arrays are too).

    **Nodes** are junctions and dead ends (ways are split wherever they share a vertex).
    **Segments** are the undirected pieces between two nodes, in the way's drawing order from
    ``seg_u`` to ``seg_v``. **Directed edges** are one per allowed direction of a segment: two for
    a two-way road, one for a one-way; an edge with ``edge_rev`` set runs from the segment's end
    to its start. Indices: node ``0..n_nodes-1``, segment, edge; ``-1`` means none.
    """

    node_xy: np.ndarray  # (n_nodes, 2) position of each node
    seg_xy: tuple[np.ndarray, ...]  # (k, 2) vertices of each segment, drawing order
    seg_cum_m: tuple[np.ndarray, ...]  # (k,) distance along each segment to its vertices
    seg_lines: np.ndarray  # shapely LineString per segment
    seg_len: np.ndarray  # length (m)
    seg_u: np.ndarray  # node at the segment's start
    seg_v: np.ndarray  # node at its end
    seg_name: tuple[str, ...]  # the way's name (or ref), "" if none
    seg_highway: tuple[str, ...]  # the way's OSM highway class
    seg_speed_mps: np.ndarray  # speed limit (or the class's default)
    seg_edge_fwd: np.ndarray  # edge along the drawing order, -1 if none
    seg_edge_bwd: np.ndarray  # edge against it, -1 if none
    tree: shapely.STRtree  # over seg_lines: every spatial query
    edge_seg: np.ndarray  # the edge's segment
    edge_rev: np.ndarray  # bool: runs against the segment's drawing order
    edge_src: np.ndarray  # node it leaves
    edge_dst: np.ndarray  # node it enters
    edge_len_m: np.ndarray
    edge_speed_mps: np.ndarray
    edge_time_s: np.ndarray  # length / speed
    max_speed_mps: float  # fastest edge: bounds how far any walk can reach
    in_edges: tuple[tuple[int, ...], ...]  # per node, the edges entering it: the upstream walk
    plain: PlainEdges  # per-edge values as Python tuples, for the walks' inner loops
    out_edges: tuple[tuple[int, ...], ...] = ()  # per node, the edges leaving it

    @property
    def n_nodes(self) -> int:
        """Number of junction nodes (including dead ends)."""
        return len(self.node_xy)

    @property
    def n_edges(self) -> int:
        """Number of directed edges (a two-way segment counts twice)."""
        return len(self.edge_seg)

    @classmethod
    def build(cls, ways: Sequence[RawWay], all_xy: np.ndarray, *, source: str) -> RoadGraph:
        """Split ways at junctions; fill segment, edge and adjacency arrays.

        ``all_xy`` holds every way's vertices in metres, way after way. Raises
        :class:`RoadNetworkError` naming ``source`` when every way is degenerate.
        """
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
                if len(piece) < 2 or cumulative_m(piece)[-1] <= MIN_SEGMENT_M:
                    continue
                seg_xy.append(piece)
                seg_u.append(int(node_of[vn[a]]))
                seg_v.append(int(node_of[vn[b]]))
                seg_way.append(w_idx)
        if not seg_xy:
            raise RoadNetworkError(f"{source}: no drivable roads (all ways degenerate)")

        seg_cum = [cumulative_m(xy) for xy in seg_xy]
        seg_lines = line_array(
            np.vstack(seg_xy), np.repeat(np.arange(len(seg_xy)), [len(xy) for xy in seg_xy])
        )
        seg_len = np.array([c[-1] for c in seg_cum])
        seg_u_arr = np.array(seg_u, dtype=np.int64)
        seg_v_arr = np.array(seg_v, dtype=np.int64)
        way_idx = np.array(seg_way)
        oneway = np.array([ways[i].oneway for i in way_idx.tolist()], dtype=np.int64)
        speed = np.array([ways[i].speed_mps for i in way_idx.tolist()])

        n_seg = len(seg_xy)
        fwd = oneway >= 0
        bwd = oneway <= 0
        fwd_ids = np.flatnonzero(fwd)
        bwd_ids = np.flatnonzero(bwd)
        edge_seg = np.concatenate([fwd_ids, bwd_ids])
        edge_rev = np.concatenate([np.zeros(len(fwd_ids), bool), np.ones(len(bwd_ids), bool)])
        edge_src = np.where(edge_rev, seg_v_arr[edge_seg], seg_u_arr[edge_seg])
        edge_dst = np.where(edge_rev, seg_u_arr[edge_seg], seg_v_arr[edge_seg])
        edge_len_m = seg_len[edge_seg]
        edge_speed_mps = speed[edge_seg]
        edge_time_s = edge_len_m / edge_speed_mps
        seg_edge_fwd = np.full(n_seg, -1, dtype=np.int64)
        seg_edge_bwd = np.full(n_seg, -1, dtype=np.int64)
        seg_edge_fwd[fwd_ids] = np.arange(len(fwd_ids))
        seg_edge_bwd[bwd_ids] = len(fwd_ids) + np.arange(len(bwd_ids))

        in_edges: list[list[int]] = [[] for _ in range(len(node_xy))]
        out_edges: list[list[int]] = [[] for _ in range(len(node_xy))]
        for e, dst in enumerate(edge_dst.tolist()):
            in_edges[dst].append(e)
        for e, src in enumerate(edge_src.tolist()):
            out_edges[src].append(e)
        first = np.array([xy[1] - xy[0] for xy in seg_xy])
        last = np.array([xy[-1] - xy[-2] for xy in seg_xy])
        first /= np.maximum(np.hypot(*first.T), 1e-9)[:, None]
        last /= np.maximum(np.hypot(*last.T), 1e-9)[:, None]
        rev = edge_rev[:, None]
        dir_start = np.where(rev, -last[edge_seg], first[edge_seg]).tolist()
        dir_end = np.where(rev, -first[edge_seg], last[edge_seg]).tolist()
        plain = PlainEdges(
            src=tuple(edge_src.tolist()),
            time_s=tuple(edge_time_s.tolist()),
            len_m=tuple(edge_len_m.tolist()),
            speed_mps=tuple(edge_speed_mps.tolist()),
            seg=tuple(edge_seg.tolist()),
            rev=tuple(edge_rev.tolist()),
            dir_start=tuple((x, y) for x, y in dir_start),
            dir_end=tuple((x, y) for x, y in dir_end),
        )
        arrays = (
            node_xy, *seg_xy, *seg_cum, seg_lines, seg_len, seg_u_arr, seg_v_arr, speed,
            seg_edge_fwd, seg_edge_bwd, edge_seg, edge_rev, edge_src, edge_dst, edge_len_m,
            edge_speed_mps, edge_time_s,
        )  # fmt: skip
        for arr in arrays:
            arr.flags.writeable = False
        return cls(
            node_xy=node_xy,
            seg_xy=tuple(seg_xy),
            seg_cum_m=tuple(seg_cum),
            seg_lines=seg_lines,
            seg_len=seg_len,
            seg_u=seg_u_arr,
            seg_v=seg_v_arr,
            seg_name=tuple(ways[i].name for i in seg_way),
            seg_highway=tuple(ways[i].highway for i in seg_way),
            seg_speed_mps=speed,
            seg_edge_fwd=seg_edge_fwd,
            seg_edge_bwd=seg_edge_bwd,
            tree=shapely.STRtree(seg_lines),
            edge_seg=edge_seg,
            edge_rev=edge_rev,
            edge_src=edge_src,
            edge_dst=edge_dst,
            edge_len_m=edge_len_m,
            edge_speed_mps=edge_speed_mps,
            edge_time_s=edge_time_s,
            max_speed_mps=float(edge_speed_mps.max()),
            in_edges=tuple(tuple(edges) for edges in in_edges),
            plain=plain,
            out_edges=tuple(tuple(edges) for edges in out_edges),
        )
