"""Networks that loaded fine before issue 15 load to the same graph and give the same alerts.

The hashes were computed before the road-network loading work: the graph at cc7cfb5, the alert
bytes at main a8cf484 (issue 16's update rule sends 70 events where cc7cfb5 sent 73, and the alert
id's hash changed; the road readers were not touched there):
``fixtures/roads/charlotte-uptown.geojson`` as a graph fingerprint, and the in-process replay of
``fixtures/incidents/route-downtown`` with that network as the bytes of ``alerts.ndjson`` (what
``broker replay fixtures/incidents/route-downtown --roads fixtures/roads/charlotte-uptown.geojson``
writes), without the dispatch alert (on by default since; it adds one create).
A change to how files are read, classes mapped or line ends snapped must leave both alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import numpy as np

from broker.geo.roads import RoadNetwork
from broker.replay import load_messages, replay_in_process, write_alerts
from broker.settings import EngineConfig

ROOT = Path(__file__).resolve().parents[3]
CHARLOTTE = ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson"
DOWNTOWN = ROOT / "fixtures" / "incidents" / "route-downtown"
CHARLOTTE_GRAPH_SHA256 = "381d2ab80f248dc43b2938f0846c009fd9ce60eacba098830449da7b4eb5a181"
DOWNTOWN_ALERTS_SHA256 = "3e3ba49bbf236c7644aa6df2944d9229413eb87c2db490a02ca039ecc6b24988"
# the zone settings of issue 15 item 3 (fewer bystanders) change what the zones cover, not how
# the network is read: off here, so the bytes stay those of a8cf484
BEFORE_ITEM_3 = {
    "approach_far_side_s": None, "on_scene_turn_offs": None, "road_circle_median_cut": False,
    "stopped_walk_s": 20.0,  # on_scene_branch_s until 2026-12-05
}


def graph_fingerprint(net: RoadNetwork) -> str:
    """SHA-256 over every array and label of the graph, in order."""
    g = net.graph
    digest = hashlib.sha256()
    arrays = (
        g.node_xy, g.seg_len, g.seg_u, g.seg_v, g.seg_speed_mps, g.seg_edge_fwd, g.seg_edge_bwd,
        g.edge_seg, g.edge_rev, g.edge_src, g.edge_dst, g.edge_time_s, *g.seg_xy,
    )  # fmt: skip
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).tobytes())
    digest.update(repr((g.seg_name, g.seg_highway, g.in_edges)).encode())
    return digest.hexdigest()


def test_charlotte_loads_to_the_same_graph() -> None:
    net = RoadNetwork.load(CHARLOTTE)
    assert (net.n_nodes, net.n_edges) == (208, 525)
    assert graph_fingerprint(net) == CHARLOTTE_GRAPH_SHA256


def test_downtown_replay_with_charlotte_roads_gives_the_same_alert_bytes(tmp_path: Path) -> None:
    result = replay_in_process(
        load_messages(DOWNTOWN),
        cfg=EngineConfig(warning_segments=True, dispatch_cover_m=0.0, **BEFORE_ITEM_3),
        roads=RoadNetwork.load(CHARLOTTE),
    )
    out = tmp_path / "alerts.ndjson"
    write_alerts(result.events, out)
    assert len(result.events) == 70
    # issue 15 item 4 added each alert's warning segments, later each event got the version
    # its life began at (``first_version``), and ``street`` (null then) the name of its road
    # (all tested on their own): without the two and with street null, every byte is the same
    without_added = b"".join(
        msgspec.json.encode({k: None if k == "street" else v
                             for k, v in msgspec.json.decode(line).items()
                             if k not in ("segments", "first_version")}) + b"\n"
        for line in out.read_bytes().splitlines()
    )
    assert hashlib.sha256(without_added).hexdigest() == DOWNTOWN_ALERTS_SHA256
    assert all(ev.segments for ev in result.events if ev.action != "cancel")
