"""Local frames: the fast paths (fitted inverse, ground distance) against PROJ's own answers."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from broker.geo.projection import (
    FIT_HALF_M,
    MAX_INVERSE_ERROR_M,
    frame_for,
    ground_distance_m,
)

GEOD = Geod(ellps="WGS84")
# frame cells at the latitudes the broker serves (Charlotte, Berlin, Helsinki, the equator, 70 S)
CELLS = [(-80.8431, 35.2271), (13.4, 52.5), (24.9, 60.17), (0.1, 0.1), (-60.0, -70.0)]


def _ground_error_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance on the ground between two (n, 2) lon/lat arrays, in metres."""
    _, _, dist = GEOD.inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    return np.asarray(dist)


def test_fitted_inverse_is_within_its_bound_of_proj_over_the_whole_square() -> None:
    rng = np.random.default_rng(16)
    for lon, lat in CELLS:
        frame = frame_for(lon, lat)
        assert frame.inverse_error_m is not None and frame.inverse_error_m <= MAX_INVERSE_ERROR_M
        xy = rng.uniform(-FIT_HALF_M, FIT_HALF_M, (5_000, 2))
        fast, proj = frame.coords_to_lonlat(xy), frame.coords_to_lonlat_proj(xy)
        assert _ground_error_m(fast, proj).max() <= MAX_INVERSE_ERROR_M


def test_beyond_the_fitted_square_proj_answers() -> None:
    frame = frame_for(-80.8431, 35.2271)
    xy = np.array([[0.0, 0.0], [FIT_HALF_M * 1.5, 10.0]])
    assert np.array_equal(frame.coords_to_lonlat(xy), frame.coords_to_lonlat_proj(xy))


def test_near_a_pole_the_fit_is_not_trusted_and_proj_is_used() -> None:
    frame = frame_for(20.0, 85.0)
    assert frame.inverse_error_m is None
    xy = np.array([[100.0, 200.0], [300.0, -50.0]])
    assert np.array_equal(frame.coords_to_lonlat(xy), frame.coords_to_lonlat_proj(xy))


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
