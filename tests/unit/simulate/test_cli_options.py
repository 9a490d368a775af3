"""`broker simulate` refuses bad options in one line naming the option and value, exit 2,
before SUMO starts (run_isolated is replaced: these tests never simulate)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from broker.cli import app


@pytest.fixture(autouse=True)
def no_sumo(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the options should have been refused before the run")

    monkeypatch.setattr("broker.simulate.cli.run_isolated", refuse)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--set", "lookahed_s=50"], "--set 'lookahed_s=50': no engine setting 'lookahed_s' "
                                     "(did you mean 'lookahead_s'?)"),
        (["--set", "lookahead_s"], "--set 'lookahead_s': want FIELD=VALUE"),
        (["--set", "lookahead_s=abc"], "--set 'lookahead_s=abc': want a number"),
        (["--set", "lookahead_s=-3"], "--set 'lookahead_s=-3': want a number >= 0"),
        (["--dropout", "60"], "--dropout '60': want AFTER,LENGTH seconds"),
        (["--dropout", "60,-30"], "--dropout 60,-30: want AFTER >= 0 and "
                                  "LENGTH > 0 seconds"),
        (["--dropout", "nan,30"], "--dropout nan,30: want AFTER >= 0"),
        (["--route-lead-s", "-5"], "--route-lead-s -5: want seconds >= 0"),
        (["--vehicles", "0"], "--vehicles 0: want at least 1 unit"),
        (["--traffic", "medium"], "--traffic 'medium': want light or heavy"),
        (["--demand", "lots"], "--demand 'lots': want one of random, counts, recorded"),
        (["--max-s", "100"], "--max-s 100: want more than the 150 s warm-up"),
        # a review: an OverflowError traceback; nan passed the warm-up test (False both ways)
        (["--max-s", "inf"], "--max-s inf: want a finite number of seconds"),
        (["--max-s", "nan"], "--max-s nan: want a finite number of seconds"),
        # a review: a SUMO error and tracebacks, exit 1; -1 SUMO's message, naming no option
        (["--seed", "99999999999"], "--seed 99999999999: want a whole number 0 to 2147483647"),
        (["--seed", "-1"], "--seed -1: want a whole number 0 to 2147483647"),
        (["--lookahead-s", "-5"], "--lookahead-s -5.0: engine setting lookahead_s must be >= 0"),
        (["--approach-s", "-1"], "--approach-s -1.0: engine setting approach_s must be >= 0"),
    ],
)
def test_a_bad_option_exits_2_naming_it(args: list[str], said: str) -> None:
    res = CliRunner().invoke(app, ["simulate", "grid", *args])
    assert isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2
    assert said in res.output
    assert "Traceback" not in res.output


def test_a_set_override_reads_none_and_yes_as_the_environment_does() -> None:
    """--set on_scene_turn_offs=none said "want a whole number" though =null worked and
    BROKER_ENGINE_ON_SCENE_TURN_OFFS=none is read as unset (a review)."""
    from broker.simulate.cli import engine_config

    for unset in ("none", "None", "null", ""):
        assert engine_config(None, None, [f"on_scene_turn_offs={unset}"]).on_scene_turn_offs is None
    cfg = engine_config(None, None, ["lights_without_cad=yes"])
    assert cfg.lights_without_cad is True


def test_a_set_override_of_a_tuple_field_reads_commas() -> None:
    from broker.simulate.cli import engine_config

    cfg = engine_config(None, None, ["service_area=-1,-2,3,4", "approach_s=12"])
    assert cfg.service_area == (-1.0, -2.0, 3.0, 4.0)
    assert (cfg.approach_s, cfg.warning_segments) == (12.0, True)


@pytest.mark.parametrize("text", ['{"type": "Feature"', "[" * 5000 + "]" * 5000])
def test_a_road_network_that_does_not_load_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path, text: str
) -> None:
    """The run loads ``--roads FILE`` (in its child process, whose error is raised here): a
    RoadNetworkError, not a ValueError, was a traceback."""
    from pathlib import Path

    from broker.geo.roads import RoadNetwork
    from broker.simulate.options import RunOptions

    def run(opts: RunOptions, progress: object = None) -> None:
        assert opts.roads is not None
        RoadNetwork.load(Path(opts.roads))  # what the run does first with it

    monkeypatch.setattr("broker.simulate.cli.run_isolated", run)
    path = tmp_path / "roads.geojson"
    path.write_text(text)
    res = CliRunner().invoke(app, ["simulate", "grid", "--roads", str(path)])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "roads.geojson:notreadableasGeoJSON" in "".join(res.output.split())  # rich wraps


@pytest.mark.parametrize("option", ["--out", "--cache-dir"])
def test_a_directory_it_cannot_create_exits_2_naming_it_before_the_run(
    tmp_path, option: str
) -> None:
    """--out under a file (or on /proc) was a traceback, exit 1, after the whole simulation;
    --cache-dir there said "[Errno 2] No such file or directory" and no option."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(app, ["simulate", "grid", option, str(blocker / "d")])
    assert isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2
    assert f"{option} {blocker / 'd'}: cannot create it" in "".join(res.output.splitlines())
