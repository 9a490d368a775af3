"""Simulations run in a child process (``broker.simulate.isolated``): a SUMO crash ends that
run, not the sweep or the command; any other error is raised as the run raised it."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from broker.cli import app
from broker.simulate import isolated, sweep
from broker.simulate.options import RunOptions
from broker.simulate.run import Progress


def _fake(opts: RunOptions, progress: Progress | None = None) -> SimpleNamespace:
    while opts.seed == 14 and progress is not None:  # a run that goes on until stopped
        progress(float(os.getpid()), 0.0)  # (its pid, for the test to check)
    if progress is not None:
        for t in (1.0, 2.0, 3.0):
            progress(t, 3.0)
    if opts.seed == 11:
        faulthandler.disable()  # pytest's handler would print a scary traceback
        os.kill(os.getpid(), signal.SIGSEGV)  # as libsumo does now and then
    if opts.seed == 12:
        raise ValueError("a bug in the run")
    if opts.seed == 13:  # Ctrl-C in a terminal: the whole process group gets SIGINT
        os.kill(os.getpid(), signal.SIGINT)
    return SimpleNamespace(civilians=40 + opts.seed, meta={"abandoned": ["E2"]})


@pytest.fixture(autouse=True)
def fake_simulate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolated, "simulate", _fake)  # the forked child sees it too


def test_a_run_comes_back_from_its_child_with_its_progress() -> None:
    seen: list[tuple[float, float]] = []
    got = isolated.run_isolated(RunOptions(scenario="grid", seed=2),
                                progress=lambda t, total: seen.append((t, total)))  # fmt: skip
    assert got == SimpleNamespace(civilians=42, meta={"abandoned": ["E2"]})
    assert seen == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]


def test_a_run_sumo_crashed_is_none() -> None:
    assert isolated.run_isolated(RunOptions(scenario="grid", seed=11)) is None


def test_an_error_of_the_run_is_raised_as_if_in_process() -> None:
    with pytest.raises(ValueError, match="a bug in the run"):
        isolated.run_isolated(RunOptions(scenario="grid", seed=12))


def test_the_sweep_says_which_run_crashed_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    assert sweep.isolated(RunOptions(scenario="grid", seed=11)) is None
    assert "grid 1u light seed 11: SUMO crashed; left out" in capsys.readouterr().err
    assert sweep.isolated(RunOptions(scenario="grid", seed=3)) is not None


def test_broker_simulate_says_sumo_crashed_and_exits_1() -> None:
    result = CliRunner().invoke(app, ["simulate", "grid", "--seed", "11"])
    assert result.exit_code == 1  # the run failed (README: exit codes)
    said = " ".join(result.output.split())  # rich wraps the line
    assert "error: SUMO crashed on this run (grid, seed 11)" in said
    assert "another --seed runs" in said


def test_an_interrupted_parent_stops_its_child_at_once() -> None:
    """SIGINT to the parent alone (kill -INT PID; Ctrl-C reaches both, below): it waited for
    the child, which went on sending progress into a pipe no one read, blocked for ever (it
    held the parent's end open too): `broker simulate` hung, its child left behind."""
    children: list[int] = []

    def interrupted(pid: float, _total: float) -> None:
        assert int(pid) != os.getpid() and int(pid) > 1  # the child's
        children.append(int(pid))
        raise KeyboardInterrupt

    outcome: list[str] = []

    def run() -> None:
        try:
            isolated.run_isolated(RunOptions(scenario="grid", seed=14), progress=interrupted)
        except KeyboardInterrupt:
            outcome.append("interrupted")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)  # a bound on a hang, not a wait for something to happen
    try:
        assert outcome == ["interrupted"]
        with pytest.raises(ProcessLookupError):  # the child is gone (killed and reaped)
            os.kill(children[0], 0)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_in_the_child_prints_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C in a terminal signals the child too: it died with a KeyboardInterrupt traceback
    from inside libsumo ("Process ForkProcess-1: Traceback ..."). The parent stops the run."""
    got = isolated.run_isolated(RunOptions(scenario="grid", seed=13))
    assert got == SimpleNamespace(civilians=53, meta={"abandoned": ["E2"]})
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
