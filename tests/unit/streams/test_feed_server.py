"""The worker's pull feeds (``broker.streams.web``): which clock they are served in, that they
wait for the feeds' table to be back, and that the table never steps back (the feed-table
agent's ``keep_newest``). Review of 2026-12-06, items 1, 2 and 9."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, MutableMapping
from dataclasses import replace
from datetime import datetime, timedelta

import shapely

from adapters.audit import AuditLost, AuditRecord, MemoryAudit
from adapters.feeds import FeedReach, prune
from broker import codec
from broker.model import AlertEvent
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings, from_env
from broker.streams.tables import Tables, keep_newest, life_key, table_entry, table_value
from broker.streams.topics import TopicNames
from broker.streams.web import FeedClock, FeedServer, WallClockAudit, reloaded_once
from tests.unit.adapters.factory import CONFIG, LAT0, T0, alert, polygon_zone

REACH = FeedReach.from_config(CONFIG)  # the feed-table agent's, with the sample partners


def keep(table: MutableMapping[bytes, bytes], alert_id: bytes, raw: bytes | None, *,
         reach: FeedReach) -> bytes | None:
    """``keep_newest`` writing ``table`` directly (the worker writes through its
    ``TableWrites.put``: ``test_table_writes``)."""
    return keep_newest(table, alert_id, raw, reach=reach, put=table.__setitem__)

OPENDATA = CONFIG.by_id()["opendata"]  # GeoJSON: one feature per alert shown
BEARER = {"authorization": f"Bearer {OPENDATA.feed_token.reveal()}"}  # type: ignore[union-attr]


def table_of(*events: AlertEvent) -> Tables:
    """Tables whose feeds' table holds ``events`` (the last one of an alert id wins)."""
    alerts = {ev.alert_id.encode(): codec.encode(ev) for ev in events}
    return Tables(vehicles={}, active_alerts=alerts, delivered={}, partner_status={})  # type: ignore[arg-type]


def wrote(table: dict[bytes, bytes], alert_id: bytes, raw: bytes | None, *,
         reach: FeedReach) -> bool:
    """Whether ``keep_newest`` wrote into ``table`` (it returns the record's life key either
    way: the ack waits for a write of that key under way)."""
    keys: list[bytes] = []

    def put(key: bytes, value: bytes) -> None:
        keys.append(key)
        table[key] = value

    key = keep_newest(table, alert_id, raw, reach=reach, put=put)
    assert keys in ([], [key])
    return bool(keys)


def server(tables: Tables, clock: FeedClock, *, ready: Callable[[], bool] = lambda: True,
           audit: MemoryAudit | None = None) -> tuple[FeedServer, Runtime]:
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    return FeedServer(rt, tables, CONFIG, clock, audit, ready=ready), rt


def shown(srv: FeedServer) -> list[str]:
    """The ``kind`` of each alert the open-data GeoJSON feed shows (its ids are pseudonyms);
    fails unless the answer is 200."""
    resp = asyncio.run(srv.serve("opendata", BEARER))
    assert resp.status == 200, resp
    return [f["properties"]["kind"] for f in json.loads(resp.body)["features"]]


def test_an_alert_expired_by_the_wall_clock_is_not_served_as_live_after_a_restart() -> None:
    """The worker restarts 10 min after the last alert steps (the table as they left it): the
    event-time clock stood at those steps and served an on-scene alert that expired 9 min ago
    as live (GeoJSON "active", Waze endtime in the past), and the prune kept it."""
    wall = T0 + timedelta(minutes=10)
    expired = alert("create", 1, kind="on_scene", ttl_s=60)
    hour = alert("create", 1, alert_id="CFD-L1:F2:approaching", vehicle_id="CFD-L1", ttl_s=3600)
    srv, _ = server(table_of(expired, hour), FeedClock(utc=lambda: wall))
    assert shown(srv) == ["approaching"]  # the one still live by the wall clock
    assert srv.clock.now([expired, hour]) == wall


