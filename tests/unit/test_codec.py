"""Every rejection reason of the codec, and that decoding never raises on any bytes."""

from __future__ import annotations

import json
from datetime import timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import codec, join
from broker.model import AlertEvent, Fix, Rejection, Route
from tests.conftest import at, east_route, fix

GOOD = {
    "vehicle_id": "CFD-E7",
    "agency": "charlotte-fd",
    "ts": "2026-11-25T14:03:05.120Z",
    "lat": 35.2271,
    "lon": -80.8431,
    "speed_mps": 14.2,
    "heading_deg": 87.0,
    "status": "responding",
    "lights_sirens": True,
    "incident_id": "F261125-0042",
    "unit_type": "engine",
    "accuracy_m": 5.0,
}
RECEIVED = at(3 * 60 + 6)  # 14:03:06, one second after GOOD's ts


def raw(**changes: object) -> bytes:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_good_position_decodes_with_all_fields():
    pos = codec.decode_position(raw(), received_at=RECEIVED)
    assert isinstance(pos, Fix)
    assert (pos.lat, pos.lon, pos.status, pos.lights_sirens) == (
        35.2271,
        -80.8431,
        "responding",
        True,
    )
    assert pos.ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "bad_json"),
        (b"not json", "bad_json"),
        (b"", "bad_json"),
        (b"[1, 2]", "wrong_type"),
        (raw(lat="NaN").replace(b'"NaN"', b"NaN"), "bad_json"),
        (raw(lat="Infinity").replace(b'"Infinity"', b"Infinity"), "bad_json"),
        (raw(lat=1).replace(b'"lat": 1', b'"lat": 1e999'), "out_of_range"),
        (raw(vehicle_id=...), "missing_field"),
        (raw(ts=...), "missing_field"),
        (raw(lat="35.2"), "wrong_type"),
        (raw(lights_sirens="yes"), "wrong_type"),
        (raw(lat=91.0), "out_of_range"),
        (raw(lat=-90.5), "out_of_range"),
        (raw(lon=-181.0), "out_of_range"),
        (raw(speed_mps=-3.0), "out_of_range"),  # -1 alone is "no reading" (test_no_reading)
        (raw(speed_mps=-0.5), "out_of_range"),
        (raw(speed_mps=1).replace(b'"speed_mps": 1', b'"speed_mps": -1e999'), "out_of_range"),
        (raw(heading_deg=400.0), "out_of_range"),
        (raw(heading_deg=1).replace(b'"heading_deg": 1', b'"heading_deg": -1e999'),
         "out_of_range"),
        (raw(status="flying"), "unknown_status"),
        (raw(status="RESPONDING"), "unknown_status"),
        (raw(ts="yesterday"), "bad_timestamp"),
        (raw(ts="2026-11-25T14:03:05"), "bad_timestamp"),
        (raw(ts="2026-11-25T16:03:05Z"), "future_timestamp"),
        (raw(vehicle_id=""), "out_of_range"),
        (raw(agency="x" * 70_000), "oversized"),
    ],
)
def test_every_malformed_position_is_rejected_with_its_reason_and_original_bytes(data, reason):
    out = codec.decode_position(data, received_at=RECEIVED)
    assert isinstance(out, Rejection), out
    assert out.reason == reason, out.detail
    assert out.raw == data
    assert out.detail


def test_a_minute_of_clock_skew_is_tolerated():
    ahead = (RECEIVED + timedelta(seconds=59)).isoformat()
    assert isinstance(codec.decode_position(raw(ts=ahead), received_at=RECEIVED), Fix)


def test_unknown_fields_are_tolerated_for_schema_evolution():
    assert isinstance(codec.decode_position(raw(new_field={"a": 1})), Fix)


@given(st.binary(max_size=2_000))
def test_decoding_never_raises_on_any_bytes(data):
    out = codec.decode_position(data)
    assert isinstance(out, Fix | Rejection)
    out = codec.decode_route(data)
    assert isinstance(out, Route | Rejection)


@given(
    st.dictionaries(
        st.sampled_from(sorted(GOOD)),
        st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=20), st.booleans()),
    )
)
def test_decoding_never_raises_on_mangled_positions(changes):
    data = json.dumps({**GOOD, **changes}).encode()
    assert isinstance(codec.decode_position(data, received_at=RECEIVED), Fix | Rejection)


def test_route_decodes_and_bad_routes_are_rejected():
    good = codec.encode(east_route())
    assert isinstance(codec.decode_route(good), Route)
    one_point = json.loads(good)
    one_point["route"]["coordinates"] = one_point["route"]["coordinates"][:1]
    out = codec.decode_route(json.dumps(one_point).encode())
    assert isinstance(out, Rejection) and out.reason == "bad_geometry"
    same_point = json.loads(good)
    same_point["route"]["coordinates"] = [[-80.8, 35.2], [-80.8, 35.2]]
    out = codec.decode_route(json.dumps(same_point).encode())
    assert isinstance(out, Rejection) and out.reason == "bad_geometry"
    a_hair_apart = json.loads(good)  # distinct numbers, ~1e-9 m: nothing to project
    a_hair_apart["route"]["coordinates"] = [[-80.8, 35.2], [-80.8, 35.2 + 1e-14]]
    out = codec.decode_route(json.dumps(a_hair_apart).encode())
    assert isinstance(out, Rejection) and out.reason == "bad_geometry"
    assert "want at least 1 m" in out.detail
    wrong_type = json.loads(good)
    wrong_type["route"]["type"] = "Polygon"
    out = codec.decode_route(json.dumps(wrong_type).encode())
    assert isinstance(out, Rejection)
    lat_lon_swapped = json.loads(good)
    lat_lon_swapped["route"]["coordinates"] = [[35.2, -80.8], [35.3, -80.9]]  # lat/lon order
    out = codec.decode_route(json.dumps(lat_lon_swapped).encode())
    assert isinstance(out, Rejection) and out.reason == "bad_geometry"


