"""The heading-aware receiver: how a navigation app reads an alert's warning segments
(docs/partners.md, "How a navigation app uses them"), as :mod:`broker.simulate.scorer` scores it.

A civilian counts as warned while it is on a live segment (within ``Receiver.on_segment_m`` of
its line), moving along it in a listed direction (within ``Receiver.heading_tol_deg``), before
the segment's ETA, and, while it stands still, within ``Receiver.standing_far_m`` of the
alert's path; the warning stays ``Receiver.hold_s`` after any of that stops holding, but not
past the end of the unit's alert (a cancel or lapse takes it off the screen). Same frame
as the scorer: metres (x east, y north), integer steps ``Traffic.dt_s`` apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely

if TYPE_CHECKING:  # the scorer imports this module: its types only, for the checker
    from broker.simulate.scorer import Traffic, ZoneSpan


@dataclass(frozen=True)
class Segment:
    """A warning segment in metres: a line in travel direction, whether the other direction
    must yield too, and the last step it warns (None: as long as its span is live)."""

    line: shapely.LineString
    both: bool
    until: int | None


@dataclass(frozen=True)
class Receiver:
    """How a heading-aware navigation app reads warning segments (docs/partners.md)."""

    on_segment_m: float = 12.0  # on it: both carriageways of an undivided road (as on_path_m)
    heading_tol_deg: float = 45.0  # moving along the segment, within this
    hold_s: float = 3.0  # a warning stays on screen this long after the driver leaves it
    # a driver standing still (under standing_mps) further than standing_far_m from the
    # alert's path is not warned until it moves: queued that far off, it meets the unit only
    # after driving there (None: warned; 150 m until 2026-12-06: 120 m cut the tuning rows'
    # bystander-seconds 2.2 % for 5 of 4,234 drivers, 100 m 3.8 % for 14, docs/simulation.md).
    # An alert without a path (a unit on scene): measured from the unit with standing_scene_m,
    # off by default (150 m cost the held-out cities 66 of 1,382 passers: a car from a
    # standstill needs ~170 m for 15 s)
    standing_mps: float = 1.0
    standing_far_m: float | None = 120.0
    standing_scene_m: float | None = None


def heading_vec(heading_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Compass heading (0 = north, clockwise) -> unit vector (east, north)."""
    rad = np.radians(heading_deg)
    return np.sin(rad), np.cos(rad)


def on_segment_masks(
    traffic: Traffic, spans: Sequence[ZoneSpan], masks: dict[str, np.ndarray], rx: Receiver
) -> dict[str, np.ndarray]:
    """The heading-aware receiver: per unit, is the civilian on a live segment of it, moving in
    a listed direction, before the segment's ETA (then held ``rx.hold_s``)."""
    cos_tol = math.cos(math.radians(rx.heading_tol_deg))
    rule = rx.standing_far_m is not None or rx.standing_scene_m is not None
    standing = civilian_speeds(traffic) < rx.standing_mps if rule else None
    live = {unit_id: np.zeros(len(traffic.step), dtype=bool) for unit_id in masks}
    for span in spans:
        if span.unit_id not in masks or span.end <= span.start:
            continue
        window = traffic.rows_between(span.start, span.end)
        live[span.unit_id][window] = True
        if not span.segments:
            continue
        rows = np.arange(*window.indices(len(traffic.step)))
        if not len(rows):
            continue
        lines = np.array([seg.line for seg in span.segments], dtype=object)
        pts = np.asarray(shapely.points(traffic.x[rows], traffic.y[rows]), dtype=object)
        pi, li = shapely.STRtree(lines).query(pts, predicate="dwithin", distance=rx.on_segment_m)
        if not len(pi):
            continue
        until = np.array(
            [span.end if seg.until is None else seg.until + 1 for seg in span.segments]
        )
        both = np.array([seg.both for seg in span.segments])
        ok = traffic.step[rows[pi]] < until[li]
        pi, li = pi[ok], li[ok]
        at = shapely.line_locate_point(lines[li], pts[pi])
        a = shapely.line_interpolate_point(lines[li], np.maximum(at - 3.0, 0.0))
        b = shapely.line_interpolate_point(lines[li], at + 3.0)
        tx, ty = shapely.get_x(b) - shapely.get_x(a), shapely.get_y(b) - shapely.get_y(a)
        norm = np.hypot(tx, ty)
        hx, hy = heading_vec(traffic.heading_deg[rows[pi]])
        cos = np.where(norm > 0, (hx * tx + hy * ty) / np.maximum(norm, 1e-9), 0.0)
        hit = (cos >= cos_tol) | (both[li] & (cos <= -cos_tol))
        if standing is not None:
            far = far_from(span, pts[pi], rx.standing_far_m, rx.standing_scene_m)
            hit &= ~(standing[rows[pi]] & far)
        masks[span.unit_id][rows[pi[hit]]] = True
    if rx.hold_s > 0:
        # the hold bridges a junction box, not the alert's end: a cancel carries no segments
        # and the app takes the warning down (docs/partners.md)
        for unit_id, mask in masks.items():
            masks[unit_id] = held(mask, traffic, round(rx.hold_s / traffic.dt_s)) & live[unit_id]
    return masks


def far_from(
    span: ZoneSpan, pts: np.ndarray, far_m: float | None, scene_m: float | None
) -> np.ndarray:
    """Which points lie further than ``far_m`` from the span's path, or, without one, further
    than ``scene_m`` from its unit (none where the distance it needs is None, or where there
    is nothing to measure from)."""
    if span.path is not None and not span.path.is_empty:
        if far_m is None:
            return np.zeros(len(pts), dtype=bool)
        return np.asarray(shapely.distance(pts, span.path) > far_m)
    if span.unit_xy is not None and scene_m is not None:
        return np.asarray(shapely.distance(pts, shapely.Point(span.unit_xy)) > scene_m)
    return np.zeros(len(pts), dtype=bool)


def civilian_speeds(traffic: Traffic) -> np.ndarray:
    """Per row, the civilian's speed (m/s) from its position one step before; NaN on its
    first row or after a gap (unknown: never counted as standing)."""
    order = np.lexsort((traffic.step, traffic.civ))
    civ, step = traffic.civ[order], traffic.step[order]
    moved = np.hypot(np.diff(traffic.x[order]), np.diff(traffic.y[order]))
    follows = (civ[1:] == civ[:-1]) & (step[1:] - step[:-1] == 1)
    speeds = np.full(len(order), np.nan)
    speeds[1:][follows] = moved[follows] / traffic.dt_s
    out = np.empty(len(order))
    out[order] = speeds
    return out


def held(mask: np.ndarray, traffic: Traffic, hold_steps: int) -> np.ndarray:
    """``mask`` with each civilian's run of True extended ``hold_steps`` steps past its end."""
    if not mask.any() or hold_steps <= 0:
        return mask
    order = np.lexsort((traffic.step, traffic.civ))
    span = int(traffic.step.max()) + hold_steps + 2
    key = traffic.civ[order].astype(np.int64) * span + traffic.step[order]
    last = np.maximum.accumulate(np.where(mask[order], key, -1))
    same_civ = last >= traffic.civ[order].astype(np.int64) * span
    out = np.zeros_like(mask)
    out[order] = same_civ & (key - last <= hold_steps)
    return out
