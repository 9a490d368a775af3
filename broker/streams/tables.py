"""Faust tables of the worker.

``vehicles``: vehicle id -> ``VehicleState`` as bytes (``codec.dump_state``), changelogged, so a
restarted worker (or the one a partition moves to) gets every unit's state back. Routes live
inside ``VehicleState.route``: one table, one write per message, no cross-table consistency.
``use_partitioner=True`` makes the changelog partition murmur2(key) - the partition the default
partitioner (Java, kafka-python, aiokafka) puts the vehicle's messages in - so the tick timer
can write outside stream iteration and still hit the right changelog partition.

``delivered``: alert id -> what each push partner has *settled* about that alert (JSON of
partner id -> ``LastSent``; see ``adapters.dispatch``), changelogged and partitioned like
``alerts`` (murmur2 of the alert id), so after a restart or a rebalance fan-out resumes with the
throttle and CAP references where the settled deliveries left them, and re-sends exactly the
deliveries that had not settled (their offsets were not committed either).

``partner_status``: a *global* table, partner id -> why it is disabled (a 410 Gone: JSON with the
reason and time). A partner that asked us to stop stays stopped across restarts and on every
worker, until an operator enables it again (``broker partner-enable ID``: a tombstone).

``active_alerts``: a *global* table (every worker holds all of it) alert life -> latest
``AlertEvent`` bytes, fed from ``alerts``, for the pull feeds of the web server. Its key is
``life_key``: the alert id and the life's ``started_at``, so a re-created alert (the same engine
id started again) does not push the earlier life's cancel out of the feeds before pollers saw
it. Until 2026-12-07 the key was the bare alert id; such entries still load (the feeds read the
values, never the keys) and the prune drops them like any other. The value is the event's JSON
with two more keys at its end: ``feeds_reached``, the feed partners whose coverage any step of
the life touched (``adapters.feeds.FeedReach``), each with the fingerprint of its coverage and
kinds then (a partner changed since is not trusted), and ``feeds_config``, the digest of the
partners file that decided it; so a unit that drove out of a partner's area stays in its feed
up to its cancel, on every worker and after a restart (``keep_newest``). Values written before
it (the bare event) still read, as having reached only their own step's partners, and any
AlertEvent decoder (an older worker's) reads a value as the event. Beside a cancel the value
has a third key, ``feeds_live``: the life's last live step, whose line the cancelled Waze CIFS
item keeps (``adapters.feeds.feed_views``); added 2026-12-08, additive (a value without it
loads as before; a reader before it ignores it).
Faust warns that
global tables can loop in recovery with several instances unless ``partitions=1`` and
``recovery_buffer_size=1``; those are the options used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import UTC

import faust
import msgspec
from faust.types.tables import TableT

from adapters.feeds import FeedReach, Life, Stamp, life_of, supersedes
from broker import codec
from broker.model import AlertEvent
from broker.streams.settings import StreamSettings


@dataclass(frozen=True, slots=True)
class Tables:
    """The worker's tables (values are raw bytes; decode with ``broker.codec``)."""

    vehicles: TableT[bytes, bytes]
    active_alerts: TableT[bytes, bytes]
    delivered: TableT[bytes, bytes]
    partner_status: TableT[bytes, bytes]


# table name -> partitions of its changelog (None: BROKER_PARTITIONS); global tables have one
TABLE_PARTITIONS: dict[str, int | None] = {
    "vehicles": None, "active-alerts": 1, "delivered": None, "partner-status": 1,
}


def changelog_topics(settings: StreamSettings) -> dict[str, int]:
    """Changelog topic -> partitions, as Faust names and sizes them (``<app_id>-<table>-
    changelog``): the worker creates them before Faust subscribes (broker.streams.cli)."""
    return {f"{settings.app_id}-{name}-changelog": n or settings.partitions
            for name, n in TABLE_PARTITIONS.items()}


def declare_tables(app: faust.App, settings: StreamSettings) -> Tables:
    """Declare the tables on ``app``; their changelog topics are ``<app_id>-<name>-changelog``."""
    # key_type/value_type bytes; serializers: the app's "raw" default
    vehicles = app.Table(
        "vehicles",
        default=None,
        partitions=settings.partitions,
        use_partitioner=True,
        help="VehicleState per vehicle id (msgspec JSON bytes)",
        key_type=bytes,
        value_type=bytes,
    )
    active_alerts = app.GlobalTable(
        "active-alerts",
        default=None,
        partitions=1,
        recovery_buffer_size=1,
        use_partitioner=True,
        help="latest AlertEvent per alert life (<alert id>@<started_at>) and the feed "
             "partners the life reached (feeds_reached), for pull feeds",
        key_type=bytes,
        value_type=bytes,
    )
    delivered = app.Table(
        "delivered",
        default=None,
        partitions=settings.partitions,
        use_partitioner=True,  # written when a delivery settles, outside stream iteration
        help="settled deliveries per alert id: partner id -> LastSent (JSON bytes)",
        key_type=bytes,
        value_type=bytes,
    )
    partner_status = app.GlobalTable(
        "partner-status",
        default=None,
        partitions=1,
        recovery_buffer_size=1,
        use_partitioner=True,
        help="partner id -> why it is disabled (JSON bytes: a 410 Gone); absent: enabled",
        key_type=bytes,
        value_type=bytes,
    )
    return Tables(
        vehicles=vehicles, active_alerts=active_alerts, delivered=delivered,
        partner_status=partner_status,
    )


