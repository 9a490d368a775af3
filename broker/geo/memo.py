"""Derived geometry worth keeping between fixes: routes in metres, and walks from a route's end.

A ``GeoMemo`` is an explicit, bounded cache that a driver owns and passes to the engine (one per
driver loop, so two runs in one process never see each other's routes). Everything in it is a
pure function of its key, so purity holds: the same inputs give the same zones with a memo, with
another memo, or with none (``engine.step`` then makes a throwaway one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import shapely
from cachetools import LRUCache
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import frame_for
from broker.geo.route import ProjectedRoute
from broker.model import Route

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

# Memory the memo may hold (least recently used go first). Routes come from producers, so the
# bound is in bytes, not entries: a route in metres is ~64 bytes per vertex with its arrays.
MAX_ROUTE_BYTES = 64 * 2**20
MAX_WALK_BYTES = 32 * 2**20
_OVERHEAD = 512  # bytes counted per entry for the Python objects around the arrays

ArrivalKey = tuple[str, float, float, bool, int | None]


def _route_bytes(pr: ProjectedRoute) -> int:
    return 8 * pr.xy.size * 4 + _OVERHEAD  # xy, cumulative distances, segment vectors


def _route_object_bytes(entry: tuple[Route, ProjectedRoute]) -> int:
    # the Route's coordinates as Python tuples of floats (~104 bytes per vertex)
    return 104 * len(entry[0].route.coordinates) + _OVERHEAD


def _walk_bytes(entry: tuple[RoadNetwork, BaseGeometry]) -> int:
    return 16 * int(shapely.get_num_coordinates(entry[1])) + _OVERHEAD


def route_key(route: Route) -> str:
    """A name for one CAD route version: vehicle, incident, publish time, and its shape.

    The shape part is the vertex count and a digest of every vertex, so two different routes
    published under the same (vehicle, incident, ts) are kept apart: it once held only the
    first, middle and last vertex, and a correction that changed only other vertices got the
    first route's projection (the zone followed a road the unit no longer took). O(n), once
    per Route object (:meth:`GeoMemo.projected_route` looks objects up by identity first);
    the digest is of the float64 bytes, so the name is the same in every process (alert
    states keep it in the changelog).
    """
    c = route.route.coordinates
    digest = hashlib.blake2b(np.asarray(c, dtype=np.float64).tobytes(), digest_size=8)
    shape = f"{len(c)}:{digest.hexdigest()}"
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

    def __init__(
        self, max_route_bytes: int = MAX_ROUTE_BYTES, max_walk_bytes: int = MAX_WALK_BYTES
    ) -> None:
        self._routes: LRUCache[str, ProjectedRoute] = LRUCache(
            maxsize=max_route_bytes, getsizeof=_route_bytes
        )
        # the same Route object comes back with every fix of its unit (states keep it): by
        # identity first, so the key (an f-string of coordinates) is made once per object; the
        # Route is kept beside its entry, so its id cannot be reused while the entry lives
        self._by_object: LRUCache[int, tuple[Route, ProjectedRoute]] = LRUCache(
            maxsize=max_route_bytes, getsizeof=_route_object_bytes
        )
        # (route key, seconds, branch seconds, directed, turn-offs) -> (the network walked, lines
        # in the route frame)
        self._arrivals: LRUCache[ArrivalKey, tuple[RoadNetwork, BaseGeometry]]
        self._arrivals = LRUCache(maxsize=max_walk_bytes, getsizeof=_walk_bytes)

    def __len__(self) -> int:
        return len(self._routes)

    @property
    def nbytes(self) -> int:
        """Memory the memo counts as held (routes and walks)."""
        return int(self._routes.currsize + self._arrivals.currsize)

    def projected_route(self, route: Route) -> ProjectedRoute:
        """The route in local metres, projected once per route version."""
        seen = self._by_object.get(id(route))
        if seen is not None and seen[0] is route:
            return seen[1]
        key = route_key(route)
        hit = self._routes.get(key)
        if hit is None:
            coords = route.route.coordinates
            frame = frame_for(coords[0][0], coords[0][1])
            hit = ProjectedRoute.from_lonlat(key, list(coords), frame)
            if _route_bytes(hit) <= self._routes.maxsize:
                self._routes[key] = hit
        if _route_object_bytes((route, hit)) <= self._by_object.maxsize:
            self._by_object[id(route)] = (route, hit)
        return hit

    def arrival_walk(
        self,
        roads: RoadNetwork,
        pr: ProjectedRoute,
        seconds: float,
        branch_seconds: float,
        walk: Callable[[], BaseGeometry],
        *,
        directed: bool = False,
        turn_offs: int | None = None,
    ) -> BaseGeometry:
        """``walk()`` for this route's end on ``roads``, computed once (per network object);
        ``directed`` keeps the walk's directed lines (warning segments) apart from its zone;
        ``turn_offs`` is the walk's setting of that name (part of the key)."""
        key = (pr.key, seconds, branch_seconds, directed, turn_offs)
        hit = self._arrivals.get(key)
        if hit is not None and hit[0] is roads:
            return hit[1]
        lines = walk()
        if _walk_bytes((roads, lines)) <= self._arrivals.maxsize:
            self._arrivals[key] = (roads, lines)
        return lines
