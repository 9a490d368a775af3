"""Worker settings: every ``BROKER_*`` variable of the Faust worker, in one frozen object.

Read once at the edge (``broker.streams.cli.worker``) with :func:`from_env`; nothing below it
reads the environment. A bad value fails at start with a :class:`SettingsError` that names the
variable. docs/settings-env.md has the table; :data:`ENV_VARS` is its source of truth.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

from broker.settings import EngineConfig

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ENGINE_PREFIX = "BROKER_ENGINE_"


class SettingsError(ValueError):
    """A setting from the environment is missing or malformed; the message names it."""


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """SASL/TLS pass-through for a real deployment (PLAINTEXT for the local broker)."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def uses_sasl(self) -> bool:
        """Whether the protocol authenticates with SASL."""
        return self.protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        """Whether the protocol encrypts with TLS."""
        return self.protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context from the CA / client cert files, or None for plaintext."""
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            ctx.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return ctx

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """The same settings as kafka-python client keyword arguments (replay producer)."""
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            kw |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.uses_tls:
            kw |= {
                "ssl_cafile": str(self.ssl_cafile) if self.ssl_cafile else None,
                "ssl_certfile": str(self.ssl_certfile) if self.ssl_certfile else None,
                "ssl_keyfile": str(self.ssl_keyfile) if self.ssl_keyfile else None,
            }
        return kw


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Everything the worker needs, already validated. Times in seconds."""

    bootstrap: str = "127.0.0.1:9092"  # comma-separated host:port list
    app_id: str = "ev-alert-broker"  # consumer group and prefix of the changelog topics
    topic_prefix: str = ""  # prepended to every topic name (tests, multi-tenant clusters)
    partitions: int = 8  # of avl.positions, cad.routes (co-partitioned), alerts, changelogs
    replication_factor: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path(".broker-data")
    tick_interval_s: float = 1.0  # how often the timer ticks the engine (stale cancels)
    commit_interval_s: float = 1.0  # Faust offset commit interval
    # vehicle states are written to the table (and their messages acked) in flushes: after this
    # many messages or this many seconds, whichever comes first (broker.streams.states)
    flush_max_messages: int = 5000
    flush_interval_s: float = 0.5
    session_timeout_s: float = 30.0  # a dead worker's partitions move after this long
    log_level: str = "WARNING"
    # partners.toml of fan-out, delivery and pull feeds; None: no partners (delivery off)
    partners_path: Path | None = Path("fixtures/partners.toml")
    allow_dev_defaults: bool = False  # the documented development secrets (demo, tests only)
    roads_path: Path | None = None  # road network (OSM / GeoJSON) for the engine, loaded once
    audit_file: Path | None = None  # also write audit records here (JSON lines)
    # deliveries of alert events older than this (wall clock - event ts) are counted expired
    delivery_max_age_s: float | None = None
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def bootstrap_servers(self) -> list[str]:
        """Bootstrap servers as a list of ``host:port``."""
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _bootstrap(value: str) -> str:
    servers = [s.strip() for s in value.split(",") if s.strip()]
    if not servers:
        raise ValueError("needs at least one host:port")
    for s in servers:
        host, sep, port = s.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{s!r} is not host:port")
    return ",".join(servers)


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise ValueError("must be >= 1")
    return n


def _port(value: str) -> int:
    n = int(value)
    if not 0 <= n < 65536:
        raise ValueError("must be a TCP port (0-65535)")
    return n


def _positive_float(value: str) -> float:
    x = float(value)
    if not x > 0 or x != x or x == float("inf"):
        raise ValueError("must be a finite number > 0")
    return x


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().upper()
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return v

    return parse


def _file(value: str) -> Path:
    p = Path(value)
    if not p.is_file():
        raise ValueError(f"no such file: {value}")
    return p


def _optional_file(value: str) -> Path | None:
    """An existing file, or None for an empty value / ``none``."""
    if value.strip().lower() in ("", "none"):
        return None
    return _file(value.strip())


def _optional_path(value: str) -> Path | None:
    return None if not value.strip() else Path(value.strip())


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


