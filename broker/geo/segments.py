"""Warning segments: the road pieces a zone covers, which way their drivers must be going to meet
the unit, and until when.

A polygon cannot say which way a driver must be going to be in danger, so everyone inside it is
warned: the drivers on a side street driving away from the unit's path, the other carriageway.
Each zone therefore also names its *warning segments* (:class:`~broker.model.WarningSegment`),
built from the same walks as the zone (:mod:`broker.geo.zoning`):

- **the stretch ahead**, cut into pieces of at most ``PIECE_M`` in travel order: the drivers on it
  going the unit's way must let it pass; each piece's ETA is when the unit reaches its far end;
- **the walked roads** (side streets and oncoming lanes feeding the stretch, the scene's
  upstream, the road behind a stopped unit): one line per directed edge reached, in its travel
  direction (that is the direction whose traffic flows toward the path), joined end to end where
  a chain of edges runs on without a branch; the ETA of a feeder is the unit's at the furthest
  point along the route its line lies beside (a driver on it meets the unit there or before);
- without a road network, the corridor's path with ``"both"`` directions (the lanes are not
  known), and nothing for a fan or a circle alone.

ETAs assume the unit's current speed, plus ``segment_eta_slack_s`` for the junctions where it
slows; a crawling unit's ETAs say nothing (``None``: until the next version). Compact: lines
simplified to ``SIMPLIFY_M``, coordinates at 5 decimals (~1 m), at most ``MAX_SEGMENTS`` (the
ones the unit reaches first are kept).

The zone builder makes the walks; the ``*_pieces`` functions here turn each into the pieces it
names, with the engine's settings (directions, ETAs, slack, the same-way reach).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import LocalFrame
from broker.geo.route import line_array
from broker.model import SegmentDirections, WarningSegment
from broker.settings import EngineConfig

PIECE_M = 150.0  # the stretch ahead is cut into pieces this long, each with its own ETA
SIMPLIFY_M = 1.5  # lines are simplified this much (metres) before they leave
MAX_SEGMENTS = 128  # at most this many per alert version
DECIMALS = 5  # ~1 m: finer than a lane, coarser than the zone's 6
MIN_LENGTH_M = 2.0  # shorter pieces name no direction worth the bytes


@dataclass(frozen=True, slots=True)
class Piece:
    """A warning segment in a local frame: a line in travel order (metres), directions, ETA."""

    xy: np.ndarray
    directions: SegmentDirections
    eta_s: float | None


def eta_speed(speed_mps: float, cfg: EngineConfig) -> float | None:
    """The speed ETAs assume, or None for a crawling unit (a queue, a jam: its speed says little
    about when), one slower than the stretch's floor assumes (``lookahead_floor_m / lookahead_s``).
    A reported speed past ``max_implied_speed_mps`` is a glitch and counts as that speed, as in
    ``zoning.lookahead_m``: at 150 m/s every ETA would end its warning too soon.

    Examples
    --------
    >>> cfg = EngineConfig()
    >>> eta_speed(3.0, cfg), eta_speed(20.0, cfg), eta_speed(150.0, cfg)
    (None, 20.0, 70.0)
    """
    crawl_mps = cfg.lookahead_floor_m / max(cfg.lookahead_s, 1.0)
    speed = min(speed_mps, cfg.max_implied_speed_mps)
    return speed if speed >= crawl_mps else None


def _eta(metres_ahead: float, speed_mps: float | None, slack_s: float) -> float | None:
    if speed_mps is None:
        return None
    return max(metres_ahead, 0.0) / speed_mps + slack_s


def along_path(
    path_xy: np.ndarray,
    speed_mps: float | None,
    directions: SegmentDirections,
    two_way: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    slack_s: float,
    same_way_m: float | None = None,
) -> list[Piece]:
    """The stretch ahead (travel order, starting at the unit) in pieces of at most ``PIECE_M``,
    each with the ETA of its far end plus ``slack_s``: the ETAs grow along the route.

    ``two_way``: (distances along the path from its start, whether the road there has oncoming
    lanes); a piece mostly on such a road is ``"both"`` (its oncoming drivers must yield too),
    else ``directions``. The walks name the oncoming lanes further ahead, but not those between
    the unit and the next junction (they flow away from it).

    ``same_way_m``: a piece that names ``directions`` alone and starts this far ahead or more
    is left out (so the last one kept may end up to ``PIECE_M`` beyond): a driver ahead going
    the unit's way is reached no sooner than the unit covers the distance, and the versions
    that follow name its piece once it is nearer (None: all).
    """
    if len(path_xy) < 2:
        return []
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path_xy, axis=0).T))])
    total = float(cum[-1])
    if total < MIN_LENGTH_M:
        return []
    n = max(1, math.ceil(total / PIECE_M))
    cuts = np.linspace(0.0, total, n + 1)
    # the cut points on the path (numpy, no shapely call per piece: this runs on every update)
    ends = np.column_stack(
        [np.interp(cuts, cum, path_xy[:, 0]), np.interp(cuts, cum, path_xy[:, 1])]
    )
    ways: list[SegmentDirections] = [directions] * n
    if two_way is not None:
        at, onc = two_way  # ``at`` ascending (the match's samples)
        lo = np.searchsorted(at, cuts[:-1], side="left")
        hi = np.searchsorted(at, cuts[1:], side="right")
        csum = np.concatenate([[0], np.cumsum(onc.astype(np.int64))])
        count = hi - lo
        share = (csum[hi] - csum[lo]) / np.maximum(count, 1)
        ways = ["both" if c and f >= 0.5 else directions for c, f in zip(count, share, strict=True)]
    out: list[Piece] = []
    for k, (a, b) in enumerate(itertools.pairwise(cuts)):
        if same_way_m is not None and a >= same_way_m and ways[k] != "both":
            continue
        inner = path_xy[(cum > a) & (cum < b)]
        xy = np.vstack([ends[k : k + 1], inner, ends[k + 1 : k + 2]])
        out.append(Piece(xy, ways[k], _eta(float(b), speed_mps, slack_s)))
    return out


def walked(
    lines: BaseGeometry,
    route_xy: np.ndarray | None,
    along_m: float,
    speed_mps: float | None,
    *,
    until_alert_ends: bool = False,
    slack_s: float,
) -> list[Piece]:
    """Directed walk lines (travel order) as forward pieces, chains of edges joined.

    ETA: the unit's at the furthest point along ``route_xy`` (the whole route, in the same
    frame) that a piece's vertices lie beside, from ``along_m``, plus ``slack_s``;
    ``until_alert_ends`` (or no route): ``None``.
    """
    if lines is None or shapely.is_empty(lines):
        return []
    merged = shapely.line_merge(lines, directed=True)
    parts = [p for p in shapely.get_parts(merged) if p.length >= MIN_LENGTH_M]
    if not parts:
        return []
    if until_alert_ends or route_xy is None or len(route_xy) < 2 or speed_mps is None:
        return [Piece(shapely.get_coordinates(p), "forward", None) for p in parts]
    coords, index = shapely.get_coordinates(np.array(parts, dtype=object), return_index=True)
    at = shapely.line_locate_point(shapely.LineString(route_xy), shapely.points(coords))
    starts = np.flatnonzero(np.diff(index, prepend=-1))  # index runs 0, 0, 1, 1, 1, 2 ...
    furthest = np.maximum.reduceat(at, starts)
    return [
        Piece(xy, "forward", _eta(float(far) - along_m, speed_mps, slack_s))
        for xy, far in zip(np.split(coords, starts[1:]), furthest, strict=True)
    ]


def corridor_pieces(path: np.ndarray, speed_mps: float, cfg: EngineConfig) -> list[Piece]:
    """A corridor without a road network: the path ahead, both ways (which lane is which is not
    known)."""
    return along_path(path, eta_speed(speed_mps, cfg), "both", slack_s=cfg.segment_eta_slack_s)


def same_way_m(speed_mps: float, cfg: EngineConfig) -> float | None:
    """How far ahead the stretch's pieces name the unit's own direction alone
    (``segment_same_way_s`` at its speed, at least the floor; None: the whole stretch).

    >>> cfg = EngineConfig()
    >>> same_way_m(20.0, cfg), same_way_m(150.0, cfg)
    (600.0, 2100.0)
    """
    if cfg.segment_same_way_s is None:
        return None
    # a glitch past max_implied_speed_mps counts as that speed, as in lookahead_m
    speed = min(speed_mps, cfg.max_implied_speed_mps)
    return max(cfg.lookahead_floor_m, speed * cfg.segment_same_way_s)


def stretch_pieces(
    path: np.ndarray, speed_mps: float, two_way: tuple[np.ndarray, np.ndarray], cfg: EngineConfig
) -> list[Piece]:
    """The stretch ahead with a road network: forward (its oncoming lanes come from the walks),
    both ways where ``two_way`` says the road has oncoming lanes (see :func:`along_path`), the
    pieces naming the unit's way alone only within :func:`same_way_m`."""
    return along_path(
        path, eta_speed(speed_mps, cfg), "forward", two_way,
        slack_s=cfg.segment_eta_slack_s, same_way_m=same_way_m(speed_mps, cfg),
    )


