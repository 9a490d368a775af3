"""Road network: OSM extract or GeoJSON centrelines -> a directed graph in a local metric frame.

Why: the drivers who will meet a fire engine are often not on its route yet. They join it from
side streets, or come the other way. Given the network, the zone can cover the roads *upstream*
of the path ahead: every lane whose traffic reaches the path within a few seconds.

This module is the package's one public face: callers import from ``broker.geo.roads`` only.

Theory of operation
-------------------
* **Load once.** :meth:`RoadNetwork.load` (:mod:`~broker.geo.roads.network`) reads drivable ways
  (:mod:`~broker.geo.roads.osm` for OSM, :mod:`~broker.geo.roads.geojson` for GeoJSON,
  :mod:`~broker.geo.roads.sumo` for SUMO nets; road classes through the one table of
  :mod:`~broker.geo.roads.road_classes`), checks what it got (:mod:`~broker.geo.roads.check`:
  a mostly disconnected network is refused, not silently used), splits
  them at shared vertices (junctions), projects everything to one
  :class:`~broker.geo.projection.LocalFrame` and keeps a :class:`RoadGraph`
  (:mod:`~broker.geo.roads.graph`): *segments* (undirected pieces between junctions, with an
  STRtree over their lines) and *directed edges* (one per allowed direction of a segment: two
  for a two-way road, one for a one-way).
* **Match.** :meth:`RoadNetwork.match` (:mod:`~broker.geo.roads.matching`) samples a path
  (metres, travel order) every few metres, finds the segments within ``tol_m`` whose direction
  agrees with the path (within 35 deg), and names the directed edges the path runs along, the
  edges flowing against it (oncoming carriageway), and the junctions on it with their positions
  along the path.
* **Walk upstream.** (:mod:`~broker.geo.roads.walks`) From each junction on the path a Dijkstra
  runs over *incoming* edges only (traffic flowing toward the junction), by travel time
  (length / speed), until ``seconds``; the last edge is cut partially. Path edges in the travel
  direction are not walked (that traffic is on the corridor already), oncoming ones are. Beyond
  the end of the stretch the oncoming carriageway is walked upstream by the same time. Streets
  that never join the path are never reached, because the walk only follows the graph.
* **Per route, not per fix.** :meth:`RoadNetwork.route_approaches` matches a whole CAD route once
  and memoises one upstream tree per junction; :meth:`RouteApproaches.stretch`
  (:mod:`~broker.geo.roads.approaches`) then unions the trees of the junctions in
  ``[along_a, along_b]`` (milliseconds, no new matching).
* **On scene.** :meth:`RoadNetwork.upstream_of` (:mod:`~broker.geo.roads.scene`) walks upstream
  from a stopped unit's place on its carriageway instead of from a path.

Everything is in metres of ``network.frame`` (x east, y north); inputs on disk are lon/lat.
"""

from broker.geo.roads.approaches import RouteApproaches
from broker.geo.roads.check import NEAR_MISS_M, NearMiss, NetworkCheck, suggested_snap_m
from broker.geo.roads.geojson import read_geojson_ways
from broker.geo.roads.graph import RoadGraph, RoadNetworkError
from broker.geo.roads.matching import PathMatch
from broker.geo.roads.network import RoadNetwork
from broker.geo.roads.osm import (
    DRIVABLE_SPEED_KMH,
    KMH,
    MPH,
    RawWay,
    is_drivable,
    parse_maxspeed,
    parse_oneway,
    read_osm_ways,
    way_from_tags,
)
from broker.geo.roads.road_classes import (
    RoadClasses,
    RoadClassesError,
    load_road_classes,
    parse_road_classes,
)
from broker.geo.roads.sumo import SUMO_SUFFIXES, read_sumo_ways

__all__ = [
    "DRIVABLE_SPEED_KMH",
    "KMH",
    "MPH",
    "NEAR_MISS_M",
    "SUMO_SUFFIXES",
    "NearMiss",
    "NetworkCheck",
    "PathMatch",
    "RawWay",
    "RoadClasses",
    "RoadClassesError",
    "RoadGraph",
    "RoadNetwork",
    "RoadNetworkError",
    "RouteApproaches",
    "is_drivable",
    "load_road_classes",
    "parse_maxspeed",
    "parse_oneway",
    "parse_road_classes",
    "read_geojson_ways",
    "read_osm_ways",
    "read_sumo_ways",
    "suggested_snap_m",
    "way_from_tags",
]
