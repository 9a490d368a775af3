"""The worker's start-up checks: a bad partners file or road network stops it naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from broker.streams.cli import load_partners_for, load_roads_for
from broker.streams.settings import SettingsError, from_env

SAMPLE = Path(__file__).resolve().parents[3] / "fixtures" / "partners.toml"


def test_a_bad_road_network_fails_at_start_naming_the_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "roads.geojson"
    bad.write_text("{not json")
    with pytest.raises(typer.Exit) as exc:
        load_roads_for(from_env({"BROKER_ROADS": str(bad)}))
    assert exc.value.exit_code == 2
    assert f"BROKER_ROADS={str(bad)!r}" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="BROKER_ROADS"):
        from_env({"BROKER_ROADS": str(tmp_path / "missing.geojson")})


def test_partners_need_real_secrets_unless_dev_defaults_are_allowed(capsys, monkeypatch) -> None:
    for name in ("NAVAPP_WEBHOOK_SECRET", "COUNTY_WEBHOOK_SECRET", "WAZE_FEED_TOKEN",
                 "COUNTY_FEED_TOKEN", "OPENDATA_FEED_TOKEN", "BROKER_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = from_env({"BROKER_PARTNERS": str(SAMPLE)})
    assert settings.allow_dev_defaults is False
    with pytest.raises(typer.Exit):
        load_partners_for(settings)
    err = capsys.readouterr().err
    assert "BROKER_PARTNERS" in err and "BROKER_ALLOW_DEV_SECRETS" in err
    allowed = from_env({"BROKER_PARTNERS": str(SAMPLE), "BROKER_ALLOW_DEV_SECRETS": "true"})
    config = load_partners_for(allowed)
    assert config is not None and {p.id for p in config.partners} >= {"navapp", "waze"}
    assert load_partners_for(from_env({"BROKER_PARTNERS": ""})) is None


def test_replay_into_kafka_honours_every_kafka_setting(monkeypatch, tmp_path: Path) -> None:
    """One ``broker replay --kafka``: SASL/TLS, topic prefix and partitions reach the producer."""
    from typer.testing import CliRunner

    from broker import cli
    from broker.streams import produce

    seen: dict = {}

    def fake_produce(messages, bootstrap, **kw):  # the producer itself is tested on Kafka
        seen.update(kw, bootstrap=bootstrap, n=len(messages))
        return produce.ReplaySummary()

    monkeypatch.setattr(produce, "produce_replay", fake_produce)
    env = {
        "BROKER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "BROKER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "BROKER_KAFKA_SASL_USERNAME": "replayer",
        "BROKER_KAFKA_SASL_PASSWORD": "s3cret-pass",
        "BROKER_TOPIC_PREFIX": "env-prefix.",
        "BROKER_PARTITIONS": "3",
    }
    incident = str(Path(__file__).resolve().parents[3] / "fixtures/incidents/route-downtown")
    result = CliRunner().invoke(
        cli.app, ["replay", incident, "--kafka", "127.0.0.1:1", "--max-speed",
                  "--topic-prefix", "cli-prefix."], env=env,
    )
    assert result.exit_code == 0, result.output
    assert seen["bootstrap"] == "127.0.0.1:1" and seen["n"] > 100
    assert seen["topic_prefix"] == "cli-prefix."  # the option wins over the environment
    assert seen["partitions"] == 3
    security = seen["security"]
    assert security.protocol == "SASL_PLAINTEXT" and security.sasl_username == "replayer"
    assert security.kafka_python_kwargs()["sasl_mechanism"] == "SCRAM-SHA-512"
    assert seen["max_speed"] is True and seen["speed"] is None


def test_the_worker_loads_roads_with_the_class_mapping_and_snap(tmp_path: Path) -> None:
    import json

    lon0, lat0 = -80.8, 35.2
    step = 0.001  # ~90 m east, ~110 m north
    main = [[lon0, lat0], [lon0 + 4 * step, lat0]]
    side = [[lon0 + step, lat0 + step], [lon0 + step, lat0 + 0.00003]]  # stops ~3 m short
    lines = [
        {"properties": {"ROAD_CLASS": "Hauptstrasse"},
         "geometry": {"type": "LineString", "coordinates": coords}}
        for coords in (main, side)
    ]  # fmt: skip
    roads = tmp_path / "roads.geojson"
    roads.write_text(json.dumps({"type": "FeatureCollection", "features": lines}))
    mapping = tmp_path / "classes.toml"
    mapping.write_text('[classes]\n"Hauptstrasse" = "primary"\n')
    with pytest.raises(typer.Exit):  # every class unknown: nothing drivable
        load_roads_for(from_env({"BROKER_ROADS": str(roads)}))
    env = {"BROKER_ROADS": str(roads), "BROKER_ROAD_CLASSES": str(mapping)}
    net = load_roads_for(from_env(env))
    assert net is not None and net.check.components == 2 and net.check.near_misses
    snapped = load_roads_for(from_env({**env, "BROKER_ROADS_SNAP_M": "5"}))
    assert snapped is not None and snapped.check.components == 1
    assert set(snapped.check.km_by_class) == {"primary"}
    with pytest.raises(SettingsError, match="BROKER_ROADS_SNAP_M"):
        from_env({**env, "BROKER_ROADS_SNAP_M": "-1"})


def test_the_worker_refuses_a_mostly_disconnected_network_unless_allowed(tmp_path: Path) -> None:
    import json

    lons = [-80.8 + i * 0.01 for i in range(4)]  # four streets 900 m apart, joined to nothing
    islands = [
        {"properties": {},
         "geometry": {"type": "LineString", "coordinates": [[lon, 35.2], [lon, 35.201]]}}
        for lon in lons
    ]  # fmt: skip
    roads = tmp_path / "roads.geojson"
    roads.write_text(json.dumps({"type": "FeatureCollection", "features": islands}))
    with pytest.raises(typer.Exit):
        load_roads_for(from_env({"BROKER_ROADS": str(roads)}))
    net = load_roads_for(
        from_env({"BROKER_ROADS": str(roads), "BROKER_ROADS_ALLOW_DISCONNECTED": "true"})
    )
    assert net is not None and net.check.components == 4 and not net.check.usable


def _closed_port() -> int:
    """A loopback port nothing listens on (bound to find it, then let go)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("command", [["worker"], ["partner-enable", "navapp"]])
