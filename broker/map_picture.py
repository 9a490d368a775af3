"""A map picture of a replay: the trace, the CAD route, and zones at several moments (PNG).

Drawn in a local metric frame (equal scale on both axes, so circles look round), with
matplotlib's non-interactive Agg backend so it works on a headless machine.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import shapely
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import LocalFrame, frame_for
from broker.model import AlertEvent, Route
from broker.replay import ReplayResult


def _patch(geom_m: BaseGeometry, **style: object) -> PathPatch:
    verts: list[np.ndarray] = []
    codes: list[int] = []
    for poly in shapely.get_parts(geom_m):
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords)
            verts.append(xy)
            codes += [int(MplPath.MOVETO), *[int(MplPath.LINETO)] * (len(xy) - 2),
                      int(MplPath.CLOSEPOLY)]
    return PathPatch(MplPath(np.vstack(verts), codes), **style)


def pick_moments(events: list[AlertEvent], count: int = 5) -> list[AlertEvent]:
    """Up to ``count`` zone versions spread evenly over the replay (creates and updates)."""
    zoned = [e for e in events if e.action != "cancel"]
    if len(zoned) <= count:
        return zoned
    idx = np.linspace(0, len(zoned) - 1, count).round().astype(int)
    return [zoned[i] for i in sorted(set(idx.tolist()))]


def draw_replay(
    result: ReplayResult, routes: list[Route], out: Path, *, title: str = "", moments: int = 5
) -> Path:
    """Write a PNG of the replay to ``out`` and return its path."""
    fixes = [f for fx in result.emergency_fixes.values() for f in fx]
    anchor = fixes[0] if fixes else None
    if anchor is None and result.events:
        anchor = (result.events[0].ts, result.events[0].lon, result.events[0].lat)
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    if anchor is None:
        ax.text(0.5, 0.5, "no emergency fixes, no alerts", ha="center", transform=ax.transAxes)
        fig.savefig(out)
        plt.close(fig)
        return out
    frame: LocalFrame = frame_for(anchor[1], anchor[2])
    cmap = plt.get_cmap("autumn")
    chosen = pick_moments(result.events, moments)
    for i, ev in enumerate(chosen):
        zone_m = frame.geom_to_xy(shapely.geometry.shape(ev.zone))
        colour = cmap(i / max(len(chosen) - 1, 1))
        ax.add_patch(_patch(zone_m, facecolor=colour, alpha=0.25, edgecolor=colour, lw=1.2))
        x, y = frame.to_xy(ev.lon, ev.lat)
        ax.plot(x, y, marker="o", color=colour, ms=7, mec="black")
        label = f"{ev.ts:%H:%M:%S} {ev.kind} v{ev.version}"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    for route in routes:
        xy = frame.coords_to_xy(np.asarray(route.route.coordinates))
        ax.plot(xy[:, 0], xy[:, 1], "--", color="tab:blue", lw=1.5, label="CAD route")
    for vid, fx in result.emergency_fixes.items():
        xy = frame.coords_to_xy(np.array([[f[1], f[2]] for f in fx]))
        ax.plot(xy[:, 0], xy[:, 1], "-", color="black", lw=1.0, label=f"trace {vid}")
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.set_xlabel("metres east (local frame)")
    ax.set_ylabel("metres north")
    ax.set_title(title or "replay: trace, route and warning zones")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=False))
    if len(uniq) <= 8:
        ax.legend(uniq.values(), uniq.keys(), loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
