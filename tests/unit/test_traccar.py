"""Traccar's forwarded positions -> broker fixes (broker.traccar), on Traccar's documented shape.

The samples in fixtures/traccar follow Traccar's ``PositionData`` (its Position and Device
models, as PositionForwarderJson / PositionForwarderKafka write them); the bad ones are in
fixtures/bad_messages/traccar (test_bad_messages).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.agencies import load_agencies
from broker.model import DEFAULT_ACCURACY_M, Fix, Rejection
from broker.traccar import KNOT_MPS, decode_traccar

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SAMPLES = FIXTURES / "traccar"
AGENCIES = load_agencies(FIXTURES / "agencies.toml")


def decoded(name: str) -> Fix:
    out = decode_traccar((SAMPLES / name).read_bytes().strip(), AGENCIES)
    assert isinstance(out, Fix), out
    return out


def test_a_position_maps_to_the_unit_and_the_broker_units() -> None:
    f = decoded("engine-lights-on.json")
    assert (f.vehicle_id, f.agency, f.unit_type) == ("CFD-E7", "charlotte-fd", "engine")
    assert f.ts == datetime(2026, 11, 25, 14, 3, 5, 120000, tzinfo=UTC)  # fixTime, not serverTime
    assert f.speed_mps == round(27.6 * KNOT_MPS, 2) == 14.2  # knots -> m/s
    assert (f.heading_deg, f.accuracy_m, f.lat, f.lon) == (87.0, 5.0, 35.2271, -80.8431)
    assert f.lights_sirens is True  # in2 == true: charlotte-fd's lightbar
    assert f.status is None and f.incident_id is None  # CAD's to say


def test_edge_cases_of_the_format() -> None:
    assert decoded("epoch-ms-fix-time.json").ts == datetime(
        2026, 11, 25, 14, 3, 5, 120000, tzinfo=UTC
    )
    assert decoded("null-accuracy.json").accuracy_m == DEFAULT_ACCURACY_M
    still = decoded("zero-accuracy-zero-course.json")
    assert (still.accuracy_m, still.heading_deg, still.speed_mps) == (DEFAULT_ACCURACY_M, 0.0, 0)
    assert decoded("mixed-attributes.json").lights_sirens is True  # in2 "1"
    assert decoded("lights-off.json").lights_sirens is False


@pytest.mark.parametrize("fix_time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-12:00"])
def test_a_fix_time_no_utc_datetime_holds_is_a_bad_timestamp(fix_time: object) -> None:
    """astimezone and fromtimestamp raised OverflowError out of the decoder: the HTTP endpoint
    answered 503 (Traccar then sends it again forever) and the Kafka agent crashed."""
    doc = json.loads((SAMPLES / "engine-lights-on.json").read_bytes())
    doc["position"]["fixTime"] = fix_time
    out = decode_traccar(json.dumps(doc).encode(), AGENCIES)
    assert isinstance(out, Rejection) and out.reason == "bad_timestamp", out


def test_several_devices_map_to_their_units_and_lightbar_rules() -> None:
    lines = (SAMPLES / "several-devices.ndjson").read_bytes().splitlines()
    fixes = [decode_traccar(line, AGENCIES) for line in lines]
    assert all(isinstance(f, Fix) for f in fixes), fixes
    got = [(f.vehicle_id, f.agency, f.lights_sirens) for f in fixes]  # type: ignore[union-attr]
    assert got == [("CFD-E7", "charlotte-fd", True), ("MEDIC-12", "medic", True),
                   ("CMPD-107", "cmpd", True)]  # in2 true, io5 > 0, bit 1 of input


def test_without_an_agency_file_nothing_can_be_mapped() -> None:
    out = decode_traccar((SAMPLES / "engine-lights-on.json").read_bytes(), None)
    assert isinstance(out, Rejection) and out.reason == "unknown_unit"
    assert "no agency file" in out.detail


def test_a_device_without_a_lightbar_rule_leaves_the_lights_to_cad(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text('[[agency]]\nid = "x"\n[[agency.unit]]\nvehicle_id = "CFD-E7"\n'
                    'device = "356307040000007"\n')
    out = decode_traccar((SAMPLES / "engine-lights-on.json").read_bytes(), load_agencies(file))
    assert isinstance(out, Fix) and out.lights_sirens is None and out.unit_type == "unknown"


def test_time_skew_and_area_are_judged_as_for_any_fix() -> None:
    raw = (SAMPLES / "engine-lights-on.json").read_bytes()
    early = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    out = decode_traccar(raw, AGENCIES, received_at=early)
    assert isinstance(out, Rejection) and out.reason == "future_timestamp"
    out = decode_traccar(raw, AGENCIES, area=(-80.0, 35.0, -79.0, 36.0))
    assert isinstance(out, Rejection) and out.reason == "out_of_area"


GOOD: dict[str, Any] = json.loads((SAMPLES / "engine-lights-on.json").read_bytes())
values = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=12), st.booleans(),
                   st.lists(st.integers(), max_size=2))


@given(
    position=st.dictionaries(st.sampled_from(sorted(GOOD["position"])), values),
    device=st.dictionaries(st.sampled_from(sorted(GOOD["device"])), values),
)
def test_decoding_never_raises_on_mangled_messages(
    position: dict[str, Any], device: dict[str, Any]
) -> None:
    msg = {"position": {**GOOD["position"], **position}, "device": {**GOOD["device"], **device}}
    out = decode_traccar(json.dumps(msg).encode(), AGENCIES)
    assert isinstance(out, Fix | Rejection)
    if isinstance(out, Rejection):
        assert out.detail and out.raw


@pytest.mark.parametrize("fix_time", ["2026-11-25T14:03:05.120Z", "2026-11-25T09:03:05.120-05:00"])
def test_iso_times_with_any_offset_are_utc(fix_time: str) -> None:
    msg = {**GOOD, "position": {**GOOD["position"], "fixTime": fix_time}}
    out = decode_traccar(json.dumps(msg).encode(), AGENCIES)
    assert isinstance(out, Fix) and out.ts == datetime(2026, 11, 25, 14, 3, 5, 120000, tzinfo=UTC)


@pytest.mark.parametrize("value", ["inf", "nan", "-1e999", 2.0])
def test_an_input_the_lightbar_rule_cannot_read_leaves_the_lights_unknown(value: Any) -> None:
    # CMPD-107's lightbar is bit 1 of ``input``; "inf" as numeric text once raised there
    line = (SAMPLES / "several-devices.ndjson").read_bytes().splitlines()[2]
    msg = json.loads(line)
    msg["position"]["attributes"]["input"] = value
    out = decode_traccar(json.dumps(msg).encode(), AGENCIES)
    assert isinstance(out, Fix) and out.vehicle_id == "CMPD-107"
    assert out.lights_sirens is (True if value == 2.0 else None)
