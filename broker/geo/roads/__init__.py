"""Road network: drivable ways -> a directed graph; the roads whose traffic meets a unit.

The one public face of the package: callers import from here, never from its modules.
"""

from broker.geo.roads.network import (
    PathMatch,
    RoadNetwork,
    RoadNetworkError,
    RouteApproaches,
    read_geojson_ways,
)
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

__all__ = [
    "DRIVABLE_SPEED_KMH",
    "KMH",
    "MPH",
    "PathMatch",
    "RawWay",
    "RoadNetwork",
    "RoadNetworkError",
    "RouteApproaches",
    "is_drivable",
    "parse_maxspeed",
    "parse_oneway",
    "read_geojson_ways",
    "read_osm_ways",
    "way_from_tags",
]
