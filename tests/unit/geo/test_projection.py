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