def life_key(event: AlertEvent) -> bytes:
    """The feeds' table key of an alert event: its alert id and its life's start (UTC), e.g.
    ``b"E7:F1:on_scene@2026-11-25T14:03:05.120000+00:00"``."""
    started = event.started_at.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{event.alert_id}@{started}".encode()


def table_alert(raw: bytes | None) -> AlertEvent | None:
    """A value of the global table as an alert event; None for one that is not. Only workers
    write the ``alerts`` topic, but one bad record there (``{"not": "an alert"}``) made every
    partner's feed answer 500, for good: the table is changelogged and the prune raised too."""
    if not raw:
        return None
    try:
        return codec.decode_alert(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):  # JSON nested deep: the latter
        return None


def table_alerts(raw_values: Iterable[bytes | None]) -> list[AlertEvent]:
    """Decode the global table's values (the latest event of every alert), skipping any that
    is not an alert event."""
    return [ev for raw in raw_values if (ev := table_alert(raw)) is not None]


class _Memory(msgspec.Struct, frozen=True, gc=False):
    """The feeds' memory at the end of a table value (``table_value``)."""

    feeds_reached: dict[str, str]  # feed partner id -> its feed_fingerprint when reached
    feeds_config: str = ""  # FeedReach.digest of the partners file the union was computed under
    # beside a cancel: the life's last live step (its JSON), whose line the cancelled CIFS item
    # keeps (``adapters.feeds.feed_views``); absent in values written before 2026-12-08
    feeds_live: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty: none


_memory_decoder = msgspec.json.Decoder(_Memory)
_MEMORY = b',"feeds_reached":'  # never inside a JSON string (a quote there is escaped)


@dataclass(frozen=True, slots=True)
class TableEntry:
    """A value of the feeds' table: a life's latest step and the feed partners it reached."""

    event: AlertEvent
    # (id, feed_fingerprint) of the feed partners reached; None: not known (the bare event,
    # written before the memory or by an older worker, or a memory that is not ours)
    reached: frozenset[Stamp] | None
    config: str = ""  # the FeedReach.digest it was written under ("": not known)
    live: AlertEvent | None = None  # beside a cancel: the life's last live step (None: unknown)


def table_entry(raw: bytes | None) -> TableEntry | None:
    """A value of the feeds' table read whole, its JSON parsed once (the memory, appended last
    by ``table_value``, is cut off before the event is decoded); None for one that is not an
    alert event."""
    if not raw:
        return None
    cut = raw.rfind(_MEMORY)
    if cut > 0:
        event = table_alert(raw[:cut] + b"}")
        if event is not None:
            try:
                memory = _memory_decoder.decode(b"{" + raw[cut + 1:])
            # ValidationError too: a "feeds_reached" not ours; a key not UTF-8 (a corrupt
            # changelog record) raises UnicodeDecodeError, a ValueError: every feed failed
            except (msgspec.DecodeError, ValueError, RecursionError):
                return TableEntry(event, None)
            live = table_alert(bytes(memory.feeds_live)) if memory.feeds_live else None
            return TableEntry(event, frozenset(memory.feeds_reached.items()),
                              memory.feeds_config, live)
    event = table_alert(raw)
    return None if event is None else TableEntry(event, None)


def table_value(event: AlertEvent, reached: Iterable[Stamp], config: str,
                live: AlertEvent | None = None) -> bytes:
    """The feeds' table value of ``event`` with the feed partners its life reached: the event's
    JSON object with two more keys at its end, ``feeds_reached`` (partner id -> the
    ``adapters.feeds.feed_fingerprint`` it had) and ``feeds_config`` (the ``FeedReach.digest``
    of the partners file that decided it), so any ``AlertEvent`` decoder reads it as the event
    (``codec.decode_alert``, an older worker's) and ``table_entry`` reads both. ``live``:
    beside a cancel, the life's last live step (a third key, ``feeds_live``, after them: a
    reader before 2026-12-08 ignores it)."""
    body = codec.encode(event)  # a JSON object of the event's fields: never "feeds_reached"
    tail = b"" if live is None else b',"feeds_live":' + codec.encode(live)
    return (body[:-1] + _MEMORY + msgspec.json.encode(dict(sorted(reached)))
            + b',"feeds_config":' + msgspec.json.encode(config) + tail + b"}")


