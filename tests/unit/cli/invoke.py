"""Run the `broker` app in process (typer's CliRunner) for the CLI tests: exit code and output."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from broker.cli import app

ROOT = Path(__file__).resolve().parents[3]
INCIDENT = ROOT / "fixtures" / "incidents" / "route-downtown"


def run(*args: str) -> tuple[int, str]:
    """``broker ARGS...``: its exit code and output; an exception other than an exit fails."""
    res = CliRunner().invoke(app, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output
