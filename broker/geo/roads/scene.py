"""Walks for a unit stopped on scene: the roads whose traffic passes it within a few seconds.

Snaps the unit to its carriageway, walks that upstream (and the other direction where the road
is not divided), following the unit's own road further than the side roads that join it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely import MultiLineString

from broker.geo.roads.graph import RoadGraph
from broker.geo.roads.matching import ALIGN_COS, directions_at
from broker.geo.roads.walks import NO_ROADS, assemble, assemble_directed, walk_upstream

HEADING_COS = math.cos(math.radians(60.0))  # a unit's heading picks a carriageway within 60 deg
STRAIGHT_COS = math.cos(math.radians(45.0))  # at a junction, the road goes on within 45 deg


def _heading_vector(heading_deg: float) -> np.ndarray:
    """Compass heading (0 = north, clockwise) -> unit vector (x east, y north)."""
    rad = math.radians(heading_deg)
    return np.array([math.sin(rad), math.cos(rad)])


def snap_radius_m(match_tol_m: float) -> float:
    """How far (metres) from a stopped unit its road is looked for (further only when no road
    is this near: :func:`upstream_of`)."""
    return max(match_tol_m * 2.5, 50.0)


def _merge_lines(*parts: MultiLineString) -> MultiLineString:
    """One MultiLineString of the parts of several (possibly empty) MultiLineStrings."""
    lines = [g for part in parts for g in shapely.get_parts(part)]
    return MultiLineString(lines) if lines else NO_ROADS


def upstream_of(
    graph: RoadGraph,
    x: float,
    y: float,
    heading_deg: float | None,
    seconds: float,
    branch_seconds: float | None = None,
    *,
    match_tol_m: float,
    divided_gap_m: float,
    directed: bool = False,
    turn_offs: int | None = None,
    opposite_only: bool = False,
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

    ``turn_offs`` (None: no limit; only with ``branch_seconds``): the unit's road is followed
    through at most this many junctions where its traffic can turn off before the unit (each
    thins the traffic that will pass it).

    ``directed``: one line per directed edge in its travel direction (warning segments).
    ``opposite_only``: only the walk from the other direction when it is drawn as its own
    one-way line within ``divided_gap_m`` (its lanes ahead of the unit and what feeds them);
    empty when there is none (a two-way line, a divided road, a one-way road).
    """
    if seconds <= 0:
        return NO_ROADS
    pt = shapely.Point(x, y)
    segs = graph.tree.query(pt, predicate="dwithin", distance=snap_radius_m(match_tol_m))
    if len(segs) == 0:
        segs = graph.tree.query_nearest(pt, max_distance=200.0)
        if len(segs) == 0:
            return NO_ROADS
    at, d, i, _ = _snap(graph, pt, segs, heading_deg, match_tol_m)
    carriageways = _carriageways(graph, segs, d, at, i, divided_gap_m, opposite_only)
    if not carriageways:
        return NO_ROADS
    put = assemble_directed if directed else assemble
    pieces: list[tuple[int, float, float]] = []
    seeds: list[tuple[int, float]] = []
    for edge, edge_pos in carriageways:
        pieces.append((edge, edge_pos, 0.0))
        seeds.append((graph.plain.src[edge], edge_pos / graph.plain.speed_mps[edge]))
    if branch_seconds is None or branch_seconds >= seconds:
        tree = walk_upstream(graph, seeds, seconds, frozenset())
        pieces += [(e, graph.plain.len_m[e], c) for e, c in tree.items()]
        return put(graph, pieces, seconds)
    road, joins = _follow_road(graph, [e for e, _ in carriageways], seeds, seconds, turn_offs)
    pieces += [(e, graph.plain.len_m[e], c) for e, c in road.items()]
    on_road = frozenset(
        e
        for edge in (*road, *(e for e, _ in carriageways))
        for e in (
            graph.seg_edge_fwd[graph.plain.seg[edge]],
            graph.seg_edge_bwd[graph.plain.seg[edge]],
        )
        if e >= 0
    )
    branches = walk_upstream(graph, joins, max(float(branch_seconds), 0.0), on_road)
    side = [(e, graph.plain.len_m[e], c) for e, c in branches.items()]
    return _merge_lines(put(graph, pieces, seconds), put(graph, side, branch_seconds))


