"""Derived geometry worth keeping between fixes: routes in metres, and walks from a route's end.

A ``GeoMemo`` is an explicit, bounded cache that a driver owns and passes to the engine (one per
driver loop, so two runs in one process never see each other's routes). Everything in it is a
pure function of its key, so purity holds: the same inputs give the same zones with a memo, with
another memo, or with none (``engine.step`` then makes a throwaway one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cachetools import LRUCache
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import frame_for
from broker.geo.route import ProjectedRoute
from broker.model import Route

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

MAX_ROUTES = 4096  # route versions kept (a route is ~10-100 kB in metres with its arrays)


def route_key(route: Route) -> str:
    """A name for one CAD route version: vehicle, incident, publish time, and its shape.

    The shape part (vertex count, first, middle and last vertex) is O(1) to compute, yet keeps
    two different routes published under the same (vehicle, incident, ts) apart.
    """
    c = route.route.coordinates
    shape = f"{len(c)}:{c[0]}:{c[len(c) // 2]}:{c[-1]}"
    return f"{route.vehicle_id}|{route.incident_id}|{route.ts.isoformat()}|{shape}"


class GeoMemo:
    """Bounded memo of projected routes and of the road walks upstream of each route's end.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from broker.model import LatLon, LineStringGeometry
    >>> r = Route(vehicle_id="E1", incident_id="F1", ts=datetime(2026, 1, 1, tzinfo=UTC),
    ...           destination=LatLon(lat=35.0, lon=-80.999),
    ...           route=LineStringGeometry(coordinates=[(-81.0, 35.0), (-80.999, 35.0)]))
    >>> memo = GeoMemo()
    >>> memo.projected_route(r) is memo.projected_route(r), round(memo.projected_route(r).length_m)
    (True, 91)
    """

    def __init__(self, max_routes: int = MAX_ROUTES) -> None:
        self._routes: LRUCache[str, ProjectedRoute] = LRUCache(maxsize=max_routes)
        # (route key, seconds, branch seconds) -> (the network walked, lines in the route frame)
        self._arrivals: LRUCache[tuple[str, float, float], tuple[RoadNetwork, BaseGeometry]]
        self._arrivals = LRUCache(maxsize=max_routes)

    def __len__(self) -> int:
        return len(self._routes)

    def projected_route(self, route: Route) -> ProjectedRoute:
        """The route in local metres, projected once per route version."""
        key = route_key(route)
        hit = self._routes.get(key)
        if hit is None:
            coords = route.route.coordinates
            frame = frame_for(coords[0][0], coords[0][1])
            hit = ProjectedRoute.from_lonlat(key, list(coords), frame)
            self._routes[key] = hit
        return hit

    def arrival_walk(
        self,
        roads: RoadNetwork,
        pr: ProjectedRoute,
        seconds: float,
        branch_seconds: float,
        walk: Callable[[], BaseGeometry],
    ) -> BaseGeometry:
        """``walk()`` for this route's end on ``roads``, computed once (per network object)."""
        key = (pr.key, seconds, branch_seconds)
        hit = self._arrivals.get(key)
        if hit is not None and hit[0] is roads:
            return hit[1]
        lines = walk()
        self._arrivals[key] = (roads, lines)
        return lines
