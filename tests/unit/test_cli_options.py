"""Bad option values of `broker` commands: one clear line naming the option and value, exit 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from broker.cli import app

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = ROOT / "fixtures" / "incidents" / "route-downtown"


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def test_evaluate_refuses_a_negative_lookahead():
    code, out = run("evaluate", str(INCIDENT), "--lookahead-s", "-5")
    assert code == 2
    assert "--lookahead-s -5" in out and "lookahead_s must be >= 0" in out
