"""Hand-built AlertEvents for adapter, fan-out and delivery tests (the engine is not needed).

Coordinates are around uptown Charlotte; zones are GeoJSON (``[lon, lat]``, CCW exteriors).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from broker.model import AlertEvent

T0 = datetime(2026, 11, 25, 14, 3, 5, 120_000, tzinfo=UTC)
LON0, LAT0 = -80.8431, 35.2271
KEY = b"test pseudonym key"


def square(lon: float, lat: float, half: float = 0.002) -> list[list[float]]:
    """A closed CCW ring around (lon, lat), ``[lon, lat]`` pairs."""
    return [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]


def polygon_zone(lon: float = LON0, lat: float = LAT0) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [square(lon, lat)]}


def multipolygon_zone(lon: float = LON0, lat: float = LAT0) -> dict[str, Any]:
    return {
        "type": "MultiPolygon",
        "coordinates": [[square(lon, lat)], [square(lon + 0.01, lat + 0.005, 0.001)]],
    }


# Travel order: north-east along a street from the unit's position.
PATH = [(LON0, LAT0), (LON0 + 0.001, LAT0 + 0.0005), (LON0 + 0.002, LAT0 + 0.0011)]


def alert(
    action: str = "create",
    version: int = 1,
    *,
    alert_id: str = "CFD-E7:F261125-0042:approaching",
    kind: str = "approaching",
    at: datetime | None = None,
    zone: dict[str, Any] | None = None,
    path: list[tuple[float, float]] | None = None,
    street: str | None = "N Tryon St",
    vehicle_id: str = "CFD-E7",
    incident_id: str | None = "F261125-0042",
    ttl_s: float = 60.0,
    lon: float = LON0,
    lat: float = LAT0,
    started_at: datetime | None = None,
    first_version: int = 1,
) -> AlertEvent:
    """One alert step; ``at`` defaults to T0 + 10 s per version after the first, ``started_at``
    to the default ``at`` of the life's first version, whatever ``at`` is: steps built with
    the same ``first_version`` are of one life (partners' ids and delivery are per life), and
    another life needs its own ``started_at``."""
    ts = at or (T0 + timedelta(seconds=10 * (version - 1)))
    return AlertEvent(
        action=action,  # type: ignore[arg-type]
        alert_id=alert_id,
        version=version,
        kind=kind,  # type: ignore[arg-type]
        vehicle_id=vehicle_id,
        incident_id=incident_id,
        agency="charlotte-fd",
        unit_type="engine",
        ts=ts,
        started_at=started_at or T0 + timedelta(seconds=10 * (first_version - 1)),
        expires_at=ts + timedelta(seconds=ttl_s),
        lat=lat,
        lon=lon,
        speed_mps=14.2,
        heading_deg=87.0,
        zone=zone or polygon_zone(lon, lat),
        path=PATH if path is None else path,
        street=street,
        cancel_reason="left_emergency" if action == "cancel" else None,
        first_version=first_version,
    )


def lifecycle(n_updates: int = 2, **kw: Any) -> list[AlertEvent]:
    """create, ``n_updates`` updates, cancel: versions 1..n+2, 10 s apart."""
    out = [alert("create", 1, **kw)]
    out += [alert("update", v, **kw) for v in range(2, n_updates + 2)]
    out.append(alert("cancel", n_updates + 2, **kw))
    return out
