"""Warning segments through the partner subsystem: the policy gates them, every format that
can carry them does (webhook JSON, GeoJSON feed, Waze CIFS polyline + direction)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from adapters import geojson, waze_cifs, webhook
from adapters.policy import OPTIONAL_FIELDS, Policy, view_for
from broker.model import SEGMENTS_VERSION, WarningSegment
from tests.unit.adapters.factory import KEY, LAT0, LON0, alert

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FEEDER = WarningSegment(
    line=[(LON0 + 0.003, LAT0 + 0.004), (LON0 + 0.003, LAT0 + 0.001)], directions="forward",
    eta_s=31.0,
)
OWN_ROAD = WarningSegment(
    line=[(LON0 - 0.004, LAT0), (LON0 - 0.002, LAT0), (LON0, LAT0)], directions="forward",
    eta_s=None,
)
BOTH = WarningSegment(line=[(LON0, LAT0), (LON0 + 0.001, LAT0 + 0.0001)], directions="both",
                      eta_s=12.0)  # fmt: skip


def with_segments(action: str = "create", **kw):
    ev = alert(action, **kw)
    return msgspec.structs.replace(ev, segments=[FEEDER, OWN_ROAD, BOTH])


def text(view) -> str:
    """Everything a partner could read from its payloads of this view."""
    return webhook.body_for(view).decode() + geojson.render([view]).body.decode()


@given(st.sets(st.sampled_from(sorted(OPTIONAL_FIELDS - {"segments"}))), st.sampled_from(
    [None, 3, 4, 5, 6]))
def test_a_partner_not_allowed_segments_never_gets_them(fields, decimals) -> None:
    view = view_for(with_segments(), Policy(frozenset(fields), decimals), key=KEY)
    assert view.segments == () and "segments" not in view.fields_sent
    assert "segments" not in text(view) and "warning_segment" not in text(view)


def test_an_allowed_partner_gets_them_with_absolute_etas_but_never_on_a_cancel() -> None:
    ev = with_segments()
    view = view_for(ev, Policy(frozenset({"segments"})), key=KEY)
    assert "segments" in view.fields_sent and len(view.segments) == 3
    assert view.segments[0].eta == ev.ts + timedelta(seconds=31)
    assert view.segments[1].eta is None and view.segments[2].directions == "both"
    cancel = view_for(with_segments("cancel", version=3), Policy(frozenset({"segments"})), key=KEY)
    assert cancel.segments == () and "segments" not in text(cancel)


@pytest.mark.parametrize("decimals", [3, 4, 5, 6])
def test_segments_are_never_finer_than_the_policy_or_5_decimals(decimals) -> None:
    view = view_for(with_segments(), Policy(frozenset({"segments"}), decimals), key=KEY)
    keep = min(decimals, 5)
    for seg in view.segments:
        assert len(seg.line) >= 2 and len(set(seg.line)) == len(seg.line)
        assert all(round(c, keep) == c for p in seg.line for c in p)


def test_webhook_carries_segments_as_geojson_linestrings_in_travel_order() -> None:
    view = view_for(with_segments(), Policy(frozenset({"segments"})), key=KEY)
    payload = webhook.render(view, secret=SECRET, at=datetime.now(UTC))
    data = Webhook(SECRET).verify(payload.body, payload.headers)["data"]
    assert data["segments_version"] == SEGMENTS_VERSION
    feats = data["segments"]
    assert [f["geometry"]["type"] for f in feats] == ["LineString"] * 3
    assert feats[0]["geometry"]["coordinates"] == [list(p) for p in FEEDER.line]
    assert feats[0]["properties"] == {"directions": "forward", "eta": "2026-11-25T14:03:36.120Z"}
    assert feats[1]["properties"]["eta"] is None


def test_geojson_feed_adds_one_linestring_feature_per_segment_after_the_zone() -> None:
    view = view_for(with_segments(), Policy(frozenset({"segments"}), 4), key=KEY)
    doc = json.loads(geojson.render([view]).body)
    zone, *segs = doc["features"]
    assert zone["geometry"]["type"] == "Polygon" and "segments" not in zone["properties"]
    assert [s["geometry"]["type"] for s in segs] == ["LineString"] * 3
    assert {s["properties"]["alert_id"] for s in segs} == {view.alert_id}
    assert len({s["id"] for s in segs}) == 3
    assert all(s["properties"]["feature"] == "warning_segment" for s in segs)


def test_cifs_on_scene_uses_the_longest_segment_in_travel_order_with_its_direction() -> None:
    ev = msgspec.structs.replace(with_segments(kind="on_scene"), path=[])
    view = view_for(ev, Policy(frozenset({"segments", "street"})), key=KEY)
    item = json.loads(waze_cifs.render([view]).body)["incidents"][0]
    nums = [float(x) for x in item["polyline"].split()]
    pairs = list(zip(nums[::2], nums[1::2], strict=True))
    assert pairs == [(round(lat, 6), round(lon, 6)) for lon, lat in OWN_ROAD.line]  # lat lon
    assert item["direction"] == "ONE_DIRECTION"
    only_both = msgspec.structs.replace(ev, segments=[BOTH])
    view = view_for(only_both, Policy(frozenset({"segments"})), key=KEY)
    assert json.loads(waze_cifs.render([view]).body)["incidents"][0]["direction"] == (
        "BOTH_DIRECTIONS"
    )


def test_cifs_approaching_keeps_the_stretch_ahead_one_direction() -> None:
    view = view_for(with_segments(), Policy(frozenset({"segments", "path"})), key=KEY)
    item = json.loads(waze_cifs.render([view]).body)["incidents"][0]
    first = [float(x) for x in item["polyline"].split()[:2]]
    assert first == [round(LAT0, 6), round(LON0, 6)] and item["direction"] == "ONE_DIRECTION"


def test_cifs_on_scene_line_ends_where_the_unit_stands_not_further_upstream() -> None:
    """Review 2026-12-07 (formats): a scene's upstream walk is cut into pieces at junctions, so
    its longest piece may lie before the one that reaches the unit. On the highway-on-scene
    fixture (with roads) the CIFS polyline of every on-scene version was the 364 m piece that
    ends 251 m before the crash: Waze showed the hazard 250-615 m upstream of it."""
    junction = (LON0 - 0.002, LAT0)
    upstream = WarningSegment(line=[(LON0 - 0.008, LAT0), junction], directions="forward")
    to_unit = WarningSegment(line=[junction, (LON0, LAT0)], directions="forward")
    ev = msgspec.structs.replace(alert(kind="on_scene"), path=[], segments=[upstream, to_unit])
    view = view_for(ev, Policy(frozenset({"segments"})), key=KEY)
    item = json.loads(waze_cifs.render([view]).body)["incidents"][0]
    nums = [float(x) for x in item["polyline"].split()]
    pairs = list(zip(nums[::2], nums[1::2], strict=True))
    assert pairs[-1] == (round(LAT0, 6), round(LON0, 6))  # lat lon: at the unit
    assert item["direction"] == "ONE_DIRECTION"