def test_a_unit_whose_fixes_run_ahead_does_not_hide_other_units_live_alerts() -> None:
    """Unit A's AVL runs 45 s fast (the codec takes up to 60 s): its alert moved the feed clock
    45 s on, and unit B's on-scene alert, 40 s from its expiry, vanished from every feed."""
    wall = T0
    b = alert("update", 3, alert_id="B:F1:on_scene", vehicle_id="B", kind="on_scene",
              at=wall - timedelta(seconds=20), started_at=wall - timedelta(minutes=5))
    a = alert("create", 1, alert_id="A:F1:approaching", vehicle_id="A",
              at=wall + timedelta(seconds=45), started_at=wall + timedelta(seconds=45))
    srv, _ = server(table_of(a, b), FeedClock(utc=lambda: wall))
    assert sorted(shown(srv)) == ["approaching", "on_scene"]
    assert srv.clock.now([a, b]) == wall


def test_the_event_clock_serves_a_replayed_incident_as_it_stood_and_never_runs_ahead() -> None:
    """``BROKER_FEED_CLOCK=event``: a recorded incident (last week) replayed into Kafka is
    served as it stood at its last step, then ages by the wall clock; an alert dated beyond
    the wall clock (even within the codec's skew) does not move it."""
    wall = [T0 + timedelta(days=7)]
    mono = [100.0]
    clock = FeedClock(event_time=True, wall=lambda: mono[0], utc=lambda: wall[0])
    recorded = alert("update", 2, kind="on_scene", ttl_s=60)
    srv, _ = server(table_of(recorded), clock)
    assert shown(srv) == ["on_scene"]
    assert clock.now([recorded]) == recorded.ts
    mono[0] += 61.0  # past its expiry in the replay's own time
    wall[0] += timedelta(seconds=61)
    srv.cache.feeds.clear()
    assert shown(srv) == []
    ahead = alert("create", 1, alert_id="A:F1:approaching", at=wall[0] + timedelta(seconds=30))
    assert clock.now([ahead]) == recorded.ts + timedelta(seconds=61)


def test_the_worker_serves_feeds_on_the_wall_clock_unless_told_otherwise() -> None:
    assert StreamSettings().feed_clock == "wall"
    assert from_env({"BROKER_FEED_CLOCK": "Event"}).feed_clock == "event"


def test_a_feed_asked_for_before_the_table_is_back_is_503_and_not_audited() -> None:
    """Faust serves the web port before the tables are recovered: the feed was empty or
    partial (a missing item ends it at Waze), and audited as served."""
    ready = [False]
    audit = MemoryAudit()
    srv, rt = server(table_of(alert("create", 1)), FeedClock(utc=lambda: T0),
                     ready=lambda: ready[0], audit=audit)
    srv.audit = WallClockAudit(audit)
    refused = asyncio.run(srv.serve("opendata", BEARER))
    assert refused.status == 503 and int(refused.headers["retry-after"]) > 0
    assert audit.records == []
    assert asyncio.run(srv.serve("opendata", {})).status == 401  # the token is checked first
    metrics = rt.metrics.render().decode()
    assert 'broker_feed_requests_total{partner="opendata",status="503"} 1.0' in metrics
    ready[0] = True
    assert shown(srv) == ["approaching"]
    assert [r.status for r in audit.records] == ["feed_served"]


def test_feeds_wait_for_the_first_reload_only_not_for_later_rebalances() -> None:
    """The table is global: once reloaded, every worker holds all of it through a rebalance,
    and refusing then had every worker answer 503 until the group settled after one died."""
    states = iter([False, False, True, False, False])  # loading, loading, ready, rebalancing
    ready = reloaded_once(lambda: next(states), leased=lambda: True)
    assert [ready() for _ in range(5)] == [False, False, True, True, True]


def test_feeds_refuse_from_a_lapsed_lease_until_the_worker_has_reloaded_again() -> None:
    """A worker thawed after a stall past its session served its table, a stall behind
    (alerts made meanwhile missing: ended at Waze), once the first reload had latched."""
    lease, tables = [True], [True]
    ready = reloaded_once(lambda: tables[0], leased=lambda: lease[0])
    assert ready()
    lease[0] = False  # thawed: the group has not heard from it for its session
    assert not ready()
    lease[0], tables[0] = True, False  # rejoined, the table reloading from its changelog
    assert not ready()
    tables[0] = True
    assert ready()


