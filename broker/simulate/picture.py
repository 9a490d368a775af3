"""Map picture of a simulation run: roads, zones, the units' paths, drivers by lead time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely

if TYPE_CHECKING:
    from broker.simulate.run import RunResult


def draw_map(result: RunResult, method: str, path: Path) -> Path:
    """Write a PNG: grey roads, the method's zones (every version, translucent), each unit's
    actual path, scenes, and each affected driver / passer at its encounter coloured by lead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    geo = result.built.geo
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    roads = json.loads(result.built.roads_geojson.read_text())
    for f in roads["features"]:
        ll = np.asarray(f["geometry"]["coordinates"], float)
        x, y = geo.to_xy(ll[:, 0], ll[:, 1])
        ax.plot(x, y, color="0.75", lw=0.8, zorder=1)
    for span in result.spans.get(method, []):
        if span.zone is None:
            continue
        for poly in getattr(span.zone, "geoms", [span.zone]):
            xs, ys = shapely.get_coordinates(poly.exterior).T
            ax.fill(xs, ys, color="tab:orange", alpha=0.04, lw=0, zorder=2)
    for unit in result.units:
        resp = unit.mode == 1
        ax.plot(unit.x[resp], unit.y[resp], color="tab:red", lw=2, zorder=4)
        scene = unit.mode == 2
        if scene.any():
            ax.scatter(unit.x[scene][:1], unit.y[scene][:1], marker="*", s=250, color="tab:red",
                       edgecolor="k", zorder=6)  # fmt: skip
    leads = result.figures[method].leads
    encounters = result.encounters
    per_kind_idx = {k: 0 for k in leads}
    xs, ys, cs = [], [], []
    for enc in encounters:
        i = per_kind_idx[enc.kind]
        per_kind_idx[enc.kind] += 1
        xs.append(result.traffic.x[enc.row])
        ys.append(result.traffic.y[enc.row])
        cs.append(leads[enc.kind][i])
    if xs:
        sc = ax.scatter(xs, ys, c=cs, cmap="viridis", vmin=0, vmax=60, s=22, edgecolor="k",
                        lw=0.3, zorder=5)  # fmt: skip
        fig.colorbar(sc, ax=ax, shrink=0.7, label="lead time at the encounter (s)")
    o = result.options
    ax.set_title(f"{result.built.scenario.title}\n{method}: {o.units} unit(s), {o.traffic} "
                 f"traffic, seed {o.seed}", fontsize=10)  # fmt: skip
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
