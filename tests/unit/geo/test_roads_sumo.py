"""SUMO ``.net.xml`` read directly: the same junctions as SUMO's, the same streets as the
GeoJSON the simulate scenarios write from the same net."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.geo.projection import frame_for
from broker.geo.roads import RoadClasses, RoadNetwork, RoadNetworkError

sumo = pytest.importorskip("sumo")
sumolib = pytest.importorskip("sumolib")
BIN = Path(sumo.SUMO_HOME) / "bin"
ORIGIN = (-80.8, 35.2)


def run(tool: str, *args: str, cwd: Path) -> None:
    subprocess.run([str(BIN / tool), *args], cwd=cwd, check=True, capture_output=True)


def sumo_junctions(net: Path) -> int:
    """SUMO's own count of junctions that carry at least one passenger-car edge."""
    parsed = sumolib.net.readNet(str(net), withInternal=False)
    return sum(
        1 for node in parsed.getNodes()
        if any(e.allows("passenger") for e in node.getIncoming() + node.getOutgoing())
    )  # fmt: skip


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["grid", "spider", "rand"]),
    size=st.integers(3, 6),
    seed=st.integers(1, 50),
)
def test_a_generated_net_loads_with_sumos_junctions(
    tmp_path: Path, kind: str, size: int, seed: int
) -> None:
    net = tmp_path / f"{kind}-{size}-{seed}.net.xml"
    shape = {
        "grid": ["--grid", "--grid.number", str(size), "--grid.length", "120"],
        "spider": ["--spider", "--spider.arm-number", str(size), "--spider.circle-number", "3"],
        "rand": ["--rand", "--rand.iterations", str(size * 10), "--seed", str(seed)],
    }[kind]
    run("netgenerate", *shape, "--no-turnarounds", "-o", str(net), cwd=tmp_path)
    loaded = RoadNetwork.load(net, origin=ORIGIN, allow_unusable=True)
    parsed = sumolib.net.readNet(str(net), withInternal=False)
    passenger = [e for e in parsed.getEdges() if e.allows("passenger")]
    assert loaded.n_nodes == sumo_junctions(net)
    assert loaded.n_edges == len(passenger)  # one directed edge per SUMO edge
    assert loaded.check.kind == "sumo" and loaded.check.lines_read == len(parsed.getEdges())
    # every edge read is kept or left out for a reason (a two-way line's way back was neither)
    check = loaded.check
    assert check.lines_read == check.lines_kept + sum(check.dropped.values()), check


def plain_net(tmp: Path) -> Path:
    """A net from plain XML in metres around (0, 0): netconvert shifts it by a netOffset."""
    (tmp / "p.nod.xml").write_text(
        '<nodes><node id="w" x="-300" y="0"/><node id="c" x="0" y="0"/>'
        '<node id="e" x="300" y="0"/><node id="n" x="0" y="200"/><node id="s" x="0" y="-200"/>'
        "</nodes>"
    )
    (tmp / "p.edg.xml").write_text(
        "<edges>"
        '<edge id="wc" from="w" to="c"/><edge id="cw" from="c" to="w"/>'
        '<edge id="ce" from="c" to="e"/><edge id="ec" from="e" to="c"/>'
        '<edge id="nc" from="n" to="c"/><edge id="cs" from="c" to="s"/>'
        "</edges>"
    )
    run("netconvert", "--node-files", "p.nod.xml", "--edge-files", "p.edg.xml",
        "-o", "p.net.xml", cwd=tmp)  # fmt: skip
    return tmp / "p.net.xml"


def generated_grid(tmp: Path) -> Path:
    net = tmp / "grid.net.xml"
    run("netgenerate", "--grid", "--grid.number", "4", "--grid.length", "150",
        "--no-turnarounds", "-o", str(net), cwd=tmp)  # fmt: skip
    return net


@pytest.mark.parametrize("make", [generated_grid, plain_net])
def test_the_net_loads_like_the_geojson_simulate_writes_from_it(tmp_path: Path, make) -> None:
    import json

    from broker.simulate.network import NetGeo, roads_geojson

    net = make(tmp_path)
    frame = frame_for(*ORIGIN)
    direct = RoadNetwork.load(net, frame=frame, origin=ORIGIN)
    geojson = tmp_path / "roads.geojson"
    geojson.write_text(json.dumps(roads_geojson(net, NetGeo.from_net(net, list(ORIGIN)))))
    exported = RoadNetwork.load(geojson, frame=frame)
    assert (direct.n_nodes, direct.n_edges) == (exported.n_nodes, exported.n_edges)
    assert direct.check.km_total == pytest.approx(exported.check.km_total, abs=1e-4)
    gap = np.hypot(*(direct.graph.node_xy[:, None, :] - exported.graph.node_xy[None]).T)
    assert gap.min(axis=0).max() < 0.05  # metres: the GeoJSON rounds to 1e-7 degrees


