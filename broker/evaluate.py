"""Lead time and false-alert figures of a replay.

For every point a unit in emergency mode reached, and when it first reached it: its lead time
is how long before that moment the point had been *continuously* inside one of that unit's live
zones (a zone lives from its create/update until the next version, its cancel or its expiry).
A fix is a new point when it lies at least :data:`NEW_POINT_M` from the unit's last counted
one: a unit standing on scene sends the same point for minutes, and each of those fixes,
counted, added a lead as long as the unit had stood there (the on-scene fixture's median read
290 s). The cost side: zone area integrated over time, and the part of it that lies away from
the road the unit actually drove (false-alert area).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import frame_for
from broker.model import AlertEvent
from broker.replay import ReplayResult

# metres a fix must lie from the unit's last counted point to be a point it newly reached:
# above a standing unit's GPS scatter (a few metres), well below a block
NEW_POINT_M = 15.0


@dataclass(frozen=True)
class ZoneInterval:
    """One version of a zone and the time it was live, in seconds since the epoch."""

    vehicle_id: str
    start_s: float
    end_s: float
    zone: BaseGeometry  # lon/lat


@dataclass(frozen=True)
class LeadTimeReport:
    """The figures of one replay (times in seconds, areas in km^2 x s)."""

    points: int
    lead_time_median_s: float
    lead_time_p10_s: float
    lead_time_mean_s: float
    frac_warned_15s: float
    frac_warned_30s: float
    frac_warned_45s: float
    zone_area_km2_s: float
    false_alert_area_km2_s: float
    alerts: int
    alert_messages: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON output."""
        return asdict(self)


def zone_intervals(events: list[AlertEvent]) -> list[ZoneInterval]:
    """Live intervals of every zone version, from the alert events of a replay."""
    by_alert: dict[str, list[AlertEvent]] = {}
    for ev in events:
        by_alert.setdefault(ev.alert_id, []).append(ev)
    out: list[ZoneInterval] = []
    for evs in by_alert.values():
        evs = sorted(evs, key=lambda e: e.version)
        for i, ev in enumerate(evs):
            if ev.action == "cancel":
                continue
            end = ev.expires_at
            if i + 1 < len(evs):
                end = min(end, evs[i + 1].ts)
            if end <= ev.ts:
                continue
            out.append(
                ZoneInterval(
                    ev.vehicle_id,
                    ev.ts.timestamp(),
                    end.timestamp(),
                    shapely.geometry.shape(ev.zone),
                )
            )
    return out


def lead_times(
    fixes: list[tuple[datetime, float, float]], intervals: list[ZoneInterval]
) -> np.ndarray:
    """Lead time in seconds of each fix (ts, lon, lat) against one unit's zone intervals."""
    if not fixes:
        return np.zeros(0)
    t = np.array([f[0].timestamp() for f in fixes])
    lon = np.array([f[1] for f in fixes])
    lat = np.array([f[2] for f in fixes])
    leads = np.zeros(len(fixes))
    if not intervals:
        return leads
    starts = np.array([iv.start_s for iv in intervals])
    ends = np.array([iv.end_s for iv in intervals])
    inside = np.vstack([shapely.contains_xy(iv.zone, lon, lat) for iv in intervals])
    order = np.argsort(starts, kind="stable")
    starts, ends, inside = starts[order], ends[order], inside[order]
    for i in range(len(fixes)):
        ti = t[i]
        mask = inside[:, i] & (starts <= ti)
        if not mask.any():
            continue
        s, e = starts[mask], ends[mask]
        # Merge the covering intervals backwards from the one live at ti.
        live = (s <= ti) & (e >= ti)
        if not live.any():
            continue
        begin = s[live].min()
        changed = True
        while changed:
            reach = (e >= begin) & (s < begin)
            changed = bool(reach.any())
            if changed:
                begin = s[reach].min()
        leads[i] = ti - begin
    return leads


def points_reached(
    fixes: list[tuple[datetime, float, float]], min_move_m: float = NEW_POINT_M
) -> list[tuple[datetime, float, float]]:
    """The fixes (ts, lon, lat) at which a unit reached a new point: the first, then each one
    at least ``min_move_m`` from the last kept (a unit standing still reaches nothing new)."""
    if not fixes:
        return []
    frame = frame_for(fixes[0][1], fixes[0][2])
    xy = frame.coords_to_xy(np.array([[f[1], f[2]] for f in fixes]))
    kept = [0]
    for i in range(1, len(fixes)):
        if float(np.hypot(*(xy[i] - xy[kept[-1]]))) >= min_move_m:
            kept.append(i)
    return [fixes[i] for i in kept]


def _area_km2(zone: BaseGeometry) -> float:
    c = zone.centroid
    frame = frame_for(c.x, c.y)
    return float(frame.geom_to_xy(zone).area) / 1e6


def evaluate_replay(result: ReplayResult, *, track_half_width_m: float = 40.0) -> LeadTimeReport:
    """Lead-time and cost figures of one in-process replay."""
    intervals = zone_intervals(result.events)
    by_vehicle: dict[str, list[ZoneInterval]] = {}
    for iv in intervals:
        by_vehicle.setdefault(iv.vehicle_id, []).append(iv)
    leads: list[np.ndarray] = []
    for vid, fixes in result.emergency_fixes.items():
        leads.append(lead_times(points_reached(fixes), by_vehicle.get(vid, [])))
    all_leads = np.concatenate(leads) if leads else np.zeros(0)

    area = 0.0
    false_area = 0.0
    for vid, ivs in by_vehicle.items():
        fixes = result.emergency_fixes.get(vid, [])
        track = None
        if len(fixes) >= 2:
            frame = frame_for(fixes[0][1], fixes[0][2])
            xy = frame.coords_to_xy(np.array([[f[1], f[2]] for f in fixes]))
            track = shapely.buffer(shapely.LineString(xy), track_half_width_m)
        for iv in ivs:
            dur = iv.end_s - iv.start_s
            a = _area_km2(iv.zone)
            area += a * dur
            if track is not None:
                frame = frame_for(fixes[0][1], fixes[0][2])
                outside = shapely.difference(frame.geom_to_xy(iv.zone), track)
                false_area += float(outside.area) / 1e6 * dur
            else:
                false_area += a * dur

    def pct(q: float) -> float:
        return float(np.percentile(all_leads, q)) if all_leads.size else 0.0

    def share(s: float) -> float:
        return float((all_leads >= s).mean()) if all_leads.size else 0.0

    return LeadTimeReport(
        points=int(all_leads.size),
        lead_time_median_s=round(pct(50), 2),
        lead_time_p10_s=round(pct(10), 2),
        lead_time_mean_s=round(float(all_leads.mean()) if all_leads.size else 0.0, 2),
        frac_warned_15s=round(share(15.0), 4),
        frac_warned_30s=round(share(30.0), 4),
        frac_warned_45s=round(share(45.0), 4),
        zone_area_km2_s=round(area, 3),
        false_alert_area_km2_s=round(false_area, 3),
        alerts=len({e.alert_id for e in result.events}),
        alert_messages=len(result.events),
    )
