"""Worker settings: every ``BROKER_*`` variable of the Faust worker, in one frozen object.

Read once at the edge (``broker.streams.cli.worker``) with :func:`from_env`; nothing below it
reads the environment. The settings are frozen msgspec Structs whose field types carry the
rules (``Annotated[int, Meta(ge=1)]``, ``Literal`` choices, :class:`HostPorts`,
:class:`ExistingFile`); :func:`from_env` builds a dict from the environment and decodes it with
``msgspec.convert(strict=False)``, which turns ``"4"`` into ``4``. A bad value fails at start
with a :class:`SettingsError` naming the variable and its value (``BROKER_WEB_PORT='x': want a
whole number``). docs/settings-env.md has the table; :data:`ENV_VARS` is its source of truth.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi
from msgspec import Meta

from broker.model import Lat, Lon
from broker.settings import EngineConfig
from broker.settings import respell as _respell
from broker.validation import Invalid, did_you_mean, explain, locate, type_at, unknown_key
from broker.validation import Path as FieldPath

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ENGINE_PREFIX = "BROKER_ENGINE_"

Text = Annotated[str, Meta(min_length=1)]  # values are stripped first: not blank
# what Kafka takes in a topic name; a prefix of others passed and failed only at Kafka
TopicPart = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]*$", max_length=200)]
AtLeastOne = Annotated[int, Meta(ge=1)]
Port = Annotated[int, Meta(ge=0, le=65535)]
# > 0 and finite: msgspec bounds must be finite, and no period is a billion seconds (32 years)
Seconds = Annotated[float, Meta(gt=0, le=1e9)]


class SettingsError(ValueError):
    """A setting from the environment is missing or malformed; the message names it."""


class HostPorts(str):
    """A comma-separated ``host:port`` list (decoded by :func:`_decode_hook`)."""

    @classmethod
    def parse(cls, value: str) -> HostPorts:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("needs at least one host:port")
        for s in servers:
            host, sep, port = s.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{s!r} is not host:port")
        return cls(",".join(servers))


class ExistingFile(type(Path())):  # type: ignore[misc]  # PosixPath or WindowsPath
    """A path that must name an existing file when decoded (constructing one checks nothing)."""


def _decode_hook(tp: type, value: Any) -> Any:
    """msgspec's hook for the types it does not know; a ValueError names the variable."""
    if tp is HostPorts:
        return HostPorts.parse(value)
    if tp is ExistingFile:
        if not Path(value).is_file():  # a directory was "no such file", a path that exists
            what = "a directory, not a file" if Path(value).is_dir() else "no such file"
            raise ValueError(f"{what}: {value}")
        return ExistingFile(value)
    if tp is Path:
        return Path(value)
    raise NotImplementedError(tp)


