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


def test_replay_names_an_out_file_that_is_a_directory_before_replaying(tmp_path: Path) -> None:
    """A directory at --out/alerts.ndjson (or map.png) was an IsADirectoryError traceback,
    exit 1, after the whole replay (a review)."""
    from tests.unit.cli.invoke import INCIDENT

    for name in ("alerts.ndjson", "map.png"):
        out = tmp_path / name.replace(".", "-")
        (out / name).mkdir(parents=True)
        code, said = run("replay", str(INCIDENT), "--out", str(out))
        assert code == 2, said
        said = " ".join(said.split())
        assert f"--out {out}: {out / name} is a directory" in said, said


def test_replay_says_an_out_that_is_a_file_is_not_a_directory(tmp_path: Path) -> None:
    """--out /dev/null said "cannot create it (File exists)" (a review)."""
    from tests.unit.cli.invoke import INCIDENT

    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, Path("/dev/null")):
        code, said = run("replay", str(INCIDENT), "--out", str(out))
        assert code == 2, said
        assert f"--out {out}: not a directory" in " ".join(said.split()), said


def test_transparency_refuses_an_html_directory_before_printing_the_report(
    tmp_path: Path,
) -> None:
    """--html /tmp printed the whole report, then failed exit 2 (a review)."""
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    code, out = run("transparency", "--audit", str(audit), "--html", str(tmp_path))
    assert code == 2, out
    assert f"--html {tmp_path}: is a directory" in " ".join(out.split())
    assert "navapp" not in out  # no report before the error


def test_transparency_says_an_audit_directory_is_a_directory(tmp_path: Path) -> None:
    """--audit /tmp said "no such audit log" (a review)."""
    code, out = run("transparency", "--audit", str(tmp_path))
    assert code == 2, out
    assert f"--audit: {tmp_path}: is a directory, not an audit log" in " ".join(out.split())
