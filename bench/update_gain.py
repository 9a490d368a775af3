"""What each update adds to the zone it replaces: the measure behind the update rules.

    .venv/bin/python -m bench.update_gain [INPUT ...] [--roads FILE]

For every update an engine run emits, why it was sent (the first trigger of
``update_rules.worth_update`` that fires: ``refresh`` of the expiry, ``along`` the route,
``route_changed``, ``scene_moved``, ``dr_moved`` / ``dr_turned`` without a route) and how far its
zone reaches beyond the zone it replaces: the directed Hausdorff distance new -> old, in metres
(every boundary point of the new zone, densified to 2 m, to the old zone), and the same beyond
the unit's circle (what the band or the walks gain ahead). An update whose gain is a few metres
moves no zone edge that matters to a driver; one whose gain beyond the circle is a few metres
only trims the zone behind the unit and moves the circle with it. Inputs: fixture incident
directories or ``bench.fleetgen`` files (``.tsv``). Prints a table per input.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from bench.common import FIXTURES
from broker import engine, update_rules
from broker.drive import Driver
from broker.geo.projection import frame_for
from broker.replay import load_messages
from broker.settings import EngineConfig


def reason(alert: Any, pos: Any, place: Any, cfg: EngineConfig) -> str:
    """The trigger that made ``_worth_update`` send this update (the first that fires)."""
    if pos.ts >= alert.expires_at - timedelta(seconds=cfg.alert_ttl_s / 2):
        return "refresh"
    if alert.kind == "on_scene":
        return "scene_moved"
    new_key = place.route.key if place.route is not None else None
    if new_key != alert.route_key:
        return "route_changed"
    if place.along_m is not None and alert.along_m is not None:
        return "along"
    ax, ay = update_rules.alert_xy(alert, place.frame)
    if math.hypot(place.x - ax, place.y - ay) >= cfg.min_update_distance_m:
        return "dr_moved"
    return "dr_turned"


def _reach(a: shapely.Geometry, b: shapely.Geometry) -> float:
    """How far ``a`` reaches beyond ``b`` (directed Hausdorff, boundary densified to 2 m)."""
    if a.is_empty:
        return 0.0
    pts = shapely.points(shapely.get_coordinates(shapely.segmentize(a.boundary, 2.0)))
    return float(np.max(shapely.distance(pts, b)))


def measure(messages: Any, cfg: EngineConfig, roads: Any = None) -> list[tuple[str, float, float]]:
    """(trigger, gain m, gain beyond the unit's circle m) per update of one engine run."""
    rows: list[tuple[str, float, float]] = []
    original = engine.emit  # a fix's create or update (broker.ticks' emits are not measured)

    def emit(state: Any, pos: Any, place: Any, kind: Any, cfg_: Any, zone_of: Any,
             prev: Any, **kw: Any) -> Any:
        out = original(state, pos, place, kind, cfg_, zone_of, prev, **kw)
        if prev is not None:
            frame = frame_for(pos.lon, pos.lat)
            old, new = frame.geom_to_xy(shape(prev.zone)), frame.geom_to_xy(shape(out[1][0].zone))
            x, y = frame.to_xy(pos.lon, pos.lat)
            radius = cfg.proximity_radius_m if roads is None else cfg.road_proximity_radius_m
            circle = shapely.buffer(shapely.Point(x, y),
                                    radius + min(pos.accuracy_m, cfg.accuracy_widen_cap_m) + 1)
            rows.append((reason(prev, pos, place, cfg), _reach(new, old),
                         _reach(shapely.difference(new, circle), old)))
        return out

    engine.emit = emit  # type: ignore[attr-defined]  # measuring only, in this process
    try:
        driver: Driver[str] = Driver(cfg, roads=roads, tick_every_s=1.0)
        for topic, raw in messages:
            driver.handle(topic, raw)
    finally:
        engine.emit = original  # type: ignore[attr-defined]
    return rows


def _messages(path: Path) -> Any:
    if path.suffix == ".tsv":
        with path.open("rb") as fh:
            for line in fh:
                topic, _, raw = line.rstrip(b"\n").partition(b"\t")
                yield topic.decode(), raw
    else:
        yield from load_messages(path)


def table(rows: list[tuple[str, float, float]]) -> str:
    """Per trigger: updates, share whose zone gains <= 5 / 10 m, and <= 5 m beyond the circle."""
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for why, gain, beyond in rows:
        by[why].append((gain, beyond))
    out = ["| trigger | updates | gain p10 m | gain p50 m | gain <= 5 m | gain <= 10 m "
           "| gain beyond the circle <= 5 m |", "|---|---:|---:|---:|---:|---:|---:|"]
    for why, vals in sorted(by.items()):
        g = np.array([v[0] for v in vals])
        b = np.array([v[1] for v in vals])
        out.append(f"| {why} | {len(vals)} | {np.percentile(g, 10):.1f} | "
                   f"{np.percentile(g, 50):.1f} | {100 * np.mean(g <= 5):.0f} % | "
                   f"{100 * np.mean(g <= 10):.0f} % | {100 * np.mean(b <= 5):.0f} % |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", type=Path,
                        default=[FIXTURES / "fleet-200", FIXTURES / "route-downtown"])
    parser.add_argument("--roads", type=Path)
    args = parser.parse_args()
    roads = None
    if args.roads:
        from broker.geo.roads import RoadNetwork

        roads = RoadNetwork.load(args.roads)
    cfg = EngineConfig()
    for path in args.inputs:
        print(f"\n{path.name}{' with roads' if roads else ''}\n")
        print(table(measure(_messages(path), cfg, roads)))


if __name__ == "__main__":
    main()
