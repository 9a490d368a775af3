"""Driver-by-driver scoring of warning zones on simulated traffic. Pure: numpy + shapely, no SUMO.

Theory of operation
-------------------
Everything here is in one planar metric frame (x east, y north, metres) and on one clock of
integer steps (``dt_s`` seconds apart, 1 s in a simulation). The inputs are

- ``Traffic``: the civilians' *true* positions, one row per (step, civilian), sorted by step;
- ``UnitTrack``: per emergency unit, its true position, its reported (noisy) fix and its mode
  (responding / on scene) at every step;
- one ``Warner`` per method to compare: the broker's zones (``ZoneSpan`` intervals built from
  AlertEvents), the *physical limit* (one zone over everything from the unit's first emergency
  fix) and a generic proximity circle around the reported fix. A *heading-aware receiver*
  (``Warner.heading_aware``) scores the same spans by their warning segments instead of their
  polygons: a civilian counts as inside only while it is on a segment (within
  ``Receiver.on_segment_m`` of its line), moving along it in a listed direction (within
  ``Receiver.heading_tol_deg``), before the segment's ETA, and, while it stands still, within
  ``Receiver.standing_far_m`` of the alert's path (when it has one); a navigation app
  would keep its warning on screen ``Receiver.hold_s`` seconds after the driver leaves the
  segment (a turn through a junction box), and so does the scorer (``broker.simulate.receiver``).

Encounters do not depend on the method, so they are found once:

- *affected driver*: a civilian the responding unit comes within 50 m of while the civilian is
  ahead on the unit's actual path (its true trajectory from now on). ``same`` / ``oncoming``
  when the civilian is on the path (within ``on_path_m``) heading with / against it;
  ``crossing`` when it is in a junction box crosswise or on a side street heading into the
  path, and (where the run recorded the road network, ``Traffic.junctions``) the two can
  meet: the civilian's road in the next ``scene_horizon_steps`` touches a junction (or road)
  of the unit's path ahead, a junction the unit gets to (not the far end of the road it stops
  on for its scene). A driver on the road below a bridge the unit crosses heads into the path
  in the plane but never meets it. The encounter is the first step at which that holds.
- *on-scene passer*: a civilian that comes within 50 m of a unit stopped on scene while the
  unit lies on the civilian's own path ahead (its true future trajectory passes within
  ``scene_path_m`` of the unit).

Lead time of an encounter = how long the civilian had been continuously inside a live zone of
that unit at the encounter step (0 when it was not inside at that step). *Bystanders* are the
civilians that were inside some zone at some step and have no encounter at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

# the receiver's settings and segments are part of the scorer's inputs: named here too
from broker.simulate.receiver import Receiver as Receiver
from broker.simulate.receiver import Segment as Segment
from broker.simulate.receiver import heading_vec, on_segment_masks

EncounterKind = Literal["same", "oncoming", "crossing", "on_scene"]
PATH_KINDS: tuple[EncounterKind, ...] = ("same", "oncoming", "crossing")
MODE_NONE, MODE_RESPONDING, MODE_ON_SCENE = 0, 1, 2
HEADING = " heading"  # method name suffix: the same alerts read by a heading-aware receiver


@dataclass(frozen=True)
class Traffic:
    """Civilians' true positions: one row per (step, civilian), rows sorted by step.

    ``heading_deg`` is a compass heading (0 = north, clockwise), as SUMO's angle.
    """

    step: np.ndarray  # int, ascending
    civ: np.ndarray  # int civilian index
    x: np.ndarray  # metres east
    y: np.ndarray  # metres north
    heading_deg: np.ndarray
    dt_s: float = 1.0
    # the road each row is on (an index into ``junctions``), and per road the two junctions
    # at its ends (a junction's own internal road: that junction twice); None: not recorded,
    # and a crossing is judged in the plane alone
    road: np.ndarray | None = None
    junctions: np.ndarray | None = None  # int, shape (roads, 2)

    def __post_init__(self) -> None:
        if len(self.step) and np.any(np.diff(self.step) < 0):
            raise ValueError("traffic rows must be sorted by step")

    @property
    def n_civilians(self) -> int:
        return int(self.civ.max()) + 1 if len(self.civ) else 0

    def rows_at(self, k: int) -> slice:
        """The rows of step ``k``."""
        lo = int(np.searchsorted(self.step, k, side="left"))
        hi = int(np.searchsorted(self.step, k, side="right"))
        return slice(lo, hi)

    def rows_between(self, k_from: int, k_to: int) -> slice:
        """The rows of steps ``k_from <= step < k_to``."""
        lo = int(np.searchsorted(self.step, k_from, side="left"))
        hi = int(np.searchsorted(self.step, k_to, side="left"))
        return slice(lo, hi)


@dataclass(frozen=True)
class UnitTrack:
    """One emergency unit, indexed by global step (NaN / MODE_NONE where it is not active)."""

    unit_id: str
    x: np.ndarray  # true position, metres
    y: np.ndarray
    fix_x: np.ndarray  # position it reported (with GPS noise), metres
    fix_y: np.ndarray
    mode: np.ndarray  # MODE_NONE / MODE_RESPONDING / MODE_ON_SCENE per step
    road: np.ndarray | None = None  # per step, as Traffic.road (-1: not recorded)
    # the step its CAD route was sent (None: not recorded); before its first fix when the
    # route leads (`--route-lead`): from then the engine may warn (the dispatch zone)
    routed_step: int | None = None

    @property
    def active_steps(self) -> np.ndarray:
        return np.flatnonzero(self.mode != MODE_NONE)

    @property
    def first_step(self) -> int:
        steps = self.active_steps
        return int(steps[0]) if len(steps) else -1

    @property
    def warnable_from(self) -> int:
        """The first step a zone of the unit may be live: its first fix, or its CAD route if
        that came first (the dispatch zone); -1 with no fix."""
        first = self.first_step
        return first if self.routed_step is None or first < 0 else min(first, self.routed_step)

    @property
    def last_step(self) -> int:
        steps = self.active_steps
        return int(steps[-1]) if len(steps) else -1


@dataclass(frozen=True)
class ZoneSpan:
    """A zone of one unit, live for steps ``start <= k < end``; ``zone`` None = everywhere.
    ``segments``: its warning segments (what a heading-aware receiver reads); ``path``: the
    alert's stretch ahead and ``unit_xy`` the unit's position in it (metres; None: not given),
    which the receiver measures a standing driver from."""

    unit_id: str
    start: int
    end: int
    zone: BaseGeometry | None
    segments: Sequence[Segment] = ()
    path: shapely.LineString | None = None
    unit_xy: tuple[float, float] | None = None


@dataclass(frozen=True)
class Warner:
    """One way of warning drivers (the engine, the physical limit, a circle): zone spans, or a
    circle of ``radius_m`` around each unit's fix."""

    name: str
    spans: Sequence[ZoneSpan] = ()
    circle_radius_m: float | None = None
    alert_messages: int = 0
    area_bounds_m2: float = 0.0  # area a ``None`` (everywhere) zone stands for
    heading_aware: Receiver | None = None  # score the spans' segments, not their polygons