class KafkaSecurity(msgspec.Struct, frozen=True, kw_only=True):
    """SASL/TLS pass-through for a real deployment (PLAINTEXT for the local broker)."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: Text | None = None
    sasl_password: Text | None = None  # never in repr (see __repr__)
    ssl_cafile: ExistingFile | None = None
    ssl_certfile: ExistingFile | None = None
    ssl_keyfile: ExistingFile | None = None

    def __post_init__(self) -> None:
        # field names: from_env reports them as the variables that set them
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"protocol={self.protocol} needs sasl_username and sasl_password")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile is set without ssl_certfile")

    def __repr__(self) -> str:
        shown = msgspec.structs.asdict(self)
        if shown["sasl_password"] is not None:
            shown["sasl_password"] = "***"
        return f"KafkaSecurity({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def uses_sasl(self) -> bool:
        """Whether the protocol authenticates with SASL."""
        return self.protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        """Whether the protocol encrypts with TLS."""
        return self.protocol.endswith("SSL")

    def unused(self) -> list[str]:
        """The fields set that ``protocol`` never reads: SASL credentials under a protocol
        without SASL (or TLS files without TLS) would connect without them, not a word said."""
        return [
            name for name, needs in (
                ("sasl_username", self.uses_sasl), ("sasl_password", self.uses_sasl),
                ("ssl_cafile", self.uses_tls), ("ssl_certfile", self.uses_tls),
                ("ssl_keyfile", self.uses_tls),
            )
            if getattr(self, name) is not None and not needs
        ]

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


MIN_INGEST_TOKEN_CHARS = 24
# the bytes a dead letter's headers (reason, detail of up to 500 characters, source topic, the
# original's size and SHA-256) and record overhead take at most, beside its key and value
DLQ_HEADER_ROOM = 4096


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the worker needs, already validated. Times in seconds."""

    bootstrap: HostPorts = HostPorts("127.0.0.1:9092")
    # how long a command waits for a first answer from the bootstrap servers before it gives
    # up with one line saying so (the worker's topic check at start, partner-enable)
    kafka_connect_timeout_s: Seconds = 30.0
    app_id: Text = "ev-alert-broker"  # consumer group and prefix of the changelog topics
    topic_prefix: TopicPart = ""  # prepended to every topic name (tests, multi-tenant clusters)
    partitions: AtLeastOne = 8  # of avl.positions, cad.routes (co-partitioned), alerts, changelogs
    replication_factor: AtLeastOne = 1
    web_host: Text = "127.0.0.1"  # the public port: pull feeds, the console
    web_port: Port = 6066
    ops_host: Text = "127.0.0.1"  # /health and /metrics: loopback unless you mean otherwise
    ops_port: Port = 6067
    data_dir: Path = Path(".broker-data")
    tick_interval_s: Seconds = 1.0  # how often the timer ticks the engine (stale cancels)
    commit_interval_s: Seconds = 1.0  # Faust offset commit interval
    # Faust's one fetcher hands each record to its agent's buffer in turn, waiting while that
    # buffer is full: catching up a backlog, a new alert (fan-out) waited behind every fix in
    # the poll and in the vehicle agent's buffer (Faust's default 4096: ~2 s of fixes)
    max_poll_records: AtLeastOne = 500
    stream_buffer: AtLeastOne = 256
    # how long the consumer's fetch request may wait at the broker for new records; fetches of
    # partitions with records to hand over wait behind it (broker.streams.consumer)
    fetch_max_wait_ms: Annotated[int, Meta(ge=0, le=60_000)] = 100
    # how long the consumer fetches nothing more from a broker while a record it fetched there
    # waits to be taken (aiokafka's 100 made each record of a burst wait, twice on its way)
    prefetch_backoff_ms: Annotated[int, Meta(ge=0, le=10_000)] = 10
    # the largest record batch the worker's producer gathers per partition; Faust's 16 KiB
    # filled in a burst (a dozen alerts) and then stopped the one send queue that alerts and
    # table writes share (and so every record of the partition) until Kafka answered the
    # request in flight.
    # At most Kafka's default message.max.bytes (1,048,588): a topic whose max.message.bytes is
    # lower refuses a full batch (MESSAGE_TOO_LARGE, not retried: the worker stops), so set this
    # at or below the smallest of the worker's topics' limits
    producer_max_batch_bytes: Annotated[int, Meta(ge=1024, le=1_000_000)] = 1_000_000
    # vehicle states are written to the table (and their messages acked) in flushes: after this
    # many messages or this many seconds, whichever comes first (broker.streams.states)
    flush_max_messages: int = 5000
    flush_interval_s: float = 0.5
    # a dead worker's partitions move after this long; Kafka's group.min.session.timeout.ms
    # (6 s by default) refuses a shorter one, but only at the group join, inside Faust
    session_timeout_s: Annotated[float, Meta(ge=6, le=1e9)] = 30.0
    # a stop signal's graceful shutdown that takes longer (Kafka gone: it would wait for ever)
    # ends the process anyway, as a kill -9 would (broker.streams.shutdown)
    shutdown_timeout_s: Seconds = 30.0
    # a worker not ready for this long with nothing moving (no changelog record recovered, no
    # input handled, no table recovery started) stops, exit 75 (broker.streams.watchdog); one
    # recovered and assigned that only lost its lease (Kafka away) is not counted; 0: never
    not_ready_exit_s: Annotated[float, Meta(ge=0, le=1e9)] = 600.0
    # an input offset never handed to the vehicle agent and not there when its partition is
    # read again: stop (nothing past it acked) or count and go on (inputs written by
    # transactional producers: their commit markers take offsets)
    input_offset_gaps: Literal["stop", "count"] = "stop"
    log_level: LogLevel = "WARNING"
    # partners.toml of fan-out, delivery and pull feeds; None: no partners (delivery off).
    # The default is checked when it is loaded (broker.streams.cli.load_partners_for).
    partners_path: ExistingFile | None = ExistingFile("fixtures/partners.toml")
    allow_dev_defaults: bool = False  # the documented development secrets (demo, tests only)
    roads_path: ExistingFile | None = None  # road network (OSM / GeoJSON / SUMO), loaded once
    # the road-class mapping (TOML, docs/roads.md) and the snap of line ends the load uses
    road_classes_path: ExistingFile | None = None
    roads_snap_m: Annotated[float, Meta(ge=0, le=50)] | None = None  # None: 1 m GeoJSON, else 0
    roads_allow_disconnected: bool = False  # use a mostly disconnected network anyway
    # where a SUMO net without geo-reference has its (0, 0): (lon, lat); None: no such net
    roads_origin: tuple[Lon, Lat] | None = None
    # the agency file (units, AVL devices, lightbars; broker.agencies): with one, only its units
    # are taken, and Traccar positions can be mapped; None: every unit, no Traccar input
    agencies_path: ExistingFile | None = None
    # the secret Traccar sends (forward.header "Authorization: Bearer ...") to POST
    # /ingest/traccar; empty: that endpoint is off (404)
    ingest_token: str = ""
    audit_file: Path | None = None  # also write audit records here (JSON lines)
    # deliveries of alert events older than this (wall clock - event ts) are counted expired
    delivery_max_age_s: Seconds | None = 120.0
    # the pull feeds' "now": the wall clock (live traffic), or "event": the newest alert's ts
    # carried on by the wall clock, to serve a replayed recorded incident as it stood (web.py)
    feed_clock: Literal["wall", "event"] = "wall"
    # a vehicle with no live alert and no message for this long leaves the table (tombstoned)
    vehicle_idle_expiry_s: Seconds = 6 * 3600.0
    # retention of the dead-letter topics (avl.dlq holds raw positions: not kept for ever)
    dlq_retention_s: Seconds = 3 * 86400.0
    # the most of a refused message (key and value) its record in avl.dlq keeps: a larger one
    # keeps its first bytes, with its size and SHA-256 in headers (broker.streams.dead_letters).
    # Below Kafka's default max.message.bytes (1,048,588) with room for the headers; never more
    # than producer_max_batch_bytes leaves room for (dead_letter_bytes)
    dlq_max_bytes: Annotated[int, Meta(ge=0, le=1_000_000)] = 900_000
    # retention of the audit topic: what was sent to whom is the city's record (field names,
    # outcomes, ids: no positions, no bodies); Kafka's own default (7 days) is too short for a
    # yearly transparency report, so 400 days unless set
    audit_retention_s: Seconds = 400 * 86400.0
    security: KafkaSecurity = msgspec.field(default_factory=KafkaSecurity)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        # both servers on one port: the second bind failed later, inside a Faust task (0 is
        # any free port; two distinct addresses, neither a wildcard of the other's family,
        # may share a port)
        if self.web_port == self.ops_port != 0 and _one_socket(self.web_host, self.ops_host):
            raise Invalid("", f"web_port and ops_port are both {self.web_port}: the public "
                          "server and /health, /metrics cannot listen on one port; give "
                          "each its own")
        if self.ingest_token and len(self.ingest_token) < MIN_INGEST_TOKEN_CHARS:
            raise Invalid("ingest_token", f"want at least {MIN_INGEST_TOKEN_CHARS} characters "
                          f"(a random secret), got {len(self.ingest_token)}")

    def __repr__(self) -> str:
        fields = {f: getattr(self, f) for f in self.__struct_fields__}
        if fields["ingest_token"]:
            fields["ingest_token"] = "***"
        return f"StreamSettings({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    @property
    def dead_letter_bytes(self) -> int:
        """The most of a refused message a dead letter keeps: ``dlq_max_bytes``, and no more
        than a batch of the producer holds beside the headers (``DLQ_HEADER_ROOM``)."""
        return max(0, min(self.dlq_max_bytes, self.producer_max_batch_bytes - DLQ_HEADER_ROOM))

    @property
    def bootstrap_servers(self) -> list[str]:
        """Bootstrap servers as a list of ``host:port``."""
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]


