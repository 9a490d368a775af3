"""Hand-laid street layouts written as SUMO plain XML (nodes + edges) for ``netconvert``.

Three shapes of road that the real networks of the matrix have too little of (issue 15):

- ``divided-arterial``: a 2.4 km boulevard of two one-way, three-lane carriageways 24 m apart,
  signalised cross streets every 200 m (the median opens there), right-in/right-out side
  streets between them and a back street parallel on each side;
- ``interchange``: two divided three-lane motorways crossing in a cloverleaf (four loops for
  the left turns, four outer ramps for the right turns); the east-west motorway bridges the
  other, with no junction where they cross;
- ``old-town``: a dense irregular web of short (about 50 m), steep (up to ~12 %), partly one-way
  lanes on a hill, a signalised ring round it, two tunnels under it (one right below the main
  street) and a viaduct over it: roads cross roads without meeting.

A layout is a pure function of its name and ``layout_seed``: the same recipe always writes the
same files. Coordinates are metres in a local frame placed on the globe by the recipe's
``origin`` (as for ``netgenerate``). Edges that cross without a shared node are grade-separated
for SUMO; ``z`` values only make that visible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LAYOUTS = ("divided-arterial", "interchange", "old-town")
Cell = tuple[int, int]  # (row, column) of the old town's web
Link = tuple[Cell, Cell]
VERSION = 1  # part of the network hash: bump when a layout changes


@dataclass
class Plain:
    """Nodes and edges of a plain-XML network under construction."""

    nodes: dict[str, tuple[float, float, float, str]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)

    def node(self, nid: str, x: float, y: float, z: float = 0.0, kind: str = "priority") -> str:
        self.nodes[nid] = (x, y, z, kind)
        return nid

    def edge(
        self, a: str, b: str, *, lanes: int, speed: float, priority: int,
        shape: Iterable[tuple[float, ...]] = (), two_way: bool = False, eid: str | None = None,
    ) -> None:
        """One edge a -> b (and b -> a if ``two_way``); ``shape``: inner points only."""
        inner = list(shape)
        for src, dst, pts, suffix in ((a, b, inner, ""), (b, a, inner[::-1], "-r")):
            attrs = {
                "id": (eid or f"{src}_{dst}") + (suffix if eid else ""), "from": src, "to": dst,
                "numLanes": str(lanes), "speed": f"{speed:.2f}", "priority": str(priority),
            }  # fmt: skip
            if pts:
                ends = [self.nodes[src], *pts, self.nodes[dst]]
                attrs["shape"] = " ".join(",".join(f"{v:.2f}" for v in p[:3]) for p in ends)
            self.edges.append(attrs)
            if not two_way:
                break

    def write(self, out: Path, prefix: str) -> tuple[Path, Path]:
        nod, edg = out / f"{prefix}.nod.xml", out / f"{prefix}.edg.xml"
        lines = ["<nodes>"]
        for nid, (x, y, z, kind) in self.nodes.items():
            lines.append(f'  <node id="{nid}" x="{x:.2f}" y="{y:.2f}" z="{z:.2f}" type="{kind}"/>')
        nod.write_text("\n".join([*lines, "</nodes>", ""]))
        lines = ["<edges>"]
        for e in self.edges:
            lines.append("  <edge " + " ".join(f'{k}="{v}"' for k, v in e.items()) + "/>")
        edg.write_text("\n".join([*lines, "</edges>", ""]))
        return nod, edg


def write_layout(name: str, out: Path, seed: int = 1) -> tuple[Path, Path]:
    """Write ``<name>.nod.xml`` and ``<name>.edg.xml`` into ``out``; return their paths."""
    if name == "divided-arterial":
        plain = divided_arterial()
    elif name == "interchange":
        plain = interchange()
    elif name == "old-town":
        plain = old_town(seed)
    else:
        raise ValueError(f"unknown layout {name!r} (known: {', '.join(LAYOUTS)})")
    return plain.write(out, "layout")


# --------------------------------------------------------------------------- divided arterial


def divided_arterial(half_length_m: float = 1200.0, block_m: float = 200.0) -> Plain:
    """Boulevard along x: eastbound carriageway at y = -12, westbound at y = +12."""
    p = Plain()
    xs = np.arange(-half_length_m, half_length_m + 1, block_m / 2)  # cross and side streets
    for side, y_cw, y_back, y_far in (("n", 12.0, 150.0, 350.0), ("s", -12.0, -150.0, -350.0)):
        for i, x in enumerate(xs):
            cross = i % 2 == 0
            signal = cross and i % 4 == 0 and 0 < i < len(xs) - 1
            p.node(f"{side}c{i}", x, y_cw, kind="traffic_light" if signal else "priority")
            p.node(f"{side}b{i}", x, y_back)
            if i > 0:  # the back street, two-way
                p.edge(f"{side}b{i - 1}", f"{side}b{i}", lanes=1, speed=11.11, priority=4,
                       two_way=True)  # fmt: skip
            if cross:  # cross street: carriageway -> back street -> the fringe
                p.node(f"{side}f{i}", x, y_far)
                p.edge(f"{side}c{i}", f"{side}b{i}", lanes=1, speed=13.89, priority=6,
                       two_way=True)  # fmt: skip
                p.edge(f"{side}b{i}", f"{side}f{i}", lanes=1, speed=13.89, priority=6,
                       two_way=True)  # fmt: skip
            else:  # side street between cross streets: right in, right out
                p.edge(f"{side}c{i}", f"{side}b{i}", lanes=1, speed=8.33, priority=3,
                       two_way=True)  # fmt: skip
    ends = half_length_m + 200.0
    p.node("ew", -ends, -12.0)
    p.node("ee", ends, -12.0)
    p.node("ww", -ends, 12.0)
    p.node("we", ends, 12.0)
    east = ["ew", *[f"sc{i}" for i in range(len(xs))], "ee"]
    west = ["we", *[f"nc{i}" for i in reversed(range(len(xs)))], "ww"]
    for chain in (east, west):
        for a, b in itertools.pairwise(chain):
            p.edge(a, b, lanes=3, speed=16.67, priority=10)
    for i in range(0, len(xs), 2):  # the median opening: across both carriageways
        if 0 < i < len(xs) - 1:
            p.edge(f"nc{i}", f"sc{i}", lanes=1, speed=13.89, priority=6, two_way=True)
    return p


# --------------------------------------------------------------------------- cloverleaf


def _rot(k: int, x: float, y: float) -> tuple[float, float]:
    """Rotate by k quarter turns anticlockwise."""
    for _ in range(k % 4):
        x, y = -y, x
    return x, y


def interchange(reach_m: float = 2000.0, off_m: float = 15.0) -> Plain:
    """Carriageway k (0 north-, 1 west-, 2 south-, 3 eastbound) runs along R^k (off, s).

    On each carriageway, in travel order: the outer ramp to carriageway k-1 leaves at s=-400,
    the loop from k-1 joins at s=-50, the loop to k+1 leaves at s=+50, the outer ramp from
    k+1 joins at s=+400. The west- and eastbound carriageways bridge the others.
    """
    p = Plain()
    stations = (-reach_m, -400.0, -50.0, 50.0, 400.0, reach_m)
    for k in range(4):
        ids = []
        for s in stations:
            x, y = _rot(k, off_m, s)
            ids.append(p.node(f"c{k}_{int(s)}", x, y))
        for a, b, s0 in zip(ids, ids[1:], stations, strict=False):
            shape: list[tuple[float, float, float]] = []
            if s0 == -50.0 and k % 2 == 1:  # the bridge over the north-south motorway
                shape = [(*_rot(k, off_m, -30.0), 7.0), (*_rot(k, off_m, 30.0), 7.0)]
            p.edge(a, b, lanes=3, speed=33.33, priority=13, shape=shape)
    centre, radius = 90.0, 60.0
    arc = [
        (centre + radius * math.cos(a), centre + radius * math.sin(a))
        for a in np.radians(np.arange(180.0, -91.0, -15.0))
    ]  # clockwise from the west point (heading north) to the south point (heading west)
    for k in range(4):
        nxt, prv = (k + 1) % 4, (k - 1) % 4
        loop = [_rot(k, x, y) for x, y in arc]
        p.edge(f"c{k}_50", f"c{nxt}_-50", lanes=1, speed=11.11, priority=9, shape=loop,
               eid=f"loop{k}")  # fmt: skip
        # outer ramp from k (template: westbound -> northbound, rotated by k-1)
        outer = [_rot(prv, x, y) for x, y in ((330.0, 45.0), (45.0, 330.0))]
        p.edge(f"c{k}_-400", f"c{prv}_400", lanes=1, speed=22.22, priority=9, shape=outer,
               eid=f"ramp{k}")  # fmt: skip
    return p


# --------------------------------------------------------------------------- old town


def old_town(seed: int = 1, n: int = 19, block_m: float = 50.0) -> Plain:
    """A jittered n x n web of short lanes on a hill, a ring, two tunnels and a viaduct."""
    rng = np.random.default_rng(seed)
    half = (n - 1) * block_m / 2
    mid = n // 2
    p = Plain()

    def hill(x: float, y: float) -> float:
        return 45.0 * math.exp(-((x - 80.0) ** 2 + (y + 40.0) ** 2) / (2 * 220.0**2))

    pos: dict[Cell, tuple[float, float]] = {}
    for i in range(n):
        for j in range(n):
            jx, jy = (0.0, 0.0) if mid in (i, j) else rng.uniform(-12.0, 12.0, 2)
            pos[i, j] = (-half + j * block_m + float(jx), -half + i * block_m + float(jy))
    links: list[Link] = []
    for i in range(n):
        for j in range(n):
            if j + 1 < n:
                links.append(((i, j), (i, j + 1)))
            if i + 1 < n:
                links.append(((i, j), (i + 1, j)))
            if i + 1 < n and j + 1 < n and rng.random() < 0.08:
                links.append(((i, j), (i + 1, j + 1)) if rng.random() < 0.5
                             else ((i, j + 1), (i + 1, j)))  # fmt: skip
    main = {lk for lk in links if lk[0][0] == lk[1][0] == mid or lk[0][1] == lk[1][1] == mid}
    kept = [lk for lk in links if lk in main or rng.random() > 0.22]
    kept = _largest_component(kept)
    oneway = _oneways(kept, main, rng)
    used = {v for lk in kept for v in lk}
    for i, j in sorted(used):
        x, y = pos[i, j]
        p.node(f"o{i}_{j}", x, y, hill(x, y))
    for a, b in kept:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        shape: list[tuple[float, float, float]] = []
        if (a, b) not in main and rng.random() < 0.3:  # a bent lane
            off = rng.uniform(-6.0, 6.0)
            dx, dy = xb - xa, yb - ya
            ln = math.hypot(dx, dy)
            mx, my = (xa + xb) / 2 - dy / ln * off, (ya + yb) / 2 + dx / ln * off
            shape = [(mx, my, hill(mx, my))]
        src, dst = (b, a) if oneway.get((a, b)) == "rev" else (a, b)
        p.edge(f"o{src[0]}_{src[1]}", f"o{dst[0]}_{dst[1]}", lanes=1,
               speed=11.11 if (a, b) in main else 8.33, priority=5 if (a, b) in main else 3,
               shape=shape, two_way=(a, b) not in oneway)  # fmt: skip
    _ring(p, pos, used, n, half, hill)
    return p


def _ring(
    p: Plain, pos: dict[Cell, tuple[float, float]], used: set[Cell], n: int, half: float,
    hill: Callable[[float, float], float],
) -> None:
    """The signalised ring 110 m outside the web, its spokes, fringe roads, tunnels, viaduct."""
    r = half + 110.0
    mid = n // 2
    ring: list[tuple[float, str]] = []  # (perimeter parameter, node id)

    def on_ring(nid: str, x: float, y: float, kind: str = "traffic_light") -> None:
        p.node(nid, x, y, hill(x, y), kind)
        t = math.atan2(y, x) % (2 * math.pi)
        ring.append((t, nid))

    for k in range(0, n, 3):  # spokes from the web's border to the ring
        for cell, (x, y) in (((k, 0), (-r, None)), ((k, n - 1), (r, None)),
                             ((0, k), (None, -r)), ((n - 1, k), (None, r))):  # fmt: skip
            if cell not in used:
                continue
            cx, cy = pos[cell]
            rx = x if x is not None else cx
            ry = y if y is not None else cy
            nid = f"r{cell[0]}_{cell[1]}"
            on_ring(nid, rx, ry)
            p.edge(f"o{cell[0]}_{cell[1]}", nid, lanes=1, speed=11.11, priority=5, two_way=True)
    for cx, cy in ((-r, -r), (r, -r), (r, r), (-r, r)):
        on_ring(f"rc{int(cx)}_{int(cy)}", cx, cy, "priority")
    # the viaduct's ends and the fringe roads out of town
    on_ring("via_sw", -r, -r + 120.0)
    on_ring("via_ne", r - 120.0, r)
    on_ring("t2_s", 150.0, -r)  # the north-south tunnel's portals
    on_ring("t2_n", 150.0, r)
    ring.sort()
    ids = [nid for _, nid in ring]
    for a, b in zip(ids, [*ids[1:], ids[0]], strict=True):
        p.edge(a, b, lanes=2, speed=13.89, priority=8, two_way=True)
    for nid, (dx, dy) in ((f"r{mid}_0", (-1, 0)), (f"r{mid}_{n - 1}", (1, 0)),
                          (f"r0_{mid}", (0, -1)), (f"r{n - 1}_{mid}", (0, 1))):  # fmt: skip
        if nid not in p.nodes:
            continue
        x, y, _, _ = p.nodes[nid]
        far = p.node(f"f{nid}", x + dx * 400.0, y + dy * 400.0)
        p.edge(nid, far, lanes=2, speed=13.89, priority=8, two_way=True)
    # tunnel 1: straight below the east-west main street, ring to ring, no junction between
    west, east = f"r{mid}_0", f"r{mid}_{n - 1}"
    if west in p.nodes and east in p.nodes:
        deep = [(-half + 40.0, 0.0, -12.0), (half - 40.0, 0.0, -12.0)]
        p.edge(west, east, lanes=1, speed=13.89, priority=7, shape=deep, two_way=True,
               eid="tunnel_ew")  # fmt: skip
    # tunnel 2: north-south, 150 m east of the main street
    p.edge("t2_s", "t2_n", lanes=1, speed=13.89, priority=7, two_way=True, eid="tunnel_ns",
           shape=[(150.0, -half + 40.0, -10.0), (150.0, half - 40.0, -10.0)])  # fmt: skip
    # the viaduct: south-west to north-east over the lanes and the tunnels
    p.edge("via_sw", "via_ne", lanes=1, speed=13.89, priority=7, two_way=True, eid="viaduct",
           shape=[(-half, -half + 120.0, 60.0), (half - 120.0, half, 60.0)])  # fmt: skip


def _largest_component(links: list[Link]) -> list[Link]:
    """The links of the biggest connected piece (dropping links can strand a few lanes)."""
    parent: dict[Cell, Cell] = {}

    def find(v: Cell) -> Cell:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in links:
        parent[find(a)] = find(b)
    sizes: dict[Cell, int] = {}
    for v in list(parent):
        sizes[find(v)] = sizes.get(find(v), 0) + 1
    root = max(sizes, key=lambda r: (sizes[r], r))
    return [lk for lk in links if find(lk[0]) == root]


def _oneways(links: list[Link], main: set[Link], rng: np.random.Generator) -> dict[Link, str]:
    """About a third of the lanes one-way, never one that would strand a node."""
    out: dict[Link, str] = {}

    def strongly_connected() -> bool:
        fwd: dict[Cell, list[Cell]] = {}
        bwd: dict[Cell, list[Cell]] = {}
        for a, b in links:
            d = out.get((a, b))
            pairs = [(a, b)] if d == "fwd" else [(b, a)] if d == "rev" else [(a, b), (b, a)]
            for u, v in pairs:
                fwd.setdefault(u, []).append(v)
                bwd.setdefault(v, []).append(u)
        start = links[0][0]
        return all(_reach(g, start) == len(fwd.keys() | bwd.keys()) for g in (fwd, bwd))

    for idx in rng.permutation(len(links)):
        lk = links[int(idx)]
        if lk in main or rng.random() > 0.35:
            continue
        out[lk] = "fwd" if rng.random() < 0.5 else "rev"
        if not strongly_connected():
            del out[lk]
    return out


def _reach(graph: dict[Cell, list[Cell]], start: Cell) -> int:
    seen, todo = {start}, [start]
    while todo:
        for v in graph.get(todo.pop(), ()):
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return len(seen)
