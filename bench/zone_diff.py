"""How far the zones of this tree are from another revision's, event by event, in metres.

    .venv/bin/python -m bench.zone_diff [--base REV] [--set FIELD=VALUE ...] [--json FILE]

Replays every incident in ``fixtures/incidents`` without and with the Charlotte Uptown road
network, in this tree and in ``REV`` (a git worktree under ``.cache/compare/``, as
``scripts/compare-outputs`` makes it), each in its own interpreter with its own ``PYTHONPATH``.
Events are paired by ``(vehicle, incident, kind, version, action)``; for each pair the
symmetric Hausdorff distance between the two zones is measured in a local metric frame
(segments densified to a tenth, so it is not only vertex to vertex). Prints max, p99 and p50
per run and over all of them; events present in one tree only are counted (expected when an
update rule changes which updates are sent: ``--set`` passes engine settings to *this* tree
only, e.g. to switch a rule off and measure the zones alone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from bench.common import FIXTURES, ROOT, log
from bench.fleets import BASE, base_tree
from broker.geo.projection import frame_for

ROADS = ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson"

# Runs inside either tree: only what both revisions share.
_REPLAY = """
import json, sys
from pathlib import Path
from broker import codec
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig
incident, roads, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
network = None
if roads:
    from broker.geo.roads import RoadNetwork
    network = RoadNetwork.load(Path(roads))
result = replay_in_process(load_messages(Path(incident)), cfg=EngineConfig(**overrides),
                           roads=network)
with open(out, "wb") as fh:
    for ev in result.events:
        fh.write(codec.encode(ev) + b"\\n")
"""


def replay(tree: Path, incident: Path, roads: Path | None, out: Path,
           overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Alert events of ``incident`` replayed by ``tree``, as dicts."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    subprocess.run(
        [sys.executable, "-c", _REPLAY, str(incident), str(roads or ""), str(out),
         json.dumps(overrides)], cwd=tree, env=env, check=True,
    )
    return [json.loads(line) for line in out.read_bytes().splitlines()]


def hausdorff_m(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Symmetric Hausdorff distance in metres between two GeoJSON zones (lon/lat)."""
    ga, gb = shape(a), shape(b)
    c = ga.centroid
    frame = frame_for(c.x, c.y)
    ma, mb = frame.geom_to_xy(ga), frame.geom_to_xy(gb)
    return float(shapely.hausdorff_distance(ma, mb, densify=0.1))


def compare(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> dict[str, Any]:
    """Per paired event, the zone distance; and what is in one run only."""
    # by what the alert is, not by its id (the id's hash changed on main since 777fae7)
    key = lambda ev: (ev["vehicle_id"], ev["incident_id"], ev["kind"], ev["version"],  # noqa: E731
                      ev["action"])
    b = {key(ev): ev for ev in base}
    h = {key(ev): ev for ev in head}
    both = [k for k in b if k in h]
    dists = [hausdorff_m(b[k]["zone"], h[k]["zone"]) for k in both]
    identical = sum(1 for k in both if b[k]["zone"] == h[k]["zone"])
    return {
        "paired": len(both), "identical_zones": identical,
        "base_only": len(b) - len(both), "head_only": len(h) - len(both),
        "distances_m": dists,
    }


def _summary(d: list[float]) -> dict[str, float]:
    if not d:
        return {}
    arr = np.asarray(d)
    return {"max_m": round(float(arr.max()), 3), "p99_m": round(float(np.percentile(arr, 99)), 3),
            "p50_m": round(float(np.percentile(arr, 50)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--only", default="", help="comma list of incidents")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    overrides = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    base = base_tree(args.base)
    names = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    rows: dict[str, Any] = {}
    everything: list[float] = []
    with tempfile.TemporaryDirectory(prefix="zone-diff-") as tmp:
        for name in names:
            for roads in (None, ROADS):
                label = name + (" --roads" if roads else "")
                evs_b = replay(base, FIXTURES / name, roads, Path(tmp) / "b.ndjson", {})
                evs_h = replay(ROOT, FIXTURES / name, roads, Path(tmp) / "h.ndjson", overrides)
                c = compare(evs_b, evs_h)
                everything += c["distances_m"]
                rows[label] = {k: v for k, v in c.items() if k != "distances_m"}
                rows[label].update(_summary(c["distances_m"]))
                log(f"{label}: {rows[label]}")
    out = {"base": args.base, "overrides": overrides, "runs": rows,
           "all": {**_summary(everything), "paired": len(everything)}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
