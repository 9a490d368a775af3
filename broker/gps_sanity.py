"""GPS sanity between two fixes of one unit: is the second a jump no vehicle could make?

The engine's second gate (broker/engine.py): a fix implying more than ``max_implied_speed_mps``
from the last accepted one is counted and ignored. Plain arithmetic on the WGS84 ellipsoid (no
PROJ call): it runs on every fix.
"""

from __future__ import annotations

from broker.geo.projection import ground_distance_m
from broker.model import Position

# metres per degree of latitude or longitude, at most (WGS84: 111,694 m per degree of latitude
# at the poles, 111,320 m per degree of longitude at the equator)
MAX_M_PER_DEG = 111_700.0


def is_jump(a: Position, b: Position, dt_s: float, max_mps: float) -> bool:
    """Faster than ``max_mps`` from ``a`` to ``b``? A bound first (degrees x the most metres a
    degree can be, with no trigonometry): most fixes are clearly not jumps."""
    bound_m = (abs(b.lat - a.lat) + abs((b.lon - a.lon + 180.0) % 360.0 - 180.0)) * MAX_M_PER_DEG
    slack = a.accuracy_m + b.accuracy_m
    if max(bound_m - slack, 0.0) / max(dt_s, 1e-3) <= max_mps:
        return False  # even the bound is not a jump: the distance (never above it) is not
    return implied_speed(a, b, dt_s) > max_mps


def implied_speed(a: Position, b: Position, dt_s: float) -> float:
    """Metres per second from ``a`` to ``b``, less both fixes' GPS error."""
    # Ellipsoidal distance by plain arithmetic (within 1e-5 of the frame's; no PROJ call).
    # Allow for GPS error at both ends before calling it a jump.
    gap = ground_distance_m(a.lon, a.lat, b.lon, b.lat)
    dist = max(gap - a.accuracy_m - b.accuracy_m, 0.0)
    return dist / max(dt_s, 1e-3)