# name -> (field, help). The table in docs/settings-env.md follows this order; the field's type
# in StreamSettings / KafkaSecurity says what a value may be.
ENV_VARS: dict[str, tuple[str, str]] = {
    "BROKER_KAFKA_BOOTSTRAP": ("bootstrap", "Kafka bootstrap servers, host:port[,...]"),
    "BROKER_KAFKA_CONNECT_TIMEOUT_S": (
        "kafka_connect_timeout_s",
        "how long the worker (at start) and partner-enable wait for Kafka to answer, seconds",
    ),
    "BROKER_APP_ID": ("app_id", "Faust app id: consumer group, changelog topic prefix"),
    "BROKER_TOPIC_PREFIX": ("topic_prefix", "prefix for all topic names"),
    "BROKER_PARTITIONS": ("partitions", "partitions of the worker's topics"),
    "BROKER_REPLICATION_FACTOR": ("replication_factor", "replicas of those topics"),
    "BROKER_WEB_HOST": ("web_host", "bind address of the public port: /feeds, /console"),
    "BROKER_WEB_PORT": ("web_port", "the public port: pull feeds and the operator console"),
    "BROKER_OPS_HOST": ("ops_host", "bind address of /health and /metrics (keep it loopback)"),
    "BROKER_OPS_PORT": ("ops_port", "port of /health and /metrics"),
    "BROKER_DATA_DIR": ("data_dir", "Faust data directory of this worker"),
    "BROKER_TICK_INTERVAL_S": ("tick_interval_s", "engine tick period, seconds"),
    "BROKER_COMMIT_INTERVAL_S": ("commit_interval_s", "offset commit period"),
    "BROKER_MAX_POLL_RECORDS": (
        "max_poll_records", "records per consumer poll (fan-out waits behind at most this many)"
    ),
    "BROKER_STREAM_BUFFER": (
        "stream_buffer", "records an agent's buffer holds (fan-out waits behind these too)"
    ),
    "BROKER_FETCH_MAX_WAIT_MS": (
        "fetch_max_wait_ms",
        "how long a fetch waits at the broker for new records, ms (Faust's 1,500 stalled "
        "catching up)",
    ),
    "BROKER_PREFETCH_BACKOFF_MS": (
        "prefetch_backoff_ms",
        "how long no fetch goes to a broker while a record fetched there waits to be taken, ms "
        "(aiokafka's 100 delayed every record of a burst)",
    ),
    "BROKER_PRODUCER_MAX_BATCH_BYTES": (
        "producer_max_batch_bytes",
        "largest record batch per partition the worker's producer gathers, bytes (Faust's "
        "16,384 filled in a burst and held every alert behind it)",
    ),
    "BROKER_SESSION_TIMEOUT_S": (
        "session_timeout_s",
        "consumer group session timeout: how soon a dead worker's partitions move (>= 6)",
    ),
    "BROKER_SHUTDOWN_TIMEOUT_S": (
        "shutdown_timeout_s",
        "how long a stop signal's graceful shutdown may take before the worker exits anyway",
    ),
    "BROKER_NOT_READY_EXIT_S": (
        "not_ready_exit_s",
        "a worker not ready this long with no progress stops (exit 75); 0: never",
    ),
    "BROKER_INPUT_OFFSET_GAPS": (
        "input_offset_gaps",
        "stop | count: an input offset not there when read again stops the worker",
    ),
    "BROKER_LOG_LEVEL": ("log_level", "worker log level"),
    "BROKER_PARTNERS": (
        "partners_path",
        "partners.toml for fan-out, delivery and feeds; empty or 'none': no partners",
    ),
    "BROKER_ALLOW_DEV_SECRETS": (
        "allow_dev_defaults",
        "allow the documented development secrets of partners.toml (never in production)",
    ),
    "BROKER_ROADS": ("roads_path", "road network file for the engine"),
    "BROKER_ROAD_CLASSES": (
        "road_classes_path",
        "road-class mapping (TOML) for BROKER_ROADS: classes the built-in table does not know",
    ),
    "BROKER_ROADS_ALLOW_DISCONNECTED": (
        "roads_allow_disconnected",
        "use a road network whose largest connected piece holds under half its km anyway",
    ),
    "BROKER_ROADS_SNAP_M": (
        "roads_snap_m",
        "join road line ends this close (m) to another line (default 1 for GeoJSON, else 0)",
    ),
    "BROKER_ROADS_ORIGIN": (
        "roads_origin",
        "LON,LAT where a SUMO net without geo-reference (netgenerate) has its (0, 0)",
    ),
    "BROKER_AGENCIES": (
        "agencies_path",
        "agency file: the units taken, their AVL devices and lightbar inputs (docs/ingest.md)",
    ),
    "BROKER_INGEST_TOKEN": (
        "ingest_token",
        "secret of POST /ingest/traccar (Traccar forward.header); unset: endpoint off",
    ),
    "BROKER_AUDIT_FILE": ("audit_file", "also write audit records here"),
    "BROKER_DELIVERY_MAX_AGE_S": (
        "delivery_max_age_s",
        "drop (count as expired) alert events older than this in wall-clock time",
    ),
    "BROKER_FEED_CLOCK": (
        "feed_clock",
        "wall | event: the pull feeds' now (event: replays of recorded incidents only)",
    ),
    "BROKER_VEHICLE_IDLE_EXPIRY_S": (
        "vehicle_idle_expiry_s",
        "a vehicle with no live alert and no message for this long leaves the state table",
    ),
    "BROKER_DLQ_RETENTION_S": (
        "dlq_retention_s",
        "retention of avl.dlq and delivery.dlq (they hold raw input and payloads)",
    ),
    "BROKER_DLQ_MAX_BYTES": (
        "dlq_max_bytes",
        "the most bytes of a refused message its avl.dlq record keeps (more: the first ones)",
    ),
    "BROKER_AUDIT_RETENTION_S": (
        "audit_retention_s",
        "retention of the audit topic (what was sent to whom; no positions, no bodies)",
    ),
}
SECURITY_ENV_VARS: dict[str, tuple[str, str]] = {
    "BROKER_KAFKA_SECURITY_PROTOCOL": ("protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    "BROKER_KAFKA_SASL_MECHANISM": ("sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    "BROKER_KAFKA_SASL_USERNAME": ("sasl_username", "SASL user"),
    "BROKER_KAFKA_SASL_PASSWORD": ("sasl_password", "SASL password"),
    "BROKER_KAFKA_SSL_CAFILE": ("ssl_cafile", "CA bundle (PEM) to verify the brokers"),
    "BROKER_KAFKA_SSL_CERTFILE": ("ssl_certfile", "client certificate (PEM), mutual TLS"),
    "BROKER_KAFKA_SSL_KEYFILE": ("ssl_keyfile", "client private key (PEM), mutual TLS"),
}
# where each table's fields live in the decoded document, and in which Struct
_TABLES: dict[FieldPath, tuple[dict[str, tuple[str, str]], type[msgspec.Struct]]] = {
    (): (ENV_VARS, StreamSettings),
    ("security",): (SECURITY_ENV_VARS, KafkaSecurity),
}
SECRET_PATHS: frozenset[FieldPath] = frozenset({("ingest_token",), ("security", "sasl_password")})
def _document(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[FieldPath, str]]:
    """The environment as the dict msgspec decodes, and which variable set each path."""
    doc: dict[str, Any] = {"security": {}, "engine": {}}
    names: dict[FieldPath, str] = {}
    for at, (table, cls) in _TABLES.items():
        types = {f.name: f.type for f in mi.type_info(cls).fields}  # type: ignore[attr-defined]
        into = doc["security"] if at else doc
        for name, (field, _help) in table.items():
            if name in env:
                into[field] = _respell(env[name], types[field])
                names[(*at, field)] = name
    engine_types = {f.name: f.type for f in mi.type_info(EngineConfig).fields}  # type: ignore[attr-defined]
    for name, raw in env.items():
        if name.startswith(ENGINE_PREFIX):
            key = name[len(ENGINE_PREFIX) :].lower()
            value: Any = raw.strip()
            kind = engine_types.get(key)
            if isinstance(kind, mi.TupleType):  # "w,s,e,n" -> a list
                value = [part.strip() for part in value.split(",")]
            elif kind is not None:  # the same spellings as every other variable (yes/off, none)
                value = _respell(raw, kind)
            doc["engine"][key] = value
            names[("engine", key)] = name
    return doc, names


def _one_socket(a: str, b: str) -> bool:
    """Whether two listening addresses on one port would clash: the same, or one a wildcard
    of the other's family (``0.0.0.0`` of IPv4, ``::`` of IPv6: aiohttp binds IPv6 sockets
    IPv6-only, so ``::`` beside ``127.0.0.1`` binds; ``""`` is every address of both). A name
    (``localhost``) is taken as either family."""
    def families(host: str) -> set[int]:
        if host == "":
            return {4, 6}
        return {6} if ":" in host else {4} if host.replace(".", "").isdigit() else {4, 6}

    wildcards = {"": {4, 6}, "0.0.0.0": {4}, "::": {6}}
    if a == b:
        return True
    return any(host in wildcards and wildcards[host] & families(other)
               for host, other in ((a, b), (b, a)))


def _error(
    err: msgspec.ValidationError, env: Mapping[str, Any], names: dict[FieldPath, str]
) -> SettingsError:
    """A SettingsError naming the variable or option (and its value) behind msgspec's path."""
    path, message = locate(err)
    key = unknown_key(message)
    if key is not None and path == ("engine",):
        name = names[("engine", key)]
        known = [f.name for f in msgspec.structs.fields(EngineConfig)]
        hint = did_you_mean([key], known, otherwise=" (see docs/settings.md)")
        return SettingsError(f"{name}: no engine setting {key!r}{hint}")
    # an item of a list setting ("LON,LAT", "w,s,e,n"): named by the setting that holds it
    held = next((path[:n] for n in range(len(path), 0, -1) if path[:n] in names), None)
    if held is not None:
        name = names[held]
        why = explain(message, type_at(StreamSettings, path))
        if held != path:
            why += f" (item {path[len(held)]})" if isinstance(path[len(held)], int) else ""
        where = f" (engine setting {held[1]})" if held[0] == "engine" else ""
        path = held
        shown = "(secret)" if path in SECRET_PATHS else repr(env[name])
        return SettingsError(f"{name}={shown}: {why}{where}")
    # a rule across several settings of one table (KafkaSecurity.__post_init__): name them
    table, _cls = _TABLES.get(path, (ENV_VARS, StreamSettings))
    var_of = {field: name for name, (field, _help) in table.items()}
    # ...by what set each: an option (``--web-port``) is named as itself, not as its variable
    var_of.update({str(p[-1]): name for p, name in names.items() if p[:-1] == path})
    return SettingsError(
        re.sub(r"\b[a-z_]+\b", lambda m: var_of.get(m[0], m[0]), message)
    )


def engine_from_env(env: Mapping[str, str]) -> EngineConfig:
    """``BROKER_ENGINE_<FIELD>`` overrides of :class:`EngineConfig`, e.g. ..._STALE_TIMEOUT_S."""
    return from_env({k: v for k, v in env.items() if k.startswith(ENGINE_PREFIX)}).engine


# BROKER_ variables that other parts of the broker read: the console's; a partners file
# names the environment variables of its own secrets (the sample: BROKER_PSEUDONYM_KEY)
OTHER_VARS = ("BROKER_CONSOLE_TOKEN", "BROKER_CONSOLE_TILES", "BROKER_CONSOLE_TILES_ATTRIBUTION",
              "BROKER_CONSOLE_LOOKBACK_S", "BROKER_CONSOLE_WRITE_TIMEOUT_S",
              "BROKER_PSEUDONYM_KEY")


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """``BROKER_`` variables no part of the broker reads, each with what it may have meant: a
    misspelt ``BROKER_KAFKA_BOOTSTRAP_SERVERS`` left the worker on 127.0.0.1:9092 without a
    word (the engine's ``BROKER_ENGINE_`` ones are refused by :func:`from_env` instead).

    >>> unknown_variables({"BROKER_KAFKA_BOOTSTRAP_SERVERS": "k:9092", "BROKER_WEB_PORT": "1"})
    ["BROKER_KAFKA_BOOTSTRAP_SERVERS (did you mean 'BROKER_KAFKA_BOOTSTRAP'?)"]
    """
    known = [*ENV_VARS, *SECURITY_ENV_VARS, *OTHER_VARS]
    return [
        f"{name}{did_you_mean([name], known, otherwise='')}" for name in sorted(env)
        if name.startswith("BROKER_") and not name.startswith(ENGINE_PREFIX)
        and name not in known
    ]


def from_env(
    env: Mapping[str, str], options: Mapping[str, str] | None = None, **overrides: Any
) -> StreamSettings:
    """Build settings from an environment mapping (``os.environ`` at the edge) plus overrides.

    Overrides are CLI option values (None: not given) and win over the environment; they are
    validated as the environment is, and an error names the option: ``options`` maps a field
    to the option that set it (default ``--field-name``).
    """
    doc, names = _document(env)
    values: dict[str, Any] = dict(env)
    for field, value in overrides.items():
        if value is None:
            continue
        label = (options or {}).get(field, "--" + field.replace("_", "-"))
        doc[field] = str(value) if isinstance(value, Path) else value
        names[(field,)] = label
        values[label] = value
    try:
        return msgspec.convert(doc, StreamSettings, strict=False, dec_hook=_decode_hook)
    except msgspec.ValidationError as err:
        raise _error(err, values, names) from None
