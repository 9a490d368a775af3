"""Whatever route CAD sends and wherever the fixes fall, the engine never raises and every zone it
emits is a valid polygon within the vertex cap (property tests over odd shapes)."""

from __future__ import annotations

import math

import msgspec
import shapely
from hypothesis import example, given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from broker import codec, engine
from broker.model import Position, Route
from broker.settings import EngineConfig
from tests.conftest import LAT0, LON0, M_PER_DEG_LAT, M_PER_DEG_LON, at, street_grid

CFG = EngineConfig()

# offsets in metres from the Square: a hair apart (duplicate-ish points), a city, a region
offsets = st.one_of(
    st.floats(-0.05, 0.05), st.floats(-3_000.0, 3_000.0), st.floats(-150_000.0, 150_000.0)
)
points = st.tuples(offsets, offsets)


def _route_bytes(pts: list[tuple[float, float]]) -> bytes:
    coords = [[LON0 + e / M_PER_DEG_LON, LAT0 + n / M_PER_DEG_LAT] for e, n in pts]
    return msgspec.json.encode({
        "vehicle_id": "CFD-E7", "incident_id": "F1", "ts": "2026-11-25T14:00:00Z",
        "destination": {"lon": coords[-1][0], "lat": coords[-1][1]},
        "route": {"type": "LineString", "coordinates": coords},
    })  # fmt: skip


def _fix(t: float, east_m: float, north_m: float, speed: float, heading: float | None,
         accuracy: float, status: str) -> Position:  # fmt: skip
    return Position(
        vehicle_id="CFD-E7", ts=at(t), lat=LAT0 + north_m / M_PER_DEG_LAT,
        lon=LON0 + east_m / M_PER_DEG_LON, speed_mps=speed, heading_deg=heading,
        accuracy_m=accuracy, status=status, lights_sirens=True, incident_id="F1",
    )  # fmt: skip


fixes = st.lists(
    st.tuples(
        points,
        st.floats(0.0, 60.0),  # speed m/s
        st.none() | st.floats(0.0, 359.9),  # heading
        st.floats(1.0, 500.0),  # accuracy m
        st.sampled_from(["responding", "responding", "on_scene", "available"]),
    ),
    min_size=1, max_size=6,
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(route=st.lists(points, min_size=2, max_size=8), trace=fixes, with_roads=st.booleans())
# found by this test: two points 1e-9 m apart passed the codec and failed the projection
@example(route=[(0.0, 0.0), (0.0, 1e-9)], trace=[((0.0, 0.0), 0.0, None, 1.0, "responding")],
         with_roads=False)  # fmt: skip
def test_any_route_and_fixes_give_valid_zones_and_never_raise(
    route: list[tuple[float, float]], trace: list, with_roads: bool
) -> None:
    decoded = codec.decode_route(_route_bytes(route), received_at=at(0.0))
    roads = street_grid() if with_roads else None
    messages: list[Position | Route] = [decoded] if isinstance(decoded, Route) else []
    messages += [_fix(1.0 + 3.0 * i, *pt, speed, heading, acc, status)
                 for i, (pt, speed, heading, acc, status) in enumerate(trace)]  # fmt: skip
    state, events = None, []
    for m in messages:
        state, evs = engine.step(state, m, now=m.ts, cfg=CFG, roads=roads)
        events += evs
    if state is not None:  # the ticks after the last fix: dead reckoning, dispatch, stale
        for t in (20.0, 40.0, 80.0):
            state, evs = engine.tick(state, now=at(t), cfg=CFG, roads=roads)
            events += evs
    for e in events:
        zone = shape(e.zone)
        assert zone.is_valid and not zone.is_empty, e
        assert shapely.get_num_coordinates(zone) <= CFG.max_vertices
        assert all(math.isfinite(v) for v in (e.lon, e.lat))
