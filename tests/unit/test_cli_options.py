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


def test_replay_into_kafka_refuses_a_bad_address_before_connecting():
    code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:abc")
    assert code == 2
    assert "--kafka='127.0.0.1:abc': '127.0.0.1:abc' is not host:port" in out


def test_replay_into_kafka_refuses_zero_partitions():
    code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:9092", "--partitions", "0")
    assert code == 2
    assert "--partitions=0: want a whole number >= 1" in out


def test_replay_serve_refuses_a_port_out_of_range_before_replaying():
    code, out = run("replay", str(INCIDENT), "--serve", "--port", "70000")
    assert code == 2
    assert "--port 70000: want 0 (any free port) to 65535" in out


def test_sink_refuses_a_port_out_of_range():
    for port in ("70000", "-1"):
        code, out = run("sink", "--port", port)
        assert code == 2
        assert f"--port {port}: want 0 (any free port) to 65535" in out


def test_sink_names_a_port_it_cannot_listen_on(tmp_path: Path) -> None:
    """A port in use gave a traceback (OSError out of the server) and no word of the option."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, out = run("sink", "--port", port, "--out", str(tmp_path / "sink.jsonl"))
    assert code == 2
    assert f"--port {port}: cannot listen on 127.0.0.1 (Address already in use)" in out


def test_evaluate_counts_what_it_refused_and_refuses_to_report_on_nothing(tmp_path) -> None:
    """Malformed lines were dropped without a word in the figures, and a directory of
    nothing readable gave points 0 and exit 0, like an incident without emergency fixes."""
    import json

    incident = tmp_path / "inc"
    incident.mkdir()
    good = (ROOT / "fixtures" / "incidents" / "route-downtown" / "positions.ndjson")
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


def test_replay_into_kafka_says_it_could_not_reach_the_broker(monkeypatch) -> None:
    """An unreachable --kafka gave a 150-line traceback (KafkaTimeoutError) after 30 s."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    monkeypatch.setattr("broker.cli.KAFKA_CONNECT_TIMEOUT_S", 1.0, raising=False)
    code, out = run("replay", str(INCIDENT), "--kafka", address, "--max-speed")
    assert code == 69  # EX_UNAVAILABLE, as `broker worker` and `partner-enable` (Kafka unreachable)
    assert f"--kafka {address}: could not reach a Kafka broker there (tried 1 s)" in out
    assert "check the host and port" in out and "Traceback" not in out


def test_replay_refuses_kafka_options_without_kafka(tmp_path: Path) -> None:
    """--speed without --kafka was ignored: an in-process replay ran and exited 0."""
    for args, named in (
        (["--speed", "5"], "--speed"),
        (["--max-speed"], "--max-speed"),
        (["--topic-prefix", "t.", "--partitions", "3"], "--topic-prefix, --partitions"),
    ):
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path), *args)
        assert code == 2, out
        assert f"{named}: only with --kafka HOST:PORT" in out
    assert not (tmp_path / "alerts.ndjson").exists()


def test_replay_refuses_speed_with_max_speed() -> None:
    """--max-speed silently won over --speed."""
    code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:1", "--speed", "2",
                    "--max-speed")  # fmt: skip
    assert code == 2
    assert "--speed and --max-speed: give one" in out


def test_replay_into_kafka_refuses_in_process_options() -> None:
    """--roads, --serve ... with --kafka were ignored: nothing of them reaches the worker."""
    code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:1", "--serve", "--deliver")
    assert code == 2
    assert "--kafka does not take --deliver, --serve: it only produces the incident" in out
