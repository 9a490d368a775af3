"""GeoJSON (RFC 7946) FeatureCollection of alert zones, for open-data publication.

Positions are ``[lon, lat]`` (WGS 84), no ``crs`` member, exterior rings counter-clockwise and
holes clockwise (re-oriented here, since rounding by the policy must not be trusted to keep
the winding), a ``bbox`` of ``[west, south, east, north]`` per feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import shapely
from shapely.geometry import mapping, shape

from adapters.payload import Payload
from adapters.policy import AlertView, life_stamp, segments_geojson, view_as_dict
from broker.model import SEGMENTS_VERSION

CONTENT_TYPE = "application/geo+json"
_encoder = msgspec.json.Encoder()


def oriented(zone: dict[str, Any]) -> dict[str, Any]:
    """The zone with CCW exteriors and CW holes, as plain lists (RFC 7946 section 3.1.6)."""
    geom = shapely.orient_polygons(shape(zone), exterior_cw=False)
    out = mapping(geom)

    def lists(v: Any) -> Any:
        return [lists(x) for x in v] if isinstance(v, list | tuple) else float(v)

    return {"type": out["type"], "coordinates": lists(out["coordinates"])}


def feature_id(view: AlertView, *, life_in_id: bool = False) -> str:
    """The Feature's id: the view's alert id, and with ``life_in_id`` the life's start too
    (``<id>-<life>``, as CAP's identifiers): a partner given the engine's alert id, the same
    for every life, would otherwise see an earlier life's cancelled Feature and the new
    life's live one under one id in the same feed."""
    return f"{view.alert_id}-{life_stamp(view.started_at)}" if life_in_id else view.alert_id


def feature(view: AlertView, *, life_in_id: bool = False) -> dict[str, Any]:
    """One Feature: the zone as geometry, the allowed fields as properties."""
    props = view_as_dict(view)
    props.pop("zone")
    props.pop("path", None)  # a polyline belongs in its own geometry; open data has none
    props.pop("segments", None)  # each its own Feature (segment_features)
    props.pop("segments_version", None)
    props["status"] = "cancelled" if view.action == "cancel" else "active"
    props["event"] = "emergency_vehicle"
    geometry = oriented(view.zone)
    x0, y0, x1, y1 = shape(geometry).bounds
    return {
        "type": "Feature",
        "id": feature_id(view, life_in_id=life_in_id),
        "bbox": [x0, y0, x1, y1],
        "geometry": geometry,
        "properties": props,
    }


def segment_features(view: AlertView, *, life_in_id: bool = False) -> list[dict[str, Any]]:
    """The alert's warning segments (when its policy allows them): one LineString Feature
    each, in travel direction, with the alert's id and version, ``"feature":
    "warning_segment"``, ``directions`` and ``eta`` (RFC 3339; null: while the alert lives)."""
    out = []
    for k, seg in enumerate(segments_geojson(view)):
        seg["id"] = f"{feature_id(view, life_in_id=life_in_id)}-s{k}"
        seg["properties"] = {
            "feature": "warning_segment", "alert_id": view.alert_id,
            "version": view.partner_version,
            "segments_version": SEGMENTS_VERSION, **seg["properties"],
        }
        out.append(seg)
    return out


def render(
    views: Sequence[AlertView], *, feed_name: str = "geojson", life_in_id: bool = False
) -> Payload:
    """A FeatureCollection of the given alert steps: one zone Feature per alert, then its
    warning segments (if its policy allows them); ids per life with ``life_in_id``
    (:func:`feature_id`)."""
    features = [f for v in views
                for f in (feature(v, life_in_id=life_in_id),
                          *segment_features(v, life_in_id=life_in_id))]
    body = {"type": "FeatureCollection", "features": features}
    return Payload(body=_encoder.encode(body), content_type=CONTENT_TYPE, message_id=feed_name)
