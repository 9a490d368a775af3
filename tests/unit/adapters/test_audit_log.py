"""The audit log's own rules (``adapters.audit``): a torn line never takes the next record with
it, records of the old schema still read, a lost Kafka record is never forgotten, and a worker
that cannot append to its audit file does not start."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import adapters.audit
from adapters.audit import AuditRecord, JsonlAudit, MemoryAudit, ProducerAudit, TeeAudit, read_audit
from tests.unit.adapters.factory import T0


def rec(version: int, status: str = "delivered", **kw: object) -> AuditRecord:
    return AuditRecord(at=T0, partner="navapp", alert_id="evX", version=version, action="update",
                       status=status, message_id=f"evX-v{version}", **kw)  # type: ignore[arg-type]


def test_a_record_written_after_a_torn_line_is_read(tmp_path: Path) -> None:
    """A write cut short (full disk, power loss, kill) left v2 torn; the restarted writer
    appended v3 onto it, and v3, a whole delivered record, was unreadable with it (item 5)."""
    path = tmp_path / "audit.jsonl"
    JsonlAudit(path).write(rec(1))
    with path.open("ab") as fh:
        fh.write(msgspec.json.encode(rec(2))[:40])
    JsonlAudit(path).write(rec(3))  # a new writer (a restarted worker)
    bad: list[int] = []
    assert [r.version for r in read_audit(path, bad)] == [1, 3] and bad == [2]


def test_the_file_is_fsynced_when_records_were_appended_and_its_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records in the OS's cache only were lost by a host crash: ``sync`` (the worker's timer
    and shutdown) takes them to the disk, and costs nothing when none was appended."""
    synced: list[Path] = []
    fail = [False]

    def fsync(path: Path) -> None:
        if fail[0]:
            raise OSError(5, "Input/output error")
        synced.append(path)

    monkeypatch.setattr(adapters.audit, "_fsync", fsync)
    path = tmp_path / "audit" / "audit.jsonl"
    sink = JsonlAudit(path)
    tee = TeeAudit(MemoryAudit(), sink)  # the worker's: the file among sinks without a sync
    tee.sync()
    assert synced == []  # nothing written
    tee.write(rec(1))
    tee.sync()
    assert synced == [path, path.parent]  # a new file: its directory entry too
    tee.sync()
    assert synced == [path, path.parent]  # nothing new
    sink.write(rec(2))
    fail[0] = True
    with pytest.raises(OSError, match="Input/output"):
        tee.sync()
    fail[0] = False
    sink.sync()  # the failed one is tried again
    assert synced == [path, path.parent, path]
    assert [r.version for r in read_audit(path)] == [1, 2]


def test_the_same_writer_starts_a_new_line_after_its_own_failed_write(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAudit(path)
    sink.write(rec(1))
    with path.open("ab") as fh:  # what a write that failed half-way leaves
        fh.write(b'{"schema":2,"at":"2026-11-')
    sink._whole = False  # as write() leaves it when the write raised
    sink.write(rec(3))
    assert [r.version for r in read_audit(path, [])] == [1, 3]


def test_a_record_an_old_writer_glued_onto_a_torn_line_is_still_read(tmp_path: Path) -> None:
    """Files written before the fix may hold ``<torn bytes><whole record>`` on one line."""
    path = tmp_path / "audit.jsonl"
    for torn, whole in ((rec(2), rec(3)), (rec(4), msgspec.structs.replace(rec(5)))):
        with path.open("ab") as fh:
            fh.write(msgspec.json.encode(torn)[:33] + msgspec.json.encode(whole) + b"\n")
    old = b'{"at":"2026-11-25T14:03:05Z","partner":"navapp","alert_id":"e","version":6,' \
          b'"action":"update","status":"delivered"}'
    with path.open("ab") as fh:  # a schema-1 record glued onto a torn schema-1 one
        fh.write(old[:20] + old + b"\n")
    bad: list[int] = []
    assert [r.version for r in read_audit(path, bad)] == [3, 5, 6] and bad == [1, 2, 3]


records = st.builds(rec, st.integers(1, 10_000), st.sampled_from(["failed", "delivered"]))


@given(writes=st.lists(st.tuples(records, st.none() | st.integers(1, 200)), max_size=12))
def test_every_record_written_whole_is_read_whatever_was_torn_before_it(
    tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[AuditRecord, int | None]]
) -> None:
    """Writes cut at any byte (``cut``), each followed by a new writer: every whole record
    reads back, in order, and only the torn lines are unreadable."""
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    whole = []
    for record, cut in writes:
        line = msgspec.json.encode(record) + b"\n"
        if cut is not None and cut < len(line) - 1:
            with path.open("ab") as fh:
                fh.write(line[:cut])
        else:
            JsonlAudit(path).write(record)
            whole.append(record)
    got = list(read_audit(path, [])) if path.exists() else []
    assert got == whole


