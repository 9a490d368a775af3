"""Shared fixtures: message builders and a ``drive`` helper that folds engine.step over a trace."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import HealthCheck, settings

from broker import engine
from broker.geo.roads import RoadNetwork
from broker.model import AlertEvent, LatLon, LineStringGeometry, Position, Route, VehicleState
from broker.settings import EngineConfig
from tests.browser.fixtures import browser, chromium, console_page  # noqa: F401  (browser tests)

# Shared 2-core machines: timing-based health checks would flake, so none here.
settings.register_profile(
    "broker", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
# a longer search for a developer's own run, not for make test: HYPOTHESIS_PROFILE=soak
settings.register_profile("soak", parent=settings.get_profile("broker"), max_examples=2_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "broker"))

T0 = datetime(2026, 11, 25, 14, 0, 0, tzinfo=UTC)
# A straight eastbound street at Charlotte's latitude: 0.0001 deg lon is ~9.1 m here.
LAT0, LON0 = 35.2271, -80.8431
M_PER_DEG_LON = 90_960.0  # 111_320 m x cos(35.2271 deg)


M_PER_DEG_LAT = 110_950.0


@cache
def street_grid() -> RoadNetwork:
    """Two-way streets 200 m apart around the Square (+-1.4 km), 13.9 m/s: a city's network
    for property tests, built once."""

    def ll(east_m: float, north_m: float) -> list[float]:
        return [LON0 + east_m / M_PER_DEG_LON, LAT0 + north_m / M_PER_DEG_LAT]

    lines = [[ll(-1_500, y), ll(1_500, y)] for y in range(-1_400, 1_401, 200)]
    lines += [[ll(x, -1_500), ll(x, 1_500)] for x in range(-1_400, 1_401, 200)]
    return RoadNetwork.from_features([
        {"properties": {"name": f"r{i}", "maxspeed_mps": 13.9},
         "geometry": {"type": "LineString", "coordinates": line}}
        for i, line in enumerate(lines)
    ])  # fmt: skip


def at(seconds: float) -> datetime:
    """T0 plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def fix(
    t: float,
    east_m: float = 0.0,
    *,
    north_m: float = 0.0,
    vehicle_id: str = "CFD-E7",
    status: str = "responding",
    lights_sirens: bool = True,
    speed_mps: float = 15.0,
    heading_deg: float | None = 90.0,
    incident_id: str | None = "F1",
    accuracy_m: float = 5.0,
) -> Position:
    """A fix ``east_m`` metres east and ``north_m`` north of the Square, at T0 + t seconds."""
    return Position(
        vehicle_id=vehicle_id,
        ts=at(t),
        lat=LAT0 + north_m / 110_950.0,
        lon=LON0 + east_m / M_PER_DEG_LON,
        status=status,  # type: ignore[arg-type]
        lights_sirens=lights_sirens,
        speed_mps=speed_mps,
        heading_deg=heading_deg,
        incident_id=incident_id,
        unit_type="engine",
        accuracy_m=accuracy_m,
        agency="charlotte-fd",
    )


def east_route(length_m: float = 3_000.0, *, t: float = 0.0, vehicle_id: str = "CFD-E7") -> Route:
    """A CAD route straight east from the Square."""
    n = int(length_m // 100) + 1
    coords = [(LON0 + i * 100.0 / M_PER_DEG_LON, LAT0) for i in range(n)]
    return Route(
        vehicle_id=vehicle_id,
        incident_id="F1",
        ts=at(t),
        destination=LatLon(lat=LAT0, lon=coords[-1][0]),
        route=LineStringGeometry(coordinates=coords),
    )


FROM_FIRST_FIX = EngineConfig(dispatch_cover_m=0.0)  # no alert from a CAD route alone


def drive(
    messages: Iterable[Position | Route],
    cfg: EngineConfig | None = None,
    state: VehicleState | None = None,
    roads: RoadNetwork | None = None,
) -> tuple[VehicleState | None, list[AlertEvent]]:
    """Fold engine.step over messages; the test twin of the replay driver.

    By default without the dispatch zone: these tests start from the unit's first fix, which
    creates the alert (the route before it would create one: tests/unit/test_reckoning.py)."""
    cfg = cfg or FROM_FIRST_FIX
    events: list[AlertEvent] = []
    for msg in messages:
        state, evs = engine.step(state, msg, now=msg.ts, cfg=cfg, roads=roads)
        events += evs
    return state, events


@pytest.fixture
def cfg() -> EngineConfig:
    """Default engine settings."""
    return EngineConfig()