def test_kafka_commands_on_an_unreachable_kafka_say_so_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """`broker worker` and `broker partner-enable` with no Kafka at the bootstrap address ended
    in a 100-200-line traceback (KafkaUnreachable, KafkaTimeoutError) after 30 s, exit 1. Now:
    one line naming the address and what to set, exit 69, within the connect timeout."""
    import os
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[3]
    address = f"127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update(
        PYTHONPATH=str(root), BROKER_KAFKA_BOOTSTRAP=address, BROKER_PARTNERS="",
        BROKER_KAFKA_CONNECT_TIMEOUT_S="1", BROKER_DATA_DIR=str(tmp_path / "data"),
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "broker", *command], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )
    took = time.monotonic() - started
    assert done.returncode == 69, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert [line for line in done.stderr.splitlines() if ":kafka." in line] == []  # its retries
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: no Kafka broker answered at {address} within 1 s: check --bootstrap or "
        "BROKER_KAFKA_BOOTSTRAP (host:port of a running Kafka, reachable from here), "
        "BROKER_KAFKA_SECURITY_PROTOCOL and its TLS/SASL settings; "
        "BROKER_KAFKA_CONNECT_TIMEOUT_S sets how long to wait (docs/settings-env.md)"
    ], done.stderr
    assert took < 20  # the timeout, not kafka-python's 30 s default


