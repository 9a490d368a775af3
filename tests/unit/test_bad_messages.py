"""The bad-message corpus (fixtures/bad_messages): each file is refused for its named reason.

Like msgspec's JSONTestSuite runner: one parametrised case per file. A file is named
``<reason>--<what>.json``; ``<reason>`` is a ``RejectReason``. Position messages sit at the top,
route messages in ``routes/``, CAD status events in ``status/``, Traccar's forwarded positions in
``traccar/`` (read with fixtures/agencies.toml). Every file is judged at the receive time in
``received_at.txt`` (that is what makes a timestamp "in the future"). ``ok/`` holds the valid
messages the bad ones were derived from, so each bad file differs from a good one by its defect
only.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import get_args

import pytest

from broker.agencies import load_agencies
from broker.codec import decode_position, decode_route, decode_status
from broker.model import Fix, Rejection, RejectReason, Route, UnitStatus
from broker.traccar import decode_traccar

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bad_messages"
RECEIVED_AT = datetime.fromisoformat((CORPUS / "received_at.txt").read_text().strip())
POSITION_FILES = sorted(CORPUS.glob("*--*.json"))
ROUTE_FILES = sorted((CORPUS / "routes").glob("*--*.json"))
STATUS_FILES = sorted((CORPUS / "status").glob("*--*.json"))
TRACCAR_FILES = sorted((CORPUS / "traccar").glob("*--*.json"))
AGENCIES = load_agencies(CORPUS.parent / "agencies.toml")
KNOWN_REASONS = set(get_args(RejectReason))
# the reasons a position can be refused for; each needs at least two examples
POSITION_REASONS = {
    "bad_json",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "unknown_status",
    "bad_timestamp",
    "future_timestamp",
    "oversized",
    "bad_text",
    "out_of_area",
}


def reason_in_name(path: Path) -> str:
    return path.name.split("--", 1)[0]


@pytest.mark.parametrize("path", POSITION_FILES, ids=lambda p: p.stem)
def test_position_is_rejected_for_the_reason_in_its_name(path: Path) -> None:
    raw = path.read_bytes()
    out = decode_position(raw, received_at=RECEIVED_AT)
    assert isinstance(out, Rejection), f"{path.name} was accepted: {out!r}"
    assert out.reason == reason_in_name(path), out.detail
    assert out.raw == raw  # the DLQ gets the original bytes
    assert out.detail


@pytest.mark.parametrize("path", ROUTE_FILES, ids=lambda p: p.stem)
def test_route_is_rejected_for_the_reason_in_its_name(path: Path) -> None:
    raw = path.read_bytes()
    out = decode_route(raw, received_at=RECEIVED_AT)
    assert isinstance(out, Rejection), f"routes/{path.name} was accepted: {out!r}"
    assert out.reason == reason_in_name(path), out.detail
    assert out.raw == raw


@pytest.mark.parametrize("path", STATUS_FILES, ids=lambda p: p.stem)
def test_status_is_rejected_for_the_reason_in_its_name(path: Path) -> None:
    raw = path.read_bytes()
    out = decode_status(raw, received_at=RECEIVED_AT)
    assert isinstance(out, Rejection), f"status/{path.name} was accepted: {out!r}"
    assert out.reason == reason_in_name(path), out.detail
    assert out.raw == raw


@pytest.mark.parametrize("path", TRACCAR_FILES, ids=lambda p: p.stem)
def test_traccar_position_is_rejected_for_the_reason_in_its_name(path: Path) -> None:
    raw = path.read_bytes()
    out = decode_traccar(raw, AGENCIES, received_at=RECEIVED_AT)
    assert isinstance(out, Rejection), f"traccar/{path.name} was accepted: {out!r}"
    assert out.reason == reason_in_name(path), out.detail
    assert out.raw == raw


def test_the_messages_the_corpus_was_derived_from_are_valid() -> None:
    ok = CORPUS / "ok"
    pos = decode_position((ok / "position.json").read_bytes(), received_at=RECEIVED_AT)
    route = decode_route((ok / "route.json").read_bytes(), received_at=RECEIVED_AT)
    status = decode_status((ok / "status.json").read_bytes(), received_at=RECEIVED_AT)
    traccar = decode_traccar((ok / "traccar.json").read_bytes(), AGENCIES,
                             received_at=RECEIVED_AT)
    assert isinstance(pos, Fix), pos
    assert isinstance(route, Route), route
    assert isinstance(status, UnitStatus), status
    assert isinstance(traccar, Fix), traccar


def test_file_names_use_known_reasons() -> None:
    names = [*POSITION_FILES, *ROUTE_FILES, *STATUS_FILES, *TRACCAR_FILES]
    assert len(names) >= 2 * len(POSITION_REASONS)
    assert {reason_in_name(p) for p in names} <= KNOWN_REASONS


@pytest.mark.parametrize(
    ("files", "reasons"),
    [
        (POSITION_FILES, POSITION_REASONS),
        (STATUS_FILES, {"bad_json", "missing_field", "wrong_type", "unknown_status",
                        "bad_timestamp", "future_timestamp", "oversized", "bad_text",
                        "out_of_range"}),
        (TRACCAR_FILES, {"bad_json", "missing_field", "wrong_type", "out_of_range",
                         "bad_timestamp", "future_timestamp", "oversized", "unknown_unit",
                         "invalid_fix", "outdated_fix"}),
    ],
    ids=["positions", "status", "traccar"],
)
def test_every_reason_has_at_least_two_examples(files: list[Path], reasons: set[str]) -> None:
    counts = dict.fromkeys(reasons, 0)
    for p in files:
        counts[reason_in_name(p)] = counts.get(reason_in_name(p), 0) + 1
    assert all(n >= 2 for n in counts.values()), counts


@pytest.mark.parametrize(
    ("name", "must_contain"),
    [
        ("bad_json--nan-latitude", b'"lat": NaN'),
        ("out_of_range--lat-1e999", b'"lat": 1e999'),
        ("out_of_range--lat-91", b'"lat": 91.0'),
        ("out_of_range--lon-minus-181", b'"lon": -181.0'),
        ("unknown_status--flying", b'"status": "flying"'),
        ("future_timestamp--two-hours-ahead", b'"ts": "2026-11-25T16:05:00.000Z"'),
        ("wrong_type--array-instead-of-object", b"[{"),
    ],
)
def test_the_named_cases_are_what_they_say(name: str, must_contain: bytes) -> None:
    assert must_contain in (CORPUS / f"{name}.json").read_bytes()


def test_the_oversized_and_truncated_cases_are_what_they_say() -> None:
    assert len((CORPUS / "oversized--70-kib-padding.json").read_bytes()) >= 70 * 1024
    truncated = (CORPUS / "bad_json--truncated.json").read_bytes()
    assert (CORPUS / "ok" / "position.json").read_bytes().startswith(truncated)


def test_a_future_timestamp_depends_on_the_receive_time() -> None:
    raw = (CORPUS / "future_timestamp--two-hours-ahead.json").read_bytes()
    assert isinstance(decode_position(raw), Fix)  # no receive time, no future check
    assert RECEIVED_AT.isoformat() == "2026-11-25T14:05:00+00:00"
