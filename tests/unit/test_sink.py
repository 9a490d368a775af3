"""`broker sink` (broker/sink.py): the port options it refuses in one line, exit 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from broker.cli import app


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


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