def feeder_pieces(
    lines: BaseGeometry, route_xy: np.ndarray, along_m: float, speed_mps: float,
    cfg: EngineConfig,
) -> list[Piece]:
    """The side streets and oncoming lanes feeding the stretch (directed walk lines), each with
    the unit's ETA beside it on the route (see :func:`walked`)."""
    return walked(
        lines, route_xy, along_m, eta_speed(speed_mps, cfg), slack_s=cfg.segment_eta_slack_s
    )


def standing_pieces(lines: BaseGeometry, cfg: EngineConfig) -> list[Piece]:
    """The roads upstream of where the unit stands or will stand (the scene, a stopped unit's
    road; directed walk lines): their traffic passes it while the alert lives, so no ETA."""
    return walked(lines, None, 0.0, None, until_alert_ends=True, slack_s=cfg.segment_eta_slack_s)


def to_lonlat(pieces: Sequence[Piece], frame: LocalFrame) -> list[WarningSegment]:
    """Pieces (metres of ``frame``) as compact :class:`WarningSegment`\\ s: simplified, 5
    decimals, at most ``MAX_SEGMENTS``, those the unit reaches first kept (no-ETA ones first:
    the scene and a stopped unit's road, where it is now or about to stay)."""
    if not pieces:
        return []
    order = sorted(
        range(len(pieces)),
        key=lambda k: -1.0 if pieces[k].eta_s is None else float(pieces[k].eta_s or 0.0),
    )[:MAX_SEGMENTS]
    keep = sorted(order)  # the order they were built in: the stretch ahead first
    sizes = [len(pieces[k].xy) for k in keep]
    stacked = np.vstack([pieces[k].xy for k in keep])
    lines = shapely.simplify(
        line_array(stacked, np.repeat(np.arange(len(keep)), sizes)),
        SIMPLIFY_M,
        preserve_topology=False,
    )
    coords, index = shapely.get_coordinates(lines, return_index=True)
    ll = np.round(frame.coords_to_lonlat(coords), DECIMALS)
    # a point that rounds onto the one before it on the same line is dropped
    fresh = np.ones(len(ll), dtype=bool)
    fresh[1:] = np.any(ll[1:] != ll[:-1], axis=1) | (index[1:] != index[:-1])
    bounds = np.cumsum(np.bincount(index, minlength=len(keep)))[:-1]
    out: list[WarningSegment] = []
    for k, part, keep_pt in zip(
        keep, np.split(ll, bounds), np.split(fresh, bounds), strict=True
    ):
        pts = [(lon, lat) for lon, lat in part[keep_pt].tolist()]
        if len(pts) < 2:
            continue
        eta = pieces[k].eta_s
        out.append(
            WarningSegment(
                line=pts,
                directions=pieces[k].directions,
                eta_s=None if eta is None else float(math.ceil(eta)),
            )
        )
    return out
