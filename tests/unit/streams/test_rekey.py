"""Input not keyed by its vehicle id is appended again under it, once (``broker.streams.rekey``)."""

from __future__ import annotations

from typing import Any

from broker.streams.rekey import REKEYED_HEADER, Rekeying, was_rekeyed


def _rekeying() -> Rekeying:
    def no_producer() -> Any:
        raise AssertionError("nothing is produced before a flush")

    return Rekeying(("avl.positions", "cad.routes"), no_producer, max_bytes=900_000,
                    keep=("kind",))


def test_a_misrouted_record_is_queued_for_its_topic_keyed_by_its_vehicle_id_and_marked() -> None:
    """Its first timestamp kept (its lateness is judged no later than that: a fix re-keyed
    behind a backlog is not late), and of its headers only those the worker reads."""
    r = _rekeying()
    headers = [("kind", b"status"), ("trace", b"x" * 3_000_000), ("empty", None)]
    assert r.take("avl.positions", "E1", b"{...}", headers, partition=5,
                  timestamp_s=1_764_000_000.25)
    (letter,) = r.outboxes["avl.positions"].take()
    assert (letter.key, letter.value) == (b"E1", b"{...}")
    # a header of megabytes would not fit Kafka's record; a null one is no bytes (it crashed)
    assert list(letter.headers) == [("kind", b"status"), (REKEYED_HEADER, b"5")]
    assert letter.timestamp_ms == 1_764_000_000_250
    assert len(r.outboxes["cad.routes"]) == 0


def test_a_record_rekeyed_once_or_of_another_topic_is_not_queued_again() -> None:
    """Misrouted again (the topic's partitions changed under the worker): to avl.dlq, never
    round and round."""
    r = _rekeying()
    assert was_rekeyed({REKEYED_HEADER: b"5"}) and not was_rekeyed(None)
    assert not r.take("avl.positions", "E1", b"{}", [(REKEYED_HEADER, b"5")], partition=2)
    assert not r.take("cad.status", "E1", b"{}", [], partition=2)
    assert all(len(o) == 0 for o in r.outboxes.values())


def test_a_timestamp_past_any_clock_is_not_kept() -> None:
    """A producer may stamp anything: a CreateTime near int64's end overflowed the batch, the
    flush failed and the worker stopped on every restart. Such a record is stamped when
    produced."""
    r = _rekeying()
    for ts in (9.3e15, -5.0, 0.0):
        assert r.take("avl.positions", "E1", b"{}", [], partition=5, timestamp_s=ts)
    assert [x.timestamp_ms for x in r.outboxes["avl.positions"].take()] == [None] * 3


def test_a_record_too_large_to_go_whole_is_not_queued_cut() -> None:
    """The outbox cuts what it holds to ``max_bytes`` (the worker's ``dead_letter_bytes``:
    ``BROKER_DLQ_MAX_BYTES``, or less with a small ``BROKER_PRODUCER_MAX_BATCH_BYTES``), a
    dead letter's rule: a valid fix of 300 bytes, misrouted under a 100-byte setting, was
    appended to its unit's partition as its first 100 bytes, refused there as ``bad_json`` and
    the fix lost. Not queued, it goes to avl.dlq as ``misrouted``, saying so."""
    r = Rekeying(("avl.positions",), lambda: None, max_bytes=100)  # type: ignore[arg-type,return-value]
    raw = b'{"vehicle_id": "E1", "x": "' + b"y" * 270 + b'"}'
    assert not r.take("avl.positions", "E1", raw, [], partition=5)
    assert len(r.outboxes["avl.positions"]) == 0
    assert r.take("avl.positions", "E1", raw[:60], [], partition=5)  # one that fits goes
