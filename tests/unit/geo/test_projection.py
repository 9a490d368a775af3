"""Local frames: the ground distance (no PROJ call) against PROJ's geodesic and frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from broker.geo.projection import (
    SERIES_REACH_M,
    SERIES_TOLERANCE_M,
    frame_for,
    ground_distance_m,
)

GEOD = Geod(ellps="WGS84")


@settings(max_examples=300)
@given(
    lon=st.floats(-179.9, 179.9),
    lat=st.floats(-70.0, 70.0),
    azimuth=st.floats(0.0, 360.0),
    dist=st.floats(0.0, 10_000.0),
)
def test_ground_distance_is_within_1e5_of_the_geodesic(lon, lat, azimuth, dist) -> None:
    lon_b, lat_b, _ = GEOD.fwd(lon, lat, azimuth, dist)
    got = ground_distance_m(lon, lat, lon_b, lat_b)
    assert math.isclose(got, dist, rel_tol=1e-5, abs_tol=1e-6)


def test_ground_distance_agrees_with_the_frame_it_replaces() -> None:
    frame = frame_for(-80.8431, 35.2271)
    rng = np.random.default_rng(7)
    for _ in range(200):
        lon, lat = -80.8431 + rng.uniform(-0.2, 0.2), 35.2271 + rng.uniform(-0.2, 0.2)
        lon_b, lat_b = lon + rng.uniform(-0.01, 0.01), lat + rng.uniform(-0.01, 0.01)
        ax, ay = frame.to_xy(lon, lat)
        bx, by = frame.to_xy(lon_b, lat_b)
        assert math.isclose(ground_distance_m(lon, lat, lon_b, lat_b),
                            math.hypot(bx - ax, by - ay), rel_tol=2e-5)


@settings(max_examples=60, deadline=None)  # a from_crs reference costs ~100 ms to build
@given(lon=st.floats(-179.9, 179.9), lat=st.floats(-85.0, 85.0),
       dx=st.floats(-20_000.0, 20_000.0), dy=st.floats(-20_000.0, 20_000.0))
def test_a_frame_transforms_as_pyproj_from_crs_does(lon, lat, dx, dy) -> None:
    # the frame's explicit pipelines must stay the ones Transformer.from_crs picks (they are
    # written out only because from_crs takes ~130 ms to search the PROJ database)
    from pyproj import CRS, Transformer

    frame = frame_for(lon, lat)
    crs = CRS.from_proj4(f"+proj=aeqd +lat_0={frame.lat0} +lon_0={frame.lon0} +x_0=0 +y_0=0 "
                         "+ellps=WGS84 +units=m +no_defs")
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x, y = frame.to_xy(lon, lat)
    assert (x, y) == tuple(float(v) for v in fwd.transform(lon, lat))
    back = frame.to_lonlat(x + dx, y + dy)
    assert back == tuple(float(v) for v in inv.transform(x + dx, y + dy))


def _metres_apart(a: np.ndarray, b: np.ndarray, lat0: float) -> np.ndarray:
    d = np.abs(a - b)
    return np.hypot(d[:, 0] * math.cos(math.radians(lat0)), d[:, 1]) * 111_320.0


@settings(max_examples=80, deadline=None)
@given(lon=st.floats(-179.9, 179.9), lat=st.floats(-85.0, 85.0),
       seed=st.integers(0, 2**32 - 1))
def test_the_fitted_inverse_is_within_its_tolerance_of_proj(lon, lat, seed) -> None:
    # metres -> lon/lat by the frame's series near its centre (PROJ elsewhere): within 0.1 mm
    # of PROJ everywhere, a thousandth of the zones' 6-decimal grid (0.11 m)
    frame = frame_for(lon, lat)
    rng = np.random.default_rng(seed)
    reach = SERIES_REACH_M * 1.3  # some points beyond the series' square: PROJ's own
    xy = np.concatenate([rng.uniform(-reach, reach, (300, 2)),
                         [[SERIES_REACH_M, -SERIES_REACH_M], [0.0, 0.0]]])
    got = frame.coords_to_lonlat(xy)
    lon_p, lat_p = frame._inv.transform(xy[:, 0], xy[:, 1])
    exact = np.column_stack([lon_p, lat_p])
    assert _metres_apart(got, exact, frame.lat0).max() <= SERIES_TOLERANCE_M
    outside = np.abs(xy).max(axis=1) > SERIES_REACH_M
    assert (got[outside] == exact[outside]).all()


@pytest.mark.parametrize("lat", [66.25, 66.6, 66.75, -66.6])
def test_the_series_holds_on_its_squares_edges(lat) -> None:
    # a least-squares fit errs most on the edges of the square it was fitted on; the frames
    # of this band kept a series that was 0.112 mm off there
    frame = frame_for(12.3, lat)
    edge = np.linspace(-SERIES_REACH_M, SERIES_REACH_M, 481)
    xy = np.concatenate([np.column_stack([edge, np.full_like(edge, y)])
                         for y in (-SERIES_REACH_M, SERIES_REACH_M)]
                        + [np.column_stack([np.full_like(edge, x), edge])
                           for x in (-SERIES_REACH_M, SERIES_REACH_M)])
    lon, lat_p = frame._inv.transform(xy[:, 0], xy[:, 1])
    exact = np.column_stack([lon, lat_p])
    assert _metres_apart(frame.coords_to_lonlat(xy), exact, frame.lat0).max() <= SERIES_TOLERANCE_M


def test_the_series_is_kept_where_it_fits_and_dropped_near_the_poles() -> None:
    assert frame_for(-80.84, 35.22)._series is not None
    assert frame_for(13.4, 52.5)._series is not None
    assert frame_for(25.0, 78.0)._series is None  # Svalbard: PROJ everywhere
    xy = np.array([[1000.0, -2000.0], [0.0, 0.0]])
    polar = frame_for(25.0, 78.0)
    lon, lat = polar._inv.transform(xy[:, 0], xy[:, 1])
    assert (polar.coords_to_lonlat(xy) == np.column_stack([lon, lat])).all()


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40))
def test_a_point_converts_the_same_alone_and_in_any_batch(seed, n) -> None:
    # rings stay closed, and a zone built alone or in a ZoneBatch gets the same bits
    frame = frame_for(-80.84, 35.22)
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-1.2 * SERIES_REACH_M, 1.2 * SERIES_REACH_M, (n, 2))
    batch = frame.coords_to_lonlat(np.concatenate([xy, xy[::-1]]))
    for i in range(n):
        alone = frame.coords_to_lonlat(xy[i : i + 1])
        assert (alone[0] == batch[i]).all() and (batch[i] == batch[2 * n - 1 - i]).all()


def test_the_series_is_fitted_with_blas_on_one_thread(monkeypatch) -> None:
    # OpenBLAS's threads, left spinning after the fit, cost a worker's first zones ~20x the fit
    from threadpoolctl import threadpool_info, threadpool_limits

    from broker.geo import projection

    seen: list[int] = []
    lstsq = np.linalg.lstsq

    def watched(*args, **kwargs):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return lstsq(*args, **kwargs)

    monkeypatch.setattr(np.linalg, "lstsq", watched)
    # two threads around it, so the limit shows on a one-core machine or OPENBLAS_NUM_THREADS=1
    with threadpool_limits(limits=2, user_api="blas"):
        assert projection._fit_series(-80.84, 35.22, frame_for(-80.84, 35.22)._inv) is not None
    assert seen and set(seen) == {1}
