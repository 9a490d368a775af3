"""`broker replay` (broker/cli/replay.py): what it writes, and the options it refuses, in one
clear line naming the option and value: exit 2 for bad usage, 1 for a run that failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from tests.unit.cli.invoke import INCIDENT, ROOT, run


def test_cli_replay_writes_alerts_and_a_map(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["replay", str(INCIDENT), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "alerts.ndjson").stat().st_size > 0
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "positions read" in res.output and "lead time median" in res.output


def test_cli_replay_of_a_missing_file_exits_2_with_a_clear_message(tmp_path):
    res = CliRunner().invoke(app, ["replay", str(tmp_path / "nope.ndjson")])
    assert res.exit_code == 2
    assert "no such file" in res.output


def test_a_replay_of_which_nothing_could_be_read_exits_2(tmp_path: Path) -> None:
    """It wrote an empty map and exited 0 (evaluate refused the same file; operator review)."""
    junk = tmp_path / "junk.ndjson"
    junk.write_text('garbage\n{"x": 1}\n')
    code, out = run("replay", str(junk), "--out", str(tmp_path / "o"))
    assert code == 2 and "no message could be read (2 read" in " ".join(out.split())
    code, out = run("replay", str(INCIDENT), "--show", "-1")
    assert code == 2 and "--show" in out


def test_an_error_naming_a_path_with_brackets_prints_it_whole(tmp_path: Path) -> None:
    """Errors are plain text: rich took "[red]" in a path (or "[west, south, east, north]" in
    a message) for markup and printed a path that does not exist (an operator review)."""
    code, out = run("replay", str(tmp_path / "inc[red]x"))
    assert code == 2 and "inc[red]x" in out.replace("\n", "")


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


def test_replay_serve_off_loopback_without_a_token_is_refused_before_replaying(
    monkeypatch, tmp_path: Path,
) -> None:
    """It replayed the whole incident and wrote its outputs, then refused (operator review)."""
    monkeypatch.delenv("BROKER_CONSOLE_TOKEN", raising=False)
    out_dir = tmp_path / "o"
    code, out = run("replay", str(INCIDENT), "--out", str(out_dir), "--serve",
                    "--host", "0.0.0.0")
    assert code == 2 and "set BROKER_CONSOLE_TOKEN" in " ".join(out.split())
    assert not out_dir.exists()


def test_replay_into_kafka_says_it_could_not_reach_the_broker(monkeypatch) -> None:
    """An unreachable --kafka gave a 150-line traceback (KafkaTimeoutError) after 30 s."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    monkeypatch.setattr("broker.cli.replay.KAFKA_CONNECT_TIMEOUT_S", 1.0)
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


def test_replay_into_kafka_says_which_partition_count_to_give(monkeypatch) -> None:
    """Topics that exist with another partition count raised TopicMismatch as a traceback."""
    from broker.streams import produce

    def mismatch(*_args: object, **kwargs: object) -> produce.ReplaySummary:
        raise produce.TopicMismatch("t.avl.positions", 3, kwargs["partitions"])

    monkeypatch.setattr(produce, "produce_replay", mismatch)
    code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:1", "--max-speed",
                    "--topic-prefix", "t.", "--partitions", "8")  # fmt: skip
    said = " ".join(out.split())
    assert code == 2, out
    assert "--kafka 127.0.0.1:1: topic t.avl.positions has 3 partitions, not the 8" in said
    assert "--partitions 3" in said and "--topic-prefix" in said
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 3


def test_replay_refuses_player_options_without_serve(tmp_path: Path) -> None:
    """--host, --port (and --tiles) without --serve were ignored: the replay ran, exit 0."""
    for args, named in (
        (["--host", "0.0.0.0"], "--host"),
        (["--port", "9000"], "--port"),
        (["--host", "127.0.0.2", "--port", "0"], "--host, --port"),
        (["--tiles", "https://t/{z}/{x}/{y}.png"], "--tiles"),
    ):
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path), *args)
        assert code == 2, out
        assert f"{named}: only with --serve" in " ".join(out.split())
    code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:1", "--port", "9000")
    assert code == 2 and "--port: only with --serve" in out
    assert not (tmp_path / "alerts.ndjson").exists()


def test_replay_serve_listens_where_host_and_port_say(monkeypatch, tmp_path: Path) -> None:
    """With --serve, --host and --port still reach the server (and their defaults without)."""
    import broker.console.serve

    heard: list[tuple[str, int]] = []

    def serve(_app: object, *, host: str, port: int, on_ready: object) -> None:
        heard.append((host, port))

    monkeypatch.setattr(broker.console.serve, "serve", serve)
    for args in ([], ["--port", "0"]):
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path), "--show", "0",
                        "--serve", *args)  # fmt: skip
        assert code == 0, out
    assert heard == [("127.0.0.1", 8765), ("127.0.0.1", 0)]


