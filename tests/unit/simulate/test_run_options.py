"""The simulator's run options that need no SUMO: the dropout's text form."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.simulate.run import RunOptions, parse_dropout


def test_a_dropout_reads_after_and_length_and_none_by_default() -> None:
    assert parse_dropout("60,30") == (60.0, 30.0)
    assert parse_dropout("") == RunOptions().dropout_s == (0.0, 0.0)
    assert RunOptions().route_lead_s == 0.0  # the route with the first fix, as before


@pytest.mark.parametrize("text", ["60", "a,b", "1,2,3"])
def test_a_malformed_dropout_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dropout(text)


@pytest.mark.parametrize("text", ["60,-30", "-5,30", "nan,30", "60,nan", "inf,30", "60,0"])
def test_a_dropout_that_cannot_be_is_refused_not_run_as_none(text: str) -> None:
    """These ran as no dropout at all (the window test is false for every second), and the
    figures read as a tunnel's."""
    with pytest.raises(ValueError, match="want AFTER >= 0 and LENGTH > 0"):
        parse_dropout(text)


@pytest.mark.parametrize(
    "options",
    [{"route_lead_s": -5.0}, {"route_lead_s": float("nan")}, {"dropout_s": (60.0, -30.0)},
     {"dropout_s": (float("nan"), 30.0)}, {"units": 0}, {"max_s": 100.0},
     {"max_s": 150.0, "warmup_s": 150.0}],
)  # fmt: skip
def test_run_options_refuse_a_run_that_cannot_be(options: dict) -> None:
    """No unit crashed after the warm-up (IndexError); a clock that stops before the warm-up
    ends dispatched none and scored an empty run."""
    with pytest.raises(ValueError, match="run options"):
        RunOptions(**options)


def test_the_sweep_refuses_bad_options_before_any_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from broker.simulate import sweep

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the options should have been refused before the run")

    monkeypatch.setattr(sweep, "run_isolated", refuse)
    for args, said in ((["--dropout", "60,-30"], "--dropout"),
                       (["--route-lead-s", "-5"], "--route-lead-s"),
                       (["--units", "0"], "--units"), (["--units", "1,x"], "--units")):  # fmt: skip
        res = CliRunner().invoke(
            sweep.app, ["matrix", "--scenarios", "grid", "--out", str(tmp_path), *args]
        )
        assert res.exit_code == 2, res.output
        assert said in res.output


def test_a_set_variant_is_the_runs_engine_with_the_override_segments_included() -> None:
    from broker.simulate.sweep import _variant

    assert _variant([]) is None
    variant = _variant(["approach_s=12", "on_scene_turn_offs=2"])
    assert variant is not None
    # the heading-aware receiver reads the variant's warning segments as the run's own
    assert variant.warning_segments == RunOptions().cfg.warning_segments is True
    assert (variant.approach_s, variant.on_scene_turn_offs) == (12.0, 2)


def test_a_set_variant_is_read_as_broker_simulate_reads_set() -> None:
    """The sweep's own reading could not set a tuple field and raised a traceback for an item
    without '='; it is the CLI's now."""
    from broker.simulate.sweep import _variant

    variant = _variant(["service_area=-1,-2,3,4", "lookahead_s= 60"])
    assert variant is not None
    assert (variant.service_area, variant.lookahead_s) == ((-1.0, -2.0, 3.0, 4.0), 60.0)


@pytest.mark.parametrize(
    ("item", "said"),
    [("lookahead_s", "want FIELD=VALUE"), ("lookahed_s=50", "did you mean 'lookahead_s'"),
     ("lookahead_s=-3", "want a number >= 0")],
)  # fmt: skip
def test_the_sweep_refuses_a_bad_set_in_one_line_before_any_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, item: str, said: str
) -> None:
    from typer.testing import CliRunner

    from broker.simulate import sweep

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the options should have been refused before the run")

    monkeypatch.setattr(sweep, "run_isolated", refuse)
    res = CliRunner().invoke(
        sweep.app, ["matrix", "--scenarios", "grid", "--out", str(tmp_path), "--set", item]
    )
    assert res.exit_code == 2, res.output
    assert said in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_the_cad_route_stops_where_the_unit_will_stop_on_the_scene_edge() -> None:
    from broker.simulate.run import _shape_upto

    edge = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)]  # 200 m, bent halfway
    assert _shape_upto(edge, 0.25) == [(0.0, 0.0), (50.0, 0.0)]
    assert _shape_upto(edge, 0.75) == [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)]
    assert _shape_upto(edge, 1.5) == edge  # never past the edge's end