@dataclass(frozen=True)
class Encounter:
    """Civilian ``civ`` meets ``unit_id`` at step ``step`` (row ``row`` of the traffic)."""

    civ: int
    unit_id: str
    step: int
    row: int
    kind: EncounterKind


@dataclass(frozen=True)
class GroupFigures:
    """Lead-time figures of a group of encounters (seconds; shares are 0..1)."""

    count: int
    median_lead_s: float
    p10_lead_s: float
    warned_10: float
    warned_15: float
    warned_30: float


@dataclass(frozen=True)
class MethodFigures:
    """Everything one warning method scores on one run."""

    name: str
    affected: GroupFigures
    by_kind: dict[str, GroupFigures]
    passers: GroupFigures
    bystanders: int
    bystander_vehicle_s: float
    zone_km2_s: float
    alert_messages: int
    leads: dict[str, list[float]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Geometry:
    """Distances that define an encounter (metres, seconds)."""

    meet_m: float = 50.0  # "comes within 50 m"
    on_path_m: float = 12.0  # on the path: both carriageways of an undivided road
    scene_path_m: float = 12.0  # the unit on scene lies on the civilian's path
    ahead_window_m: float = 150.0  # how much of the unit's path ahead is looked at
    crossing_cone_deg: float = 50.0  # a side-street car heads into the path within this
    scene_horizon_steps: int = 120  # how far into a civilian's future its path is read


# --------------------------------------------------------------------------- encounters


def _civ_index(traffic: Traffic) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered by (civ, step), and each civilian's first position in that order."""
    order = np.lexsort((traffic.step, traffic.civ))
    starts = np.searchsorted(traffic.civ[order], np.arange(traffic.n_civilians + 1), side="left")
    return order, starts


def _path_kind(
    px: float, py: float, heading_deg: float, ahead: shapely.LineString, geo: Geometry
) -> EncounterKind | None:
    """Where a civilian at (px, py) stands relative to the unit's path ahead, if on it."""
    p = shapely.Point(px, py)
    s = float(shapely.line_locate_point(ahead, p))
    if s <= 1.0:  # nearest point is the unit itself or behind it: not ahead
        return None
    q = shapely.line_interpolate_point(ahead, s)
    d = float(shapely.distance(p, q))
    hx, hy = heading_vec(heading_deg)
    if d <= geo.on_path_m:
        a = shapely.line_interpolate_point(ahead, max(s - 3.0, 0.0))
        b = shapely.line_interpolate_point(ahead, min(s + 3.0, ahead.length))
        tx, ty = b.x - a.x, b.y - a.y
        norm = math.hypot(tx, ty)
        if norm == 0.0:
            return None
        cos = (hx * tx + hy * ty) / norm
        if cos >= math.cos(math.radians(60)):
            return "same"
        if cos <= -math.cos(math.radians(60)):
            return "oncoming"
        return "crossing"
    if d <= geo.meet_m:
        cos = (hx * (q.x - px) + hy * (q.y - py)) / d
        if cos >= math.cos(math.radians(geo.crossing_cone_deg)):
            return "crossing"
    return None


def _can_meet(
    traffic: Traffic, civ_rows: np.ndarray, unit_roads: np.ndarray, unreached: int = -1
) -> bool:
    """Whether a civilian's roads (its rows from now to the horizon) touch a road or a
    junction of the unit's path ahead: grade-separated roads share neither. ``unreached``: a
    junction at the end of one of those roads that the unit never gets to (the far end of the
    road it stops on for its scene)."""
    assert traffic.road is not None and traffic.junctions is not None
    theirs = traffic.road[civ_rows]
    theirs = theirs[theirs >= 0]  # -1: not recorded (junctions[-1] is another road's)
    ours = unit_roads[unit_roads >= 0]
    if np.intersect1d(theirs, ours).size:
        return True
    met = np.intersect1d(traffic.junctions[theirs], traffic.junctions[ours])
    return bool(met[met != unreached].size)


def _scene_far_junction(traffic: Traffic, unit: UnitTrack) -> int:
    """The junction at the far end of the road a unit stops on for its scene, when the unit
    never passes it (it stops part way along that road); -1 otherwise."""
    assert traffic.junctions is not None and unit.road is not None
    scene = np.flatnonzero(unit.mode == MODE_ON_SCENE)
    if not len(scene) or unit.road[scene[0]] < 0:
        return -1
    far = int(traffic.junctions[unit.road[scene[0]]][1])
    driven = unit.road[(unit.mode != MODE_NONE) & (unit.road >= 0)]
    # a road the unit drove that leaves that junction, or the junction's own inner road
    # (both ends the junction): the unit went through it after all
    return -1 if np.any(traffic.junctions[driven][:, 0] == far) else far


def find_encounters(
    traffic: Traffic, units: Sequence[UnitTrack], geo: Geometry = Geometry()
) -> list[Encounter]:
    """Affected drivers and on-scene passers of every unit (first encounter per pair)."""
    found: list[Encounter] = []
    order, starts = _civ_index(traffic)
    graded = traffic.road is not None and traffic.junctions is not None
    for unit in units:
        unreached = _scene_far_junction(traffic, unit) if graded and unit.road is not None else -1
        met: set[int] = set()
        passed: set[int] = set()
        resp = np.flatnonzero(unit.mode == MODE_RESPONDING)
        # the unit's actual path: its true trajectory while responding, with distance along
        if len(resp):
            pxy = np.column_stack([unit.x[resp], unit.y[resp]])
            cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pxy, axis=0).T))])
        for i, k in enumerate(resp):
            rows = traffic.rows_at(int(k))
            dx = traffic.x[rows] - unit.x[k]
            dy = traffic.y[rows] - unit.y[k]
            near = np.flatnonzero(np.hypot(dx, dy) <= geo.meet_m)
            if not len(near):
                continue
            j = int(np.searchsorted(cum, cum[i] + geo.ahead_window_m, side="right"))
            ahead_xy = pxy[i : min(j + 1, len(pxy))]
            keep = np.concatenate([[True], np.any(np.diff(ahead_xy, axis=0) != 0, axis=1)])
            ahead_xy = ahead_xy[keep]
            if len(ahead_xy) < 2:
                continue
            ahead = shapely.LineString(ahead_xy)
            for row in near:
                r = int(rows.start) + int(row)
                c = int(traffic.civ[r])
                if c in met:
                    continue
                kind = _path_kind(
                    float(traffic.x[r]),
                    float(traffic.y[r]),
                    float(traffic.heading_deg[r]),
                    ahead,
                    geo,
                )
                if kind == "crossing" and graded and unit.road is not None:
                    future = order[starts[c] : starts[c + 1]]
                    fk = traffic.step[future]
                    future = future[(fk >= k) & (fk <= k + geo.scene_horizon_steps)]
                    if not _can_meet(traffic, future, unit.road[resp[i : j + 1]], unreached):
                        continue  # under (or over) the unit's path: it never meets it
                if kind is not None:
                    met.add(c)
                    found.append(Encounter(c, unit.unit_id, int(k), r, kind))
        for k in np.flatnonzero(unit.mode == MODE_ON_SCENE):
            rows = traffic.rows_at(int(k))
            ux, uy = unit.x[k], unit.y[k]
            dist = np.hypot(traffic.x[rows] - ux, traffic.y[rows] - uy)
            for row in np.flatnonzero(dist <= geo.meet_m):
                r = int(rows.start) + int(row)
                c = int(traffic.civ[r])
                if c in passed:
                    continue
                future = order[starts[c] : starts[c + 1]]
                fk = traffic.step[future]
                future = future[(fk >= k) & (fk <= k + geo.scene_horizon_steps)]
                fx, fy = traffic.x[future], traffic.y[future]
                if len(fx) >= 2:
                    line = shapely.LineString(np.column_stack([fx, fy]))
                    gap = float(shapely.distance(line, shapely.Point(ux, uy)))
                else:
                    gap = float(np.hypot(fx[0] - ux, fy[0] - uy))
                if gap <= geo.scene_path_m:
                    passed.add(c)
                    found.append(Encounter(c, unit.unit_id, int(k), r, "on_scene"))
    return found