def table_feeds(
    raw_values: Iterable[bytes | None],
) -> tuple[list[AlertEvent], dict[Life, frozenset[Stamp]]]:
    """The table's alert events (``table_alerts``) and, per life, the feed partners it
    reached with their fingerprints (``adapters.feeds.feed_alerts``'s ``reached``, which
    counts a partner only under its current fingerprint; a life with entries under two keys,
    one written before the key was the life's, has the union)."""
    events: list[AlertEvent] = []
    reached: dict[Life, frozenset[Stamp]] = {}
    for raw in raw_values:
        entry = table_entry(raw)
        if entry is None:
            continue
        events.append(entry.event)
        if entry.live is not None and entry.event.action == "cancel":
            events.append(entry.live)  # its line: the cancelled CIFS item keeps it
        if entry.reached:
            life = life_of(entry.event)
            reached[life] = reached.get(life, frozenset()) | entry.reached
    return events, reached


def keep_newest(
    table: MutableMapping[bytes, bytes], alert_id: bytes, raw: bytes | None, *,
    reach: FeedReach, put: Callable[[bytes, bytes], None],
) -> bytes | None:
    """Store ``raw`` as its alert life's event in the feeds' table (key ``life_key``) only if it
    is an alert event that supersedes the one stored for that life (``adapters.feeds.
    supersedes``: a higher version). Returns the life's key (``life_key``), whether it wrote
    there (the event, or the memory alone: below) or not, so the record's ack can wait for the
    writes of that key under way (``TableWrites.after``): one that wrote nothing may be a step
    written by us and not yet in Kafka, read again after a revoke; None for a record that is
    not an alert event.
    ``alert_id`` is the record's key. ``put`` writes (the worker's: ``TableWrites.put``, whose
    changelog record the record's ack waits for; ``table`` is what it writes to).

    ``alerts`` is acked only once fan-out settles (a cancel owed to a partner that is down
    holds it), so after a restart or a rebalance the events since are read again: written
    blindly, they put older steps back over newer ones (an update over its cancel) until the
    replay caught up. A record that is not an alert event stores nothing.

    One entry per life, not per alert id: under the alert id alone, a re-created alert's create
    took the place of the earlier life's cancel a second later, and the feeds never showed that
    cancel (Waze kept the old item to its old endtime, CAP pollers never got the Cancel). The
    feeds show an earlier life only as its cancel (``adapters.feeds.feed_alerts``); the prune
    drops each life's entry as it would the alert's (``adapters.feeds.prune``).

    With the event, the entry keeps the feed partners any step of the life reached
    (``reach``: those whose coverage its zone touches, of a kind they take), the stored ones
    and this event's: the feeds go on showing a life that left a partner's area, up to its
    cancel (``adapters.feeds.feed_alerts``). Each is kept with its ``feed_fingerprint``; a
    stored partner counts only under its current one (a partner whose coverage or kinds
    changed since, or that left the file, drops out). A value written under another partners
    file (``FeedReach.digest``: a partner added, changed or removed), by an older worker (the
    bare event) or before the memory has its own step's reach recomputed under this one, so a
    feed partner added while the life is in flight keeps it from its stored step on. An older
    step read again that reached a partner the entry does not name yet adds it (the newer step
    stays); one that adds nothing writes nothing. The coverage query is skipped when the
    entry already names every feed partner that takes the event's kind.
    """
    del alert_id  # the event names its alert; the key is the life's
    new = table_alert(raw)
    if new is None:
        return None
    key = life_key(new)
    stored = table_entry(table.get(key))
    if stored is None:
        put(key, table_value(new, reach.stamps(reach(new)), reach.digest))
        return key
    live = _live_beside(new, stored)
    known = reach.current(stored.reached or ())
    if stored.config != reach.digest:  # not decided under this partners file: ask again
        known |= reach(stored.event)
    reached = known if reach.taking(new.kind) <= known else known | reach(new)
    if supersedes(new, stored.event):
        put(key, table_value(new, reach.stamps(reached), reach.digest,
                             live if new.action == "cancel" else None))
        return key
    stamps = reach.stamps(reached)
    if stored.config != reach.digest or stamps != stored.reached or live is not stored.live:
        put(key, table_value(stored.event, stamps, reach.digest, live))  # the memory only:
        # the newer step stays
    return key


def _live_beside(new: AlertEvent, stored: TableEntry) -> AlertEvent | None:
    """The life's last live step to keep beside its cancel once ``new`` is in: for a cancel
    over a live step, that step; for a live step read again after the cancel (an older one),
    it if it is later than the one kept; else the one kept (the ``stored.live`` object itself:
    the caller compares identity to know whether to write). Only beside a cancel."""
    live = stored.live
    if stored.event.action != "cancel":
        return stored.event if new.action == "cancel" else live
    if new.action != "cancel" and (live is None or supersedes(new, live)):
        return new
    return live