def test_the_worker_says_so_when_kafka_answers_but_the_topic_check_fails(
    monkeypatch, tmp_path: Path, capsys
) -> None:
    """Kafka reached at the bootstrap address, then a request timed out (brokers advertising a
    listener this host cannot reach, a slow cluster): a traceback, as an unreachable Kafka's."""
    from kafka.errors import KafkaTimeoutError

    from broker.streams.cli import EXIT_UNAVAILABLE, run_worker

    def timing_out(*args: object, **kwargs: object) -> None:
        raise KafkaTimeoutError("Failed to update metadata after 30.0 secs.")

    monkeypatch.setattr("broker.streams.produce.ensure_topics", timing_out)
    settings = from_env({"BROKER_PARTNERS": "", "BROKER_DATA_DIR": str(tmp_path / "data"),
                         "BROKER_KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
    with pytest.raises(typer.Exit) as exc:
        run_worker(settings)
    assert exc.value.exit_code == EXIT_UNAVAILABLE == 69
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "error: Kafka at 127.0.0.1:9092 answered, but checking the topics failed "
        "(KafkaTimeoutError: "
    ) and "advertised listeners" in errors[0]


@pytest.mark.parametrize("mark", [b"", b"\xef\xbb\xbf"])
def test_partner_enable_refuses_an_id_not_in_the_partners_file(tmp_path: Path, mark: bytes) -> None:
    """A typo was answered "partner 'nosuch' enabled", exit 0, the real partner still
    disabled (an operator review). Refused before any Kafka is asked; also when the file
    starts with a byte order mark, which the worker reads (a review: the check read none)."""
    from typer.testing import CliRunner

    from broker.cli import app

    partners = tmp_path / "partners.toml"
    sample = Path(__file__).resolve().parents[3] / "fixtures" / "partners.toml"
    partners.write_bytes(mark + sample.read_bytes())
    env = {"BROKER_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}",
           "BROKER_PARTNERS": str(partners)}
    res = CliRunner().invoke(app, ["partner-enable", "nosuch"], env=env)
    assert res.exit_code == 2, res.output
    assert "no partner 'nosuch'" in res.output and "navapp" in res.output


def test_a_data_dir_the_worker_cannot_make_is_one_line_exit_2(tmp_path: Path) -> None:
    """A file in its place (or no rights) stopped the worker with a FileExistsError traceback
    (an operator review); refused before any Kafka is asked."""
    from typer.testing import CliRunner

    from broker.cli import app

    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    env = {"BROKER_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}",
           "BROKER_DATA_DIR": str(blocker / "data")}
    res = CliRunner().invoke(app, ["worker"], env=env)
    assert res.exit_code == 2, res.output
    assert "BROKER_DATA_DIR" in res.output and "give a writable directory" in res.output


@pytest.mark.parametrize(
    "env",
    [{"BROKER_ROAD_CLASSES": "fixtures/partners.toml"}, {"BROKER_ROADS_SNAP_M": "5"},
     {"BROKER_ROADS_ALLOW_DISCONNECTED": "true"}, {"BROKER_ROADS_ORIGIN": "-80.84,35.22"}],
)
def test_road_settings_without_roads_are_refused(env: dict[str, str], capsys) -> None:
    """They were silently ignored (the worker ran without roads) where ``broker replay``
    refuses the same options without ``--roads`` (a CLI review)."""
    with pytest.raises(typer.Exit) as stop:
        load_roads_for(from_env(env))
    assert stop.value.exit_code == 2
    said = capsys.readouterr().err
    assert f"{next(iter(env))} set without BROKER_ROADS" in said, said


def test_the_worker_places_a_sumo_net_without_geo_reference_at_its_origin(tmp_path: Path) -> None:
    """BROKER_ROADS_ORIGIN: the load said "give --origin", which the worker had no setting
    for: a netgenerate net could not be its roads (a CLI review)."""
    import subprocess

    sumo = pytest.importorskip("sumo")
    net = tmp_path / "grid.net.xml"
    subprocess.run([str(Path(sumo.SUMO_HOME) / "bin" / "netgenerate"), "--grid", "-o", str(net)],
                   check=True, capture_output=True)  # fmt: skip
    with pytest.raises(typer.Exit):
        load_roads_for(from_env({"BROKER_ROADS": str(net)}))
    roads = load_roads_for(from_env({"BROKER_ROADS": str(net),
                                     "BROKER_ROADS_ORIGIN": " -80.84, 35.22 "}))  # fmt: skip
    assert roads is not None and roads.check.kind == "sumo"
    lon, lat = roads.frame.to_lonlat(0.0, 0.0)
    assert abs(lon + 80.84) < 0.2 and abs(lat - 35.22) < 0.2  # the frame: near it
    for bad, says in (("-80.84", "want a list of length 2"),
                      ("-80.84,95", "want a number <= 90.0 (item 1)"),
                      ("x,35", "want a number (item 0)")):  # fmt: skip
        with pytest.raises(SettingsError) as err:
            from_env({"BROKER_ROADS": str(net), "BROKER_ROADS_ORIGIN": bad})
        assert str(err.value).startswith(f"BROKER_ROADS_ORIGIN={bad!r}: {says}"), err.value


def test_the_worker_refuses_roads_outside_its_service_area(tmp_path: Path, capsys) -> None:
    """Charlotte written [lat, lon] was the worker's roads without a word, every zone without
    them (a CLI review): with BROKER_ENGINE_SERVICE_AREA set, a network outside it stops the
    worker at start naming both."""
    import json

    fixtures = Path(__file__).resolve().parents[3] / "fixtures"
    charlotte = fixtures / "roads" / "charlotte-uptown.geojson"
    doc = json.loads(charlotte.read_text())
    for feature in doc["features"]:
        coords = feature["geometry"]["coordinates"]
        feature["geometry"]["coordinates"] = [[lat, lon] for lon, lat in coords]
    swapped = tmp_path / "swapped.geojson"
    swapped.write_text(json.dumps(doc))
    area = {"BROKER_ENGINE_SERVICE_AREA": "-81.06,35.0,-80.55,35.52"}
    with pytest.raises(typer.Exit) as stop:
        load_roads_for(from_env({"BROKER_ROADS": str(swapped), **area}))
    said = " ".join(capsys.readouterr().err.split())
    assert stop.value.exit_code == 2
    assert f"BROKER_ROADS={str(swapped)!r} lies at lon 35." in said, said
    assert "outside BROKER_ENGINE_SERVICE_AREA=-81.06,35,-80.55,35.52" in said, said
    assert "looks written [lat, lon]" in said, said
    assert load_roads_for(from_env({"BROKER_ROADS": str(charlotte), **area})) is not None
    assert load_roads_for(from_env({"BROKER_ROADS": str(swapped)})) is not None  # no area set


def test_the_worker_refuses_a_partner_coverage_outside_its_service_area(
    tmp_path: Path, capsys
) -> None:
    """A lat/lon-swapped coverage loaded with exit 0 and its partner never got anything (a
    review): with BROKER_ENGINE_SERVICE_AREA the worker refuses it, exit 2."""
    partners = tmp_path / "partners.toml"
    partners.write_text(SAMPLE.read_text().replace(
        "bbox = [-81.30, 34.90, -80.40, 35.60]", "bbox = [34.90, -81.30, 35.60, -80.40]", 1))
    settings = from_env({"BROKER_PARTNERS": str(partners), "BROKER_ALLOW_DEV_SECRETS": "true",
                         "BROKER_ENGINE_SERVICE_AREA": "-81.06,35.0,-80.55,35.52"})
    with pytest.raises(typer.Exit) as exc:
        load_partners_for(settings)
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err
    assert "partner 'navapp': coverage" in err and "BROKER_ENGINE_SERVICE_AREA" in err
    assert "bbox = [-81.3, 34.9, -80.4, 35.6]" in err


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (b"", "lists no partners"),
        (b"[broker]\ncap_sender = 'a@b.example'\n", "lists no partners"),
        (b"[[partner]\n", "not valid TOML"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_partner_enable_refuses_a_partners_file_it_cannot_check_against(
    tmp_path: Path, text: bytes, said: str
) -> None:
    """An empty, broken or partner-less BROKER_PARTNERS went on to Kafka (exit 69) with no
    check of the id (a review); README says an id the file does not list is exit 2."""
    from typer.testing import CliRunner

    from broker.cli import app

    partners = tmp_path / "empty.toml"
    partners.write_bytes(text)
    env = {"BROKER_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}",
           "BROKER_KAFKA_CONNECT_TIMEOUT_S": "1", "BROKER_PARTNERS": str(partners)}
    res = CliRunner().invoke(app, ["partner-enable", "navapp"], env=env)
    assert res.exit_code == 2, res.output
    assert "BROKER_PARTNERS" in res.output and str(partners) in res.output and said in res.output