# --------------------------------------------------------------------------- warnings


def inside_masks(
    traffic: Traffic, units: Sequence[UnitTrack], warning: Warner
) -> dict[str, np.ndarray]:
    """Per unit, a boolean per traffic row: is that civilian inside a live zone of the unit."""
    masks = {u.unit_id: np.zeros(len(traffic.step), dtype=bool) for u in units}
    if warning.heading_aware is not None:
        return on_segment_masks(traffic, warning.spans, masks, warning.heading_aware)
    if warning.circle_radius_m is not None:
        r2 = warning.circle_radius_m**2
        for u in units:
            k = traffic.step
            valid = (k >= 0) & (k < len(u.mode))
            kk = np.where(valid, k, 0)
            live = valid & (u.mode[kk] != MODE_NONE)
            d2 = (traffic.x - u.fix_x[kk]) ** 2 + (traffic.y - u.fix_y[kk]) ** 2
            masks[u.unit_id] = live & (np.nan_to_num(d2, nan=np.inf) <= r2)
        return masks
    for span in warning.spans:
        if span.unit_id not in masks or span.end <= span.start:
            continue
        rows = traffic.rows_between(span.start, span.end)
        if span.zone is None:
            masks[span.unit_id][rows] = True
            continue
        shapely.prepare(span.zone)
        hit = shapely.contains_xy(span.zone, traffic.x[rows], traffic.y[rows])
        masks[span.unit_id][rows] |= hit
    return masks


