"""The live console on real workers and a real Kafka, in a real browser.

A worker with the console (``BROKER_CONSOLE_TOKEN``) and a road network; the first part of
``route-downtown`` is produced at max speed; the open page shows the unit and zone the
in-process replay ends that part with, then the alert's stale cancel takes it off the map. A
second worker in the same group shows the same alerts (the console reads Kafka, not its
worker's partitions). The first worker is killed (-9) and started again on the same port: the
open page, never reloaded, reconnects on its own and shows the alert the next fixes create.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from broker.geo.roads import RoadNetwork
from broker.replay import replay_in_process
from broker.settings import EngineConfig
from broker.streams.produce import produce_replay
from tests.browser.fixtures import TOKEN, Page, sign_in, wait_for
from tests.browser.test_console_player import ROADS, map_units, map_zones, same_zone
from tests.integration.conftest import WORKER_CFG, Run, fixture_messages

pytestmark = pytest.mark.integration
STALE_S = 15


def console_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/console/"


def snapshot_via_http(port: int) -> dict[str, Any]:
    """Sign in without a browser and read the console's snapshot."""
    with httpx.Client(base_url=console_url(port), timeout=10) as client:
        assert client.get("api/snapshot").status_code == 401
        assert client.post("api/session", json={"token": TOKEN}).status_code == 200
        r = client.get("api/snapshot")
        assert r.status_code == 200
        return r.json()  # type: ignore[no-any-return]


def test_live_console_follows_kafka_and_survives_a_worker_restart(
    kafka_run: Run, console_page: Page
) -> None:
    env = {"BROKER_CONSOLE_TOKEN": TOKEN, "BROKER_ROADS": str(ROADS),
           "BROKER_ENGINE_STALE_TIMEOUT_S": str(STALE_S)}
    w1 = kafka_run.worker(**env)
    w2 = kafka_run.worker(**env)
    w1.wait_ready(with_partitions=False)
    w2.wait_ready(with_partitions=False)
    page = console_page.page
    sign_in(page, console_url(w1.port))
    assert page.evaluate("window.evConsole.mode") == "live"

    messages = fixture_messages("route-downtown")
    first, rest = messages[:200], messages[200:240]
    cfg = EngineConfig(stale_timeout_s=STALE_S, dispatch_cover_m=WORKER_CFG.dispatch_cover_m)
    network = RoadNetwork.load(ROADS)
    expected = replay_in_process(first, cfg=cfg, roads=network, drain=False).events[-1]
    assert expected.action != "cancel"
    produce_replay(first, kafka_run.bootstrap, speed=None, max_speed=True,
                   topic_prefix=kafka_run.prefix)

    # the unit and zone where the in-process replay has them
    wait_for(page, f"""window.evConsole.layers.zones.toGeoJSON().features.some(
        f => f.properties.version === {expected.version})""", timeout_s=120,
             what=f"zone v{expected.version} on the map")
    zones = map_zones(page)
    assert len(zones) == 1 and same_zone(zones[0]["geometry"], expected.zone)
    units = map_units(page)
    assert len(units) == 1 and units[0]["id"] == expected.vehicle_id
    assert abs(units[0]["lon"] - expected.lon) < 1e-6
    assert abs(units[0]["lat"] - expected.lat) < 1e-6
    assert page.evaluate("window.evConsole.layers.routes.getLayers().length") == 1
    assert console_page.errors == []

    # the second worker's console shows the same alert, whichever worker owns the vehicle
    other = snapshot_via_http(w2.port)
    assert [a["alert"]["alert_id"] for a in other["alerts"]] == [expected.alert_id]

    # the stale cancel takes it off the map
    wait_for(page, "window.evConsole.model.alerts.size === 0", timeout_s=120,
             what="the stale cancel")
    assert map_zones(page) == [] and map_units(page) == []

    # kill -9 and restart on the same port: the open page reconnects by itself
    connections = page.evaluate("window.evConsole.connections")
    snapshots = page.evaluate("window.evConsole.snapshots")
    w1.kill9()
    wait_for(page, "document.getElementById('conn').textContent.startsWith('reconnecting')",
             timeout_s=60, what="the page noticing the worker is gone")
    w1.start(keep_port=True)
    w1.wait_ready(with_partitions=False)
    wait_for(page, f"window.evConsole.connections > {connections} && "
                   f"window.evConsole.snapshots > {snapshots}", timeout_s=120,
             what="the page reconnecting to the restarted worker")
    produce_replay(rest, kafka_run.bootstrap, speed=None, max_speed=True,
                   topic_prefix=kafka_run.prefix)
    wait_for(page, f"""window.evConsole.layers.zones.toGeoJSON().features.some(
        f => f.properties.version > {expected.version})""", timeout_s=120,
             what="the re-created alert after the restart")
    assert page.inner_text("#conn") == "live"
    assert page.evaluate("window.evConsole.layers.units.getLayers().length") == 1
