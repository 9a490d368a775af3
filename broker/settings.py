"""Settings: one frozen object per concern, built once at the edge (cli) and passed down.

Nothing below ``broker.cli`` reads the environment; pure code gets an ``EngineConfig``.
Every default is documented in docs/settings.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Thresholds of the alert engine. Distances in metres, times in seconds."""

    lookahead_s: float = 45.0  # the stretch ahead covers speed x this many seconds
    lookahead_floor_m: float = 300.0  # ...but never less than this
    corridor_half_width_m: float = 40.0  # both carriageways of a wide arterial
    proximity_radius_m: float = 150.0  # circle around the unit while approaching
    on_scene_radius_m: float = 200.0  # circle around a unit on scene
    on_scene_upstream_s: float = 30.0  # with roads: on-scene zone reaches this far upstream
    on_scene_branch_s: float = 20.0  # ...and up the side roads joining it this far (from the unit)
    approach_s: float = 20.0  # with roads: walk side streets upstream this many seconds
    approach_far_s: float = 25.0  # ...up to this for junctions the unit reaches later (by ETA)
    road_half_width_m: float = 20.0  # with roads: band either side of a known road's centreline
    road_proximity_radius_m: float = 100.0  # with roads: circle around an approaching unit
    dead_reckoning_spread_deg: float = 35.0  # no route: half-angle of the fan ahead
    accuracy_widen_cap_m: float = 100.0  # poor GPS accuracy widens the zone, up to this
    stale_timeout_s: float = 30.0  # no fix for this long -> cancel (stale)
    alert_ttl_s: float = 60.0  # expires_at = last update + this
    min_update_distance_m: float = 50.0  # moved this far along -> update
    min_update_heading_deg: float = 30.0  # turned this much (no route) -> update
    min_update_interval_s: float = 2.0  # never update more often than this
    max_vertices: int = 64  # vertex cap of a zone (all rings together)
    simplify_tolerance_m: float = 4.0  # first simplification step; doubled until under the cap
    max_implied_speed_mps: float = 70.0  # faster than this between fixes -> a GPS jump
    jump_reanchor_after: int = 3  # accept the new place after this many jumps in a row
    max_future_skew_s: float = 60.0  # a ts further ahead than this is rejected
    max_message_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"engine setting {name} must be >= 0, got {value}")
        if self.max_vertices < 8:
            raise ValueError(f"engine setting max_vertices must be >= 8, got {self.max_vertices}")
