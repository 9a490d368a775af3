"""The worker's feeds' table never steps back to an older step of an alert (the feed-table
agent's ``keep_newest``; review of 2026-12-06, item 9)."""

from __future__ import annotations

from datetime import timedelta

from broker import codec
from broker.streams.agents import keep_newest
from tests.unit.adapters.factory import T0, alert


def test_the_feeds_table_never_steps_back_to_an_older_step() -> None:
    """``alerts`` read again after a restart: an update must not go back over its cancel, nor
    version 2 over 3, nor an old life over a new one; a new life replaces the old one whatever
    its version; a record that is not an alert replaces nothing."""
    table: dict[bytes, bytes] = {}
    key = alert().alert_id.encode()
    life1 = [alert("create", 1), alert("update", 2), alert("update", 3), alert("cancel", 4)]
    for ev in life1:
        assert keep_newest(table, key, codec.encode(ev))
    for ev in life1:  # read again: nothing changes
        assert not keep_newest(table, key, codec.encode(ev))
    assert codec.decode_alert(table[key]).action == "cancel"
    assert not keep_newest(table, key, b'{"not": "an alert"}')
    assert not keep_newest(table, key, None)
    life2 = alert("create", 1, at=T0 + timedelta(minutes=5), started_at=T0 + timedelta(minutes=5))
    assert keep_newest(table, key, codec.encode(life2))
    assert not keep_newest(table, key, codec.encode(life1[2]))  # the old life's update
    assert codec.decode_alert(table[key]) == life2


def test_a_value_that_is_not_an_alert_is_replaced_by_an_alert() -> None:
    table = {b"k": b"\xff"}
    ev = alert("create", 1)
    assert keep_newest(table, b"k", codec.encode(ev))
    assert codec.decode_alert(table[b"k"]) == ev

