"""GPS sanity between two fixes (broker/gps_sanity.py): the quick bound never decides
otherwise than the distance."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from broker.gps_sanity import implied_speed, is_jump
from tests.conftest import fix


@given(
    lat=st.floats(-84.0, 84.0), lon=st.floats(-180.0, 180.0),
    dlat=st.floats(-0.05, 0.05), dlon=st.floats(-0.05, 0.05),
    dt=st.floats(0.0, 30.0), acc=st.floats(0.0, 500.0),
)
def test_the_quick_jump_bound_decides_as_the_distance_does(lat, lon, dlat, dlon, dt, acc) -> None:
    a = msgspec.structs.replace(fix(0.0), lat=lat, lon=lon, accuracy_m=acc)
    b = msgspec.structs.replace(a, lat=max(-90.0, min(90.0, lat + dlat)),
                                lon=(lon + dlon + 180.0) % 360.0 - 180.0, accuracy_m=5.0)
    for max_mps in (1.0, 70.0, 500.0):
        expected = implied_speed(a, b, dt) > max_mps
        assert is_jump(a, b, dt, max_mps) == expected
