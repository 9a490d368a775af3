"""Lead time: the ``broker evaluate`` figures of every incident fixture, in one table.

Same code path as ``broker evaluate <fixture> --json`` (in-process replay, then
``evaluate_replay``), once without a road network and once with the Charlotte Uptown
centrelines (``--roads fixtures/roads/charlotte-uptown.geojson``), which carry the highway
fixture's route too (E Trade St, its ramp, the I-277 Inner Loop). The design's targets are read
from the figures without roads.

Run alone: ``.venv/bin/python -m bench.leadtime_bench``.
"""

from __future__ import annotations

import json
import time
import tomllib
from typing import Any

from bench.common import FIXTURES, ROOT, log
from broker.evaluate import evaluate_replay
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig

ROADS = ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson"


def _has_routes(name: str) -> bool:
    meta = tomllib.loads((FIXTURES / name / "incident.toml").read_text())
    return bool(meta.get("has_routes", True))


def lead_times(include_fleet: bool = True) -> dict[str, Any]:
    """Figures per fixture, without and with roads. fleet-200 (28,785 points, ~2 min to
    evaluate with roads) only when ``include_fleet``."""
    roads = None
    if ROADS.exists():
        from broker.geo.roads import RoadNetwork

        roads = RoadNetwork.load(ROADS)
    out: dict[str, Any] = {}
    for fixture in sorted(p.name for p in FIXTURES.iterdir() if (p / "positions.ndjson").exists()):
        if fixture == "fleet-200" and not include_fleet:
            continue
        messages = load_messages(FIXTURES / fixture)
        for label, net in (("no_roads", None), ("roads", roads)):
            if label == "roads" and net is None:
                continue
            t = time.perf_counter()
            result = replay_in_process(messages, cfg=EngineConfig(), roads=net)
            figures = evaluate_replay(result).to_dict()
            figures["seconds_to_evaluate"] = round(time.perf_counter() - t, 1)
            figures["has_cad_route"] = _has_routes(fixture)
            out.setdefault(fixture, {})[label] = figures
        log(f"lead time: {fixture}: median {out[fixture]['no_roads']['lead_time_median_s']} s")
    return out


if __name__ == "__main__":
    print(json.dumps(lead_times(), indent=2))