def limit_warning(units: Sequence[UnitTrack], area_m2: float = 0.0) -> Warner:
    """The physical limit: one zone over everything from each unit's first emergency fix, or
    from its CAD route if that came first (else the dispatch zone beat the "limit")."""
    spans = [ZoneSpan(u.unit_id, u.warnable_from, u.last_step + 1, None) for u in units]
    return Warner("limit", spans=spans, alert_messages=len(units), area_bounds_m2=area_m2)


def circle_warning(radius_m: float = 300.0) -> Warner:
    """A generic roaming geofence: a circle around the unit's reported fix at every step."""
    return Warner(f"circle{int(radius_m)}", circle_radius_m=radius_m)


def _lead_steps(
    mask: np.ndarray, traffic: Traffic, order: np.ndarray, starts: np.ndarray, enc: Encounter
) -> int:
    """Steps the civilian had been continuously inside before (and at) the encounter step."""
    rows = order[starts[enc.civ] : starts[enc.civ + 1]]
    pos = int(np.searchsorted(traffic.step[rows], enc.step))
    if not mask[rows[pos]]:
        return 0
    run_start = enc.step
    while pos > 0:
        prev = rows[pos - 1]
        if not mask[prev] or traffic.step[prev] != traffic.step[rows[pos]] - 1:
            break
        pos -= 1
        run_start = int(traffic.step[prev])
    return enc.step - run_start


