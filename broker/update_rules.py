"""When a live alert's new fix is worth an update: the rules that keep partners' messages to
the ones that matter to a driver (docs/engine.md, "Update rules").

Pure: the alert as last sent, the fix, where the engine placed it. The engine asks
:func:`worth_update` for every accepted fix of a unit with a live alert of the same kind.
"""

from __future__ import annotations

import math
from functools import lru_cache

from broker.durations import reaching, seconds
from broker.geo.projection import LocalFrame, frame_for
from broker.geo.zoning import grows_only_behind
from broker.model import AlertState, Position
from broker.reckoning import Placement
from broker.settings import EngineConfig


def alert_xy(alert: AlertState, frame: LocalFrame) -> tuple[float, float]:
    """Where the unit was at the alert's last update, in ``frame`` (which may differ from the
    frame the update was computed in, when the unit has crossed into another grid cell)."""
    if alert.lon is None or alert.lat is None:
        return alert.x_m, alert.y_m
    return _xy(frame.lon0, frame.lat0, alert.lon, alert.lat)


# The same alert position is asked for with every fix until its next update (about ten fixes).
# Keyed by the frame's centre, not the frame object: a cell's frame rebuilt after it left
# projection's cache is the same frame, and the key holds no frame alive. One entry per live
# alert and frame, ~300 bytes each (16,384 entries: ~5 MiB).
@lru_cache(maxsize=16384)
def _xy(lon0: float, lat0: float, lon: float, lat: float) -> tuple[float, float]:
    return frame_for(lon0, lat0).to_xy(lon, lat)


def only_trims_behind(
    alert: AlertState, pos: Position, place: Placement, cfg: EngineConfig, roads: bool
) -> bool:
    """The rule ``min_update_reach_m`` (0: off): with a road network, an update along the route
    that reaches no further ahead than the zone last sent (only trimming it behind the unit and
    moving the circle with it) is not sent. Without one the moving circle is the only cover of
    the cross traffic near the unit: on the simulate matrix the rule cost 19 drivers warned
    >= 15 s there, and none with roads (docs/simulation.md), so it applies with roads only."""
    if not roads or cfg.min_update_reach_m <= 0 or alert.ahead_end_m is None \
            or place.route is None or place.along_m is None:
        return False
    return grows_only_behind(
        speed_mps=pos.speed_mps, accuracy_m=pos.accuracy_m, along_m=place.along_m,
        length_m=place.route.length_m, sent_end_m=alert.ahead_end_m,
        sent_speed_mps=alert.speed_mps, sent_accuracy_m=alert.accuracy_m, cfg=cfg, roads=roads,
    )


def worth_update(
    alert: AlertState, pos: Position, place: Placement, cfg: EngineConfig, roads: bool
) -> bool:
    """Whether a fix of a live alert's unit makes an update (when it matters to a driver):
    the dispatch zone's take-over, the expiry's refresh, a move along the route or off it, a
    turn; never sooner than ``min_update_interval_s`` but for the expiry's refresh."""
    if alert.from_dispatch:
        return True  # the unit's first emergency fix takes over from the dispatch zone, at once
    if pos.ts >= alert.expires_at - seconds(cfg.alert_ttl_s / 2):
        # refresh the expiry before partners drop the alert, whatever min_update_interval_s
        # says (at most once per half a TTL: past that, inf let alerts expire and re-create)
        return True
    if pos.ts - alert.last_update_ts < reaching(cfg.min_update_interval_s):
        return False
    if alert.kind == "on_scene":
        ax, ay = alert_xy(alert, place.frame)
        return math.hypot(place.x - ax, place.y - ay) >= cfg.min_update_distance_m
    new_key = place.route.key if place.route is not None else None
    if new_key != alert.route_key:
        return True
    if place.along_m is not None and alert.along_m is not None:
        if place.along_m - alert.along_m < cfg.min_update_distance_m:
            return False
        return not only_trims_behind(alert, pos, place, cfg, roads)
    ax, ay = alert_xy(alert, place.frame)
    if math.hypot(place.x - ax, place.y - ay) >= cfg.min_update_distance_m:
        return True
    if pos.heading_deg is not None and alert.heading_deg is not None and pos.speed_mps > 2.0:
        turn = abs((pos.heading_deg - alert.heading_deg + 180.0) % 360.0 - 180.0)
        return turn >= cfg.min_update_heading_deg
    return False
