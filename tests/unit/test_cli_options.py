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
