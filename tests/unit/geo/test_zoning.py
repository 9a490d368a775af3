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


def _street(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, object]:
    return {"type": "Feature", "properties": {"highway": "primary"},
            "geometry": {"type": "LineString", "coordinates": [[lon0, lat0], [lon1, lat1]]}}


def test_where_the_network_does_not_reach_the_zone_is_built_as_without_roads() -> None:
    """A network that stops short of where the unit is (an extract of part of the service
    area, a file of another place) gave it the narrow road band and the 100 m circle with
    nothing to walk: a smaller zone than with no network at all. Beyond ``roads_reach_m`` of
    every road the zone is the one without roads; within it, the network's."""
    from broker.geo.roads import RoadNetwork

    cfg, memo = EngineConfig(), GeoMemo()
    frame = frame_for(-80.84, 35.22)
    # one street 2 km north of the unit, and one the unit stands on
    far = RoadNetwork.from_features([_street(-80.85, 35.24, -80.83, 35.24)], frame=frame)
    near = RoadNetwork.from_features([_street(-80.85, 35.22, -80.83, 35.22)], frame=frame)
    x, y = frame.to_xy(-80.84, 35.22)
    for kind, heading in (("approaching", 90.0), ("on_scene", None)):
        req = ZoneRequest(kind=kind, frame=frame, x=x, y=y, speed_mps=14.0, accuracy_m=5.0,
                          heading_deg=heading, fix_heading_deg=heading)
        blind = warning_zone(req, cfg, None, memo).zone
        assert warning_zone(req, cfg, far, memo).zone == blind
        assert warning_zone(req, cfg, near, memo).zone != blind  # the network's own zone
        off = EngineConfig(roads_reach_m=None)
        assert warning_zone(req, off, far, memo).zone != blind  # as before 2026-12-08
