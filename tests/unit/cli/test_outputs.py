"""Output paths the commands cannot write: one error line naming the option and the path, exit
2, no traceback (an operator review of the CLI)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli.invoke import run


def test_transparency_names_an_html_path_it_cannot_write(tmp_path: Path) -> None:
    """--html under a file (or on /proc) ended the report with a traceback, exit 1."""
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")  # a log with nothing sent yet: a report of zeros
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = run("transparency", "--audit", str(audit), "--html", str(blocker / "r.html"))
    assert code == 2, out
    assert f"--html {blocker / 'r.html'}: cannot write it" in " ".join(out.split())
