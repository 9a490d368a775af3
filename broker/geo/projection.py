"""Local metric frames: lon/lat degrees <-> metres on a plane tangent near the incident.

Buffers are only meaningful in metres (never in degrees, never in Web Mercator, which
stretches by 1/cos(lat), ~1.22 at Charlotte). We use an azimuthal equidistant projection
centred on a fixed grid cell, so every vehicle in the same region shares one frame and zones
from different vehicles can be compared. Distortion stays under 0.01 % within ~50 km of the
centre. Transformers are built once per cell (from an explicit PROJ pipeline: ~0.2 ms; through
``Transformer.from_crs`` it was ~130 ms) and cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

CELL_DEG = 0.5  # frames are centred on a 0.5 degree grid (about 55 km x 45 km at 35 N)


@dataclass(frozen=True, eq=False)
class LocalFrame:
    """An AEQD plane around (lon0, lat0). ``x`` east and ``y`` north, in metres."""

    lon0: float
    lat0: float
    _fwd: Transformer = field(repr=False)
    _inv: Transformer = field(repr=False)

    @property
    def key(self) -> str:
        """A short name of this frame, stable across processes."""
        return f"aeqd:{self.lat0:.2f},{self.lon0:.2f}"

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        """One point, lon/lat degrees -> (x, y) metres."""
        x, y = self._fwd.transform(lon, lat)
        return float(x), float(y)

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        """One point, (x, y) metres -> (lon, lat) degrees."""
        lon, lat = self._inv.transform(x, y)
        return float(lon), float(lat)

    def coords_to_xy(self, lonlat: np.ndarray) -> np.ndarray:
        """An (n, 2) array of [lon, lat] -> an (n, 2) array of [x, y] metres."""
        arr = np.asarray(lonlat, dtype=float)
        x, y = self._fwd.transform(arr[:, 0], arr[:, 1])
        return np.column_stack([x, y])

    def coords_to_lonlat(self, xy: np.ndarray) -> np.ndarray:
        """An (n, 2) array of [x, y] metres -> an (n, 2) array of [lon, lat]."""
        arr = np.asarray(xy, dtype=float)
        lon, lat = self._inv.transform(arr[:, 0], arr[:, 1])
        return np.column_stack([lon, lat])

    def geom_to_xy(self, geom: BaseGeometry) -> BaseGeometry:
        """A lon/lat geometry in this frame's metres (vectorised, no per-point callback)."""
        return shapely.transform(geom, self.coords_to_xy)

    def geom_to_lonlat(self, geom: BaseGeometry) -> BaseGeometry:
        """A metric geometry back to lon/lat degrees."""
        return shapely.transform(geom, self.coords_to_lonlat)


_WGS84_A = 6_378_137.0
_WGS84_E2 = 6.694379990141317e-3


def ground_distance_m(lon_a: float, lat_a: float, lon_b: float, lat_b: float) -> float:
    """Distance in metres between two nearby points (lon/lat degrees), on the WGS84 ellipsoid.

    Equirectangular with the ellipsoid's meridional and prime-vertical radii at the mean
    latitude: pure float arithmetic, no PROJ call. Against the geodesic (``pyproj.Geod``) it is
    within 1e-5 of the distance up to 10 km apart and 70 degrees of latitude (checked in
    tests/unit/geo/test_projection.py); the AEQD frames themselves stretch distances by up to
    1e-5 at 50 km from their centre. For GPS sanity between consecutive fixes, not for zones.

    Examples
    --------
    >>> round(ground_distance_m(-80.8431, 35.2271, -80.8431, 35.2371), 1)
    1109.4
    """
    phi = math.radians((lat_a + lat_b) / 2)
    w = 1.0 - _WGS84_E2 * math.sin(phi) ** 2
    prime_vertical = _WGS84_A / math.sqrt(w)
    meridional = _WGS84_A * (1.0 - _WGS84_E2) / (w * math.sqrt(w))
    dlon = (lon_b - lon_a + 180.0) % 360.0 - 180.0
    dx = math.radians(dlon) * math.cos(phi) * prime_vertical
    dy = math.radians(lat_b - lat_a) * meridional
    return math.hypot(dx, dy)


def _cell_centre(value: float) -> float:
    return (math.floor(value / CELL_DEG) + 0.5) * CELL_DEG


@lru_cache(maxsize=256)
def _frame(lon0: float, lat0: float) -> LocalFrame:
    # The pipelines pyproj picks for EPSG:4326 <-> this AEQD with always_xy (the same ellipsoid:
    # no datum step), written out: bit-identical results, but built in ~0.2 ms instead of
    # ~130 ms each, which ``Transformer.from_crs`` spends searching the PROJ database. That
    # cost landed on the first zone of each cell, i.e. on a worker's start burst.
    aeqd = f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +x_0=0 +y_0=0 +ellps=WGS84"
    fwd = Transformer.from_pipeline(
        f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step {aeqd}"
    )
    inv = Transformer.from_pipeline(
        f"+proj=pipeline +step +inv {aeqd} +step +proj=unitconvert +xy_in=rad +xy_out=deg"
    )
    return LocalFrame(lon0, lat0, fwd, inv)


# A frame's centre stays off the poles (a cell centre at 90.25 N is no latitude at all); the
# codec keeps fixes there out anyway (the default service area stops at 85 degrees).
_MAX_CENTRE_LAT = 90.0 - CELL_DEG / 2


def frame_for(lon: float, lat: float) -> LocalFrame:
    """The shared local frame of the grid cell holding (lon, lat).

    Examples
    --------
    >>> frame_for(-80.84, 35.22).key, frame_for(0.0, 90.0).key
    ('aeqd:35.25,-80.75', 'aeqd:89.75,0.25')
    """
    centre_lat = min(max(_cell_centre(lat), -_MAX_CENTRE_LAT), _MAX_CENTRE_LAT)
    return _frame(_cell_centre(lon), centre_lat)