def test_position_round_trips_through_the_codec():
    pos = fix(1.0, 100.0)
    decoded = codec.decode_position(codec.encode(pos))
    assert isinstance(decoded, Fix)
    assert join.merge(decoded, None, None) == pos  # the combined form merges to itself


def test_state_and_alert_round_trip():
    from tests.conftest import drive

    state, events = drive([east_route(), fix(1.0), fix(2.0, 15.0)])
    assert state is not None
    # the wire form round-trips; the zone's rings come back as lists where the engine made
    # (lon, lat) tuples (geo.zones._pairs), so the objects are compared through it
    raw = codec.dump_state(state)
    back = codec.load_state(raw)
    assert back is not None and codec.dump_state(back) == raw
    assert back.alert is not None and state.alert is not None
    assert msgspec.structs.replace(back.alert, zone=state.alert.zone) == state.alert
    assert msgspec.structs.replace(back, alert=state.alert) == state
    assert codec.load_state(None) is None
    ev = events[0]
    back_ev = codec.decode_alert(codec.encode(ev))
    assert codec.encode(back_ev) == codec.encode(ev)
    assert msgspec.structs.replace(back_ev, zone=ev.zone) == ev
    assert isinstance(msgspec.json.decode(codec.encode(ev)), dict)
    assert isinstance(ev, AlertEvent)


def test_events_and_states_written_before_first_version_still_decode():
    """``first_version`` came later (additive, with a default): an older record has none."""
    from tests.conftest import drive

    state, events = drive([east_route(), fix(1.0), fix(2.0, 15.0)])
    assert state is not None and state.alert is not None
    old_event = msgspec.json.decode(codec.encode(events[-1]))
    del old_event["first_version"]
    assert codec.decode_alert(msgspec.json.encode(old_event)).first_version == 1
    old_state = msgspec.json.decode(codec.dump_state(state))
    del old_state["alert"]["first_version"]
    back = codec.load_state(msgspec.json.encode(old_state))
    assert back is not None and back.alert is not None and back.alert.first_version == 1


@pytest.mark.parametrize(
    "ts, reason",
    [
        ("9999-12-31T23:59:30Z", "future_timestamp"),  # the engine's + hours overflowed
        ("9999-12-31T23:59:59-14:00", "future_timestamp"),  # past year 9999 in UTC
        ("1970-01-01T00:00:00Z", "bad_timestamp"),  # before any GPS receiver's epoch
        ("0001-01-01T00:00:00+14:00", "bad_timestamp"),
    ],
)
def test_a_time_no_clock_gives_is_refused_even_without_a_receive_time(ts: str, reason: str):
    """The first message of a replay is judged against nothing; such a time then raised
    OverflowError out of the engine (``ts + timedelta``) and stopped the replay."""
    out = codec.decode_position(raw(ts=ts), received_at=None)
    assert isinstance(out, Rejection) and out.reason == reason and ts[:4] in out.detail
    status = codec.decode_status(json.dumps(
        {"vehicle_id": "E1", "ts": ts, "status": "responding"}).encode())
    assert isinstance(status, Rejection) and status.reason == reason
    # the GPS epoch itself is a time a receiver gives
    assert isinstance(codec.decode_position(raw(ts="1980-01-06T00:00:00Z")), Fix)


def test_a_route_whose_end_and_destination_lie_across_the_antimeridian_is_taken():
    # Taveuni (Fiji) lies across 180 degrees: a route ending 20 m east of it, to a scene 10 m
    # west of it, was 40,000 km from its destination by a distance that did not wrap, and
    # refused as lat/lon swapped
    across = json.loads(codec.encode(east_route()))
    across["route"]["coordinates"] = [[179.99, -16.8], [179.9995, -16.8], [-179.9998, -16.8]]
    across["destination"] = {"lat": -16.8, "lon": 179.9999}
    out = codec.decode_route(json.dumps(across).encode())
    assert isinstance(out, Route), out
    assert codec._rough_distance_m((180.0, -16.8), (-180.0, -16.8)) == 0.0
    assert codec._rough_distance_m((-179.9998, -16.8), (179.9999, -16.8)) == pytest.approx(
        32.0, abs=0.5
    )


def test_a_route_whose_positions_carry_an_altitude_is_taken_without_it():
    # RFC 7946 3.1.1: a position may have an altitude as a third element (routing engines add
    # one when asked for elevations); such a route was refused as bad_geometry
    flat = json.loads(codec.encode(east_route()))
    high = json.loads(codec.encode(east_route()))
    high["route"]["coordinates"] = [[lon, lat, 212.5 + k] for k, (lon, lat)
                                    in enumerate(flat["route"]["coordinates"])]
    high["route"]["coordinates"][0][2] = None  # an unknown altitude
    out = codec.decode_route(json.dumps(high).encode())
    assert isinstance(out, Route), out
    assert out == codec.decode_route(json.dumps(flat).encode())
    assert codec.encode(out) == codec.encode(east_route())  # what states keep: [lon, lat]
    lon_200 = json.loads(json.dumps(high))
    lon_200["route"]["coordinates"][1][0] = 200.0
    out = codec.decode_route(json.dumps(lon_200).encode())
    assert isinstance(out, Rejection) and out.reason == "bad_geometry"
    assert "$.route.coordinates[1][0]" in out.detail
