"""Local metric frames: lon/lat degrees <-> metres on a plane tangent near the incident.

Buffers are only meaningful in metres (never in degrees, never in Web Mercator, which
stretches by 1/cos(lat), ~1.22 at Charlotte). We use an azimuthal equidistant projection
centred on a fixed grid cell, so every vehicle in the same region shares one frame and zones
from different vehicles can be compared. Distortion stays under 0.01 % within ~50 km of the
centre. Transformers are built once per cell (from an explicit PROJ pipeline: ~0.2 ms; through
``Transformer.from_crs`` it was ~130 ms) and cached. Metres back to lon/lat in arrays (every
zone's rings) go through a polynomial fitted to PROJ per frame near its centre, within 0.1 mm
of PROJ and several times cheaper per point (:class:`InverseSeries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry
from threadpoolctl import ThreadpoolController

CELL_DEG = 0.5  # frames are centred on a 0.5 degree grid (about 55 km x 45 km at 35 N)


@dataclass(frozen=True, eq=False)
class LocalFrame:
    """An AEQD plane around (lon0, lat0). ``x`` east and ``y`` north, in metres."""

    lon0: float
    lat0: float
    _fwd: Transformer = field(repr=False)
    _inv: Transformer = field(repr=False)
    # the inverse as a fitted series near the centre (None: PROJ everywhere; see InverseSeries)
    _series: InverseSeries | None = field(default=None, repr=False)

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

        Within :data:`SERIES_REACH_M` of the centre by the frame's fitted series (within
        :data:`SERIES_TOLERANCE_M` of PROJ, several times cheaper per point), elsewhere by
        PROJ; each point's result depends on that point alone (a ring stays closed, a zone
        converted alone or in a batch gets the same bits). Rounded to 6 decimals (0.11 m),
        about one coordinate in 20,000 lands on the neighbouring value PROJ's would not."""
        arr = np.asarray(xy, dtype=float)
        series = self._series
        if series is None:
            return self._proj_to_lonlat(arr)
        near = series.covers(arr)
        if near.all():
            return series.to_lonlat(arr)
        out = self._proj_to_lonlat(arr)
        if near.any():
            out[near] = series.to_lonlat(arr[near])
        return out

    def _proj_to_lonlat(self, arr: np.ndarray) -> np.ndarray:
        lon, lat = self._inv.transform(arr[:, 0], arr[:, 1])
        return np.column_stack([lon, lat])

    def geom_to_xy(self, geom: BaseGeometry) -> BaseGeometry:
        """A lon/lat geometry in this frame's metres (vectorised, no per-point callback)."""
        return shapely.transform(geom, self.coords_to_xy)

    def geom_to_lonlat(self, geom: BaseGeometry) -> BaseGeometry:
        """A metric geometry back to lon/lat degrees."""
        return shapely.transform(geom, self.coords_to_lonlat)


# The fitted inverse: a bivariate polynomial of this degree in (x, y) / reach, fitted by least
# squares to PROJ on a grid over the square of half-side SERIES_REACH_M, kept only if it is
# within SERIES_TOLERANCE_M of PROJ everywhere on a finer grid (to ~65 degrees of latitude;
# nearer the poles the frame stays on PROJ). 0.1 mm is a thousandth of the 6-decimal grid the
# zones are rounded to (0.11 m).
SERIES_DEGREE = 5
SERIES_REACH_M = 60_000.0
SERIES_TOLERANCE_M = 1e-4