# name -> (field, parser, help). The table in docs/settings-env.md follows this order.
ENV_VARS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "BROKER_KAFKA_BOOTSTRAP": ("bootstrap", _bootstrap, "Kafka bootstrap servers, host:port[,...]"),
    "BROKER_APP_ID": ("app_id", _text, "Faust app id: consumer group, changelog topic prefix"),
    "BROKER_TOPIC_PREFIX": ("topic_prefix", str, "prefix for all topic names"),
    "BROKER_PARTITIONS": ("partitions", _positive_int, "partitions of the worker's topics"),
    "BROKER_REPLICATION_FACTOR": ("replication_factor", _positive_int, "replicas of those topics"),
    "BROKER_WEB_HOST": ("web_host", _text, "bind address of /health, /metrics, /feeds"),
    "BROKER_WEB_PORT": ("web_port", _port, "port of the worker's web server"),
    "BROKER_DATA_DIR": ("data_dir", Path, "Faust data directory of this worker"),
    "BROKER_TICK_INTERVAL_S": ("tick_interval_s", _positive_float, "engine tick period, seconds"),
    "BROKER_COMMIT_INTERVAL_S": ("commit_interval_s", _positive_float, "offset commit period"),
    "BROKER_SESSION_TIMEOUT_S": (
        "session_timeout_s",
        _positive_float,
        "consumer group session timeout: how soon a dead worker's partitions move (>= 6)",
    ),
    "BROKER_LOG_LEVEL": (
        "log_level",
        _choice(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
        "worker log level",
    ),
    "BROKER_PARTNERS": (
        "partners_path",
        _optional_file,
        "partners.toml for fan-out, delivery and feeds; empty or 'none': no partners",
    ),
    "BROKER_ALLOW_DEV_SECRETS": (
        "allow_dev_defaults",
        _bool,
        "allow the documented development secrets of partners.toml (never in production)",
    ),
    "BROKER_ROADS": ("roads_path", _optional_file, "road network file for the engine"),
    "BROKER_AUDIT_FILE": ("audit_file", _optional_path, "also write audit records here"),
    "BROKER_DELIVERY_MAX_AGE_S": (
        "delivery_max_age_s",
        _positive_float,
        "drop (count as expired) alert events older than this in wall-clock time",
    ),
}
SECURITY_ENV_VARS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "BROKER_KAFKA_SECURITY_PROTOCOL": (
        "protocol",
        _choice(get_args(SecurityProtocol)),
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    ),
    "BROKER_KAFKA_SASL_MECHANISM": (
        "sasl_mechanism",
        _choice(get_args(SaslMechanism)),
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    ),
    "BROKER_KAFKA_SASL_USERNAME": ("sasl_username", _text, "SASL user"),
    "BROKER_KAFKA_SASL_PASSWORD": ("sasl_password", _text, "SASL password"),
    "BROKER_KAFKA_SSL_CAFILE": ("ssl_cafile", _file, "CA bundle (PEM) to verify the brokers"),
    "BROKER_KAFKA_SSL_CERTFILE": ("ssl_certfile", _file, "client certificate (PEM), mutual TLS"),
    "BROKER_KAFKA_SSL_KEYFILE": ("ssl_keyfile", _file, "client private key (PEM), mutual TLS"),
}


def _parse(name: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw)
    except ValueError as err:
        raise SettingsError(f"{name}={raw!r}: {err}") from None


def engine_from_env(env: Mapping[str, str]) -> EngineConfig:
    """``BROKER_ENGINE_<FIELD>`` overrides of :class:`EngineConfig`, e.g. ..._STALE_TIMEOUT_S."""
    fields = {f.name: f for f in msgspec.structs.fields(EngineConfig)}
    kw: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENGINE_PREFIX):
            continue
        key = name[len(ENGINE_PREFIX) :].lower()
        if key not in fields:
            raise SettingsError(f"{name}: no engine setting {key!r} (see docs/settings-env.md)")
        kind = int if isinstance(getattr(EngineConfig(), key), int) else float
        kw[key] = _parse(name, raw, kind)
    try:
        return EngineConfig(**kw)
    except ValueError as err:
        raise SettingsError(f"{ENGINE_PREFIX}*: {err}") from None


def from_env(env: Mapping[str, str], **overrides: Any) -> StreamSettings:
    """Build settings from an environment mapping (``os.environ`` at the edge) plus overrides.

    Overrides are already-typed values (CLI options) and win over the environment.
    """
    kw: dict[str, Any] = {}
    for name, (attr, parser, _help) in ENV_VARS.items():
        if name in env:
            kw[attr] = _parse(name, env[name], parser)
    sec: dict[str, Any] = {}
    for name, (attr, parser, _help) in SECURITY_ENV_VARS.items():
        if name in env:
            sec[attr] = _parse(name, env[name], parser)
    security = KafkaSecurity(**sec)
    if security.uses_sasl and not (security.sasl_username and security.sasl_password):
        raise SettingsError(
            f"BROKER_KAFKA_SECURITY_PROTOCOL={security.protocol} needs "
            "BROKER_KAFKA_SASL_USERNAME and BROKER_KAFKA_SASL_PASSWORD"
        )
    if security.ssl_keyfile and not security.ssl_certfile:
        raise SettingsError("BROKER_KAFKA_SSL_KEYFILE is set without BROKER_KAFKA_SSL_CERTFILE")
    kw["security"] = security
    kw["engine"] = engine_from_env(env)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return StreamSettings(**kw)
