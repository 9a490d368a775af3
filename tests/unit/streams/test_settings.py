"""Worker settings from the environment: defaults, overrides, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.streams.settings import ENV_VARS, SECURITY_ENV_VARS, SettingsError, from_env


def test_defaults_point_at_a_local_broker() -> None:
    s = from_env({})
    assert s.bootstrap_servers == ["127.0.0.1:9092"]
    assert s.partitions == 8 and s.security.protocol == "PLAINTEXT"
    assert s.security.ssl_context() is None


def test_environment_and_overrides() -> None:
    s = from_env(
        {"BROKER_PARTITIONS": "4", "BROKER_KAFKA_BOOTSTRAP": "a:1, b:2",
         "BROKER_ENGINE_STALE_TIMEOUT_S": "10"},
        web_port=7000,
        partitions=None,  # a CLI option left out does not erase the environment
    )
    assert s.partitions == 4 and s.web_port == 7000
    assert s.bootstrap_servers == ["a:1", "b:2"]
    assert s.engine.stale_timeout_s == 10.0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BROKER_PARTITIONS": "zero"}, "BROKER_PARTITIONS"),
        ({"BROKER_PARTITIONS": "0"}, "BROKER_PARTITIONS"),
        ({"BROKER_KAFKA_BOOTSTRAP": "localhost"}, "BROKER_KAFKA_BOOTSTRAP"),
        ({"BROKER_WEB_PORT": "70000"}, "BROKER_WEB_PORT"),
        ({"BROKER_TICK_INTERVAL_S": "nan"}, "BROKER_TICK_INTERVAL_S"),
        ({"BROKER_LOG_LEVEL": "loud"}, "BROKER_LOG_LEVEL"),
        ({"BROKER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "BROKER_KAFKA_SECURITY_PROTOCOL"),
        ({"BROKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "BROKER_KAFKA_SASL_USERNAME"),
        ({"BROKER_KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "BROKER_KAFKA_SSL_CAFILE"),
        ({"BROKER_ENGINE_STALE_TIMOUT_S": "3"}, "BROKER_ENGINE_STALE_TIMOUT_S"),
        ({"BROKER_ENGINE_MAX_VERTICES": "3"}, "max_vertices"),
    ],
)
def test_a_bad_setting_fails_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        from_env(env)


def test_sasl_settings_pass_through_to_kafka_python(tmp_path: Path) -> None:
    s = from_env(
        {
            "BROKER_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
            "BROKER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "BROKER_KAFKA_SASL_USERNAME": "svc",
            "BROKER_KAFKA_SASL_PASSWORD": "secret",
        }
    )
    kw = s.security.kafka_python_kwargs()
    assert kw == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "secret",
    }
    assert "secret" not in repr(s)


def test_every_variable_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "settings-env.md").read_text()
    for name in [*ENV_VARS, *SECURITY_ENV_VARS, "BROKER_ENGINE_"]:
        assert f"`{name}" in doc, name


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BROKER_WEB_PORT": "x"}, "BROKER_WEB_PORT='x': want a whole number"),
        ({"BROKER_WEB_PORT": "70000"}, "BROKER_WEB_PORT='70000': want a whole number <= 65535"),
        ({"BROKER_PARTITIONS": "0"}, "BROKER_PARTITIONS='0': want a whole number >= 1"),
        ({"BROKER_APP_ID": " "}, "BROKER_APP_ID=' ': want text (not empty)"),
        ({"BROKER_ALLOW_DEV_SECRETS": "maybe"}, "BROKER_ALLOW_DEV_SECRETS='maybe': want true or"),
        ({"BROKER_LOG_LEVEL": "loud"}, "BROKER_LOG_LEVEL='loud': want one of CRITICAL, DEBUG"),
        (
            {"BROKER_ENGINE_MAX_VERTICES": "3"},
            "BROKER_ENGINE_MAX_VERTICES='3': want a whole number >= 8 (engine setting max_vert",
        ),
        (
            {"BROKER_ENGINE_STALE_TIMOUT_S": "3"},
            "BROKER_ENGINE_STALE_TIMOUT_S: no engine setting 'stale_timout_s' (did you mean "
            "'stale_timeout_s'?)",
        ),
        (
            {"BROKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "BROKER_KAFKA_SASL_USERNAME": "svc"},
            "BROKER_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs BROKER_KAFKA_SASL_USERNAME and "
            "BROKER_KAFKA_SASL_PASSWORD",
        ),
    ],
)
def test_an_error_names_the_variable_its_value_and_what_it_wants(env, message) -> None:
    with pytest.raises(SettingsError) as err:
        from_env(env)
    assert str(err.value).startswith(message)


def test_the_accepted_spellings_of_booleans_choices_and_empty_settings() -> None:
    for spelling in ("1", "true", "Yes", " on "):
        assert from_env({"BROKER_ALLOW_DEV_SECRETS": spelling}).allow_dev_defaults is True
    for spelling in ("0", "false", "NO", "off", ""):
        assert from_env({"BROKER_ALLOW_DEV_SECRETS": spelling}).allow_dev_defaults is False
    assert from_env({"BROKER_LOG_LEVEL": " debug "}).log_level == "DEBUG"
    assert from_env({"BROKER_PARTNERS": "None"}).partners_path is None
    assert from_env({"BROKER_TICK_INTERVAL_S": " 2.5 "}).tick_interval_s == 2.5
    assert from_env({"BROKER_ENGINE_MAX_VERTICES": "32"}).engine.max_vertices == 32
    with pytest.raises(SettingsError, match="BROKER_TICK_INTERVAL_S='inf'"):
        from_env({"BROKER_TICK_INTERVAL_S": "inf"})


def test_the_settings_are_frozen_and_hide_the_sasl_password_however_built() -> None:
    from msgspec.structs import replace

    from broker.streams.settings import KafkaSecurity

    sec = KafkaSecurity(protocol="SASL_SSL", sasl_username="svc", sasl_password="hunter2")
    assert "hunter2" not in repr(sec) and "sasl_password='***'" in repr(sec)
    with pytest.raises(AttributeError):
        sec.protocol = "PLAINTEXT"  # type: ignore[misc]
    with pytest.raises(ValueError, match="ssl_keyfile is set without ssl_certfile"):
        replace(sec, ssl_keyfile=Path("/k.pem"))
    assert hash(from_env({})) == hash(from_env({}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bootstrap": "127.0.0.1:abc"},
         "--kafka='127.0.0.1:abc': '127.0.0.1:abc' is not host:port"),
        ({"partitions": 0}, "--partitions=0: want a whole number >= 1"),
        ({"web_port": 70000}, "--web-port=70000: want a whole number <= 65535"),
    ],
)
def test_an_override_is_validated_as_the_environment_is(overrides, message) -> None:
    with pytest.raises(SettingsError) as err:
        from_env({}, {"bootstrap": "--kafka"}, **overrides)
    assert str(err.value) == message


def test_an_override_of_a_path_is_taken() -> None:
    assert from_env({}, data_dir=Path("elsewhere")).data_dir == Path("elsewhere")


def test_a_misspelt_variable_is_named_with_what_it_may_have_meant() -> None:
    """BROKER_KAFKA_BOOTSTRAP_SERVERS left the worker on 127.0.0.1:9092 without a word."""
    from broker.streams.settings import unknown_variables

    env = {"BROKER_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "BROKER_WEBPORT": "7000",
           "BROKER_KAFKA_BOOTSTRAP": "kafka:9092", "BROKER_ENGINE_LOOKAHEAD_S": "40",
           "BROKER_CONSOLE_TOKEN": "x" * 24, "BROKER_PSEUDONYM_KEY": "k", "PATH": "/bin"}
    assert unknown_variables(env) == [
        "BROKER_KAFKA_BOOTSTRAP_SERVERS (did you mean 'BROKER_KAFKA_BOOTSTRAP'?)",
        "BROKER_WEBPORT (did you mean 'BROKER_WEB_PORT'?)",
    ]


def test_security_settings_the_protocol_never_reads_are_named() -> None:
    """SASL credentials with the protocol left at PLAINTEXT connected without them, unsaid."""
    env = {"BROKER_KAFKA_SASL_USERNAME": "svc", "BROKER_KAFKA_SASL_PASSWORD": "s3cret"}
    assert from_env(env).security.unused() == ["sasl_username", "sasl_password"]
    env["BROKER_KAFKA_SECURITY_PROTOCOL"] = "sasl_plaintext"
    assert from_env(env).security.unused() == []


def test_the_worker_warns_of_an_unused_security_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from broker.streams.cli import load_settings

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("BROKER_KAFKA_SSL_CAFILE", str(ca))
    monkeypatch.setenv("BROKER_KAFKA_SASL_PASSWORD", "never-shown")
    load_settings()
    err = capsys.readouterr().err
    assert "BROKER_KAFKA_SSL_CAFILE is set but BROKER_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in err
    assert "BROKER_KAFKA_SASL_PASSWORD is set" in err
    assert "never-shown" not in err


@pytest.mark.parametrize(
    ("env", "field", "want"),
    [
        # docs/settings-env.md: booleans are 1/true/yes/on or 0/false/no/off/empty, and empty or
        # `none` leaves an optional setting unset; docs/settings.md gives `none` as a value of
        # on_scene_turn_offs and approach_far_side_s. The BROKER_ENGINE_* variables refused
        # them all ("want true or false", "want a whole number").
        ({"BROKER_ENGINE_ROAD_CIRCLE_MEDIAN_CUT": "off"}, "road_circle_median_cut", False),
        ({"BROKER_ENGINE_LIGHTS_WITHOUT_CAD": "yes"}, "lights_without_cad", True),
        ({"BROKER_ENGINE_WARNING_SEGMENTS": " On "}, "warning_segments", True),
        ({"BROKER_ENGINE_ON_SCENE_TURN_OFFS": "none"}, "on_scene_turn_offs", None),
        ({"BROKER_ENGINE_APPROACH_FAR_SIDE_S": ""}, "approach_far_side_s", None),
        ({"BROKER_ENGINE_ON_SCENE_TURN_OFFS": " 2 "}, "on_scene_turn_offs", 2),
    ],
)
def test_engine_variables_are_spelled_as_every_other_variable(env, field, want) -> None:
    assert getattr(from_env(env).engine, field) == want


def test_a_directory_given_as_a_file_is_called_a_directory(tmp_path: Path) -> None:
    """BROKER_AGENCIES=<a directory> was refused as "no such file": the operator, looking at a
    path that exists, could not see what was wrong."""
    with pytest.raises(SettingsError) as err:
        from_env({"BROKER_AGENCIES": str(tmp_path)})
    assert f"a directory, not a file: {tmp_path}" in str(err.value)


def test_a_topic_prefix_kafka_would_refuse_is_refused_at_start() -> None:
    """A prefix with characters Kafka does not take in topic names (a space, '!') was taken,
    and left to fail at Kafka, when the topics are made; Kafka's are [A-Za-z0-9._-]."""
    with pytest.raises(SettingsError, match="BROKER_TOPIC_PREFIX='bad prefix!'"):
        from_env({"BROKER_TOPIC_PREFIX": "bad prefix!"})
    assert from_env({"BROKER_TOPIC_PREFIX": "t-1.a_"}).topic_prefix == "t-1.a_"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"BROKER_SESSION_TIMEOUT_S": "1"}, "BROKER_SESSION_TIMEOUT_S='1': want a number >= 6"),
        ({"BROKER_WEB_PORT": "6067"}, "BROKER_WEB_PORT and BROKER_OPS_PORT are both 6067"),
        ({"BROKER_WEB_PORT": "7000", "BROKER_OPS_PORT": "7000", "BROKER_OPS_HOST": "0.0.0.0"},
         "BROKER_WEB_PORT and BROKER_OPS_PORT are both 7000"),
    ],
)
def test_settings_kafka_or_the_servers_would_refuse_later_are_refused_at_decode(
    env: dict[str, str], said: str
) -> None:
    """A session timeout under Kafka's 6 s minimum failed at the group join, one port for
    both servers at the second bind inside a Faust task (a review): named at decode."""
    with pytest.raises(SettingsError) as err:
        from_env(env)
    assert said in str(err.value)