def test_a_topic_mismatch_still_reads_as_the_worker_says_it() -> None:
    """The worker prints the exception itself (exit 2): its words are unchanged."""
    from broker.streams.produce import TopicMismatch

    err = TopicMismatch("avl.positions", 3, 8)
    assert (err.topic, err.partitions, err.wanted) == ("avl.positions", 3, 8)
    assert str(err) == (
        "topic avl.positions has 3 partitions, BROKER_PARTITIONS is 8: co-partitioned topics "
        "must agree"
    )


def test_replay_refuses_partners_without_deliver_or_serve(tmp_path: Path) -> None:
    """--partners without --deliver or --serve was ignored: the replay ran, exit 0."""
    partners = ROOT / "fixtures" / "partners.toml"
    for value in (str(partners), "fixtures/partners.toml"):  # its default, given, as well
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path), "--partners", value)
        assert code == 2, out
        assert "--partners: only with --deliver or --serve" in " ".join(out.split())
    assert not (tmp_path / "alerts.ndjson").exists()


def test_replay_into_kafka_refuses_out_show_and_partners(tmp_path: Path) -> None:
    """--out, --show and --partners with --kafka were ignored: nothing written or printed."""
    for args, named in (
        (["--out", str(tmp_path)], "--out"),
        (["--show", "0"], "--show"),
        (["--partners", "fixtures/partners.toml"], "--partners"),
        (["--out", str(tmp_path), "--show", "3"], "--out, --show"),
    ):
        code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:1", *args)
        assert code == 2, out
        assert f"--kafka does not take {named}: it only produces the incident" in " ".join(
            out.split())
    assert not any(tmp_path.iterdir())


def test_replay_refuses_road_options_without_roads(tmp_path: Path) -> None:
    """--road-classes, --snap-m, --origin, --allow-disconnected without --roads were ignored:
    the replay ran with no road network, exit 0."""
    for args, named in (
        (["--snap-m", "4.5"], "--snap-m"),
        (["--road-classes", str(tmp_path / "classes.toml")], "--road-classes"),
        (["--origin", "-80.8,35.2", "--allow-disconnected"], "--origin, --allow-disconnected"),
    ):
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path), *args)
        assert code == 2, out
        assert f"{named}: only with --roads FILE" in " ".join(out.split())
    assert not (tmp_path / "alerts.ndjson").exists()


def test_replay_still_takes_the_options_with_what_they_go_with(monkeypatch, tmp_path) -> None:
    """--partners with --serve reaches the player; --snap-m with --roads the road network."""
    import broker.console.serve
    from broker.geo.roads import RoadNetwork

    monkeypatch.setattr(broker.console.serve, "serve", lambda *_a, **_kw: None)
    code, out = run("replay", str(INCIDENT), "--out", str(tmp_path), "--show", "0", "--serve",
                    "--partners", str(tmp_path / "missing.toml"))  # fmt: skip
    assert code == 2 and "--partners:" in out  # read, and its fault named
    snaps: list[float | None] = []
    load = RoadNetwork.load

    def spy(path: Path, **kw: object) -> RoadNetwork:
        snaps.append(kw.get("snap_m"))  # type: ignore[arg-type]
        return load(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(RoadNetwork, "load", spy)
    roads = ROOT / "fixtures" / "roads" / "charlotte-uptown.geojson"
    code, out = run("replay", str(INCIDENT), "--out", str(tmp_path), "--show", "0",
                    "--roads", str(roads), "--snap-m", "2")  # fmt: skip
    assert code == 0, out
    assert snaps == [2.0]


def test_an_audit_file_that_cannot_be_synced_is_a_warning_after_the_deliveries(
    tmp_path: Path,
) -> None:
    """`replay --deliver` fsyncs its audit file once at the end; a failure there comes after
    every delivery was sent, so it is a warning naming the file, not a traceback."""
    from adapters.audit import JsonlAudit
    from broker.cli.replay import _sync_audit

    audit = JsonlAudit(tmp_path / "audit.jsonl")
    assert _sync_audit(audit) == ""  # nothing written: nothing to sync

    class FailingDisk(JsonlAudit):
        def sync(self) -> None:
            raise OSError(5, "Input/output error")

    warning = _sync_audit(FailingDisk(tmp_path / "audit.jsonl"))
    assert "audit.jsonl was not synced to disk" in warning
    assert "Input/output error" in warning


def _partners_at(tmp_path: Path, port: int) -> Path:
    """The sample partners file with its push partners at 127.0.0.1:``port``."""
    text = (ROOT / "fixtures" / "partners.toml").read_text()
    path = tmp_path / "partners.toml"
    path.write_text(text.replace("127.0.0.1:8088", f"127.0.0.1:{port}"))
    return path


def test_replay_deliver_exits_0_when_every_delivery_arrived(tmp_path: Path) -> None:
    import os

    from broker.sink import SinkServer, secrets_from_partners

    partners = ROOT / "fixtures" / "partners.toml"  # the secrets: the port is not read
    sink = SinkServer(secrets=secrets_from_partners(partners, dict(os.environ), True),
                      host="127.0.0.1", port=0, out=tmp_path / "sink.jsonl").start()
    try:
        port = int(sink.url.rsplit(":", 1)[1])
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path / "o"), "--show", "0",
                        "--deliver", "--partners", str(_partners_at(tmp_path, port)))
    finally:
        sink.stop()
    assert code == 0, out
    assert "not every delivery" not in out


