"""What an alert state keeps of its zone: the rings as one encoded value, the same bytes on the
wire, the same GeoJSON back for the cancel (also one a batch has not built yet)."""

from __future__ import annotations

import struct

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from broker import codec
from broker.drive import POSITIONS, ROUTES, Driver
from broker.geo.kept_zone import KeptZone, as_geojson, kept
from broker.settings import EngineConfig
from tests.conftest import FROM_FIRST_FIX, drive, east_route, fix

lons = st.floats(-180.0, 180.0, allow_nan=False)  # any float, not only 6-decimal ones
lats = st.floats(-90.0, 90.0, allow_nan=False)
rings = st.lists(st.tuples(lons, lats), min_size=4, max_size=40)
polygons = st.lists(rings, min_size=1, max_size=3)
zones = st.one_of(
    polygons.map(lambda p: {"type": "Polygon", "coordinates": p}),
    st.lists(polygons, min_size=1, max_size=3).map(
        lambda ps: {"type": "MultiPolygon", "coordinates": ps}
    ),
)


def _bits(zone: dict) -> list[bytes]:
    """Every coordinate of a zone as its 8 bytes (so -0.0 and 0.0 differ)."""
    coords = zone["coordinates"]
    polys = [coords] if zone["type"] == "Polygon" else coords
    return [struct.pack("<dd", *p) for rings_ in polys for ring in rings_ for p in ring]


@given(zone=zones)
def test_a_kept_zone_is_the_same_bytes_and_gives_the_same_zone_back(zone: dict) -> None:
    k = kept(zone)
    assert isinstance(k["coordinates"], msgspec.Raw)  # one object for all the rings
    assert msgspec.json.encode(k) == msgspec.json.encode(zone)
    back = as_geojson(k)
    assert back == zone and list(back) == list(zone)
    assert _bits(back) == _bits(zone)
    coords = back["coordinates"]
    polys = [coords] if back["type"] == "Polygon" else coords
    assert all(type(p) is tuple for rings_ in polys for ring in rings_ for p in ring)


def test_a_zone_read_from_a_changelog_is_given_back_as_it_is() -> None:
    plain = {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}
    assert as_geojson(plain) is plain


def test_the_state_keeps_the_zone_encoded_and_the_cancel_sends_it_whole() -> None:
    msgs = [east_route(), fix(1.0), fix(2.0, 15.0), fix(3.0, 30.0, status="available")]
    state, events = drive(msgs[:3])
    assert state is not None and state.alert is not None
    zone = state.alert.zone
    assert isinstance(zone, KeptZone) and isinstance(zone["coordinates"], msgspec.Raw)
    last = events[-1]
    assert isinstance(last.zone["coordinates"], list)  # the event: plain GeoJSON
    assert msgspec.json.encode(zone) == msgspec.json.encode(last.zone)
    # the changelog's state: the zone as before, read back as plain GeoJSON (pairs as lists)
    back = codec.load_state(codec.dump_state(state))
    assert back is not None and back.alert is not None and type(back.alert.zone) is dict
    assert msgspec.json.encode(back.alert.zone) == msgspec.json.encode(last.zone)
    _, cancelled = drive(msgs[3:], state=state)
    assert [ev.action for ev in cancelled] == ["cancel"]
    assert cancelled[0].zone == last.zone and isinstance(cancelled[0].zone, dict)


def test_a_cancel_before_its_batch_is_built_gets_the_zone_the_batch_builds() -> None:
    msgs = [east_route(), fix(1.0), fix(2.0, 15.0, status="available")]
    raw = [(ROUTES if i == 0 else POSITIONS, codec.encode(m)) for i, m in enumerate(msgs)]
    cfg = EngineConfig(dispatch_cover_m=FROM_FIRST_FIX.dispatch_cover_m)
    alone, together = Driver(cfg), Driver(cfg)
    one_by_one = [ev for topic, r in raw for ev in alone.handle(topic, r).events]
    in_one_run = [ev for handled in together.handle_many(raw) for ev in handled.events]
    assert [ev.action for ev in in_one_run] == ["create", "cancel"]
    assert [codec.encode(ev) for ev in in_one_run] == [codec.encode(ev) for ev in one_by_one]
    assert in_one_run[1].zone["coordinates"]  # filled by the batch, as the create's was
    assert in_one_run[1].zone == in_one_run[0].zone


def test_a_batch_fills_the_states_kept_zone_and_lets_the_events_go() -> None:
    msgs = [east_route(), fix(1.0), fix(2.0, 15.0)]
    raw = [(ROUTES if i == 0 else POSITIONS, codec.encode(m)) for i, m in enumerate(msgs)]
    driver = Driver(EngineConfig(dispatch_cover_m=FROM_FIRST_FIX.dispatch_cover_m))
    events = [ev for handled in driver.handle_many(raw) for ev in handled.events]
    zone = driver.states["CFD-E7"].alert.zone  # type: ignore[union-attr]
    assert isinstance(zone, KeptZone) and zone.unbuilt is None
    assert isinstance(zone["coordinates"], msgspec.Raw)
    assert msgspec.json.encode(zone) == msgspec.json.encode(events[-1].zone)