def test_the_feeds_table_never_steps_back_to_an_older_step() -> None:
    """``alerts`` read again after a restart: an update must not go back over its cancel, nor
    version 2 over 3; a new life goes beside the old one (its own key) whatever its version,
    and leaves the old life's cancel in place; a record that is not an alert stores nothing."""
    table: dict[bytes, bytes] = {}
    key = alert().alert_id.encode()
    life1 = [alert("create", 1), alert("update", 2), alert("update", 3), alert("cancel", 4)]
    for ev in life1:
        assert wrote(table, key, codec.encode(ev), reach=REACH)
    for ev in life1:  # read again: nothing changes
        assert not wrote(table, key, codec.encode(ev), reach=REACH)
    assert codec.decode_alert(table[life_key(life1[0])]).action == "cancel"
    # written or not, the life's key is returned: the record's ack waits for a write of that
    # key under way (a step read again after a revoke, written by us and not yet in Kafka)
    assert keep(table, key, codec.encode(life1[1]), reach=REACH) == life_key(life1[0])
    assert keep(table, key, b'{"not": "an alert"}', reach=REACH) is None
    assert not wrote(table, key, b'{"not": "an alert"}', reach=REACH)
    assert not wrote(table, key, None, reach=REACH)
    life2 = alert("create", 1, at=T0 + timedelta(minutes=5), started_at=T0 + timedelta(minutes=5))
    assert wrote(table, key, codec.encode(life2), reach=REACH)
    assert not wrote(table, key, codec.encode(life1[2]), reach=REACH)  # the old life's update
    assert codec.decode_alert(table[life_key(life2)]) == life2
    assert codec.decode_alert(table[life_key(life1[0])]) == life1[3]  # its cancel stays
    assert len(table) == 2


def test_a_value_that_is_not_an_alert_is_replaced_by_an_alert() -> None:
    table = {life_key(alert()): b"\xff"}
    ev = alert("create", 1)
    assert wrote(table, b"k", codec.encode(ev), reach=REACH)
    assert codec.decode_alert(table[life_key(ev)]) == ev


def test_a_table_written_by_an_older_worker_still_loads_and_prunes() -> None:
    """Entries under the bare alert id (the key until 2026-12-07) are served, never over a
    newer step of their life written under the life's key, and pruned like any other."""
    aid = alert().alert_id.encode()
    table = {aid: codec.encode(alert("cancel", 4, at=T0 + timedelta(seconds=30)))}
    # read again after the upgrade
    assert wrote(table, aid, codec.encode(alert("update", 3)), reach=REACH)
    tables = Tables(vehicles={}, active_alerts=table, delivered={}, partner_status={})  # type: ignore[arg-type]
    srv, _ = server(tables, FeedClock(utc=lambda: T0 + timedelta(seconds=40)))
    resp = asyncio.run(srv.serve("opendata", BEARER))
    features = json.loads(resp.body)["features"]
    assert [f["properties"]["status"] for f in features] == ["cancelled"]
    kept = prune({k: codec.decode_alert(v) for k, v in table.items()},
                 T0 + timedelta(minutes=20))
    assert kept == {}



def test_a_feed_whose_audit_record_is_lost_is_not_sent_and_stops_the_worker() -> None:
    """A pull-only deployment never awaits a delivery's barrier: a lost audit record made
    every later feed a 500 while the worker stayed up, ready."""

    class LostAudit:
        def write(self, record: AuditRecord) -> None:
            raise AuditLost("an audit record was not produced: KafkaTimeoutError()")

    stops: list[AuditLost] = []

    async def stop(lost: AuditLost) -> None:
        stops.append(lost)

    srv, rt = server(table_of(alert("create", 1)), FeedClock(utc=lambda: T0))
    srv.audit, srv.on_audit_lost = LostAudit(), stop
    resp = asyncio.run(srv.serve("opendata", BEARER))
    assert resp.status == 503 and b"stopping" in resp.body
    assert len(stops) == 1 and "KafkaTimeoutError" in str(stops[0])
    metrics = rt.metrics.render().decode()
    assert 'broker_feed_requests_total{partner="opendata",status="503"} 1.0' in metrics