def _carriageways(
    graph: RoadGraph, segs: np.ndarray, seg_dir: np.ndarray, at: np.ndarray, i: int,
    divided_gap_m: float, opposite_only: bool,
) -> list[tuple[int, float]]:
    """(edge, position along it in its travel order) for each direction that passes the unit
    on ``segs[i]`` (see :func:`upstream_of`); ``opposite_only``: the other direction only when
    drawn as its own one-way line (else none)."""
    seg, pos = int(segs[i]), float(at[i])
    carriageways: list[tuple[int, float]] = []
    for edge, edge_pos in (
        (int(graph.seg_edge_fwd[seg]), pos),
        (int(graph.seg_edge_bwd[seg]), float(graph.seg_len[seg]) - pos),
    ):
        if edge >= 0:
            carriageways.append((edge, edge_pos))
    if len(carriageways) != 1:
        return [] if opposite_only else carriageways
    opposite = _close_opposite(graph, carriageways[0][0], segs, seg_dir, at, i, divided_gap_m)
    return opposite if opposite_only else carriageways + opposite


def _snap(
    graph: RoadGraph, pt: shapely.Point, segs: np.ndarray, heading_deg: float | None,
    match_tol_m: float,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """The unit's road among the candidate segments ``segs`` (not empty): ``(position along
    each nearest the point, direction of each there, index of the unit's, which of them the
    unit may be on)``.

    The nearest segment; with a heading, the nearest carriageway within 60 deg of it and at most
    ``match_tol_m`` further than the nearest road (a divided road: the unit's side). The unit
    may be on any segment at most ``match_tol_m`` further than the nearest.
    """
    lines = graph.seg_lines[segs]
    dist = shapely.distance(lines, pt)
    at = shapely.line_locate_point(lines, pt)
    seg_len = graph.seg_len[segs]
    d = directions_at(lines, at, seg_len)  # segment direction at the point
    i = int(np.argmin(dist))
    near = dist <= dist.min() + match_tol_m  # not a far road over a near one (may be on)
    if heading_deg is not None:
        cos = d @ _heading_vector(heading_deg)
        # an edge flowing with the heading: forward with cos > 0, backward with cos < 0
        fits = ((cos >= HEADING_COS) & (graph.seg_edge_fwd[segs] >= 0)) | (
            (cos <= -HEADING_COS) & (graph.seg_edge_bwd[segs] >= 0)
        )
        fits &= near
        if fits.any():
            i = int(np.flatnonzero(fits)[np.argmin(dist[fits])])
    return at, d, i, near


def road_name_at(
    graph: RoadGraph,
    x: float,
    y: float,
    heading_deg: float | None,
    *,
    match_tol_m: float,
    within_m: float,
    keep: str | None = None,
) -> str | None:
    """The name of the road a unit at (x, y) (metres) is on, or None (no road within
    ``within_m``, or the unit's road has no name).

    The unit's road is the one :func:`upstream_of` walks from (the nearest; with a heading, the
    nearest carriageway going its way). ``keep``: the name the unit's last alert event gave; it
    stays while the unit may be on a road of that name: one within ``within_m`` and at most
    ``match_tol_m`` further than the nearest road (a unit at a corner, its fixes scattered by
    GPS, does not make the name flip between the two streets from one update to the next; a
    unit that has left the street for a bridge over it does not keep the street's name).
    """
    pt = shapely.Point(x, y)
    segs = graph.tree.query(pt, predicate="dwithin", distance=within_m)
    if len(segs) == 0:
        return None
    names = graph.seg_name
    i, may_be = _snap(graph, pt, segs, heading_deg, match_tol_m)[2:]
    if keep and any(names[s] == keep for s in segs[may_be].tolist()):
        return keep
    return names[int(segs[i])] or None


def _turns_off(graph: RoadGraph, node: int, edge: int) -> bool:
    """Can traffic at ``node`` that would go on into ``edge`` leave the road there instead
    (another road out of ``node``, not the U-turn back)?"""
    seg = graph.plain.seg
    back = {seg[i] for i in graph.in_edges[node] if _is_straight(graph, i, edge)}
    return any(e != edge and seg[e] not in back for e in graph.out_edges[node])


def _is_straight(graph: RoadGraph, incoming: int, edge: int) -> bool:
    """``incoming`` continues into ``edge`` within 45 deg."""
    ix, iy = graph.plain.dir_end[incoming]
    ox, oy = graph.plain.dir_start[edge]
    return ix * ox + iy * oy >= STRAIGHT_COS


def _follow_road(
    graph: RoadGraph,
    edges: Sequence[int],
    seeds: Sequence[tuple[int, float]],
    seconds: float,
    turn_offs: int | None = None,
) -> tuple[dict[int, float], list[tuple[int, float]]]:
    """Walk upstream from each of ``edges`` along its own road, by travel time.

    At each junction (seed node, start cost) the incoming edge whose end direction is
    closest to straight on (within 45 deg, never a U-turn onto the same segment) continues
    the road; after ``turn_offs`` junctions where the road's traffic can leave it (None: no
    limit) the road stops. Returns the road's edges with the time from their downstream end,
    and every junction passed with its time: the seeds for the branch walk.
    """
    in_edges, plain = graph.in_edges, graph.plain
    road: dict[int, float] = {}
    joins: list[tuple[int, float]] = []
    for edge, (node, cost) in zip(edges, seeds, strict=True):
        seen: set[int] = set()
        passed = 0  # junctions between here and the unit where the road's traffic can leave
        while cost < seconds and node not in seen:
            seen.add(node)
            joins.append((node, cost))
            if turn_offs is not None and graph.out_edges and _turns_off(graph, node, edge):
                passed += 1
                if passed > turn_offs:
                    break
            ox, oy = plain.dir_start[edge]
            best, best_cos = -1, STRAIGHT_COS
            for e in in_edges[node]:
                if plain.seg[e] == plain.seg[edge]:
                    continue  # the other direction of the same street: a U-turn
                ix, iy = plain.dir_end[e]
                cos = ix * ox + iy * oy
                if cos >= best_cos:
                    best, best_cos = e, cos
            if best < 0:
                break
            if cost < road.get(best, math.inf):
                road[best] = cost
            edge, node, cost = best, plain.src[best], cost + plain.time_s[best]
    return road, joins


def _close_opposite(
    graph: RoadGraph,
    edge: int,
    segs: np.ndarray,
    seg_dir: np.ndarray,
    at: np.ndarray,
    i: int,
    divided_gap_m: float,
) -> list[tuple[int, float]]:
    """The opposite direction of one-way ``edge`` drawn as its own line (undivided road).

    Among the candidate segments ``segs`` (direction ``seg_dir`` and position ``at`` nearest
    the unit; ``segs[i]`` is the unit's), the nearest one-way line flowing against ``edge``
    within ``divided_gap_m`` of the unit's place on its line. Further apart, it is a divided
    road's other carriageway: nothing.
    """
    flow = seg_dir[i] if not graph.plain.rev[edge] else -seg_dir[i]
    snapped = shapely.line_interpolate_point(graph.seg_lines[segs[i]], float(at[i]))
    best: tuple[float, int, float] | None = None
    for j in range(len(segs)):
        other = int(segs[j])
        if j == i:
            continue
        gap = float(shapely.distance(graph.seg_lines[other], snapped))
        if gap > divided_gap_m:
            continue
        cos = float(seg_dir[j] @ flow)
        fwd, bwd = int(graph.seg_edge_fwd[other]), int(graph.seg_edge_bwd[other])
        if cos <= -ALIGN_COS and fwd >= 0 and bwd < 0:
            cand = (gap, fwd, float(at[j]))
        elif cos >= ALIGN_COS and bwd >= 0 and fwd < 0:
            cand = (gap, bwd, float(graph.seg_len[other]) - float(at[j]))
        else:
            continue
        if best is None or cand[0] < best[0]:
            best = cand
    return [] if best is None else [(best[1], best[2])]
