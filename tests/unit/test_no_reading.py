"""What AVL devices send for "no reading" is read as unknown, not refused (broker.codec.check_fix).

A heading below 0 (-1 on many devices, iOS's course) is no heading, a speed of -1 (iOS's speed)
an absent speed: the fix is taken, and counted. Until 2026-12-05 both refused the whole fix
(``out_of_range``), so a unit whose device said -1 was never warned about. What is really wrong
stays refused: a heading over 360 or of -inf, any other negative speed, and whatever else of the
fix is wrong (a heading of -1 never lets a latitude of 91 through).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from broker import codec
from broker.agencies import load_agencies
from broker.cli import app
from broker.drive import POSITIONS, Driver
from broker.model import Fix, Rejection
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig
from broker.streams.metrics import Metrics
from broker.traccar import decode_traccar
from tests.conftest import at
from tests.unit.test_codec import GOOD, RECEIVED

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
AGENCIES = load_agencies(FIXTURES / "agencies.toml")
TRACCAR = json.loads((FIXTURES / "traccar" / "engine-lights-on.json").read_bytes())

finite = {"allow_nan": False, "allow_infinity": False}
negative_headings = st.floats(max_value=-5e-324, **finite)  # -1, -999, -0.5, -1e300 ...
headings = st.floats(0.0, 360.0)
speeds = st.floats(0.0, 150.0)
other_negative_speeds = st.floats(max_value=-5e-324, **finite).filter(lambda v: v != -1.0)
fixes = st.fixed_dictionaries(
    {"lat": st.floats(-85.0, 85.0), "lon": st.floats(-180.0, 180.0), "speed_mps": speeds,
     "heading_deg": st.none() | headings, "accuracy_m": st.floats(0.0, 10_000.0)},
)  # fmt: skip


def decode(body: dict[str, Any], **changes: Any) -> tuple[Fix | Rejection, list[str]]:
    """``body`` over GOOD with ``changes`` (``...``: left out), decoded; and what was noted."""
    merged = {**GOOD, **body, **changes}
    noted: list[str] = []
    raw = json.dumps({k: v for k, v in merged.items() if v is not ...}).encode()
    return codec.decode_position(raw, received_at=RECEIVED, noted=noted.append), noted


@given(fixes, negative_headings)
def test_a_heading_below_zero_reads_as_no_heading(body, heading):
    got, noted = decode(body, heading_deg=heading)
    assert got == decode(body, heading_deg=None)[0]
    assert isinstance(got, Fix) and got.heading_deg is None
    assert noted == ["heading_deg"]


@given(fixes, headings)
def test_a_heading_from_0_to_360_is_kept_as_it_came(body, heading):
    got, noted = decode(body, heading_deg=heading)
    assert isinstance(got, Fix)
    assert got.heading_deg == heading  # 360 too: north, as 0
    assert noted == []


@given(fixes, st.floats(min_value=360.0, exclude_min=True, **finite))  # JSON has no inf
def test_a_heading_over_360_is_still_refused(body, heading):
    got, noted = decode(body, heading_deg=heading)
    assert isinstance(got, Rejection) and got.reason == "out_of_range"
    assert noted == []


@given(fixes)
def test_a_speed_of_minus_one_reads_as_an_absent_speed(body):
    got, noted = decode(body, speed_mps=-1.0)
    assert got == decode(body, speed_mps=...)[0]
    assert isinstance(got, Fix) and got.speed_mps == 0.0
    assert noted == ["speed_mps"]
    assert decode(body, speed_mps=-1)[0] == got  # an integer -1 too


@given(fixes, other_negative_speeds)
def test_any_other_negative_speed_is_still_refused(body, speed):
    got, noted = decode(body, speed_mps=speed)
    assert isinstance(got, Rejection) and got.reason == "out_of_range", got
    assert "$.speed_mps" in got.detail
    assert noted == []


@given(
    st.dictionaries(
        st.sampled_from(sorted(set(GOOD) - {"heading_deg"})),
        st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=20), st.booleans()),
    ),
    negative_headings,
)
def test_no_heading_never_lets_a_wrong_fix_through(changes, heading):
    """Whatever else a fix carries (lat 91, NaN, a bad time ...), a heading below 0 decides
    nothing but the heading: the same fix or the same refusal as with a null heading."""
    with_sentinel, _ = decode(changes, heading_deg=heading)
    with_null, _ = decode(changes, heading_deg=None)
    if isinstance(with_null, Rejection):
        assert isinstance(with_sentinel, Rejection) and with_sentinel.reason == with_null.reason
    else:
        assert with_sentinel == with_null


@given(fixes, st.none() | negative_headings, st.sampled_from([-1.0, 0.0, 12.5]))
def test_a_taken_fix_is_in_the_broker_s_own_terms(body, heading, speed):
    """Encoded again (the Traccar forwarder appends it so to the unit's log) it decodes to
    itself, with nothing noted a second time."""
    got, _ = decode(body, heading_deg=heading, speed_mps=speed)
    assert isinstance(got, Fix)
    noted: list[str] = []
    assert codec.decode_position(codec.encode(got), noted=noted.append) == got
    assert noted == []


def test_a_refused_fix_notes_nothing():
    got, noted = decode({}, heading_deg=-1.0, speed_mps=-1.0, lat=91.0)
    assert isinstance(got, Rejection) and got.reason == "out_of_range"
    got, noted2 = decode({}, heading_deg=-1.0, ts="2026-11-25T16:03:05Z")
    assert isinstance(got, Rejection) and got.reason == "future_timestamp"
    assert noted == noted2 == []


def test_a_heading_of_minus_infinity_built_in_code_is_refused():
    fix = Fix(vehicle_id="E1", ts=at(0), lat=35.0, lon=-80.0, heading_deg=-math.inf)
    got = codec.check_fix(fix, b"", received_at=None)
    assert isinstance(got, Rejection) and got.reason == "out_of_range"


def traccar(**position: Any) -> bytes:
    return json.dumps({**TRACCAR, "position": {**TRACCAR["position"], **position}}).encode()


@given(negative_headings)
def test_a_traccar_course_below_zero_reads_as_no_heading(course):
    noted: list[str] = []
    got = decode_traccar(traccar(course=course), AGENCIES, noted=noted.append)
    assert isinstance(got, Fix) and got.heading_deg is None
    assert noted == ["heading_deg"]
    north = decode_traccar(traccar(course=0.0), AGENCIES)
    assert isinstance(north, Fix)
    assert got == msgspec.structs.replace(north, heading_deg=None)  # the rest as it was


@given(headings)
def test_a_traccar_course_from_0_to_360_is_the_heading(course):
    got = decode_traccar(traccar(course=course), AGENCIES)
    assert isinstance(got, Fix) and got.heading_deg == course


def test_a_traccar_course_over_360_is_still_refused():
    got = decode_traccar(traccar(course=361.0), AGENCIES)
    assert isinstance(got, Rejection) and got.reason == "out_of_range"


def _with(messages: list[tuple[str, bytes]], **changes: Any) -> list[tuple[str, bytes]]:
    out = []
    for topic, raw in messages:
        if topic == POSITIONS:
            raw = json.dumps({**json.loads(raw), **changes}).encode()
        out.append((topic, raw))
    return out


def test_a_unit_whose_device_says_minus_one_is_warned_as_one_that_says_null():
    """The incident of route-downtown from a device that sends -1 for its heading: the same
    alerts as from one that sends null, byte for byte (the fixes were all refused before),
    and every fix counted."""
    messages = load_messages(FIXTURES / "incidents" / "route-downtown")
    cfg = EngineConfig()
    sentinel = replay_in_process(_with(messages, heading_deg=-1.0), cfg=cfg)
    null = replay_in_process(_with(messages, heading_deg=None), cfg=cfg)
    assert sentinel.events, "no alerts: the fixes were refused"
    assert [codec.encode(e) for e in sentinel.events] == [codec.encode(e) for e in null.events]
    assert sentinel.rejected_by_reason == null.rejected_by_reason
    taken = sentinel.positions_read - len(sentinel.rejections)
    assert dict(sentinel.unknown_readings) == {"heading_deg": taken}
    assert not null.unknown_readings


def test_the_driver_tells_only_of_fixes_it_takes():
    """A unit the agency file does not name is refused after decoding: its -1 is not told."""
    told: list[str] = []
    driver: Driver[str] = Driver(EngineConfig(), agencies=AGENCIES, noted=told.append)
    known = json.dumps({**GOOD, "heading_deg": -1}).encode()
    unknown = json.dumps({**GOOD, "vehicle_id": "NOBODY-1", "heading_deg": -1}).encode()
    assert driver.handle(POSITIONS, unknown, received_at=RECEIVED).rejection is not None
    assert told == []
    handled = driver.handle(POSITIONS, known, received_at=RECEIVED)
    assert handled.rejection is None and handled.msg is not None
    assert handled.msg.heading_deg is None  # type: ignore[union-attr]
    assert told == ["heading_deg"]


def test_the_worker_counts_each_and_logs_the_first_of_each_field(caplog: pytest.LogCaptureFixture):
    metrics = Metrics()
    with caplog.at_level(logging.INFO, logger="broker.streams.metrics"):
        for name in ("heading_deg", "heading_deg", "speed_mps", "heading_deg"):
            metrics.unknown_reading(name)
    text = metrics.render().decode()
    assert 'broker_unknown_readings_total{field="heading_deg"} 3.0' in text
    assert 'broker_unknown_readings_total{field="speed_mps"} 1.0' in text
    assert [r.args[0] for r in caplog.records] == ["heading_deg", "speed_mps"]  # type: ignore[index]


def test_broker_replay_says_how_many_fixes_it_took_without_a_heading(tmp_path: Path):
    incident = FIXTURES / "incidents" / "route-downtown"
    lines = (incident / "positions.ndjson").read_text().splitlines()
    sent = [json.dumps({**json.loads(line), "heading_deg": -1}) for line in lines[:40]]
    (tmp_path / "positions.ndjson").write_text("\n".join(sent) + "\n")
    (tmp_path / "routes.ndjson").write_bytes((incident / "routes.ndjson").read_bytes())
    res = CliRunner().invoke(app, ["replay", str(tmp_path), "--out", str(tmp_path / "out"),
                                   "--show", "0"])
    assert res.exit_code == 0, res.output
    assert re.search(r"taken with heading_deg unknown\W+40\b", res.output), res.output
    assert re.search(r"rejected\W+0\b", res.output), res.output
