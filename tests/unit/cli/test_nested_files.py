"""Files given on the command line nested too deeply (arrays in arrays, tables in tables) get
one clear line naming the file, not a traceback: tomllib raised ``RecursionError`` at some 300
levels, and msgspec and json at some 1,000 (the worker's messages were fixed with
``codec.too_deep``; the files the commands read were not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.partners_file import PartnerConfigError, load_partners
from broker.agencies import AgencyFileError, load_agencies
from tests.unit.cli.invoke import INCIDENT, ROOT, run

DEEP = [65, 1000]


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def toml_with(tmp_path: Path, name: str, base: Path | None, levels: int) -> Path:
    """``base`` (or nothing) with one more key, ``levels`` of arrays deep, before its tables."""
    path = tmp_path / name
    path.write_text(f"deep = {nested(levels)}\n" + (base.read_text() if base else ""))
    return path


def assert_refused(code: int, out: str, path: Path) -> None:
    assert code in (1, 2), out
    assert "Traceback" not in out and "RecursionError" not in out, out
    flat = "".join(out.split())  # rich wraps long lines, even within a path
    assert "nestedtoodeeply" in flat and path.name in flat, out


@pytest.mark.parametrize("levels", DEEP)
def test_an_agency_file_nested_too_deeply(tmp_path: Path, levels: int) -> None:
    path = toml_with(tmp_path, "agencies.toml", ROOT / "fixtures" / "agencies.toml", levels)
    with pytest.raises(AgencyFileError, match="nested too deeply"):
        load_agencies(path)  # the worker's too (BROKER_AGENCIES_FILE)
    assert_refused(*run("replay", str(INCIDENT), "--agencies", str(path), "--show", "0",
                        "--out", str(tmp_path / "out")), path)
    assert_refused(*run("evaluate", str(INCIDENT), "--agencies", str(path)), path)


@pytest.mark.parametrize("levels", DEEP)
def test_a_partners_file_nested_too_deeply(tmp_path: Path, levels: int) -> None:
    path = toml_with(tmp_path, "partners.toml", ROOT / "fixtures" / "partners.toml", levels)
    with pytest.raises(PartnerConfigError, match="nested too deeply"):
        load_partners(path, env={})  # the worker's and the sink's too
    assert_refused(*run("transparency", "--partners", str(path), "--audit",
                        str(tmp_path / "none.jsonl")), path)


@pytest.mark.parametrize("levels", DEEP)
def test_a_road_class_file_nested_too_deeply(tmp_path: Path, levels: int) -> None:
    path = toml_with(tmp_path, "classes.toml", None, levels)
    roads = ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson"
    assert_refused(*run("roads", "check", str(roads), "--road-classes", str(path)), path)


def test_a_road_network_nested_too_deeply(tmp_path: Path) -> None:
    path = tmp_path / "roads.geojson"
    path.write_text('{"type": "FeatureCollection", "features": ' + nested(5000) + "}")
    assert_refused(*run("roads", "check", str(path)), path)
    assert_refused(*run("replay", str(INCIDENT), "--roads", str(path), "--show", "0",
                        "--out", str(tmp_path / "out")), path)


def deep_line(levels: int) -> bytes:
    """The incident's first fix with one more (unknown, ignored) field, ``levels`` deep."""
    first = (INCIDENT / "positions.ndjson").read_bytes().splitlines()[0]
    return first[:-1] + b', "x": ' + nested(levels).encode() + b"}"


@pytest.mark.parametrize("levels", [65, 5000])
def test_an_incident_line_nested_too_deeply_is_dead_lettered(tmp_path: Path, levels: int) -> None:
    """The replay's merge by time read each line's ``ts`` with msgspec: RecursionError out of
    replay and evaluate at some 1,000 levels. The line is refused (bad_json), as the worker
    refuses it, and the replay goes on."""
    incident = tmp_path / "incident"
    incident.mkdir()
    for name in ("positions.ndjson", "routes.ndjson", "incident.toml"):
        (incident / name).write_bytes((INCIDENT / name).read_bytes())
    lines = (INCIDENT / "positions.ndjson").read_bytes().splitlines()
    (incident / "positions.ndjson").write_bytes(b"\n".join([deep_line(levels), *lines[1:]]))
    code, out = run("replay", str(incident), "--show", "0", "--out", str(tmp_path / "out"))
    assert code == 0, out
    assert "bad_json" in out, out
    code, out = run("evaluate", str(incident))
    assert code == 0, out


def test_replay_into_kafka_reads_no_key_of_a_line_nested_too_deeply() -> None:
    from broker.drive import POSITIONS, TRACCAR
    from broker.streams.produce import envelope

    assert envelope(deep_line(5000), POSITIONS) == (None, None)
    assert envelope(b'{"position": ' + nested(5000).encode() + b"}", TRACCAR) == (None, None)
