"""Integration fixtures: a real Kafka broker for the session, and real worker subprocesses.

Kafka: ``BROKER_KAFKA_BOOTSTRAP`` if it answers (``scripts/with-kafka`` sets it), else
``scripts/kafka start`` on EV_KAFKA_PORT (default 39092, so a developer's own broker on 9092 is
left alone), stopped at the end only if this session started it. Every test gets its own topic
prefix and Faust app id (consumer group), so tests never see each other's messages.
"""

from __future__ import annotations

import heapq
import os
import re
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from broker import codec
from broker.model import AlertEvent
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig
from broker.streams.produce import envelope
from broker.streams.runtime import partition_for
from tests import worker_process as wp
from tests.worker_process import REPO, answers, free_port

KAFKA_SCRIPT = REPO / "scripts" / "kafka"
FIXTURES = REPO / "fixtures" / "incidents"
WORKER_READY_TIMEOUT_S = 120.0
# The engine settings of the workers these tests start, unless a test asks otherwise: without
# the dispatch alert. A test that produces a unit's CAD route and its fixes at once (max speed)
# cannot say which a worker handles first (they are two topics), and a route handled after the
# unit's first emergency fix starts no dispatch alert, as intended; the replay, reading by time,
# always handles the route first. The dispatch alert through Kafka is tested with the route
# sent ahead of the fixes, as CAD sends it (test_streams_replay.py). Without the dispatch
# alert, a route handled after that fix still adds an update (route-downtown: one to five
# versions more than the replay's first alert has). The changelog test sends the route first
# for that; the max-speed alert test still sends everything at once.
WORKER_CFG = EngineConfig(dispatch_cover_m=0.0)
_VEHICLE = re.compile(rb'"vehicle_id"\s*:\s*"[^"]*"')


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a running Kafka broker (started here when none is given)."""
    given = os.environ.get("BROKER_KAFKA_BOOTSTRAP")
    if given:
        if not answers(given):
            pytest.fail(f"BROKER_KAFKA_BOOTSTRAP={given} does not answer")
        yield given
        return
    env = dict(os.environ)
    env.setdefault("EV_KAFKA_PORT", "39092")
    env.setdefault("EV_KAFKA_CONTROLLER_PORT", "39093")
    bootstrap = f"127.0.0.1:{env['EV_KAFKA_PORT']}"
    status = subprocess.run([str(KAFKA_SCRIPT), "status"], env=env, capture_output=True)
    started = status.returncode != 0
    if started:
        run = subprocess.run(
            [str(KAFKA_SCRIPT), "start", "--fresh"], env=env, capture_output=True, text=True
        )
        if run.returncode != 0:
            pytest.fail(f"scripts/kafka start failed:\n{run.stderr}")
    try:
        yield bootstrap
    finally:
        if started:
            subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True)


@dataclass
class Run:
    """One test's Kafka namespace: topic prefix and app id (= consumer group)."""

    bootstrap: str
    prefix: str
    app_id: str
    tmp: Path
    workers: list[Worker] = field(default_factory=list)

    def topic(self, name: str) -> str:
        """Full topic name with this run's prefix."""
        return self.prefix + name

    def worker(self, module: str = "broker.streams.cli", **env: str) -> Worker:
        """Start a worker subprocess of this run (same group as the run's other workers);
        ``module`` is what ``python -m`` runs (a test double may wrap the real worker)."""
        w = Worker(self, index=len(self.workers), extra_env=env, module=module)
        self.workers.append(w)
        w.start()
        return w


