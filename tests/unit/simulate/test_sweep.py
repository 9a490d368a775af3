"""`python -m broker.simulate.sweep`: what it refuses before any run, and its engine variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.simulate.options import RunOptions


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
