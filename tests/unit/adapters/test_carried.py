"""The audit log's ``fields``: what a message of the partner's format carried, not every field
its policy let through (a privacy review: CAP and GeoJSON partners allowed ``path`` were
recorded as sent it, and neither format writes one)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import httpx
import pytest

from adapters import cap, geojson, waze_cifs, webhook
from adapters.audit import MemoryAudit
from adapters.carried import feed_format, fields_carried
from adapters.config import PartnersConfig
from adapters.fanout import PartnerSet, fan_out
from adapters.feeds import fields_sent
from adapters.hub import DeliveryHub
from adapters.policy import OPTIONAL_FIELDS, Policy, view_for
from tests.unit.adapters.factory import CONFIG, KEY, T0, FakeTime, alert

EVERYTHING = Policy(fields=OPTIONAL_FIELDS, coordinate_decimals=6)
PATH = [(-80.8431, 35.2271), (-80.84237, 35.22791), (-80.84173, 35.22853)]


def _view():  # type: ignore[no-untyped-def]
    return view_for(alert(path=PATH), EVERYTHING, key=KEY)


def _body(fmt: str) -> str:
    view = _view()
    if fmt == "webhook":
        return webhook.body_for(view).decode()
    if fmt == "cap":
        return cap.render(view, sender="s").body.decode()
    if fmt == "geojson":
        return geojson.render([view]).body.decode()
    from zoneinfo import ZoneInfo
    return json.dumps(waze_cifs.item(view, subtype="", tz=ZoneInfo("UTC")))


@pytest.mark.parametrize("fmt", ["webhook", "cap", "geojson", "waze_cifs"])
def test_path_is_recorded_exactly_where_the_format_writes_it(fmt: str) -> None:
    """The path's last point (its own, not the zone's) in the body: written; else not."""
    lon, lat = PATH[-1]
    body = _body(fmt)
    written = (f"{lon}" in body and f"{lat}" in body) or f"{lat:.6f} {lon:.6f}" in body
    assert ("path" in fields_carried(fmt, _view())) == written, (fmt, written)  # type: ignore[arg-type]
    assert written == (fmt in ("webhook", "waze_cifs"))


def test_each_format_records_the_optional_fields_it_has_a_place_for() -> None:
    view = _view()
    optional = {fmt: set(fields_carried(fmt, view)) & OPTIONAL_FIELDS - {"alert_id"}  # type: ignore[arg-type]
                for fmt in ("webhook", "cap", "geojson", "waze_cifs")}
    assert optional["webhook"] == set(view.fields_sent) & OPTIONAL_FIELDS - {"alert_id"}
    assert optional["geojson"] == optional["webhook"] - {"path"}
    assert optional["cap"] == {"agency", "incident_id", "unit_type", "position", "cancel_reason",
                               "street"} & optional["webhook"]
    assert optional["waze_cifs"] == {"path", "street"}  # its polyline: the path, then a segment
    without_path = replace(view, path=())
    assert "path" not in fields_carried("waze_cifs", without_path)
    # the alert core goes in every format
    assert all(f in fields_carried("cap", view) for f in ("alert_id", "version", "zone"))
    # a CIFS item has no version; its zone only when it has no line; a street of under 2
    # characters goes as the placeholder
    cifs = fields_carried("waze_cifs", view)
    assert "version" not in cifs and "zone" not in cifs
    assert "zone" in fields_carried("waze_cifs", replace(view, path=(), segments=()))
    assert "street" not in fields_carried("waze_cifs", replace(view, street="X"))
    # a feed's record: the union over its items, in the feed's format (a webhook partner's
    # feed is GeoJSON)
    assert "path" not in fields_sent([view, without_path], "geojson")
    assert feed_format("webhook") == "geojson" and feed_format("cap") == "cap"


async def test_a_cap_partners_audit_record_names_no_field_cap_does_not_carry() -> None:
    county = CONFIG.by_id()["county"]
    partner = replace(county, policy=Policy(fields=frozenset({"path", "speed", "position"}),
                                            coordinate_decimals=5))
    partners = PartnerSet.from_config(PartnersConfig(
        partners=(partner,), pseudonym_key=CONFIG.pseudonym_key, cap_sender=CONFIG.cap_sender))
    _, deliveries = fan_out(alert(path=PATH), partners, {}, T0)
    audit = MemoryAudit()
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda r: httpx.Response(200))) as client:
        hub = DeliveryHub(partners, client, audit, lambda _: None, clock=fake.clock,
                          sleep=fake.sleep, rand=lambda: 0.5)
        for d in deliveries:
            hub.submit(d)
        for _ in range(30):
            await asyncio.sleep(0)
        await hub.stop()
    assert [r.status for r in audit.records] == ["sending", "delivered"]
    for rec in audit.records:
        assert "position" in rec.fields and "path" not in rec.fields and "speed" not in rec.fields


async def test_deliver_events_reports_progress_and_survives_a_progress_bug() -> None:
    """``broker replay --deliver``'s status line: told the counts while the deliveries go; a
    bug in it stopped its updates silently and then replaced the summary with its error."""
    from adapters.hub import deliver_events
    from tests.unit.adapters.factory import PARTNERS

    seen: list[int] = []

    def watch(queued: int, stats: object) -> None:
        seen.append(queued)
        raise RuntimeError("a status line bug")

    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda r: httpx.Response(200))) as client:
        summary = await deliver_events([alert("create", 1), alert("update", 2)], PARTNERS,
                                       client, MemoryAudit(), dead_letter=lambda _: None,
                                       watch=watch)
    assert seen and summary.deliveries >= 2
    assert summary.stats["navapp"].delivered >= 1
