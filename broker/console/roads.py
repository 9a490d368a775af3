"""The road network as the console draws it: GeoJSON centrelines in lon/lat (RFC 7946)."""

from __future__ import annotations

import msgspec
import numpy as np
import shapely

from broker.geo.roads import RoadNetwork

DECIMALS = 6


def roads_geojson(network: RoadNetwork) -> bytes:
    """Every segment of ``network`` as one GeoJSON FeatureCollection of LineStrings."""
    features = []
    for line in shapely.get_parts(network.geometry()):
        xy = np.asarray(line.coords)
        lonlat = np.round(network.frame.coords_to_lonlat(xy), DECIMALS)
        features.append({"type": "Feature", "properties": {},
                         "geometry": {"type": "LineString", "coordinates": lonlat.tolist()}})
    return msgspec.json.encode({"type": "FeatureCollection", "features": features})
