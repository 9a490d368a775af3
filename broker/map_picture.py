"""A map picture of a replay: the trace, the CAD route, and zones at several moments (PNG).

Drawn in longitude / latitude with the axes' aspect set to 1 / cos(latitude), so a metre is as
long east-west as north-south and circles look round; the road network's streets (when given)
under the zones, a scale bar in metres and a north arrow. Zones are built in a local metric
frame (never in degrees); only the drawing is in degrees. matplotlib's non-interactive Agg
backend, so it works on a headless machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import shapely
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar  # type: ignore[import-untyped]
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import M_PER_DEG_LAT
from broker.model import AlertEvent, Route
from broker.replay import ReplayResult

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

NICE_M = (20, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000, 20_000, 50_000)


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


def _extent(result: ReplayResult, chosen: list[AlertEvent], routes: list[Route]
            ) -> tuple[float, float, float, float]:
    """[west, south, east, north] of what the picture shows (trace, zones, routes)."""
    pts = [(f[1], f[2]) for fx in result.emergency_fixes.values() for f in fx]
    for ev in chosen:
        x0, y0, x1, y1 = shapely.bounds(shapely.geometry.shape(ev.zone))
        pts += [(x0, y0), (x1, y1)]
    pts += [(c[0], c[1]) for r in routes for c in r.route.coordinates]
    lons, lats = [p[0] for p in pts], [p[1] for p in pts]
    pad_lon = max((max(lons) - min(lons)) * 0.05, 0.001)
    pad_lat = max((max(lats) - min(lats)) * 0.05, 0.001)
    return min(lons) - pad_lon, min(lats) - pad_lat, max(lons) + pad_lon, max(lats) + pad_lat


def _roads(ax: Axes, roads: RoadNetwork, extent: tuple[float, float, float, float]) -> None:
    """The streets of the road network inside ``extent``, thin and grey, under everything."""
    box = shapely.box(*extent)
    parts = shapely.get_parts(roads.frame.geom_to_lonlat(roads.geometry()))
    lines = [np.asarray(line.coords) for line in parts if shapely.intersects(line, box)]
    ax.add_collection(LineCollection(lines, colors="#a7adb4", linewidths=1.4, zorder=1))
    ax.plot([], [], color="#a7adb4", lw=1.4, label="streets (road network)")


def _scale_and_north(ax: Axes, extent: tuple[float, float, float, float]) -> None:
    """A scale bar in metres (lower left) and a north arrow (upper right)."""
    west, south, east, north = extent
    lat0 = (south + north) / 2
    m_per_deg_lon = M_PER_DEG_LAT * np.cos(np.radians(lat0))
    width_m = (east - west) * m_per_deg_lon
    length = max([n for n in NICE_M if n <= width_m / 4] or [NICE_M[0]])
    label = f"{length // 1000} km" if length >= 1000 and length % 1000 == 0 else f"{length} m"
    ax.add_artist(AnchoredSizeBar(ax.transData, length / m_per_deg_lon, label, "lower left",
                                  pad=0.6, sep=4, frameon=True, size_vertical=0))
    ax.annotate("N", xy=(0.95, 0.95), xytext=(0.95, 0.85), xycoords="axes fraction",
                ha="center", va="center", fontsize=12, fontweight="bold",
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5})


def draw_replay(
    result: ReplayResult,
    routes: list[Route],
    out: Path,
    *,
    title: str = "",
    moments: int = 5,
    roads: RoadNetwork | None = None,
) -> Path:
    """Write a PNG of the replay to ``out`` and return its path."""
    fixes = [f for fx in result.emergency_fixes.values() for f in fx]
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    if not fixes and not result.events:
        ax.text(0.5, 0.5, "no emergency fixes, no alerts", ha="center", transform=ax.transAxes)
        fig.savefig(out)
        plt.close(fig)
        return out
    cmap = plt.get_cmap("autumn")
    chosen = pick_moments(result.events, moments)
    extent = _extent(result, chosen, routes)
    if roads is not None:
        _roads(ax, roads, extent)
    for i, ev in enumerate(chosen):
        zone = shapely.geometry.shape(ev.zone)
        colour = cmap(i / max(len(chosen) - 1, 1))
        ax.add_patch(_patch(zone, facecolor=colour, alpha=0.3, edgecolor=colour, lw=1.2,
                            zorder=2))
        ax.plot(ev.lon, ev.lat, marker="o", color=colour, ms=7, mec="black", zorder=5)
        label = f"{ev.ts:%H:%M:%S} {ev.kind} v{ev.version}"
        ax.annotate(label, (ev.lon, ev.lat), textcoords="offset points", xytext=(6, 6),
                    fontsize=8, zorder=6)
    for route in routes:
        xy = np.asarray(route.route.coordinates)
        ax.plot(xy[:, 0], xy[:, 1], "--", color="tab:blue", lw=1.5, label="CAD route", zorder=3)
    for vid, fx in result.emergency_fixes.items():
        xy = np.array([[f[1], f[2]] for f in fx])
        ax.plot(xy[:, 0], xy[:, 1], "-", color="black", lw=1.0, label=f"trace {vid}", zorder=4)
    west, south, east, north = extent
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_aspect(1.0 / np.cos(np.radians((south + north) / 2)))
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("longitude (degrees east)")
    ax.set_ylabel("latitude (degrees north)")
    _scale_and_north(ax, extent)
    ax.set_title(title or "replay: trace, route and warning zones")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=False))
    if len(uniq) <= 8:
        ax.legend(uniq.values(), uniq.keys(), loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