def test_a_re_created_alert_read_into_the_table_leaves_the_earlier_cancel_in_the_feed() -> None:
    """Review 2026-12-07 (feeds), item 2, through the feed-table agent's write and the feed
    server: life 1's cancel and, a second later, life 2's create of the same engine id."""
    table: dict[bytes, bytes] = {}
    key = alert().alert_id.encode()
    s2 = T0 + timedelta(seconds=21)
    for ev in (alert("create", 1), alert("cancel", 2, at=T0 + timedelta(seconds=20)),
               alert("create", 3, at=s2, started_at=s2, first_version=3)):
        assert wrote(table, key, codec.encode(ev), reach=REACH)
    tables = Tables(vehicles={}, active_alerts=table, delivered={}, partner_status={})  # type: ignore[arg-type]
    srv, _ = server(tables, FeedClock(utc=lambda: s2 + timedelta(seconds=5)))
    resp = asyncio.run(srv.serve("opendata", BEARER))
    features = json.loads(resp.body)["features"]
    assert [f["properties"]["status"] for f in features] == ["cancelled", "active"]


def test_the_worker_owning_the_alerts_partition_prunes_each_life() -> None:
    """The table's keys are per life, but each is pruned by the worker that owns its alert's
    partition of ``alerts`` (as the alert's records), and only by it (here the life's key
    hashes to another partition than its alert id)."""
    from types import SimpleNamespace

    from broker.streams.runtime import partition_for
    from broker.streams.web import prune_owned

    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    done = alert("cancel", 4, at=T0)
    live = alert("create", 1, alert_id="CFD-L1:F2:approaching", vehicle_id="CFD-L1",
                 at=T0 + timedelta(minutes=20))
    mine = partition_for(done.alert_id.encode(), rt.settings.partitions)
    for owned, left in (({p for p in range(8) if p != mine}, 2), ({mine}, 1)):
        table = {life_key(ev): codec.encode(ev) for ev in (done, live)}
        app = SimpleNamespace(consumer=SimpleNamespace(assignment=lambda o=owned: [
            SimpleNamespace(topic=rt.names.alerts, partition=p) for p in o]))
        tables = Tables(vehicles={}, active_alerts=table, delivered={}, partner_status={})  # type: ignore[arg-type]
        prune_owned(app, rt, tables, FeedClock(utc=lambda: T0 + timedelta(minutes=20)), 900.0,  # type: ignore[arg-type]
                    delete=table.__delitem__)
        assert len(table) == left and life_key(live) in table


WAZE_BEARER = {"authorization": f"Bearer {CONFIG.by_id()['waze'].feed_token.reveal()}"}  # type: ignore[union-attr]
OUT = {"lon": -80.60, "zone": polygon_zone(-80.60, LAT0)}  # east of Waze's area, in the county's


def waze_items(table: dict[bytes, bytes], now: datetime) -> list[tuple[str, str]]:
    """(updatetime, endtime) of each item of Waze's CIFS feed served from ``table`` at ``now`` by a
    worker of its own (its own cache, as another worker or one restarted)."""
    tables = Tables(vehicles={}, active_alerts=table, delivered={}, partner_status={})  # type: ignore[arg-type]
    srv, _ = server(tables, FeedClock(utc=lambda: now))
    resp = asyncio.run(srv.serve("waze", WAZE_BEARER))
    assert resp.status == 200, resp
    return [(i["updatetime"], i["endtime"]) for i in json.loads(resp.body)["incidents"]]


# drove_out()'s items: approaching, so each ends at its expiry (no cifs_end_grace_s since
# 2026-12-08: a moving unit's stretch is stale within a minute)
CREATED = ("2026-11-25T09:03:05-05:00", "2026-11-25T09:04:05-05:00")
UPDATED = ("2026-11-25T09:03:15-05:00", "2026-11-25T09:04:15-05:00")
CANCELLED = ("2026-11-25T09:03:35-05:00", "2026-11-25T09:03:35-05:00")  # ended at the cancel


def drove_out() -> list[AlertEvent]:
    """Created in Waze's area; updated and cancelled at lon -80.60, east of it."""
    return [alert("create", 1), alert("update", 2, **OUT),  # type: ignore[arg-type]
            alert("cancel", 3, at=T0 + timedelta(seconds=30), **OUT)]  # type: ignore[arg-type]


