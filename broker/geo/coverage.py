"""Partner coverage areas in an STRtree: which partners does a zone touch?

Areas and zones are lon/lat degrees (x = lon, y = lat). Intersection is a topological test,
so degrees are fine here (no distances or buffers). The tree is built once per partner set;
a query costs a bounding-box lookup plus exact tests on the few candidates, so thousands of
partner areas stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry


class CoverageIndex:
    """Partner id -> coverage area, queried by zone.

    Examples
    --------
    >>> idx = CoverageIndex({"a": shapely.box(0, 0, 1, 1), "b": shapely.box(5, 5, 6, 6)})
    >>> idx.partners_touching({"type": "Polygon",
    ...     "coordinates": [[[0.5, 0.5], [2, 0.5], [2, 2], [0.5, 2], [0.5, 0.5]]]})
    ['a']
    """

    def __init__(self, areas: Mapping[str, BaseGeometry]) -> None:
        self._ids = np.array(list(areas), dtype=object)
        geoms = list(areas.values())
        shapely.prepare(geoms)
        self._tree = shapely.STRtree(geoms)

    def __len__(self) -> int:
        return len(self._ids)

    def partners_touching(self, zone_geojson: Mapping[str, Any]) -> list[str]:
        """Ids of partners whose area intersects the zone (GeoJSON, lon/lat), in config order."""
        if len(self._ids) == 0:
            return []
        zone = shape(dict(zone_geojson))
        hits = self._tree.query(zone, predicate="intersects")
        return [str(pid) for pid in self._ids[np.sort(hits)]]


def partners_touching(index: CoverageIndex, zone_geojson: Mapping[str, Any]) -> list[str]:
    """Function form of ``CoverageIndex.partners_touching``."""
    return index.partners_touching(zone_geojson)
