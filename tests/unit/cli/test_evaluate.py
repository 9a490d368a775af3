"""`broker evaluate` (broker/cli/evaluate.py): the figures, and what it refuses (exit 2)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from broker.cli import app
from tests.unit.cli.invoke import INCIDENT, run


def test_cli_evaluate_json(tmp_path):
    import json

    res = CliRunner().invoke(app, ["evaluate", str(INCIDENT), "--json"])
    assert res.exit_code == 0, res.output
    figures = json.loads(res.output)
    for key in ("lead_time_median_s", "lead_time_p10_s", "frac_warned_15s", "zone_area_km2_s"):
        assert key in figures


def test_evaluate_refuses_a_negative_lookahead():
    code, out = run("evaluate", str(INCIDENT), "--lookahead-s", "-5")
    assert code == 2
    assert "--lookahead-s -5" in out and "lookahead_s must be >= 0" in out


def test_evaluate_counts_what_it_refused_and_refuses_to_report_on_nothing(tmp_path) -> None:
    """Malformed lines were dropped without a word in the figures, and a directory of
    nothing readable gave points 0 and exit 0, like an incident without emergency fixes."""
    import json

    incident = tmp_path / "inc"
    incident.mkdir()
    good = INCIDENT / "positions.ndjson"
    lines = good.read_text().splitlines()[:40]
    (incident / "positions.ndjson").write_text("\n".join([*lines, "{not json", '{"ts": 1}']))
    out = CliRunner().invoke(app, ["evaluate", str(incident), "--json"])
    assert out.exit_code == 0, out.output
    figures = json.loads(out.output)
    assert figures["messages_rejected"] == 2
    assert figures["rejected_by_reason"] == {"bad_json": 1, "bad_timestamp": 1}
    (incident / "positions.ndjson").write_text("{not json\n")
    out = CliRunner().invoke(app, ["evaluate", str(incident)])
    assert out.exit_code == 2 and "no message could be read (1 read: bad_json (1))" in out.output


@pytest.mark.parametrize("command", ["evaluate", "replay"])
def test_the_lead_time_figures_say_they_are_being_computed(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the replay's bar, fleet-200 spent ~30 s on these figures with nothing on the
    screen (an operator review: it looked hung)."""
    screen = io.StringIO()
    monkeypatch.setattr("broker.cli.common.err_console",
                        Console(file=screen, force_terminal=True, width=120))
    args = ["--out", str(tmp_path / "out"), "--show", "0"] if command == "replay" else []
    code, out = run(command, str(INCIDENT), *args)
    assert code == 0, out
    assert "lead time and zone cost of 74 alert messages" in screen.getvalue()
