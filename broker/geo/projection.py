"""Local metric frames: lon/lat degrees <-> metres on a plane tangent near the incident.

Buffers are only meaningful in metres (never in degrees, never in Web Mercator, which
stretches by 1/cos(lat), ~1.22 at Charlotte). We use an azimuthal equidistant projection
centred on a fixed grid cell, so every vehicle in the same region shares one frame and zones
from different vehicles can be compared. Distortion stays under 0.01 % within ~50 km of the
centre. Transformers are built once per cell and cached: building one costs ~100 ms, reusing
it costs microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

CELL_DEG = 0.5  # frames are centred on a 0.5 degree grid (about 55 km x 45 km at 35 N)


FIT_HALF_M = 100_000.0  # the inverse polynomial covers +/- this many metres around the centre
FIT_DEGREE = 6  # total degree: < 0.02 mm at 60 N over the square, < 0.3 mm at 70 N (PROJ 9)
MAX_INVERSE_ERROR_M = 0.001  # a frame whose fit is worse than this uses PROJ throughout
_FIT_NODES = 41  # per axis, fitting grid; the check grid lies between its nodes


class InversePolynomial:
    """(x, y) metres -> (lon, lat) degrees of one frame as a polynomial of total degree
    ``FIT_DEGREE`` in ``x / FIT_HALF_M`` and ``y / FIT_HALF_M``, least-squares fitted to PROJ.

    ``error_m``: the largest distance between the polynomial and PROJ over a check grid
    offset by half a step from the fitting grid (and finer than it), in metres on the ground.
    """

    def __init__(self, inv: Transformer, lon0: float, lat0: float) -> None:
        self._powers = np.arange(FIT_DEGREE + 1)
        self._origin = np.array([lon0, lat0])
        i, j = np.meshgrid(self._powers, self._powers, indexing="ij")
        used = (i + j <= FIT_DEGREE).ravel()  # total degree: the terms u^i v^j with i + j <= d
        nodes = np.linspace(-FIT_HALF_M, FIT_HALF_M, _FIT_NODES)
        gx, gy = (a.ravel() for a in np.meshgrid(nodes, nodes))
        lon, lat = inv.transform(gx, gy)
        target = np.column_stack([lon, lat]) - self._origin
        fitted = np.linalg.lstsq(self._terms(np.column_stack([gx, gy]))[:, used], target,
                                 rcond=None)[0]
        # kept over the full (d+1)^2 tensor basis, zeros where i + j > d: one product to apply
        self._coef = np.zeros(((FIT_DEGREE + 1) ** 2, 2))
        self._coef[used] = fitted
        step = nodes[1] - nodes[0]
        check = np.linspace(-FIT_HALF_M + step / 4, FIT_HALF_M - step / 4, 2 * _FIT_NODES)
        cx, cy = (a.ravel() for a in np.meshgrid(check, check))
        clon, clat = inv.transform(cx, cy)
        approx = self(np.column_stack([cx, cy]))
        north_m = (approx[:, 1] - clat) * 111_320.0
        east_m = (approx[:, 0] - clon) * 111_320.0 * np.cos(np.radians(clat))
        self.error_m = float(np.hypot(north_m, east_m).max())

    def _terms(self, xy: np.ndarray) -> np.ndarray:
        """u^i v^j for every (i, j) of the (d+1)^2 tensor basis, one row per point."""
        uv = (xy / FIT_HALF_M)[:, :, None] ** self._powers  # (n, 2, d+1)
        return (uv[:, 0, :, None] * uv[:, 1, None, :]).reshape(len(xy), -1)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """An (n, 2) array of [x, y] metres (within the square) -> (n, 2) [lon, lat]."""
        # not a matmul: BLAS may sum rows in different orders by their place in the block, and
        # a ring's first and last vertex (the same point) must map to the same bits
        terms = self._terms(xy)
        lonlat: np.ndarray = (terms[:, :, None] * self._coef).sum(axis=1) + self._origin
        return lonlat


@dataclass(frozen=True, eq=False)
class LocalFrame:
    """An AEQD plane around (lon0, lat0). ``x`` east and ``y`` north, in metres."""

    lon0: float
    lat0: float
    _fwd: Transformer = field(repr=False)
    _inv: Transformer = field(repr=False)
    _poly: InversePolynomial | None = field(default=None, repr=False)

    @property
    def inverse_error_m(self) -> float | None:
        """The measured error of the fast metres -> lon/lat path (None: PROJ is used)."""
        return self._poly.error_m if self._poly is not None else None

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
        """An (n, 2) array of [x, y] metres -> an (n, 2) array of [lon, lat].

        Within +/- ``FIT_HALF_M`` of the centre, the frame's fitted polynomial (error measured
        when the frame was made, at most ``MAX_INVERSE_ERROR_M``); elsewhere PROJ.
        """
        arr = np.asarray(xy, dtype=float)
        if self._poly is not None and len(arr) and float(np.abs(arr).max()) <= FIT_HALF_M:
            return self._poly(arr)
        return self.coords_to_lonlat_proj(arr)

    def coords_to_lonlat_proj(self, xy: np.ndarray) -> np.ndarray:
        """As :meth:`coords_to_lonlat`, always through PROJ (the reference the fit is held to)."""
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
    crs = CRS.from_proj4(
        f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
    )
    # always_xy: input and output are (lon, lat) / (x, y), whatever the CRS axis order says
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    poly = InversePolynomial(inv, lon0, lat0)
    return LocalFrame(lon0, lat0, fwd, inv, poly if poly.error_m <= MAX_INVERSE_ERROR_M else None)


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