def test_both_servers_may_take_any_free_port_or_one_port_on_two_addresses() -> None:
    assert from_env({"BROKER_WEB_PORT": "0", "BROKER_OPS_PORT": "0"}).web_port == 0
    # a wildcard of one family beside an address of the other binds (aiohttp's IPv6 sockets
    # are IPv6-only): refused for some hours on 2026-12-08
    for web, ops in (("::", "127.0.0.1"), ("0.0.0.0", "::1"), ("::", "0.0.0.0")):
        same = {"BROKER_WEB_PORT": "7000", "BROKER_OPS_PORT": "7000",
                "BROKER_WEB_HOST": web, "BROKER_OPS_HOST": ops}
        assert from_env(same).ops_port == 7000
    for web, ops in (("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("localhost", "0.0.0.0")):
        same = {"BROKER_WEB_PORT": "7000", "BROKER_OPS_PORT": "7000",
                "BROKER_WEB_HOST": web, "BROKER_OPS_HOST": ops}
        with pytest.raises(SettingsError, match="both 7000"):
            from_env(same)
    # an option is named as itself, not as the variable it stands for
    with pytest.raises(SettingsError, match="--web-port and BROKER_OPS_PORT are both 7000"):
        from_env({"BROKER_OPS_PORT": "7000"}, web_port=7000)
    both = {"BROKER_WEB_PORT": "7000", "BROKER_OPS_PORT": "7000", "BROKER_OPS_HOST": "10.0.0.1"}
    assert from_env(both).ops_port == 7000
    assert from_env({"BROKER_SESSION_TIMEOUT_S": "6"}).session_timeout_s == 6