def group_figures(leads_s: Iterable[float]) -> GroupFigures:
    """Median, p10 and shares warned >= 10 / 15 / 30 s of some lead times (NaN when empty)."""
    arr = np.asarray(list(leads_s), dtype=float)
    if not len(arr):
        nan = float("nan")
        return GroupFigures(0, nan, nan, nan, nan, nan)
    return GroupFigures(
        count=len(arr),
        median_lead_s=float(np.median(arr)),
        p10_lead_s=float(np.percentile(arr, 10)),
        warned_10=float(np.mean(arr >= 10)),
        warned_15=float(np.mean(arr >= 15)),
        warned_30=float(np.mean(arr >= 30)),
    )


def score(
    traffic: Traffic,
    units: Sequence[UnitTrack],
    warning: Warner,
    encounters: Sequence[Encounter],
) -> MethodFigures:
    """Figures of one warning method against precomputed encounters."""
    order, starts = _civ_index(traffic)
    masks = inside_masks(traffic, units, warning)
    leads: dict[str, list[float]] = {k: [] for k in (*PATH_KINDS, "on_scene")}
    for enc in encounters:
        steps = _lead_steps(masks[enc.unit_id], traffic, order, starts, enc)
        leads[enc.kind].append(steps * traffic.dt_s)
    affected = [v for k in PATH_KINDS for v in leads[k]]
    any_inside = np.zeros(len(traffic.step), dtype=bool)
    for m in masks.values():
        any_inside |= m
    met = np.zeros(traffic.n_civilians, dtype=bool)
    met[[e.civ for e in encounters]] = True
    by_row_bystander = any_inside & ~met[traffic.civ] if len(traffic.civ) else any_inside
    bystanders = len(np.unique(traffic.civ[by_row_bystander]))
    # one row per (step, civilian): inside zones of several units still counts once
    bystander_s = float(np.sum(by_row_bystander)) * traffic.dt_s
    return MethodFigures(
        name=warning.name,
        affected=group_figures(affected),
        by_kind={k: group_figures(leads[k]) for k in PATH_KINDS},
        passers=group_figures(leads["on_scene"]),
        bystanders=bystanders,
        bystander_vehicle_s=bystander_s,
        zone_km2_s=_area_time_km2_s(units, warning, traffic.dt_s),
        alert_messages=warning.alert_messages,
        leads=leads,
    )


def _area_time_km2_s(units: Sequence[UnitTrack], warning: Warner, dt_s: float) -> float:
    """Zone area x live time, km^2 x s."""
    if warning.circle_radius_m is not None:
        steps = sum(int(np.sum(u.mode != MODE_NONE)) for u in units)
        return math.pi * warning.circle_radius_m**2 * steps * dt_s / 1e6
    total = 0.0
    for span in warning.spans:
        area = warning.area_bounds_m2 if span.zone is None else float(shapely.area(span.zone))
        total += area * max(span.end - span.start, 0) * dt_s
    return total / 1e6


def pool(runs: Sequence[MethodFigures]) -> MethodFigures:
    """One method's figures over several runs (e.g. seeds): leads pooled, counts summed."""
    leads: dict[str, list[float]] = {k: [] for k in (*PATH_KINDS, "on_scene")}
    for m in runs:
        for k, v in m.leads.items():
            leads[k].extend(v)
    return MethodFigures(
        name=runs[0].name,
        affected=group_figures(v for k in PATH_KINDS for v in leads[k]),
        by_kind={k: group_figures(leads[k]) for k in PATH_KINDS},
        passers=group_figures(leads["on_scene"]),
        bystanders=sum(m.bystanders for m in runs),
        bystander_vehicle_s=sum(m.bystander_vehicle_s for m in runs),
        zone_km2_s=sum(m.zone_km2_s for m in runs),
        alert_messages=sum(m.alert_messages for m in runs),
        leads=leads,
    )
