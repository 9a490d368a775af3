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


def test_two_routes_under_one_name_that_differ_inside_are_kept_apart() -> None:
    # A CAD correction sent with the same ts, the same vertex count and the same first, middle
    # and last vertex: the key held only those, so the memo gave the first route's projection
    # for the second (the zone kept following a road the unit no longer took), and the engine,
    # seeing the same key, took it for the same route
    def route(coords: list[tuple[float, float]]) -> Route:
        return Route(vehicle_id="E1", incident_id="F1", ts=datetime(2026, 1, 1, tzinfo=UTC),
                     destination=LatLon(lat=coords[-1][1], lon=coords[-1][0]),
                     route=LineStringGeometry(coordinates=coords))

    east_first = route([(-80.84, 35.22), (-80.83, 35.22), (-80.83, 35.23), (-80.82, 35.23),
                        (-80.82, 35.24)])
    north_first = route([(-80.84, 35.22), (-80.84, 35.23), (-80.83, 35.23), (-80.83, 35.24),
                         (-80.82, 35.24)])
    memo = GeoMemo()
    a, b = memo.projected_route(east_first), memo.projected_route(north_first)
    assert a.key != b.key
    assert b.xy.tolist() == GeoMemo().projected_route(north_first).xy.tolist()
    # the same route, decoded again (a new object: a restarted worker), keeps its name
    again = route(list(north_first.route.coordinates))
    assert memo.projected_route(again).key == b.key