def test_a_georeferenced_net_lands_where_its_nodes_were_given(tmp_path: Path) -> None:
    (tmp_path / "n.nod.xml").write_text(
        '<nodes><node id="a" x="-80.800" y="35.200"/><node id="b" x="-80.795" y="35.200"/>'
        '<node id="c" x="-80.790" y="35.200"/><node id="d" x="-80.795" y="35.205"/></nodes>'
    )
    (tmp_path / "n.edg.xml").write_text(
        '<edges>'
        '<edge id="ab" from="a" to="b" type="highway.primary" speed="13.89"/>'
        '<edge id="ba" from="b" to="a" type="highway.primary" speed="13.89"/>'
        '<edge id="bc" from="b" to="c" type="highway.primary" speed="13.89"/>'
        '<edge id="cb" from="c" to="b" type="highway.primary" speed="13.89"/>'
        '<edge id="db" from="d" to="b" type="Local Road" speed="8.33"/>'
        '<edge id="cd" from="c" to="d" type="railway.tram" speed="10" allow="tram"/>'
        '</edges>'
    )
    run("netconvert", "--node-files", "n.nod.xml", "--edge-files", "n.edg.xml", "--proj.utm",
        "-o", "n.net.xml", cwd=tmp_path)  # fmt: skip
    net = RoadNetwork.load(tmp_path / "n.net.xml")
    report = net.check
    lonlat = net.frame.coords_to_lonlat(net.graph.node_xy)
    given_nodes = np.array([[-80.8, 35.2], [-80.795, 35.2], [-80.79, 35.2], [-80.795, 35.205]])
    nearest = np.abs(lonlat[:, None, :] - given_nodes[None, :, :]).max(axis=2).min(axis=1)
    assert nearest.max() < 1e-6  # degrees: ~10 cm
    assert report.dropped == {"no_passenger_lanes": 1}
    assert set(report.km_by_class) == {"primary", "residential"}
    assert report.mapped_classes == {"Local Road": {"residential": 1}}
    assert report.oneway_share == pytest.approx(
        report.km_by_class["residential"] / report.km_total, abs=1e-6
    )
    assert net.n_edges == 5 and net.graph.seg_speed_mps.min() == pytest.approx(8.33)


def test_a_net_without_geo_reference_needs_an_origin(tmp_path: Path) -> None:
    net = tmp_path / "grid.net.xml"
    run("netgenerate", "--grid", "--grid.number", "3", "-o", str(net), cwd=tmp_path)
    with pytest.raises(RoadNetworkError, match=r"no geo-reference.*--origin"):
        RoadNetwork.load(net)


def test_an_unreadable_net_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.net.xml"
    bad.write_text("<net><edge")
    with pytest.raises(RoadNetworkError, match=r"bad\.net\.xml: not readable as a SUMO network"):
        RoadNetwork.load(bad)
    bad.write_text("<net></net>")  # sumolib's KeyError('version'), said as what is missing
    with pytest.raises(RoadNetworkError, match=r"an element without its 'version' attribute"):
        RoadNetwork.load(bad)


def test_sumo_permissions_decide_and_only_the_users_none_drops_an_edge(tmp_path: Path) -> None:
    (tmp_path / "t.nod.xml").write_text(
        '<nodes><node id="a" x="0" y="0"/><node id="b" x="200" y="0"/>'
        '<node id="c" x="200" y="200"/></nodes>'
    )
    (tmp_path / "t.edg.xml").write_text(
        '<edges><edge id="ab" from="a" to="b" type="highway.primary"/>'
        '<edge id="bc" from="b" to="c" type="highway.track"/></edges>'  # cars allowed in SUMO
    )
    run("netconvert", "--node-files", "t.nod.xml", "--edge-files", "t.edg.xml",
        "-o", "t.net.xml", cwd=tmp_path)  # fmt: skip
    net = tmp_path / "t.net.xml"
    kept = RoadNetwork.load(net, origin=ORIGIN).check
    assert set(kept.km_by_class) == {"primary", "unclassified"}
    assert kept.mapped_classes == {"highway.track": {"unclassified": 1}}
    mapping = RoadClasses(mapping={"highway.track": "none"})
    dropped = RoadNetwork.load(net, origin=ORIGIN, classes=mapping).check
    assert set(dropped.km_by_class) == {"primary"} and dropped.not_for_cars == {"highway.track": 1}


def test_an_origin_for_a_georeferenced_net_is_refused(tmp_path: Path) -> None:
    """Found in review: an origin (--origin, BROKER_ROADS_ORIGIN) given for a SUMO net with
    its own geo-reference was silently ignored, while one for GeoJSON / OSM is refused: the
    user who gave it believes the net is placed where they said."""
    (tmp_path / "n.nod.xml").write_text(
        '<nodes><node id="a" x="-80.800" y="35.200"/><node id="b" x="-80.795" y="35.200"/>'
        '</nodes>'
    )
    (tmp_path / "n.edg.xml").write_text(
        '<edges><edge id="ab" from="a" to="b" type="highway.primary" speed="13.89"/>'
        '<edge id="ba" from="b" to="a" type="highway.primary" speed="13.89"/></edges>'
    )
    run("netconvert", "--node-files", "n.nod.xml", "--edge-files", "n.edg.xml", "--proj.utm",
        "-o", "n.net.xml", cwd=tmp_path)  # fmt: skip
    net = tmp_path / "n.net.xml"
    assert RoadNetwork.load(net, allow_unusable=True).n_nodes == 2
    with pytest.raises(RoadNetworkError, match=r"n\.net\.xml: .*own geo-reference.*origin"):
        RoadNetwork.load(net, origin=(-80.84, 35.22), allow_unusable=True)
