"""What the operator role may see of an alert event, and how its zone is drawn.

The operator console renders from these plain dicts only, never from an ``AlertEvent``, so what
the page can show is decided here, once, as it is for partners (``adapters.policy``):

- The operator role's policy is an ``adapters.policy.Policy`` that allows every optional field
  (the engine's own alert id, unit, incident, agency, position, speed, heading, path, street),
  at 6 decimals. ``view_for`` refuses anything but an alert of a unit in emergency mode and
  drops the movement fields on every cancel: a cancel's fix may be the position of a unit that
  has just left emergency mode (``left_emergency``), and such positions never leave the broker.
  Unlike a partner's, it keeps a dispatch alert's place (``dispatch_position``: the start of the
  unit's CAD route, where it is taken to stand), so the operator sees the unit it is about.
- A unit is on the map only while it has a live alert, at the positions its alert events
  carried (the worker) or at its accepted fixes *while in emergency mode* (the in-process
  player). Off-duty units never appear.

Zone parts: an approaching zone is the corridor along the stretch ahead joined with a circle
around the unit and, with a road network, the approach stubs up the side streets and oncoming
lanes. The console draws the stubs apart from the corridor: what lies outside the corridor band
and the circle (in a local metric frame, with a few metres' slack) is the approaches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping, shape

from adapters.policy import OPTIONAL_FIELDS, Policy, view_as_dict, view_for
from broker.geo.projection import frame_for
from broker.model import AlertEvent, Route
from broker.settings import EngineConfig

OPERATOR_POLICY = Policy(fields=frozenset(OPTIONAL_FIELDS), dispatch_position=True)
SLACK_M = 6.0  # a zone simplified to 64 vertices strays a few metres from its band
MIN_STUB_M2 = 400.0  # slivers smaller than this are simplification noise, not approaches
DECIMALS = 6


def operator_alert(event: AlertEvent, cfg: EngineConfig | None = None) -> dict[str, Any]:
    """The operator's view of one alert event, with its zone split into parts for drawing."""
    view = view_as_dict(view_for(event, OPERATOR_POLICY, key=b""))
    if event.action != "cancel":
        view["approaches"] = approach_stubs(event, cfg or EngineConfig())
    return view


def unit_of(view: dict[str, Any]) -> dict[str, Any] | None:
    """The unit marker of an alert view: None for a cancel (no position may be shown)."""
    if view.get("action") == "cancel" or "lat" not in view:
        return None
    return {
        "vehicle_id": view.get("vehicle_id"),
        "alert_id": view["alert_id"],
        "kind": view["kind"],
        "lat": view["lat"],
        "lon": view["lon"],
        "heading_deg": view.get("heading_deg"),
        "speed_mps": view.get("speed_mps"),
        "unit_type": view.get("unit_type"),
        "agency": view.get("agency"),
    }


def approach_stubs(event: AlertEvent, cfg: EngineConfig) -> dict[str, Any] | None:
    """The part of an approaching zone outside the corridor and the unit's circle (GeoJSON),
    or None (on scene, no path, or nothing sticks out)."""
    if event.kind != "approaching" or len(event.path) < 2:
        return None
    frame = frame_for(event.lon, event.lat)
    zone_m = frame.geom_to_xy(shape(event.zone))
    path_m = shapely.LineString(frame.coords_to_xy(np.asarray(event.path, dtype=float)))
    x, y = frame.to_xy(event.lon, event.lat)
    radius = max(cfg.proximity_radius_m, cfg.road_proximity_radius_m)
    band = shapely.union(
        shapely.buffer(path_m, cfg.corridor_half_width_m + SLACK_M),
        shapely.buffer(shapely.Point(x, y), radius + SLACK_M),
    )
    rest = shapely.difference(shapely.make_valid(zone_m), band)
    parts = [p for p in shapely.get_parts(rest) if p.geom_type == "Polygon"
             and p.area >= MIN_STUB_M2]
    if not parts:
        return None
    stubs = frame.geom_to_lonlat(shapely.MultiPolygon(parts))
    out: dict[str, Any] = _rounded(mapping(shapely.set_precision(stubs, 10.0**-DECIMALS)))
    return out


def _rounded(geo: Any) -> Any:
    """GeoJSON mapping with tuples as lists and coordinates rounded (JSON-ready)."""
    if isinstance(geo, dict):
        return {k: _rounded(v) for k, v in geo.items()}
    if isinstance(geo, list | tuple):
        return [_rounded(v) for v in geo]
    if isinstance(geo, float):
        return round(geo, DECIMALS)
    return geo


def route_fits(event: AlertEvent, route: Route) -> bool:
    """Whether the engine would use ``route`` for this alert: not another incident's
    (``broker.reckoning.usable_route``); the console draws no other."""
    return not (event.incident_id and route.incident_id
                and event.incident_id != route.incident_id)
