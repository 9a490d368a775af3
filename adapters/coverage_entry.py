"""A partner's coverage as the partners file gives it, and where it may lie.

``{ bbox = [w, s, e, n] }``, ``{ polygon = [[lon, lat], ...] }`` or ``{ geojson = {...} }``, in
lon/lat degrees (:class:`Coverage`); one that no zone of the engine's service area can reach is
refused at load (:func:`coverage_problem`), most often lat and lon swapped.
"""

from __future__ import annotations

from typing import Any

import msgspec
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from broker.geo.projection import span_degrees
from broker.model import Area
from broker.validation import Invalid

# how far beyond its unit's service area a zone may reach (metres): the stretch ahead at
# motorway speed (45 s at 44 m/s, ~2 km), the walks upstream of it and of the scene, with room
ZONE_REACH_M = 10_000.0


class Coverage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{ bbox = [w, s, e, n] }``, ``{ polygon = [[lon, lat], ...] }`` or
    ``{ geojson = {...} }``: exactly one, in lon/lat degrees."""

    bbox: tuple[float, float, float, float] | None = None
    polygon: list[tuple[float, float]] | None = None
    geojson: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("bbox", "polygon", "geojson") if getattr(self, k) is not None]
        if len(given) != 1:
            raise Invalid("", "give exactly one of bbox, polygon, geojson")
        self.area()  # decoding fails here if the area is not a valid lon/lat area

    def area(self) -> BaseGeometry:
        """The coverage as a shapely geometry (x = lon, y = lat); Invalid if it is not one."""
        geom = self._geometry()
        if geom.is_empty or not geom.is_valid or geom.area == 0:
            raise Invalid("", f"not a valid area ({shapely.is_valid_reason(geom)})")
        x0, y0, x1, y1 = geom.bounds
        if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
            raise Invalid("", "coordinates must be [lon, lat] degrees")
        return geom

    def _geometry(self) -> BaseGeometry:
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise Invalid(
                    "bbox", "want [west, south, east, north] in lon/lat degrees, w<e, s<n"
                )
            return shapely.box(w, s, e, n)
        kind = "polygon" if self.polygon is not None else "geojson"
        try:
            if self.polygon is not None:
                return shapely.Polygon(self.polygon)
            return shape(self.geojson or {})
        except (TypeError, ValueError, KeyError, AttributeError, ShapelyError) as err:
            raise Invalid(kind, str(err) or type(err).__name__) from err


def _degrees(box: Area | tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _widened(area: Area, by_m: float) -> shapely.Polygon:
    """``area`` (west, south, east, north, degrees) grown by ``by_m`` on every side."""
    west, south, east, north = area
    dlon, dlat = span_degrees(by_m, south, north)
    return shapely.box(max(-180.0, west - dlon), max(-90.0, south - dlat),
                       min(180.0, east + dlon), min(90.0, north + dlat))


def coverage_problem(coverage: Coverage, service_area: Area) -> str | None:
    """Why a partner with ``coverage`` would never get an alert, or None. A coverage farther
    than ``ZONE_REACH_M`` from the service area gets nothing, ever: every fix and route outside
    that area is rejected (``out_of_area``), and no zone of a unit inside it reaches that far.
    Most often lat and lon are swapped (``[s, w, n, e]`` for ``[w, s, e, n]``), which a range
    check cannot see: 34.9 is a valid longitude. Said so when the swapped coverage would
    overlap."""
    area = shapely.box(*service_area)
    geom = coverage.area()
    # a zone reaches beyond the area its unit is in (the stretch ahead, the walks upstream):
    # a coverage bordering it, a neighbouring county's, gets the alerts of units near the edge
    # (refused until 2026-12-08 when it shared no area with it)
    if geom.intersects(_widened(service_area, ZONE_REACH_M)):
        return None
    swapped = shapely.transform(geom, lambda xy: xy[:, ::-1])
    hint = ""
    if swapped.intersects(area):
        fix = (f"bbox = {_degrees(swapped.bounds)}" if coverage.bbox is not None
               else "each point as [lon, lat]")
        hint = (f"; read as [lat, lon] it would overlap: coverage is in lon/lat order "
                f"(bbox = [west, south, east, north]), so write {fix}")
    return (f"{_degrees(geom.bounds)} lies more than {ZONE_REACH_M / 1000:g} km from the "
            f"service area {_degrees(service_area)} (engine setting service_area, "
            f"BROKER_ENGINE_SERVICE_AREA), where every fix and route outside is rejected: this "
            f"partner would never get an alert{hint}")