def _refusing_partner():  # type: ignore[no-untyped-def]
    """A partner on loopback that answers every webhook 400 (refused: dead-lettered)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refuses(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(400)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_replay_deliver_with_serve_still_opens_the_player_then_exits_1(
    monkeypatch, tmp_path: Path,
) -> None:
    """The lost deliveries' exit came before the player: --serve was skipped (a review)."""
    import broker.console.serve

    served: list[int] = []
    monkeypatch.setattr(broker.console.serve, "serve",
                        lambda _app, *, host, port, on_ready: served.append(port))
    server = _refusing_partner()
    try:
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path / "o"), "--show", "0",
                        "--deliver", "--serve", "--port", "0", "--partners",
                        str(_partners_at(tmp_path, server.server_address[1])))
    finally:
        server.shutdown()
        server.server_close()
    assert served == [0] and code == 1, out


def test_replay_deliver_exits_1_naming_the_partners_that_lost_deliveries(tmp_path: Path) -> None:
    """Deliveries a partner refused (dead-lettered), or that expired while it was down, ended
    the run with exit 0 all the same (an operator review: 12 minutes of retries against a
    closed port, silent, then "delivered 0", exit 0)."""
    server = _refusing_partner()
    try:
        code, out = run("replay", str(INCIDENT), "--out", str(tmp_path / "o"), "--show", "0",
                        "--deliver", "--partners",
                        str(_partners_at(tmp_path, server.server_address[1])))
    finally:
        server.shutdown()
        server.server_close()
    flat = " ".join(out.split())
    assert code == 1, out
    assert "not every delivery reached its partner" in flat and "navapp" in flat


def test_help_prose_flows_as_sentences_not_as_the_docstrings_lines() -> None:
    """Typer kept a docstring's line breaks past its first paragraph: --help broke mid-sentence
    whatever the terminal's width (an operator review)."""
    res = CliRunner().invoke(app, ["replay", "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0
    assert "produces the incident into Kafka instead, with the worker's" in res.output


@pytest.mark.parametrize("speed", ["0", "-1", "nan", "inf"])
def test_replay_into_kafka_refuses_a_speed_that_is_no_time_scale(
    speed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--speed nan and inf passed the "> 0" check: both sent without waiting, as --max-speed
    (nan > 0 is false, so no wait was ever due), or after 30 s of trying an absent Kafka."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the speed should have been refused before connecting")

    monkeypatch.setattr("broker.streams.produce.produce_replay", refuse)
    code, out = run("replay", str(INCIDENT), "--kafka", "127.0.0.1:1", "--speed", speed)
    assert code == 2, out
    assert f"--speed {float(speed):g}: want a number > 0" in out


@pytest.mark.parametrize("mode", ["--deliver", "--serve"])
def test_a_partners_file_that_cannot_be_read_is_refused_before_the_replay(
    mode: str, tmp_path: Path
) -> None:
    """It was read only after the whole replay had run and written its alerts and map (fleet-200:
    ~40 s), then refused."""
    out = tmp_path / "out"
    code, text = run("replay", str(INCIDENT), "--out", str(out), "--show", "0", mode,
                     "--partners", str(tmp_path / "missing.toml"))  # fmt: skip
    assert code == 2, text
    assert "--partners:" in text and "missing.toml" in text
    assert "positions read" not in text and not (out / "alerts.ndjson").exists()


def test_a_bad_tiles_option_is_named_as_the_option() -> None:
    """--tiles notaurl was refused as "BROKER_CONSOLE_TILES='notaurl'", an env var the operator
    had not set; the env var itself is still named as such."""
    code, out = run("replay", str(INCIDENT), "--serve", "--tiles", "notaurl")
    assert code == 2 and "--tiles='notaurl': want an http(s) URL template" in out
    assert "BROKER_CONSOLE_TILES" not in out
    res = CliRunner().invoke(app, ["replay", str(INCIDENT), "--serve"],
                             env={"BROKER_CONSOLE_TILES": "ftp://x"})
    assert res.exit_code == 2 and "BROKER_CONSOLE_TILES='ftp://x'" in res.output


def test_a_bad_agencies_file_is_named_as_given_or_as_found(tmp_path: Path) -> None:
    """An incident directory's own agencies.toml that cannot be read was blamed on
    ``--agencies``, an option the operator never gave (a CLI review)."""
    import shutil

    incident = tmp_path / "incident"
    shutil.copytree(INCIDENT, incident)
    (incident / "agencies.toml").write_text("[[agency]]\nid = 3\n")
    code, out = run("replay", str(incident), "--out", str(tmp_path / "o"))
    flat = " ".join(out.split())
    assert code == 2 and "the incident directory's agencies.toml" in flat, flat
    assert "--agencies" not in flat
    code, out = run("replay", str(incident), "--agencies", str(incident / "agencies.toml"),
                    "--out", str(tmp_path / "o"))
    assert code == 2 and "--agencies:" in " ".join(out.split())
