"""A worker's pull feeds on a real Kafka, with alert events written to ``alerts`` directly:
served on the wall clock (the default), the feeds' table never stepping back to an older
step of an alert (review of 2026-12-06, items 1 and 9; the 503 before the table is back is a
unit test, tests/unit/streams/test_feed_server.py: the window is too short to hit from here),
and an alert whose unit drove out of the partner's coverage kept in its feed, also by the
worker restarted on the table's changelog (review of 2026-12-07, feed coverage).
"""

from __future__ import annotations

import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from broker import codec
from broker.model import AlertEvent
from tests.integration.conftest import Run
from tests.unit.adapters.factory import LAT0, alert, polygon_zone

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "partners.toml"


def feeds_only(tmp: Path) -> Path:
    """The sample partners file with its pull-only partners (no push URL to reach)."""
    head, *blocks = SAMPLE.read_text().split("\n[[partner]]\n")
    kept = [b for b in blocks if "\npush_url" not in b]
    path = tmp / "partners.toml"
    path.write_text("\n[[partner]]\n".join([head, *kept]))
    assert {p["id"] for p in tomllib.loads(path.read_text())["partner"]} == {"waze", "opendata"}
    return path


def features(port: int, token: str) -> dict[str, dict[str, Any]]:
    """The open-data GeoJSON feed's alert features by (pseudonymous) id; {} unless 200."""
    r = httpx.get(f"http://127.0.0.1:{port}/feeds/opendata",
                  headers={"authorization": f"Bearer {token}"}, timeout=5.0)
    if r.status_code != 200:
        return {}
    return {f["id"]: f["properties"] for f in r.json()["features"]
            if f["properties"].get("event") == "emergency_vehicle"}


def test_feeds_run_on_the_wall_clock_and_never_step_back(kafka_run: Run, tmp_path: Path) -> None:
    from adapters.partners_file import load_partners

    partners = feeds_only(tmp_path)
    config = load_partners(partners, env={}, allow_dev_defaults=True)
    token = config.by_id()["opendata"].feed_token.reveal()  # type: ignore[union-attr]
    worker = kafka_run.worker(BROKER_PARTNERS=str(partners),
                              BROKER_ALLOW_DEV_SECRETS="true")
    worker.wait_ready()

    wall = datetime.now(UTC)
    old = wall - timedelta(minutes=10)

    def unit(vid: str, action: str, version: int, *, ttl_s: float, at: datetime,
             lon: float | None = None) -> AlertEvent:
        where: dict[str, Any] = {} if lon is None else {"lon": lon, "zone": polygon_zone(lon, LAT0)}
        return alert(action, version, alert_id=f"{vid}:F1:approaching", vehicle_id=vid,
                     at=at, started_at=old, ttl_s=ttl_s, **where)

    # every event dated 10 min back (as after a restart, or working off a backlog): the clock
    # of the newest alert's ts stood there and served EXPIRED (expired 9 min ago) as live
    expired = unit("EXPIRED", "create", 1, ttl_s=60, at=old)
    hour = unit("HOUR", "create", 1, ttl_s=3600, at=old)  # live by the wall clock for 50 min
    # an update, then its earlier create read again (a restart re-reads uncommitted events)
    ahead, behind = (unit("BACK", "update", 2, ttl_s=3600, at=old + timedelta(seconds=10)),
                     unit("BACK", "create", 1, ttl_s=3600, at=old))
    # created in the open-data feed's area, then updated at lon -80.60, east of it: the feed
    # showed the create and then nothing (the update's zone alone was tested)
    left = (unit("LEFT", "create", 1, ttl_s=3600, at=old),
            unit("LEFT", "update", 2, ttl_s=3600, at=old + timedelta(seconds=10), lon=-80.60))
    producer = KafkaProducer(bootstrap_servers=kafka_run.bootstrap)
    for ev in (expired, hour, ahead, behind, *left):
        producer.send(kafka_run.topic("alerts"), key=ev.alert_id.encode(), value=codec.encode(ev))
    producer.flush()
    producer.close()

    def served(until: int) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + 60
        seen: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline and len(seen) < until:
            seen = features(worker.port, token)
            time.sleep(0.25)
        return seen

    seen = served(3)
    assert len(seen) == 3, (seen, worker.log_tail(30))  # HOUR, BACK, LEFT; EXPIRED is not live
    for _ in range(8):  # HOUR's create, BACK's and LEFT's updates: the re-read create never
        now = features(worker.port, token)  # comes back, LEFT's update stays though east
        assert sorted((p["version"], p["status"]) for p in now.values()) == \
            [(1, "active"), (2, "active"), (2, "active")], now
        time.sleep(0.25)

    # restarted: the table comes back from its changelog, LEFT's reach with it
    worker.stop()
    worker.start()
    worker.wait_ready()
    assert served(3) == now, worker.log_tail(30)
