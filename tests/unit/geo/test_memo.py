"""The memo of derived geometry: bounded in bytes, whatever producers send."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.geo.memo import GeoMemo
from broker.model import LatLon, LineStringGeometry, Route


def _route(i: int, n: int) -> Route:
    coords = [(-80.84 + k * 1e-4, 35.22 + i * 1e-3) for k in range(n)]
    return Route(vehicle_id=f"E{i}", incident_id="F1", ts=datetime(2026, 1, 1, tzinfo=UTC),
                 destination=LatLon(lat=coords[-1][1], lon=coords[-1][0]),
                 route=LineStringGeometry(coordinates=coords))


def test_the_memo_stays_within_its_byte_budget() -> None:
    memo = GeoMemo(max_route_bytes=200_000)
    for i in range(50):
        memo.projected_route(_route(i, 500))  # ~64 kB each in metres
    assert 0 < memo.nbytes <= 200_000
    assert len(memo) < 50  # the oldest went first
    recent = _route(49, 500)
    assert memo.projected_route(recent) is memo.projected_route(recent)


def test_a_route_larger_than_the_budget_is_used_but_not_kept() -> None:
    memo = GeoMemo(max_route_bytes=10_000)
    big = _route(0, 2_000)
    pr = memo.projected_route(big)
    assert round(pr.length_m) > 10_000 and len(memo) == 0
