"""The hand-laid layouts (divided arterial, interchange, old town): deterministic plain XML whose
roads cross without meeting where they should (pure: no SUMO)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import shapely

from broker.simulate.synthetic import LAYOUTS, divided_arterial, interchange, old_town, write_layout


def _lines(plain) -> dict[str, shapely.LineString]:
    out = {}
    for e in plain.edges:
        if "shape" in e:
            pts = [tuple(float(v) for v in p.split(",")[:2]) for p in e["shape"].split()]
        else:
            pts = [plain.nodes[e["from"]][:2], plain.nodes[e["to"]][:2]]
        out[e["id"]] = shapely.LineString(pts)
    return out


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_layout_is_the_same_files_every_time(name: str, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        write_layout(name, d, seed=7)
    for f in ("layout.nod.xml", "layout.edg.xml"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
        ET.parse(a / f)  # well-formed XML
    nodes = {n.get("id") for n in ET.parse(a / "layout.nod.xml").getroot()}
    for e in ET.parse(a / "layout.edg.xml").getroot():
        assert e.get("from") in nodes and e.get("to") in nodes


def test_the_old_town_differs_by_seed_and_has_short_lanes_and_grade_separation() -> None:
    town = old_town(7)
    assert [e["id"] for e in old_town(8).edges] != [e["id"] for e in town.edges]
    lines = _lines(town)
    lanes = [ln.length for i, ln in lines.items() if i.startswith("o")]
    assert sorted(lanes)[len(lanes) // 2] < 60.0  # the median lane is one short block
    # a tunnel runs right below the main street: stacked, sharing no node with it
    tunnel = lines["tunnel_ew"]
    stacked = [i for i, ln in lines.items() if i.startswith("o") and tunnel.buffer(0.5).covers(ln)]
    assert len(stacked) >= 10
    # the other tunnel and the viaduct cross other roads with no node in common
    for eid in ("tunnel_ns", "viaduct"):
        e = next(e for e in town.edges if e["id"] == eid)
        crossed = [
            o for o in town.edges
            if {o["from"], o["to"]}.isdisjoint({e["from"], e["to"]})
            and lines[o["id"]].crosses(lines[eid])
        ]  # fmt: skip
        assert len(crossed) >= 5, eid
    zs = [z for _, _, z, _ in town.nodes.values()]
    assert max(zs) - min(zs) > 30.0  # a hill


def test_every_old_town_node_can_reach_every_other() -> None:
    town = old_town(7)
    succ: dict[str, set[str]] = {}
    pred: dict[str, set[str]] = {}
    for e in town.edges:
        succ.setdefault(e["from"], set()).add(e["to"])
        pred.setdefault(e["to"], set()).add(e["from"])
    for graph in (succ, pred):
        start = next(iter(graph))
        seen, todo = {start}, [start]
        while todo:
            for v in graph.get(todo.pop(), ()):
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        assert seen == set(town.nodes)


def test_the_arterial_is_divided_and_the_interchange_bridges() -> None:
    art = divided_arterial()
    three = [e for e in art.edges if e["numLanes"] == "3"]
    ys = {round(art.nodes[e["from"]][1]) for e in three}
    assert ys == {-12, 12}  # two one-way carriageways 24 m apart
    assert not any(e["id"].endswith("-r") for e in three)
    ic = interchange()
    lines = _lines(ic)
    loops = [i for i in lines if i.startswith("loop")]
    ramps = [i for i in lines if i.startswith("ramp")]
    assert len(loops) == 4 and len(ramps) == 4
    # the north-south carriageways cross the east-west ones with no junction between them
    ns = [i for i in lines if i.startswith(("c0_-50", "c2_-50"))]
    ew = [i for i in lines if i.startswith(("c1_-50", "c3_-50"))]
    assert all(lines[a].crosses(lines[b]) for a in ns for b in ew)
    assert any(",7.00" in e.get("shape", "") for e in ic.edges)  # a bridge deck above the rest


def test_an_unknown_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown layout"):
        write_layout("spaghetti-junction", tmp_path)