def test_a_unit_that_drove_out_of_the_area_stays_in_the_feed_up_to_its_cancel() -> None:
    """Review 2026-12-07 (feed coverage), the repro through the feed-table agent's write and
    the feed server: with the create in Waze's area the feed showed it (endtime 09:04:05), the
    update at lon -80.60 gave [] and so did the cancel, and Waze kept the create's item to
    09:14:05. Now the update and then the cancel (endtime = cancel time) take its place."""
    table: dict[bytes, bytes] = {}
    key = alert().alert_id.encode()
    served = []
    for ev in drove_out():
        assert wrote(table, key, codec.encode(ev), reach=REACH)
        served.append(waze_items(table, ev.ts))
    assert served == [[CREATED], [UPDATED], [CANCELLED]]
    assert table_entry(table[life_key(drove_out()[0])]).reached == REACH.stamps(  # type: ignore[union-attr]
        {"waze", "county", "opendata"})


def test_a_life_that_never_touched_a_partners_area_never_reaches_its_feed() -> None:
    """A life all of whose steps are east of Waze's area is in the county's feed, never in
    Waze's, nor in the open-data one (the same area as Waze's)."""
    table: dict[bytes, bytes] = {}
    steps = [alert("create", 1, **OUT), alert("update", 2, **OUT),  # type: ignore[arg-type]
             alert("cancel", 3, at=T0 + timedelta(seconds=30), **OUT)]  # type: ignore[arg-type]
    for ev in steps:
        keep(table, b"k", codec.encode(ev), reach=REACH)
        tables = Tables(vehicles={}, active_alerts=table, delivered={}, partner_status={})  # type: ignore[arg-type]
        srv, _ = server(tables, FeedClock(utc=lambda e=ev: e.ts))
        for pid, bearer in (("waze", WAZE_BEARER), ("opendata", BEARER)):
            body = asyncio.run(srv.serve(pid, bearer)).body
            assert b"F261125" not in body and b'"type":"Feature"' not in body, (pid, body)
        county = {"authorization": f"Bearer {CONFIG.by_id()['county'].feed_token.reveal()}"}  # type: ignore[union-attr]
        assert b"<cap:alert" in asyncio.run(srv.serve("county", county)).body
    assert table_entry(table[life_key(steps[0])]).reached == REACH.stamps({"county"})  # type: ignore[union-attr]


def test_what_a_life_reached_is_read_back_from_the_changelog_form_after_a_restart() -> None:
    """The table is changelogged as its values' bytes (the "raw" serializer): a worker that
    restarts, or another one, reloads them and answers the same, the update and the cancel of
    a unit that left Waze's area included; the steps, read again in any order after the
    restart, leave the same value."""
    table: dict[bytes, bytes] = {}
    steps = drove_out()
    for ev in steps:
        keep(table, b"k", codec.encode(ev), reach=REACH)
    changelog = [(k, bytes(v)) for k, v in table.items()]  # what every worker reloads
    assert len(changelog) == 1
    for now in (steps[2].ts, steps[2].ts + timedelta(seconds=899)):
        assert waze_items(dict(changelog), now) == [CANCELLED]
    assert waze_items(dict(changelog), steps[2].ts + timedelta(seconds=901)) == []
    for order in (steps, steps[::-1], [steps[2], steps[0], steps[1]]):
        again = dict(changelog)
        for ev in order:
            assert not wrote(again, b"k", codec.encode(ev), reach=REACH)
        assert again == dict(changelog)
    fresh: dict[bytes, bytes] = {}
    for ev in (steps[2], steps[0], steps[1]):  # first seen out of order: the same value
        keep(fresh, b"k", codec.encode(ev), reach=REACH)
    assert fresh == dict(changelog)
    # an older worker (or any AlertEvent decoder) reads the value as the event
    assert codec.decode_alert(changelog[0][1]) == steps[2]
    assert table_value(steps[2], [("waze", "f1")], "c1").endswith(
        b',"feeds_reached":{"waze":"f1"},"feeds_config":"c1"}')


