"""Local frames: the ground distance (no PROJ call) against PROJ's geodesic and frames."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from broker.geo.projection import frame_for, ground_distance_m

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
