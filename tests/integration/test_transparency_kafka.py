"""``broker transparency --kafka``: the report of the worker's audit topic, every partition of it,
is the report of the same records in a file (a worker's BROKER_AUDIT_FILE holds its own only)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from typer.testing import CliRunner

from adapters.audit import AuditRecord, JsonlAudit, ProducerAudit
from broker.cli import app
from tests.integration.conftest import Run

pytestmark = pytest.mark.integration

PARTNERS = Path(__file__).resolve().parents[2] / "fixtures" / "partners.toml"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PARTITIONS = 3


def audit_records() -> list[AuditRecord]:
    """Every partner's records, of every outcome: delivered, failed then delivered, cut off
    after ``sending``, expired, dead-lettered, feed responses."""
    out: list[AuditRecord] = []
    for n, partner in enumerate(["navapp", "waze", "county", "opendata"]):
        for a in range(3 + n):
            alert, life = f"{partner}-a{a}", T0 + timedelta(minutes=a)
            for version in (1, 2):
                at = life + timedelta(seconds=version)
                base = {"at": at, "partner": partner, "alert_id": alert, "version": version,
                        "action": "create" if version == 1 else "update",
                        "message_id": f"{alert}-{version}", "started_at": life,
                        "fields": ("zone", "kind")}
                out.append(AuditRecord(**base, status="sending", attempt=1))
                outcome = ("delivered", "failed", "sending", "expired", "dead_letter")[
                    (a + version + n) % 5]
                if outcome == "failed":  # then delivered at the second attempt
                    out.append(AuditRecord(**base, status="failed", attempt=1, http_status=503))
                    out.append(AuditRecord(**base, status="sending", attempt=2))
                    outcome = "delivered"
                if outcome != "sending":  # "sending": cut off, no outcome
                    out.append(AuditRecord(**base, status=outcome,  # type: ignore[arg-type]
                                           attempt=2 if outcome == "delivered" else 1,
                                           http_status=200 if outcome == "delivered" else None))
        out.append(AuditRecord(at=T0, partner=partner, alert_id="", version=0, action="feed",
                               status="feed_served", alerts=1, served=(f"{partner}-a0-1",)))
    return out


def audit_topic(kafka_run: Run) -> str:
    """The run's ``audit`` topic, created with ``PARTITIONS`` partitions (its name)."""
    topic = kafka_run.topic("audit")
    admin = KafkaAdminClient(bootstrap_servers=kafka_run.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    return topic


def produce(bootstrap: str, topic: str, records: list[AuditRecord], junk: list[bytes]) -> None:
    """The records as the worker writes them (``ProducerAudit``: JSON, keyed by partner)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def write_all() -> None:
        loop = asyncio.get_running_loop()

        def send(key: bytes, value: bytes) -> asyncio.Future[object]:
            answer: asyncio.Future[object] = loop.create_future()
            answer.set_result(producer.send(topic, key=key, value=value).get(timeout=30))
            return answer

        audit = ProducerAudit(send)
        for rec in records:
            audit.write(rec)
    try:
        asyncio.run(write_all())
        for raw in junk:
            producer.send(topic, key=b"navapp", value=raw).get(timeout=30)
    finally:
        producer.close()


def transparency(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["transparency", "--partners", str(PARTNERS), *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.stdout, res.stderr


def test_the_report_of_the_audit_topic_is_the_report_of_the_same_records_in_a_file(
    kafka_run: Run, tmp_path: Path,
) -> None:
    topic = audit_topic(kafka_run)
    records = audit_records()
    junk = [b"not an audit record", b'{"schema": 2, "partner": "navapp"}']
    produce(kafka_run.bootstrap, topic, records, junk)
    file = JsonlAudit(tmp_path / "audit.jsonl")
    for rec in records:
        file.write(rec)

    code, from_file, _ = transparency("--audit", str(file.path))
    assert code == 0
    code, from_topic, err = transparency("--kafka", kafka_run.bootstrap,
                                         "--topic-prefix", kafka_run.prefix)
    assert code == 0, err
    assert from_topic == from_file
    assert "warnings sent in" in from_topic  # counts, not a report of zeros
    assert f"{topic}: 2 records that are not audit records left out of the counts" in err

    # the records are over more than one partition: one partition alone is part of the report
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka_run.bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        consumer.close()
    assert sum(1 for end in ends.values() if end > 0) >= 2, ends


def test_no_audit_topic_is_said_and_none_is_made(kafka_run: Run) -> None:
    code, out, err = transparency("--kafka", kafka_run.bootstrap,
                                  "--topic-prefix", kafka_run.prefix)
    assert code == 2, out
    assert f"no topic {kafka_run.topic('audit')} there" in " ".join(err.split())
    admin = KafkaAdminClient(bootstrap_servers=kafka_run.bootstrap)
    try:
        assert kafka_run.topic("audit") not in admin.list_topics()
    finally:
        admin.close()


def test_a_kafka_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.worker_process import free_port

    monkeypatch.setenv("BROKER_KAFKA_CONNECT_TIMEOUT_S", "1")
    address = f"127.0.0.1:{free_port()}"
    code, out, err = transparency("--kafka", address)
    assert code == 69, out  # EXIT_UNAVAILABLE: an outage, as `broker replay --kafka` says it
    assert f"--kafka {address}: could not reach a Kafka broker there" in " ".join(err.split())


def test_records_written_while_the_topic_is_read_are_not_waited_for(kafka_run: Run) -> None:
    """The reading ends at the end offsets of its start: workers writing on cannot keep it
    going (a partition written to faster than it is read would never be done)."""
    from broker.streams.audit_topic import read_audit_topic

    topic = audit_topic(kafka_run)
    records = audit_records()
    produce(kafka_run.bootstrap, topic, records, [])
    later: list[int] = []

    def write_more(done: int, total: int) -> None:  # called first before the first fetch
        if not later:
            later.append(done)
            produce(kafka_run.bootstrap, topic, records, [])

    read = read_audit_topic(kafka_run.bootstrap, topic, progress=write_more)
    assert later == [0]  # it wrote more once the end offsets were taken, before a fetch
    assert sorted(read.records, key=repr) == sorted(records, key=repr)
    assert (read.partitions, read.unreadable) == (PARTITIONS, [])


def test_an_empty_audit_topic_is_a_report_of_nothing_sent(kafka_run: Run, tmp_path: Path) -> None:
    """A worker started, nothing sent yet: every partition is read at once (none to wait for)."""
    audit_topic(kafka_run)
    code, out, err = transparency("--kafka", kafka_run.bootstrap,
                                  "--topic-prefix", kafka_run.prefix)
    assert code == 0, err
    assert "Activity: 0 warnings sent in 0 messages." in out
    (tmp_path / "audit.jsonl").write_text("")
    assert out == transparency("--audit", str(tmp_path / "audit.jsonl"))[1]
