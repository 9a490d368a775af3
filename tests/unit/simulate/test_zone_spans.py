"""AlertEvents -> live zone intervals: updates replace, cancels end, expiry ends."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import numpy as np
import shapely

from broker.model import AlertEvent
from broker.simulate.network import NetGeo
from broker.simulate.run import T0, zone_spans


def geo() -> NetGeo:
    from pyproj import CRS, Transformer

    crs = CRS.from_proj4("+proj=aeqd +lat_0=35.2271 +lon_0=-80.8431 +ellps=WGS84 +units=m")
    return NetGeo(
        Transformer.from_crs(crs, "EPSG:4326", always_xy=True),
        Transformer.from_crs("EPSG:4326", crs, always_xy=True),
        0.0, 0.0, (0.0, 0.0, 1000.0, 1000.0),
    )  # fmt: skip


def event(action: str, at_s: int, version: int, ttl_s: int = 60) -> AlertEvent:
    ring = [[-80.8431, 35.2271], [-80.842, 35.2271], [-80.842, 35.228], [-80.8431, 35.2271]]
    ts = T0 + timedelta(seconds=at_s)
    return AlertEvent(
        action=action, alert_id="a1", version=version, kind="approaching", vehicle_id="E1",
        incident_id="i", agency="x", unit_type="engine", ts=ts, started_at=T0,
        expires_at=ts + timedelta(seconds=ttl_s), lat=35.2271, lon=-80.8431, speed_mps=10.0,
        heading_deg=90.0, zone={"type": "Polygon", "coordinates": [ring]},
    )  # fmt: skip


def test_update_replaces_cancel_ends_and_expiry_ends():
    evs = [event("create", 10, 1), event("update", 20, 2), event("cancel", 30, 3),
           event("create", 100, 4, ttl_s=15)]  # fmt: skip
    spans = zone_spans(evs, geo())
    assert [(s.start, s.end) for s in spans] == [(10, 20), (20, 30), (100, 115)]


def test_zones_come_back_in_net_metres():
    (span,) = zone_spans([event("create", 0, 1)], geo())
    x0, y0, x1, y1 = shapely.bounds(span.zone)
    assert np.allclose([x0, y0], [0.0, 0.0], atol=0.5)
    assert 90 < x1 < 110 and 90 < y1 < 110  # 0.0011 deg lon ~ 100 m at 35 N; 0.0009 lat ~ 100 m


def test_a_span_carries_the_alerts_path_and_the_units_position_in_net_metres():
    ahead = msgspec.structs.replace(
        event("create", 0, 1), path=[(-80.8431, 35.2271), (-80.842, 35.2271)]
    )
    (span,) = zone_spans([ahead], geo())
    assert span.path is not None and 90 < span.path.length < 110
    assert span.unit_xy is not None and np.allclose(span.unit_xy, (0.0, 0.0), atol=0.5)
    (on_scene,) = zone_spans([event("create", 0, 1)], geo())  # no path (a unit on scene)
    assert on_scene.path is None and on_scene.unit_xy is not None