def test_a_value_written_before_the_memory_still_reads_and_counts_its_own_step() -> None:
    """Changelog values written before 2026-12-07 (session 6) are the bare event: they are
    served as before (their own zone against the coverage), and a later step written over one
    keeps what that step reached: a unit whose create was written by the older worker and
    whose update, east of the area, by the new one stays in Waze's feed."""
    create, update, cancel = drove_out()
    table = {life_key(create): codec.encode(create)}  # the older worker's value
    assert table_entry(table[life_key(create)]).reached is None  # type: ignore[union-attr]
    assert waze_items(table, create.ts) == [CREATED]
    assert wrote(table, b"k", codec.encode(update), reach=REACH)
    assert table_entry(table[life_key(create)]).reached == REACH.stamps(  # type: ignore[union-attr]
        {"waze", "county", "opendata"})
    assert waze_items(table, update.ts) == [UPDATED]
    # an old value east of the area: not in Waze's feed, and the old step read again over
    # the new value adds nothing
    east = {life_key(update): codec.encode(update)}
    assert waze_items(east, update.ts) == []
    assert wrote(east, b"k", codec.encode(cancel), reach=REACH)
    assert waze_items(east, cancel.ts) == []
    assert table_entry(east[life_key(cancel)]).reached == REACH.stamps({"county"})  # type: ignore[union-attr]


def test_a_feed_partner_added_while_a_life_is_in_flight_keeps_it_from_its_stored_step() -> None:
    """Review of the feed memory (probe P2): a value written by a worker with no feed partners
    (or under an older partners file) stored an explicit empty memory, taken as final: after
    the restart with Waze in the file, the update east of Waze's area dropped the life from its
    feed ([]) though its stored create lay inside. Now a value written under another partners
    file has its own step's reach recomputed under the current one."""
    create, update, cancel = drove_out()
    table: dict[bytes, bytes] = {}
    assert wrote(table, b"k", codec.encode(create), reach=FeedReach.from_config(None))
    assert table_entry(table[life_key(create)]).reached == frozenset()  # type: ignore[union-attr]
    assert waze_items(table, create.ts) == [CREATED]  # its own zone, as before
    assert wrote(table, b"k", codec.encode(update), reach=REACH)  # restarted with Waze
    assert waze_items(table, update.ts) == [UPDATED]
    assert wrote(table, b"k", codec.encode(cancel), reach=REACH)
    assert waze_items(table, cancel.ts) == [CANCELLED]
    # the same when the stored value's partners file had Waze elsewhere: its stamp is dropped
    # and the stored step asked again
    moved = FeedReach.from_config(replace(CONFIG, partners=tuple(
        replace(p, coverage=shapely.box(-79.0, 36.0, -78.9, 36.1)) if p.id == "waze" else p
        for p in CONFIG.partners)))
    again: dict[bytes, bytes] = {}
    keep(again, b"k", codec.encode(create), reach=moved)
    assert wrote(again, b"k", codec.encode(update), reach=REACH)
    assert table_entry(again[life_key(create)]).reached == REACH.stamps(  # type: ignore[union-attr]
        {"waze", "county", "opendata"})
    # an older step read again under the new file rewrites the memory once, then nothing
    stale: dict[bytes, bytes] = {}
    keep(stale, b"k", codec.encode(update), reach=moved)
    # the memory rewritten (its key returned: the record's ack waits for that write)
    assert keep(stale, b"k", codec.encode(update), reach=REACH) == life_key(update)
    assert table_entry(stale[life_key(update)]).config == REACH.digest  # type: ignore[union-attr]
    written = dict(stale)
    assert not wrote(stale, b"k", codec.encode(update), reach=REACH)
    assert stale == written


def test_a_life_that_reached_every_feed_partner_skips_the_coverage_query() -> None:
    """Cost: once the value names every feed partner that takes the event's kind (under the
    current fingerprints and partners file), a later step cannot add one: no coverage query."""
    asked: list[int] = []

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(REACH, name)

        def __call__(self, event: AlertEvent) -> frozenset[str]:
            asked.append(event.version)
            return REACH(event)

    table: dict[bytes, bytes] = {}
    create, update, cancel = drove_out()
    for ev in (create, update, cancel):
        keep(table, b"k", codec.encode(ev), reach=Counting())  # type: ignore[arg-type]
    assert asked == [1]  # the create reached waze, county and opendata: all there are
    assert table_entry(table[life_key(create)]).reached == REACH.stamps(  # type: ignore[union-attr]
        {"waze", "county", "opendata"})


