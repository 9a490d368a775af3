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
values, never the keys) and the prune drops them like any other. Faust warns that
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

from adapters.feeds import supersedes
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
        help="latest AlertEvent per alert life (<alert id>@<started_at>), for pull feeds",
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


def keep_newest(
    table: MutableMapping[bytes, bytes], alert_id: bytes, raw: bytes | None,
    put: Callable[[bytes, bytes], None] | None = None,
) -> bytes | None:
    """Store ``raw`` as its alert life's event in the feeds' table (key ``life_key``) only if it
    is an alert event that supersedes the one stored for that life (``adapters.feeds.
    supersedes``: a higher version); the key it was stored under, None if it was not.
    ``alert_id`` is the record's key. ``put`` writes (the worker's: ``TableWrites.put``, whose
    changelog record the record's ack waits for); None: ``table[key] = raw``.

    ``alerts`` is acked only once fan-out settles (a cancel owed to a partner that is down
    holds it), so after a restart or a rebalance the events since are read again: written
    blindly, they put older steps back over newer ones (an update over its cancel) until the
    replay caught up. A record that is not an alert event stores nothing.

    One entry per life, not per alert id: under the alert id alone, a re-created alert's create
    took the place of the earlier life's cancel a second later, and the feeds never showed that
    cancel (Waze kept the old item to its old endtime, CAP pollers never got the Cancel). The
    feeds show an earlier life only as its cancel (``adapters.feeds.feed_alerts``); the prune
    drops each life's entry as it would the alert's (``adapters.feeds.prune``).
    """
    del alert_id  # the event names its alert; the key is the life's
    new = table_alert(raw)
    if new is None or raw is None:
        return None
    key = life_key(new)
    old = table_alert(table.get(key))
    if old is not None and not supersedes(new, old):
        return None
    (table.__setitem__ if put is None else put)(key, raw)
    return key
