"""Zone choice and building (broker/geo/zoning.py): a batch of zones gives what each alone gives."""

from __future__ import annotations

import shapely
from shapely.geometry import shape

from broker.geo.memo import GeoMemo
from broker.geo.projection import frame_for
from broker.geo.zone_batch import ZoneBatch
from broker.geo.zoning import ZoneRequest, warning_zone
from broker.settings import EngineConfig


def test_a_batch_cuts_a_zone_across_the_antimeridian_as_one_alone_does() -> None:
    cfg, memo = EngineConfig(), GeoMemo()
    frame = frame_for(179.9995, -16.8)
    x, y = frame.to_xy(179.9995, -16.8)
    reqs = [
        ZoneRequest(kind=kind, frame=frame, x=x, y=y, speed_mps=14.0, accuracy_m=5.0,
                    heading_deg=heading, fix_heading_deg=heading)
        for kind, heading in (("approaching", 90.0), ("approaching", None), ("on_scene", None))
    ]
    batch = ZoneBatch(cfg, None, memo)
    deferred = [batch.defer(req) for req in reqs]
    batch.build()
    for req, got in zip(reqs, deferred, strict=True):
        alone = warning_zone(req, cfg, None, memo)
        assert got.zone == alone.zone
        assert got.zone["type"] == "MultiPolygon"
        assert all(179.99 < abs(lon) <= 180.0
                   for lon, _ in shapely.get_coordinates(shape(got.zone)).tolist())
