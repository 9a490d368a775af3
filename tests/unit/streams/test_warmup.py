"""The worker's warm-up: a made-up unit's whole lifecycle and its partners' payloads."""

from __future__ import annotations

from pathlib import Path

from broker.geo.roads import RoadNetwork
from broker.settings import EngineConfig
from broker.streams.warmup import WARM_UNIT, warm_engine, warm_fan_out, warm_up
from tests.unit.adapters.factory import CONFIG

ROOT = Path(__file__).resolve().parents[3]

def test_the_made_up_unit_creates_updates_and_cancels_its_alert() -> None:
    events = warm_engine(EngineConfig(), -80.843, 35.227)
    actions = [e.action for e in events]
    assert actions[0] == "create" and actions[-1] == "cancel" and "update" in actions
    assert {e.vehicle_id for e in events} == {WARM_UNIT}
    assert all(e.zone["type"] in ("Polygon", "MultiPolygon") for e in events[:-1])


def test_every_push_partner_covering_the_unit_gets_its_payloads_made() -> None:
    partners = CONFIG
    events = warm_engine(EngineConfig(), -80.843, 35.227)
    made = warm_fan_out(partners, events)
    pushes = [p for p in partners.partners if p.push_url is not None]
    # each push partner gets at least its create and its cancel (updates may be throttled)
    assert made >= 2 * len(pushes) > 0


def test_warm_up_runs_with_roads_and_without_partners() -> None:
    partners = CONFIG
    roads = RoadNetwork.load(ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson")
    done = warm_up(EngineConfig(), partners, roads)
    assert done["events"] >= 3 and done["payloads"] >= 2 and done["seconds"] > 0
    # a partner-less worker still warms the engine, at the service area's centre
    assert warm_up(EngineConfig(service_area=(-81.0, 35.0, -80.5, 35.5)))["payloads"] == 0
