"""The simulator's run options (broker/simulate/options.py): one rule per value, refused in
the terms of whoever asked (RunOptions, `broker simulate`, `sweep matrix`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.simulate.options import OptionError, RunOptions, parse_dropout


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
    with pytest.raises(OptionError, match="run options"):
        RunOptions(**options)


def test_an_option_error_is_said_in_each_commands_terms() -> None:
    with pytest.raises(OptionError) as caught:
        RunOptions(units=0)
    err = caught.value
    assert isinstance(err, ValueError)  # what callers of RunOptions caught before
    assert str(err) == "run options: units 0: want at least 1 unit"
    assert err.said({"units": "--vehicles"}) == "--vehicles 0: want at least 1 unit"
    assert err.said({}) == "units 0: want at least 1 unit"


def test_an_option_error_survives_the_pipe_from_a_simulation_child() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(OptionError("max_s", "100", "want more")))
    assert (err.field, err.value, err.want) == ("max_s", "100", "want more")


@pytest.mark.parametrize(
    ("field", "simulate_args", "matrix_args"),
    [("units", ["--vehicles", "0"], ["--units", "1,0"]),
     ("route_lead_s", ["--route-lead-s", "-5"], ["--route-lead-s", "-5"]),
     ("dropout_s", ["--dropout", "60,-30"], ["--dropout", "60,-30"]),
     ("dropout_s", ["--dropout", "60"], ["--dropout", "60"])],
)  # fmt: skip
def test_simulate_and_the_sweep_refuse_by_the_run_options_rule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, field: str, simulate_args: list[str],
    matrix_args: list[str],
) -> None:
    """The simulate command and the sweep each had their own copy of these rules (and their own
    wording); both now say RunOptions' problem, naming their own option."""
    from typer.testing import CliRunner

    from broker.cli import app
    from broker.simulate import cli, sweep

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the options should have been refused before the run")

    monkeypatch.setattr(cli, "run_isolated", refuse)
    monkeypatch.setattr(sweep, "run_isolated", refuse)
    value = simulate_args[1]
    units = int(value) if field == "units" else 1
    lead = float(value) if field == "route_lead_s" else 0.0
    with pytest.raises(OptionError) as caught:
        RunOptions(units=units, route_lead_s=lead, dropout_s=parse_dropout(
            value if field == "dropout_s" else ""))
    want = caught.value.want
    res = CliRunner().invoke(app, ["simulate", "grid", *simulate_args])
    assert res.exit_code == 2, res.output
    assert f"{simulate_args[0]} " in res.output and want in " ".join(res.output.split())
    res = CliRunner().invoke(
        sweep.app, ["matrix", "--scenarios", "grid", "--out", str(tmp_path), *matrix_args]
    )
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.replace("│", " ").split())
    assert matrix_args[0] in said and want in said and "Traceback" not in res.output


@pytest.mark.parametrize("args", [["matrix", "--seed", "-1"],
                                  ["matrix", "--seed", "2147483647", "--seeds", "2"],
                                  ["tradeoff", "--seed", "-1"]])
def test_the_sweep_refuses_a_seed_before_any_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str]
) -> None:
    """A seed outside SUMO's range raised out of the run loop (a traceback, exit 1), the last
    seed of ``--seeds`` only after the first full run: now exit 2 naming ``--seed`` first."""
    from typer.testing import CliRunner

    from broker.simulate import sweep

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the seed should have been refused before the run")

    monkeypatch.setattr(sweep, "run_isolated", refuse)
    res = CliRunner().invoke(sweep.app, [*args, "--scenarios", "grid", "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "--seed" in res.output and "Traceback" not in res.output
