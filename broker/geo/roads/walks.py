"""Walking the road graph upstream, against the flow of traffic, by travel time.

The pieces every zone is made of: a Dijkstra over incoming edges (:func:`walk_upstream`), the
path just driven that a walk must not take (:func:`path_behind`), the oncoming carriageway
beyond a point (:func:`oncoming_from`), and the geometry of what was reached (:func:`assemble`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import cast

import numpy as np
import shapely
from shapely import MultiLineString

from broker.geo.roads.graph import RoadGraph
from broker.geo.roads.matching import PathMatch
from broker.geo.route import line_array, stretch_between

NO_ROADS = MultiLineString()  # what a walk that reaches nothing returns


def path_behind(
    graph: RoadGraph, m: PathMatch, at_m: float, seconds: float, match_tol_m: float
) -> frozenset[int]:
    """Along edges of the path behind ``at_m``, as far back as a walk of ``seconds`` reaches.

    A walk upstream from a junction must not run back along the path the engine has just
    driven (that traffic follows the engine and never meets it), nor out through the side
    streets behind it. Edges further back are left walkable, so a route that comes back
    across itself later still gets the cross traffic at the crossing.
    """
    reach = seconds * graph.max_speed_mps + match_tol_m
    near = (m.sample_along_m >= at_m - reach) & (m.sample_along_m <= at_m + match_tol_m)
    edges = m.sample_along_edge[near]
    return frozenset(edges[edges >= 0].tolist())


def walk_upstream(
    graph: RoadGraph, seeds: Sequence[tuple[int, float]], budget_s: float, excluded: frozenset[int]
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
    in_edges, src, time = graph.in_edges, graph.plain.src, graph.plain.time_s
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


def oncoming_from(
    graph: RoadGraph, m: PathMatch, at_m: float, seconds: float, match_tol_m: float
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
    start_cost = pos / graph.plain.speed_mps[edge]
    behind = path_behind(graph, m, at_m, seconds, match_tol_m)
    tree = walk_upstream(graph, [(graph.plain.src[edge], start_cost)], seconds, behind)
    pieces += [(e, graph.plain.len_m[e], c) for e, c in tree.items()]
    return pieces


def _covered(
    graph: RoadGraph, pieces: Iterable[tuple[int, float, float]], seconds: float
) -> Iterator[tuple[int, float, float]]:
    """``(edge, start m, end m)`` of each walk piece: the ``(seconds - time) x speed`` metres of
    the edge before its ``end`` (pieces the time budget does not reach are left out)."""
    speed = graph.plain.speed_mps
    for edge, end, cost in pieces:
        remaining = seconds - cost
        if remaining <= 0:
            continue
        start = max(0.0, end - remaining * speed[edge])
        if end - start > 1e-6:
            yield edge, start, end


def merge_spans(items: list[tuple[float, float]]) -> list[list[float]]:
    """Overlapping or touching ``(lo, hi)`` spans (metres along one line) merged, in order."""
    items.sort()
    merged: list[list[float]] = [list(items[0])]
    for lo, hi in items[1:]:
        if lo <= merged[-1][1] + 1e-6:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def _multiline(lines: list[np.ndarray]) -> MultiLineString:
    """One MultiLineString of the (n, 2) coordinate arrays ``lines``."""
    parts = np.repeat(np.arange(len(lines)), [len(line) for line in lines])
    return cast(MultiLineString, shapely.multilinestrings(line_array(np.vstack(lines), parts)))


def assemble(
    graph: RoadGraph, pieces: Iterable[tuple[int, float, float]], seconds: float
) -> MultiLineString:
    """Turn (edge, end position m, time from end s) items into merged line pieces.

    Each item covers the ``(seconds - time) x speed`` metres of the edge before ``end``.
    Pieces on the same segment (both directions, or several walks) are merged per segment.
    """
    seg_of, rev = graph.plain.seg, graph.plain.rev
    spans: dict[int, list[tuple[float, float]]] = {}
    for edge, start, end in _covered(graph, pieces, seconds):
        seg = seg_of[edge]
        seg_len = float(graph.seg_len[seg])
        if rev[edge]:  # edge travel order runs from the segment's end
            start, end = seg_len - end, seg_len - start
        spans.setdefault(seg, []).append((start, end))
    lines: list[np.ndarray] = []
    for seg, items in spans.items():
        merged = merge_spans(items)
        xy, cum = graph.seg_xy[seg], graph.seg_cum_m[seg]
        for lo, hi in merged:
            if lo <= 1e-6 and hi >= cum[-1] - 1e-6:
                lines.append(xy)
            else:
                lines.append(stretch_between(xy, cum, lo, hi, fast_straight=True))
    if not lines:
        return NO_ROADS
    return _multiline(lines)


def assemble_directed(
    graph: RoadGraph, pieces: Iterable[tuple[int, float, float]], seconds: float
) -> MultiLineString:
    """As :func:`assemble`, but each line runs in its edge's travel direction.

    Pieces are merged per directed edge (not per segment), so the two directions of a two-way
    road stay apart: the warning segments say which way a driver must be going to meet the
    unit, and only the direction the walk reached (flowing toward the path) is named.
    """
    seg_of, rev = graph.plain.seg, graph.plain.rev
    spans: dict[int, list[tuple[float, float]]] = {}
    for edge, start, end in _covered(graph, pieces, seconds):
        spans.setdefault(edge, []).append((start, end))
    lines: list[np.ndarray] = []
    for edge, items in spans.items():
        merged = merge_spans(items)
        seg = seg_of[edge]
        xy, cum = graph.seg_xy[seg], graph.seg_cum_m[seg]
        seg_len = float(graph.seg_len[seg])
        for lo, hi in merged:
            if rev[edge]:  # edge positions run from the segment's end: cut, then turn round
                part = stretch_between(xy, cum, seg_len - hi, seg_len - lo, fast_straight=True)
                lines.append(part[::-1])
            else:
                lines.append(stretch_between(xy, cum, lo, hi, fast_straight=True))
    if not lines:
        return NO_ROADS
    return _multiline(lines)