@dataclass
class Worker:
    """``python -m broker.streams.cli worker`` as a real subprocess with its own data dir."""

    run: Run
    index: int
    extra_env: dict[str, str]
    module: str = "broker.streams.cli"
    port: int = 0  # the public port (feeds, console)
    ops_port: int = 0  # /health and /metrics
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, *, keep_port: bool = False) -> None:
        """Start the process (a fresh data dir each time, and a fresh web port unless
        ``keep_port``: a restarted worker that an open browser page reconnects to)."""
        if not (keep_port and self.port):
            self.port = free_port()
        self.ops_port = free_port(besides=(self.port,))
        data = self.run.tmp / f"worker{self.index}-{time.monotonic_ns()}"
        data.mkdir(parents=True)
        self.log_path = data / "worker.log"
        self.proc = wp.spawn_worker(
            module=self.module, bootstrap=self.run.bootstrap, app_id=self.run.app_id,
            prefix=self.run.prefix, port=self.port, ops_port=self.ops_port, data=data,
            log=self.log_path,
            env={
                "BROKER_PARTNERS": "",  # no partner delivery unless a test asks for it
                "BROKER_ENGINE_DISPATCH_COVER_M": str(WORKER_CFG.dispatch_cover_m),
                **self.extra_env,
            },
        )

    def health(self) -> tuple[int, dict[str, object]]:
        """(status, body) of /health; (0, {}) while the web server is not up."""
        return wp.health(self.ops_port)

    def metrics(self) -> str:
        """The /metrics text."""
        return httpx.get(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=2.0).text

    def metrics_once(self, done: Callable[[str], bool], timeout_s: float = 10.0) -> str:
        """The /metrics text once ``done`` holds for it (the last text read, if it never does:
        the caller's assertion then says what is missing). A counter moves when the worker
        hears Kafka's answer, a moment after a reader of the topic may see the record."""
        deadline = time.monotonic() + timeout_s
        text = self.metrics()
        while not done(text) and time.monotonic() < deadline:
            time.sleep(0.2)
            text = self.metrics()
        return text

    def wait_ready(self, *, with_partitions: bool = True) -> dict[str, object]:
        """Block until /health says ready (and owns partitions); fail with the log if it dies."""
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            status, body = self.health()
            if status == 200 and (body.get("partitions") or not with_partitions):
                return body
            time.sleep(0.5)
        pytest.fail(f"worker not ready after {WORKER_READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no final commit, no flush."""
        assert self.proc is not None
        wp.kill9(self.proc)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after 20 s."""
        wp.stop(self.proc, grace_s=20)

    def log_tail(self, lines: int = 60) -> str:
        """The end of the worker's log, for failure messages."""
        return wp.log_tail(self.log_path, lines)

@pytest.fixture
def kafka_run(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Run]:
    """A fresh topic prefix + consumer group; stops every worker it started."""
    tag = uuid.uuid4().hex[:10]
    run = Run(kafka_bootstrap, prefix=f"t{tag}.", app_id=f"t{tag}", tmp=tmp_path)
    try:
        yield run
    finally:
        for w in run.workers:
            w.stop()


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[object]], bool],
    timeout_s: float = 90.0,
    idle_s: float = 0.0,
) -> list[object]:
    """Read ``topic`` from the start until ``until(records)`` holds (then ``idle_s`` more
    seconds, to catch duplicates that would follow) or the timeout; kafka-python records."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    records: list[object] = []
    deadline = time.monotonic() + timeout_s
    done_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if done_at is None and until(records):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= idle_s:
                break
    finally:
        consumer.close()
    return records


def alerts_of(records: list[object]) -> list[AlertEvent]:
    """Decode alert records in topic order."""
    return [codec.decode_alert(r.value) for r in records]  # type: ignore[attr-defined]


def has_every_alert(expected: list[AlertEvent]) -> Callable[[list[object]], bool]:
    """A ``read_topic`` stop condition: every expected (alert id, version) has arrived."""
    want = {(e.alert_id, e.version) for e in expected}

    def until(records: list[object]) -> bool:
        return want <= {(e.alert_id, e.version) for e in alerts_of(records)}

    return until


def has_every_last_version(expected: list[AlertEvent]) -> Callable[[list[object]], bool]:
    """A ``read_topic`` stop condition for a worker that read its input as a backlog: every
    alert's last version has arrived. Its earlier updates may have been coalesced away
    (``broker.streams.held_updates``), so waiting for each version would wait for the timeout;
    an alert's versions share its key and partition, so the last one comes after the rest."""
    last = {e.alert_id: e for e in expected}  # each alert's last event (versions go up)
    return has_every_alert(list(last.values()))


# --- expected alerts and how to compare them ---------------------------------------------


def fixture_messages(name: str) -> list[tuple[str, bytes]]:
    """An incident's messages in arrival order, as the in-process replay reads them."""
    return load_messages(FIXTURES / name)


def expected_events(messages: list[tuple[str, bytes]], cfg: EngineConfig) -> list[AlertEvent]:
    """What the in-process replay emits for the same messages (it drains at the end too)."""
    return replay_in_process(messages, cfg=cfg).events


def grouped(events: list[AlertEvent]) -> dict[str, list[AlertEvent]]:
    """Events per alert id, in order, with exact redeliveries of a (id, version) dropped.

    Raises AssertionError when a redelivery differs from the first delivery (that would be
    one alert version with two contents), or when versions do not go up.
    """
    out: dict[str, list[AlertEvent]] = defaultdict(list)
    seen: dict[tuple[str, int], AlertEvent] = {}
    for ev in events:
        key = (ev.alert_id, ev.version)
        if key in seen:
            assert seen[key] == ev, f"{key} delivered twice with different contents"
            continue
        seen[key] = ev
        prior = out[ev.alert_id]
        assert not prior or prior[-1].version < ev.version, (
            f"{ev.alert_id}: version {ev.version} after {prior[-1].version}"
        )
        prior.append(ev)
    return dict(out)