def test_a_memory_that_is_not_utf8_reads_as_no_memory_and_raises_nowhere() -> None:
    # a corrupt changelog record: a key of bad bytes raised UnicodeDecodeError (a ValueError)
    # out of table_entry, and every partner's feed failed while the value stayed in the table
    from broker.streams.tables import table_feeds

    v1 = alert("create", 1)
    raw = codec.encode(v1)[:-1] + b',"feeds_reached":{"\xff":"x"}}'
    entry = table_entry(raw)
    assert entry is not None and entry.event == v1 and entry.reached is None
    events, _ = table_feeds([raw])
    assert events == [v1]
    table = {life_key(v1): raw}
    keep(table, life_key(v1), codec.encode(alert("update", 2)), reach=REACH)
    assert table_entry(table[life_key(v1)]).event.version == 2  # type: ignore[union-attr]


def test_a_step_that_is_no_area_is_left_out_of_a_feed_that_remembers_its_life() -> None:
    # remembered, a life skips the coverage test, so a bad step (a Point for a zone) reached the
    # renderer and failed the partner's whole feed until it aged out
    from adapters.feeds import feed_alerts
    from broker.streams.tables import table_feeds

    v1 = alert("create", 1)
    import msgspec

    v2 = msgspec.structs.replace(alert("update", 2, **OUT),
                                 zone={"type": "Point", "coordinates": [-80.6, LAT0]})
    table: dict[bytes, bytes] = {}
    for ev in (v1, v2):
        keep(table, v1.alert_id.encode(), codec.encode(ev), reach=REACH)
    events, reached = table_feeds(table.values())
    waze = CONFIG.by_id()["waze"]
    assert feed_alerts(waze, events, T0 + timedelta(seconds=15), reached=reached) == []


def test_the_table_keeps_the_last_live_step_beside_a_cancel_for_its_cifs_line() -> None:
    """Review 2026-12-08 (feeds, item 3): the table kept only the cancel, whose view has no
    path, so the cancelled CIFS item became the zone's ring, BOTH_DIRECTIONS, under the id of
    a live ONE_DIRECTION line. The value keeps the life's last live step beside its cancel
    (``feeds_live``, an additive key: values without it still load), on every worker and
    after a restart (read back from the changelog form)."""
    table: dict[bytes, bytes] = {}
    life = [alert("create", 1), alert("update", 2), alert("cancel", 3)]
    for ev in life:
        keep(table, ev.alert_id.encode(), codec.encode(ev), reach=REACH)
    (raw,) = table.values()
    entry = table_entry(bytes(raw))
    assert entry is not None and entry.event == life[2] and entry.live == life[1]
    assert codec.decode_alert(raw) == life[2]  # any AlertEvent decoder reads the cancel
    # the update read again after its cancel (a restart) changes nothing; the create neither
    for ev in life[:2]:
        assert not wrote(table, ev.alert_id.encode(), codec.encode(ev), reach=REACH)

    def waze_line(values: dict[bytes, bytes], at: datetime) -> tuple[str, str]:
        tables = Tables(vehicles={}, active_alerts=values, delivered={}, partner_status={})  # type: ignore[arg-type]
        srv, _ = server(tables, FeedClock(utc=lambda: at))
        (item,) = json.loads(asyncio.run(srv.serve("waze", WAZE_BEARER)).body)["incidents"]
        return item["polyline"], item["direction"]

    live_table = {life_key(life[1]): table_value(life[1], REACH.stamps({"waze"}), REACH.digest)}
    assert waze_line(table, life[2].ts) == waze_line(live_table, life[1].ts)
    assert waze_line(table, life[2].ts)[1] == "ONE_DIRECTION"
    # a value written before (the cancel alone, no feeds_live) still loads: the zone's ring
    old = {life_key(life[2]): table_value(life[2], REACH.stamps({"waze"}), REACH.digest)}
    assert table_entry(old[life_key(life[2])]).live is None  # type: ignore[union-attr]
    assert waze_line(old, life[2].ts)[1] == "BOTH_DIRECTIONS"