def test_old_records_read_and_new_ones_say_their_schema(tmp_path: Path) -> None:
    """Schema 1 lines (no ``schema``, no ``started_at``) still read; new ones lead with
    ``"schema":2``; a line of a schema this code does not know is not taken for a record."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(
        b'{"at":"2026-11-25T14:03:05Z","partner":"navapp","alert_id":"e","version":1,'
        b'"action":"create","status":"delivered","attempt":1,"message_id":"e-v1"}\n'
        b'{"schema":3,"at":"2026-11-25T14:03:05Z","partner":"navapp","alert_id":"e",'
        b'"version":2,"action":"update","status":"delivered"}\n')
    started = T0 - timedelta(minutes=1)
    JsonlAudit(path).write(rec(7, "sending", started_at=started))
    bad: list[int] = []
    old, new = read_audit(path, bad)
    assert (old.version, old.started_at, old.message_id) == (1, None, "e-v1") and bad == [2]
    assert new == rec(7, "sending", started_at=started)
    assert path.read_bytes().splitlines()[-1].startswith(b'{"schema":2,')


def test_a_line_written_before_may_have_arrived_reads_false(tmp_path: Path) -> None:
    """``may_have_arrived`` (2026-12-07, session 7) is optional: a schema-2 ``failed`` line
    written before it reads as False; a new one carries it."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(
        b'{"schema":2,"at":"2026-11-25T14:03:05Z","partner":"navapp","alert_id":"e",'
        b'"version":1,"action":"create","status":"failed","attempt":1,"http_status":null,'
        b'"message_id":"e-v1","started_at":"2026-11-25T14:02:05Z","not_sent":false}\n')
    JsonlAudit(path).write(rec(2, "failed", may_have_arrived=True))
    old, new = read_audit(path)
    assert (old.status, old.may_have_arrived, old.not_sent) == ("failed", False, False)
    assert new.may_have_arrived is True and b'"may_have_arrived":true' in path.read_bytes()


def test_a_feed_line_written_before_served_started_reads_no_lives(tmp_path: Path) -> None:
    """``served_started`` (2026-12-07, session 7) is optional: an older ``feed_served`` line
    reads with no lives; a new one carries one per served item."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(
        b'{"schema":2,"at":"2026-11-25T14:03:05Z","partner":"waze","alert_id":"",'
        b'"version":0,"action":"feed","status":"feed_served","http_status":200,"alerts":1,'
        b'"served":["evX-v1"],"not_sent":false}\n')
    JsonlAudit(path).write(AuditRecord(at=T0, partner="waze", alert_id="", version=0,
                                       action="feed", status="feed_served", alerts=1,
                                       served=("evX-v1",), served_started=(T0,)))
    old, new = read_audit(path)
    assert (old.served, old.served_started) == (("evX-v1",), ())
    assert new.served_started == (T0,)


@pytest.mark.parametrize("where", ["a_directory", "under_a_file/audit.jsonl"])
def test_an_audit_file_that_cannot_be_appended_to_is_refused_at_start(
    tmp_path: Path, where: str
) -> None:
    from typer.testing import CliRunner

    from broker.cli import app

    (tmp_path / "a_directory").mkdir()
    (tmp_path / "under_a_file").write_text("")
    env = {"BROKER_PARTNERS": "fixtures/partners.toml", "BROKER_ALLOW_DEV_SECRETS": "true",
           "BROKER_AUDIT_FILE": str(tmp_path / where), "BROKER_KAFKA_BOOTSTRAP": "127.0.0.1:9",
           "BROKER_KAFKA_CONNECT_TIMEOUT_S": "0.5"}  # the old code went on to Kafka
    out = CliRunner().invoke(app, ["worker"], env=env)
    assert out.exit_code == 2, out.output
    assert "BROKER_AUDIT_FILE" in out.output and "cannot append to it" in out.output
    JsonlAudit(tmp_path / "fine.jsonl").check_writable()  # a writable one passes ...
    assert not (tmp_path / "fine.jsonl").read_bytes()  # ... and gets nothing written


async def test_a_lost_kafka_record_is_never_forgotten() -> None:
    """A produce that failed makes every later barrier and write raise: a lost record cannot
    be written again from here, so nothing may be sent or acked after it."""
    from adapters.audit import AuditLost

    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[object]] = []

    def send(key: bytes, value: bytes) -> asyncio.Future[object]:
        futures.append(loop.create_future())
        return futures[-1]

    audit = ProducerAudit(send)
    assert audit.barrier() is None
    audit.write(rec(1))
    wait = audit.barrier()
    assert wait is not None
    futures[0].set_result(None)
    await wait
    assert audit.barrier() is None
    audit.write(rec(2))
    audit.write(rec(3))
    wait = audit.barrier()
    assert wait is not None
    futures[1].set_exception(RuntimeError("NotEnoughReplicas"))
    futures[2].set_result(None)
    with pytest.raises(AuditLost, match="NotEnoughReplicas"):
        await wait
    with pytest.raises(AuditLost):
        audit.barrier()
    with pytest.raises(AuditLost):
        audit.write(rec(4))


async def test_a_barrier_waits_for_the_records_before_it_only() -> None:
    """Kafka answers out of order (records of other partitions): a barrier returns once every
    record written before it is in, and a record written after it never holds it back."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[object]] = []

    def send(key: bytes, value: bytes) -> asyncio.Future[object]:
        futures.append(loop.create_future())
        return futures[-1]

    audit = ProducerAudit(send)
    audit.write(rec(1))
    audit.write(rec(2))
    first = asyncio.ensure_future(audit.barrier())  # type: ignore[arg-type]
    audit.write(rec(3))
    both = asyncio.ensure_future(audit.barrier())  # type: ignore[arg-type]
    futures[1].set_result(None)  # record 2 in, record 1 not yet
    await asyncio.sleep(0)
    assert not first.done() and audit.durable_upto == 0
    futures[0].set_result(None)
    for _ in range(10):  # a few turns of the loop (the wait is bounded: wait_for + shield)
        if first.done():
            break
        await asyncio.sleep(0)
    assert first.done() and not both.done()  # record 3 (written after) does not hold it
    futures[2].set_result(None)
    await asyncio.wait_for(both, 1)
    assert audit.barrier() is None and audit.durable_upto == 3
