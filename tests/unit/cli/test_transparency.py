"""``broker transparency``'s options: one audit source (a file or the audit topic), and the
options that only go with --kafka; refused with exit 2 before anything is read."""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli.invoke import run


def test_an_audit_log_and_the_audit_topic_together_are_refused(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    code, out = run("transparency", "--audit", str(audit), "--kafka", "127.0.0.1:9")
    assert code == 2, out
    assert "--audit and --kafka: give one" in " ".join(out.split())


def test_a_topic_prefix_without_kafka_is_refused(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    code, out = run("transparency", "--audit", str(audit), "--topic-prefix", "t.")
    assert code == 2, out
    assert "--topic-prefix: only with --kafka" in " ".join(out.split())


def test_a_kafka_address_that_is_no_host_and_port_is_refused_by_its_option() -> None:
    code, out = run("transparency", "--kafka", "nowhere")
    assert code == 2, out
    assert "--kafka='nowhere': 'nowhere' is not host:port" in " ".join(out.split())


def test_no_audit_log_points_to_the_audit_topic(tmp_path: Path) -> None:
    code, out = run("transparency", "--audit", str(tmp_path / "none.jsonl"))
    assert code == 2, out
    assert "the worker's audit topic is read with --kafka HOST:PORT" in " ".join(out.split())
