"""The sweeps run each simulation in a child process: a SUMO crash leaves that run out instead
of ending the sweep; any other error is raised as the run raised it."""

from __future__ import annotations

import faulthandler
import os
import signal
from types import SimpleNamespace

import pytest

from broker.simulate import scorer, sweep
from broker.simulate.run import RunOptions

GROUP = scorer.group_figures([20.0, 35.0])
FIGURES = scorer.MethodFigures("limit", GROUP, {"same": GROUP}, GROUP, 3, 41.5, 0.2, 7,
                               {"same": [20.0, 35.0]})  # fmt: skip


def _fake(opts: RunOptions) -> SimpleNamespace:
    if opts.seed == 11:
        faulthandler.disable()  # pytest's handler would print a scary traceback
        os.kill(os.getpid(), signal.SIGSEGV)  # as libsumo does now and then
    if opts.seed == 12:
        raise ValueError("a bug in the run")
    return SimpleNamespace(figures={"limit": FIGURES}, civilians=40 + opts.seed,
                           meta={"abandoned": ["E2"]})  # fmt: skip


@pytest.fixture(autouse=True)
def fake_simulate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "simulate", _fake)  # the forked child sees it too


def test_a_run_comes_back_from_its_child_with_its_figures() -> None:
    got = sweep.isolated(RunOptions(scenario="grid", seed=2))
    assert got == sweep.RunFigures({"limit": FIGURES}, civilians=42, abandoned=1)


def test_a_run_sumo_crashed_is_none_and_the_sweep_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sweep.isolated(RunOptions(scenario="grid", seed=11)) is None
    assert "grid 1u light seed 11: SUMO crashed (exit -11)" in capsys.readouterr().err


def test_an_error_of_the_run_is_raised_as_if_in_process() -> None:
    with pytest.raises(ValueError, match="a bug in the run"):
        sweep.isolated(RunOptions(scenario="grid", seed=12))
