"""`broker sink` (broker/sink.py): the port options it refuses in one line (exit 2), and what
it refuses of a client: a body over 1 MiB, a Content-Length that is no length, an idle socket."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from broker.cli import app
from broker.sink import MAX_BODY_BYTES, SinkServer

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes: test only


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})  # no wrapped paths
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def test_sink_refuses_a_port_out_of_range():
    for port in ("70000", "-1"):
        code, out = run("sink", "--port", port)
        assert code == 2
        assert f"--port {port}: want 0 (any free port) to 65535" in out


def test_sink_names_a_port_it_cannot_listen_on(tmp_path: Path) -> None:
    """A port in use gave a traceback (OSError out of the server) and no word of the option."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, out = run("sink", "--port", port, "--out", str(tmp_path / "sink.jsonl"))
    assert code == 2
    assert f"--port {port}: cannot listen on 127.0.0.1 (Address already in use)" in out


def test_sink_without_a_partners_file_or_a_secret_says_what_to_give(tmp_path: Path) -> None:
    """Run outside the repository's root (the default path not there) or with a wrong path,
    it stopped with a traceback (the server had no secret)."""
    code, out = run("sink", "--partners", str(tmp_path / "nope.toml"),
                    "--out", str(tmp_path / "s.jsonl"))
    assert code == 2 and "nope.toml: no such file" in out and "--secret-env" in out


def test_sink_blames_a_broken_partners_file_on_partners_not_host(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[partner]\n")
    code, out = run("sink", "--partners", str(bad), "--out", str(tmp_path / "s.jsonl"))
    assert code == 2 and "--partners" in out and "--host" not in out


def ask(sink: SinkServer, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; what the sink answers until it closes (a
    generous bound against a sink that never answers)."""
    host, port = sink.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def post(length: str) -> bytes:
    return (f"POST /hook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_a_body_over_1_mib_gets_413_before_it_is_read() -> None:
    """Found in review: a 300 MB body was read whole before the signature check (RSS 25 ->
    326 MB). The 413 comes though not a byte of the body was sent."""
    with SinkServer(secrets=[SECRET]) as sink:
        answer = ask(sink, post(str(MAX_BODY_BYTES + 1)))
        assert answer.startswith(b"HTTP/1.1 413")
        assert ask(sink, post("0")).startswith(b"HTTP/1.1 401")  # at the limit: read, checked


def test_a_content_length_that_is_no_length_gets_400() -> None:
    """Found in review: ``-1`` read to EOF, ``abc`` raised ValueError (a traceback, no answer)."""
    with SinkServer(secrets=[SECRET]) as sink:
        for length in ("-1", "abc", "1e3", "²"):
            assert ask(sink, post(length)).startswith(b"HTTP/1.1 400"), length


def test_an_idle_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: no timeout, a thread per connection: 300 idle sockets held 303 threads.
    (A short timeout here; the connection is closed with no answer.)"""
    monkeypatch.setattr("broker.sink.REQUEST_TIMEOUT_S", 0.2)
    with SinkServer(secrets=[SECRET]) as sink:
        assert ask(sink, b"POST /hook HTTP/1.1\r\n") == b""


def test_the_attempts_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("broker.sink.MAX_ATTEMPTS_KEPT", 3)
    with SinkServer(secrets=[SECRET]) as sink:
        for _ in range(5):
            assert ask(sink, post("0")).startswith(b"HTTP/1.1 401")
        assert len(sink.attempts) == 3 and sink.rejected == 5


class _StopOnceListening(threading.Event):
    """The sink's wait for Ctrl-C, ended at once (its request waits, with a timeout, as
    they are): a sink that starts returns instead of serving for ever."""

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            raise KeyboardInterrupt
        return super().wait(timeout)


def test_sink_refuses_an_out_file_it_cannot_append_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out under a file (or on /proc) started the sink, which said "recording to" it; each
    alert then got a traceback on stderr and its connection closed without an answer (and a
    retry counted as a duplicate: the alert was never recorded)."""
    monkeypatch.setattr("broker.sink.threading", SimpleNamespace(
        Event=_StopOnceListening, Lock=threading.Lock, Thread=threading.Thread))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sink.jsonl"
    code, text = run("sink", "--port", "0", "--out", str(out))
    assert code == 2, text
    assert f"--out {out}: cannot append to it" in text and "listening" not in text


def test_a_webhook_id_is_a_duplicate_within_the_window_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A webhook-id received was a duplicate for ever: a partner given the raw alert id gets
    ``-v1`` again when the engine re-creates an alert it forgot hours later, and the sink
    answered it 200 and dropped it (a delivery review)."""
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    clock = [1000.0]
    monkeypatch.setattr("broker.sink.time.monotonic", lambda: clock[0])
    sink = SinkServer(secrets=[SECRET], dedupe_window_s=3600.0)
    body = b'{"type": "alert.created", "timestamp": "2026-11-25T14:00:00Z", "data": {}}'

    def deliver() -> int | None:
        now = datetime.now(UTC)
        headers = {"webhook-id": "A1-v1", "webhook-timestamp": str(int(now.timestamp())),
                   "content-type": "application/json",
                   "webhook-signature": Webhook(SECRET).sign("A1-v1", now, body.decode())}
        return sink._handle("/hook", headers, body)[0]

    assert deliver() == 200 and len(sink.received) == 1
    clock[0] += 3599.0
    assert deliver() == 200 and len(sink.received) == 1 and sink.duplicates == 1  # a retry
    clock[0] += 2.0
    assert deliver() == 200 and len(sink.received) == 2  # a new message under an old id


@pytest.mark.parametrize("value", ["not!base64", "whsec_c2hvcnQ=", "whsec_\u00e9"])
def test_sink_refuses_a_secret_env_that_is_no_signing_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """X='not!base64' stopped the sink with a binascii traceback (a review): checked as the
    partners file's signing secrets are, naming --secret-env and the variable, never its
    value."""
    monkeypatch.setenv("X", value)
    code, out = run("sink", "--partners", str(tmp_path / "nope.toml"), "--secret-env", "X",
                    "--out", str(tmp_path / "s.jsonl"))
    said = " ".join(out.split())
    assert code == 2, out
    assert "--secret-env" in said and "env var X: want whsec_ + base64 of >= 24 bytes" in said
    assert value not in said