@dataclass(frozen=True, eq=False)
class InverseSeries:
    """x, y metres -> lon, lat degrees near a frame's centre, as a polynomial (Horner's rule,
    element by element: no matmul, so a row's result never depends on the other rows)."""

    lon0: float
    lat0: float
    # per output (lon, then lat: degrees from the centre), per power j of v, the coefficients
    # of u^0..u^(SERIES_DEGREE - j); u, v = x, y / SERIES_REACH_M
    coef: tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]

    def covers(self, xy: np.ndarray) -> npt.NDArray[np.bool_]:
        """Which rows of ``xy`` (metres) are in the square the series was fitted on."""
        inside: npt.NDArray[np.bool_] = (np.abs(xy) <= SERIES_REACH_M).all(axis=1)
        return inside

    def to_lonlat(self, xy: np.ndarray) -> np.ndarray:
        """Rows of [x, y] metres (covered) -> rows of [lon, lat] degrees."""
        u = xy[:, 0] / SERIES_REACH_M
        v = xy[:, 1] / SERIES_REACH_M
        out = np.empty((len(xy), 2))
        for k, (centre, by_v) in enumerate(zip((self.lon0, self.lat0), self.coef, strict=True)):
            total = np.zeros(len(xy))
            for by_u in reversed(by_v):  # v's highest power first; contiguous 1-d arrays
                inner = np.full(len(xy), by_u[-1])
                for c in by_u[-2::-1]:
                    inner *= u
                    inner += c
                total *= v
                total += inner
            out[:, k] = total + centre
        return out


# numpy's OpenBLAS starts a thread per core for the fit's LAPACK call, and those threads spin
# waiting for more work after it: on 2 cores one fit cost 15-107 ms of CPU and ~20 ms more
# spinning, against 5 ms on one thread, in a worker whose first zones (the start burst) fit
# their frames. Made on first use: looking the BLAS libraries up is not free.
@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def _monomials(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.column_stack([u**i * v**j for j in range(SERIES_DEGREE + 1)
                            for i in range(SERIES_DEGREE + 1 - j)])


def _fit_series(lon0: float, lat0: float, inv: Transformer) -> InverseSeries | None:
    """The frame's inverse series, or None where it would not be within tolerance."""

    def exact(xy: np.ndarray) -> np.ndarray:
        lon, lat = inv.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    reach = SERIES_REACH_M
    grid = np.linspace(-reach, reach, 33)
    xy = np.column_stack([a.ravel() for a in np.meshgrid(grid, grid)])
    with _blas().limit(limits=1, user_api="blas"):  # one thread: see _blas
        fitted, *_ = np.linalg.lstsq(_monomials(xy[:, 0] / reach, xy[:, 1] / reach),
                                     exact(xy) - [lon0, lat0], rcond=None)
    by_v: list[list[tuple[float, ...]]] = [[], []]
    k = 0
    for j in range(SERIES_DEGREE + 1):
        n = SERIES_DEGREE + 1 - j
        for out in (0, 1):
            by_v[out].append(tuple(fitted[k : k + n, out].tolist()))
        k += n
    series = InverseSeries(lon0, lat0, (tuple(by_v[0]), tuple(by_v[1])))
    # every fitted point, every point between two, and the square's edges, where a least-squares
    # fit errs most (a grid that missed the edges kept a series 0.112 mm off near 66.7 N)
    check = np.linspace(-reach, reach, 65)
    xy = np.column_stack([a.ravel() for a in np.meshgrid(check, check)])
    err = np.abs(series.to_lonlat(xy) - exact(xy))
    if not np.isfinite(err).all():
        return None
    metres = np.hypot(err[:, 0] * math.cos(math.radians(lat0)), err[:, 1]) * 111_320.0
    # a margin for what falls between the checked points
    return series if float(metres.max()) <= 0.8 * SERIES_TOLERANCE_M else None


_WGS84_A = 6_378_137.0
_WGS84_E2 = 6.694379990141317e-3


M_PER_DEG_LAT = 111_320.0  # metres in a degree of latitude (about: 110.6-111.7 km)


def span_degrees(metres: float, south: float, north: float) -> tuple[float, float]:
    """(degrees of longitude, degrees of latitude) that span about ``metres`` anywhere between
    latitudes ``south`` and ``north``: the longitude's taken at the one nearer a pole (and
    never more than 100 x the latitude's, beside a pole). For margins around boxes, not for
    zones.

    >>> [round(d, 4) for d in span_degrees(1000.0, 35.0, 36.0)]
    [0.0111, 0.009]
    """
    dlat = metres / M_PER_DEG_LAT
    return dlat / max(math.cos(math.radians(max(abs(south), abs(north)))), 0.01), dlat


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
    return LocalFrame(lon0, lat0, fwd, inv, _fit_series(lon0, lat0, inv))


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
