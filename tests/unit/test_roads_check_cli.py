"""``broker roads check``: the report, its exit codes (0 clean, 1 warnings, 2 unusable), --json,
and the options that fix what it finds (--snap-m, --road-classes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from broker.cli import app
from broker.geo.projection import frame_for

ROOT = Path(__file__).resolve().parents[2]
CHARLOTTE = ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson"
FRAME = frame_for(-80.8, 35.2)
ORIGIN = np.array(FRAME.to_xy(-80.8, 35.2))


def street(xy: list[tuple[float, float]], **props: object) -> dict:
    lonlat = FRAME.coords_to_lonlat(np.asarray(xy, dtype=float) + ORIGIN)
    return {"type": "Feature", "properties": props,
            "geometry": {"type": "LineString", "coordinates": lonlat.tolist()}}  # fmt: skip


def write(tmp: Path, *features: dict) -> Path:
    path = tmp / "roads.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


def check(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["roads", "check", *args])
    return res.exit_code, res.output


def test_a_clean_network_exits_0_with_its_figures() -> None:
    code, out = check(str(CHARLOTTE))
    assert code == 0, out
    assert "208 (167 / 32)" in out and "70.88" in out and "ok: usable" in out


def test_the_json_report_says_the_same() -> None:
    code, out = check(str(CHARLOTTE), "--json")
    report = json.loads(out)
    assert code == 0 and report["usable"] and report["nodes"] == 208
    assert report["components"]["count"] == 1 and report["km_total"] > 70


def test_a_near_miss_exits_1_and_the_suggested_snap_fixes_it(tmp_path: Path) -> None:
    path = write(tmp_path, street([(0, 0), (400, 0)]), street([(200, 150), (200, 3)]))
    code, out = check(str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["near_misses"]["count"] == 1
    suggestion = report["near_misses"]["suggested_snap_m"]
    assert 3.0 <= suggestion <= 3.5  # the gap, to the half metre above
    assert any(f"snap_m = {suggestion}" in w for w in report["warnings"])
    code, out = check(str(path), "--snap-m", str(suggestion))
    assert code == 0, out


def test_a_mostly_disconnected_network_exits_2(tmp_path: Path) -> None:
    lines = [street([(x, 0), (x, 100)]) for x in range(0, 1000, 200)]
    code, out = check(str(write(tmp_path, *lines)))
    assert code == 2 and "mostly disconnected" in out


def test_unknown_classes_warn_and_a_mapping_file_maps_them(tmp_path: Path) -> None:
    path = write(
        tmp_path, street([(0, 0), (400, 0)], ROAD_CLASS="Principal Arterial"),
        street([(200, 150), (200, 0)], ROAD_CLASS="Wohnweg"),
    )  # fmt: skip
    code, out = check(str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["classes"]["unknown"] == {"Wohnweg": 1}
    mapping = tmp_path / "classes.toml"
    mapping.write_text('[classes]\n"Wohnweg" = "living_street"\n')
    code, out = check(str(path), "--road-classes", str(mapping), "--json")
    report = json.loads(out)
    assert code == 0 and set(report["classes"]["km"]) == {"primary", "living_street"}


def test_unreadable_inputs_exit_2_naming_them(tmp_path: Path) -> None:
    code, out = check(str(tmp_path / "nope.geojson"))
    assert code == 2 and "nope.geojson" in out
    (tmp_path / "export.geojson").mkdir()
    code, out = check(str(tmp_path / "export.geojson"))
    assert code == 2 and "export.geojson: a directory" in out
    bad = tmp_path / "classes.toml"
    bad.write_text('[classes]\n"x" = "highway"\n')
    code, out = check(str(CHARLOTTE), "--road-classes", str(bad))
    assert code == 2 and "classes.toml" in out and "want one of" in out
    code, out = check(str(CHARLOTTE), "--origin", "north")
    assert code == 2 and "LON,LAT" in out


def test_replay_takes_the_same_options(tmp_path: Path) -> None:
    path = write(tmp_path, street([(0, 0), (400, 0)], type="highway.residential"))
    incident = ROOT / "fixtures" / "incidents" / "route-downtown"
    res = CliRunner().invoke(app, ["replay", str(incident), "--roads", str(path), "--snap-m",
                                   "2", "--out", str(tmp_path / "out"), "--show", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output


def test_replay_takes_a_sumo_net_and_refuses_an_unusable_network(tmp_path: Path) -> None:
    import subprocess

    sumo = __import__("sumo")
    net = tmp_path / "grid.net.xml"
    subprocess.run([str(Path(sumo.SUMO_HOME) / "bin" / "netgenerate"), "--grid", "-o", str(net)],
                   check=True, capture_output=True)  # fmt: skip
    incident = ROOT / "fixtures" / "incidents" / "route-downtown"
    base = ["replay", str(incident), "--out", str(tmp_path / "out"), "--show", "0"]
    res = CliRunner().invoke(app, [*base, "--roads", str(net), "--origin", "-80.84,35.22"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, [*base, "--roads", str(net)])
    assert res.exit_code == 2 and "--origin" in res.output
    islands = write(tmp_path, *[street([(x, 0), (x, 100)]) for x in range(0, 1000, 200)])
    res = CliRunner().invoke(app, [*base, "--roads", str(islands)])
    assert res.exit_code == 2 and "mostly disconnected" in res.output
    res = CliRunner().invoke(app, [*base, "--roads", str(islands), "--allow-disconnected"])
    assert res.exit_code == 0 and "warning:" in res.output and "mostly disconnected" in res.output


def test_bracketed_text_is_printed_as_written(tmp_path: Path) -> None:
    """The report goes through rich, which took ``[lon, lat]`` and ``[v2]`` for markup tags and
    printed nothing in their place ("coordinates that are not  numbers", a file name cut)."""
    text_coords = [["-80.8", "35.2"], [0, 0]]  # numbers written as text: bad coordinates
    bad = {"type": "Feature", "properties": {},
           "geometry": {"type": "LineString", "coordinates": text_coords}}  # fmt: skip
    path = write(tmp_path, street([(0, 0), (400, 0)]),
                 street([(200, 150), (200, 0)], ROAD_CLASS="Ped Mall [old]"), bad)
    code, out = check(str(path))
    flat = " ".join(out.split())
    assert code == 1 and "coordinates that are not [lon, lat] numbers" in flat, out
    assert "'Ped Mall [old]'" in flat, out  # the unknown class, as written
    empty = tmp_path / "roads[v2].geojson"
    empty.write_text("")
    code, out = check(str(empty))
    assert code == 2 and "roads[v2].geojson: not readable as GeoJSON" in out, out
    incident = ROOT / "fixtures" / "incidents" / "route-downtown"
    res = CliRunner().invoke(app, ["replay", str(incident), "--roads", str(empty), "--out",
                                   str(tmp_path / "out"), "--show", "0"])  # fmt: skip
    assert res.exit_code == 2 and "roads[v2].geojson: not readable" in res.output, res.output


def test_a_snap_distance_that_is_no_number_is_named_as_such(tmp_path: Path) -> None:
    """``--snap-m nan`` was refused as "should be <= 50" (a CLI review); out of range stays
    refused, 0 and 50 taken."""
    path = write(tmp_path, street([(0, 0), (400, 0)], type="highway.residential"))
    for bad in ("nan", "inf", "-1", "50.5"):
        code, out = check(str(path), "--snap-m", bad)
        flat = " ".join(out.replace("│", " ").split())  # the error box's borders out
        assert code == 2 and "is no snapping distance: give metres from 0 to 50" in flat, flat
    for good in ("0", "50"):
        code, out = check(str(path), "--snap-m", good)
        assert code in (0, 1), out


def test_a_near_miss_distance_that_is_no_number_is_named_as_such(tmp_path: Path) -> None:
    """``--near-miss-m nan`` was refused as "less than or equal to 100" (a CLI review), as
    ``--snap-m nan`` was; out of range stays refused, 0 and 100 taken."""
    path = write(tmp_path, street([(0, 0), (400, 0)], type="highway.residential"))
    for bad in ("nan", "inf", "-1", "100.5"):
        code, out = check(str(path), "--near-miss-m", bad)
        flat = " ".join(out.replace("│", " ").split())
        assert code == 2 and "is no distance: give metres from 0 to 100" in flat, flat
    for good in ("0", "100"):
        code, out = check(str(path), "--near-miss-m", good)
        assert code in (0, 1), out


def test_a_class_nested_hundreds_deep_is_refused_naming_the_feature(tmp_path: Path) -> None:
    """A ``highway`` list nested 500 deep was a RecursionError traceback, exit 1, out of
    ``roads check`` and ``replay --roads`` (a CLI review); now exit 2 naming the feature."""
    deep: object = "primary"
    for _ in range(500):
        deep = [deep]
    path = write(tmp_path, street([(0, 0), (400, 0)], highway=deep))
    code, out = check(str(path))
    flat = " ".join(out.split())
    assert code == 2, out
    assert "feature 0: its properties have arrays and tables nested too deeply" in flat, out
    incident = ROOT / "fixtures" / "incidents" / "route-downtown"
    res = CliRunner().invoke(app, ["replay", str(incident), "--roads", str(path), "--out",
                                   str(tmp_path / "out"), "--show", "0"])  # fmt: skip
    assert res.exit_code == 2 and "nested too deeply" in res.output, res.output


def test_an_origin_for_a_file_that_is_no_sumo_net_is_refused(tmp_path: Path) -> None:
    """``--origin`` with a GeoJSON file was ignored without a word (a CLI review): it places
    only a SUMO net without geo-reference."""
    path = write(tmp_path, street([(0, 0), (400, 0)], highway="residential"))
    code, out = check(str(path), "--origin", "-80.84,35.22")
    flat = " ".join(out.split())
    assert code == 2 and "places only a SUMO .net.xml without geo-reference" in flat, out


def _grid_net(tmp_path: Path) -> Path:
    """A ``netgenerate`` grid: a SUMO net without geo-reference."""
    import subprocess

    sumo = __import__("sumo")
    net = tmp_path / "grid.net.xml"
    subprocess.run([str(Path(sumo.SUMO_HOME) / "bin" / "netgenerate"), "--grid", "-o", str(net)],
                   check=True, capture_output=True)  # fmt: skip
    return net


def test_evaluate_takes_an_origin_for_a_sumo_net_without_geo_reference(tmp_path: Path) -> None:
    """The load's error said "give --origin LON,LAT", which evaluate did not have: such a
    net could not be used with it (a CLI review). --origin without --roads is refused."""
    net = _grid_net(tmp_path)
    incident = ROOT / "fixtures" / "incidents" / "route-downtown"
    res = CliRunner().invoke(app, ["evaluate", str(incident), "--json", "--roads", str(net),
                                   "--origin", "-80.84,35.22"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["evaluate", str(incident), "--json", "--roads", str(net)])
    assert res.exit_code == 2 and "--origin LON,LAT" in res.output, res.output
    res = CliRunner().invoke(app, ["evaluate", str(incident), "--origin", "-80.84,35.22"])
    assert res.exit_code == 2 and "only with --roads" in res.output, res.output


def _swapped(tmp_path: Path) -> Path:
    """Charlotte written [lat, lon]: a valid file on the other side of the globe."""
    doc = json.loads(CHARLOTTE.read_text())
    for feature in doc["features"]:
        geometry = feature["geometry"]
        geometry["coordinates"] = [[lat, lon] for lon, lat in geometry["coordinates"]]
    path = tmp_path / "swapped.geojson"
    path.write_text(json.dumps(doc))
    return path


def test_a_network_that_holds_none_of_the_incidents_fixes_is_warned_of(tmp_path: Path) -> None:
    """Charlotte written [lat, lon] loaded "ok" and `evaluate --roads` ran on it without a
    word, its zones smaller than with no roads at all (a CLI review)."""
    incident = ROOT / "fixtures" / "incidents" / "route-downtown"
    swapped = _swapped(tmp_path)
    for command in (["evaluate", str(incident), "--json"],
                    ["replay", str(incident), "--out", str(tmp_path / "out"), "--show", "0"]):
        res = CliRunner().invoke(app, [*command, "--roads", str(swapped)])
        flat = " ".join(res.output.split())
        assert res.exit_code == 0, res.output
        assert f"warning: {swapped}: the road network (lon 35." in flat, flat
        assert "holds 0 of the incident's" in flat, flat
        assert "the file looks written [lat, lon], GeoJSON wants [lon, lat]" in flat, flat
    res = CliRunner().invoke(app, ["evaluate", str(incident), "--json", "--roads",
                                   str(CHARLOTTE)])  # fmt: skip
    assert res.exit_code == 0 and "emergency fixes" not in res.output, res.output