def assert_same_alerts(got: list[AlertEvent], expected: list[AlertEvent]) -> None:
    """The alerts on the topic are the expected ones, every field of every version, except
    that updates of messages the worker processed late may have been coalesced away (a newer
    version of the alert went instead: ``broker.streams.held_updates``). Every alert, its
    create and its last event are there; redeliveries of an identical version are allowed.

    The expected events are compared as the topic carries them (through the codec): the
    engine's zone rings are ``(lon, lat)`` tuples, the decoded ones lists."""
    expected = [codec.decode_alert(codec.encode(e)) for e in expected]
    got_by_id, want_by_id = grouped(got), grouped(expected)
    assert set(got_by_id) == set(want_by_id), "no alert missing, none under a second id"
    kept: dict[str, list[AlertEvent]] = {}
    for aid, want in want_by_id.items():
        versions = {e.version for e in got_by_id[aid]}
        kept[aid] = [e for e in want if e.version in versions or e.action != "update"]
        assert want[-1] in kept[aid], f"{aid}: the last version is never coalesced away"
    assert {k: summary(v) for k, v in got_by_id.items()} == {
        k: summary(v) for k, v in kept.items()
    }
    assert got_by_id == kept  # zones, expiry, positions: every field


def summary(events: list[AlertEvent]) -> list[tuple[str, int, str, str, str]]:
    """(id, version, action, kind, ts) per event: a readable diff when comparisons fail."""
    return [(e.alert_id, e.version, e.action, e.kind, e.ts.isoformat()) for e in events]


def with_vehicle(messages: list[tuple[str, bytes]], vehicle_id: str) -> list[tuple[str, bytes]]:
    """The same messages for another vehicle id (byte-level, everything else untouched)."""
    new = f'"vehicle_id":"{vehicle_id}"'.encode()
    return [(t, _VEHICLE.sub(new, raw, count=1)) for t, raw in messages]


_TS = re.compile(rb'"ts"\s*:\s*"([^"]+)"')


def shifted(messages: list[tuple[str, bytes]], start: datetime) -> list[tuple[str, bytes]]:
    """The same messages moved in time so the first one is at ``start``."""
    first = envelope(messages[0][1])[1]
    assert first is not None
    delta = start - first

    def move(m: re.Match[bytes]) -> bytes:
        ts = datetime.fromisoformat(m.group(1).decode().replace("Z", "+00:00")) + delta
        text = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return b'"ts":"' + text.encode() + b'"'

    return [(t, _TS.sub(move, raw)) for t, raw in messages]


def spread_fleet(partitions: int, names: list[str]) -> list[tuple[str, bytes]]:
    """One vehicle per partition (ids chosen so murmur2 covers every partition), each
    replaying one of ``names`` in turn, all moved to start within a minute of each other
    (the codec refuses a fix more than 60 s ahead of the stream's time, so incidents recorded
    hours apart cannot share a stream); merged by event time, each vehicle's order kept."""
    ids: dict[int, str] = {}
    i = 0
    while len(ids) < partitions:
        vid = f"CFD-U{i}"
        ids.setdefault(partition_for(vid.encode(), partitions), vid)
        i += 1
    base = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    streams = [
        shifted(
            with_vehicle(fixture_messages(names[p % len(names)]), ids[p]),
            base + timedelta(seconds=7 * p),
        )
        for p in sorted(ids)
    ]

    def ts_key(msg: tuple[str, bytes]) -> datetime:
        return envelope(msg[1])[1] or datetime.min.replace(tzinfo=UTC)

    return list(heapq.merge(*streams, key=ts_key))


def group_committed(run: Run, tp: object) -> int:
    """The offset the worker's group committed on ``tp`` (a kafka-python TopicPartition), 0 if
    none."""
    from kafka import KafkaConsumer  # kafka-python: the suite's plain client

    group = KafkaConsumer(bootstrap_servers=run.bootstrap, group_id=run.app_id,
                          enable_auto_commit=False)
    try:
        return group.committed(tp) or 0  # type: ignore[arg-type]
    finally:
        group.close()


def wait_committed(run: Run, tp: object, at_least: int, timeout_s: float = 60) -> int:
    """The group's committed offset on ``tp`` once it reaches ``at_least`` (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while (got := group_committed(run, tp)) < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
    return got


def coalesced_updates(metrics: str) -> int:
    """``broker_alert_updates_coalesced_total`` of a worker's metrics page: updates replaced by
    a newer version before they were produced (``broker.streams.held_updates``)."""
    found = re.findall(r"^broker_alert_updates_coalesced_total (\S+)$", metrics, re.M)
    assert found, "the worker exports broker_alert_updates_coalesced_total"
    return int(float(found[0]))


def assert_nothing_missing_but_coalesced(
    worker: Worker, got: list[AlertEvent], expected: list[AlertEvent],
) -> None:
    """Every expected alert came out as :func:`assert_same_alerts` wants, and each version that
    did not is one the worker counted as coalesced (read once every alert's last version is out,
    so nothing is still held and the count is final)."""
    assert_same_alerts(got, expected)
    missing = {(e.alert_id, e.version) for e in expected} - {(e.alert_id, e.version) for e in got}
    coalesced = coalesced_updates(worker.metrics())
    assert len(missing) == coalesced, f"{len(missing)} missing, {coalesced} coalesced"
