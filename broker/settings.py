"""Settings: one frozen object per concern, built once at the edge (cli) and passed down.

Nothing below ``broker.cli`` reads the environment; pure code gets an ``EngineConfig``.
Every default is documented in docs/settings.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi

from broker.model import WORLD, Lat, Lon
from broker.validation import Invalid, check_bounds

# Engine thresholds are never negative, nor past a million (metres: 1,000 km; seconds: 11
# days): an infinite or huge one (a typo, "inf") was taken and crashed the zone builds. The
# bounds are checked when decoding (the worker's BROKER_ENGINE_* variables,
# broker.streams.settings) and in __init__ (code, CLI options).
MAX_THRESHOLD = 1e6
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=MAX_THRESHOLD)]
# A wait that may be infinite: "never" (broker.durations.reaching takes inf)
NeverOrSeconds = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Thresholds of the alert engine. Distances in metres, times in seconds."""

    lookahead_s: NonNegative = 45.0  # the stretch ahead covers speed x this many seconds
    lookahead_floor_m: NonNegative = 300.0  # ...but never less than this
    corridor_half_width_m: NonNegative = 40.0  # both carriageways of a wide arterial
    proximity_radius_m: NonNegative = 150.0  # circle around the unit while approaching
    on_scene_radius_m: NonNegative = 200.0  # circle around a unit on scene
    on_scene_upstream_s: NonNegative = 30.0  # with roads: on-scene zone reaches this far upstream
    on_scene_branch_s: NonNegative = 20.0  # ...and up the side roads joining it this far
    # ...and along its own road through at most this many junctions where that road's traffic
    # can turn off before it (None: as far as on_scene_upstream_s reaches)
    on_scene_turn_offs: Count | None = 1
    # with roads: a responding unit that has stopped (a queue, a junction it cannot enter) also
    # covers its road behind it, this many seconds upstream
    stopped_walk_s: NonNegative = 10.0
    approach_s: NonNegative = 20.0  # with roads: walk side streets upstream this many seconds
    approach_far_s: NonNegative = 25.0  # ...up to this for junctions the unit reaches later (ETA)
    # ...but into a divided road's far carriageway at a median opening (and beyond) only this
    # many seconds: its drivers cross the path only if they turn there (None: as any road)
    approach_far_side_s: NonNegative | None = 0.0
    road_half_width_m: NonNegative = 20.0  # with roads: band either side of a road's centreline
    road_proximity_radius_m: NonNegative = 100.0  # with roads: circle around an approaching unit
    # with roads: a unit farther than this from every road of the network is where the network
    # does not reach (an extract that stops short of the service area): its zone is built as
    # without roads (None: never)
    roads_reach_m: NonNegative | None = 150.0
    # with roads: the circle, too, stops at the median of a divided road beside the route
    road_circle_median_cut: bool = True
    dead_reckoning_spread_deg: NonNegative = 35.0  # no route: half-angle of the fan ahead
    accuracy_widen_cap_m: NonNegative = 100.0  # poor GPS accuracy widens the zone, up to this
    stale_timeout_s: NonNegative = 30.0  # no fix for this long -> cancel (stale)
    # a moving unit on its CAD route whose fixes stop (tunnel, urban canyon): its zone moves on
    # along the route at its last speed for at most this long / this far, then the stale cancel
    # (0: off); every dead_reckoning_step_s an update, its accuracy widened by the rate
    dead_reckoning_max_s: NonNegative = 60.0
    dead_reckoning_max_m: NonNegative = 1000.0
    dead_reckoning_step_s: Annotated[float, msgspec.Meta(ge=1)] = 5.0
    dead_reckoning_min_speed_mps: NonNegative = 3.0  # slower than this: not moving, no DR
    dead_reckoning_widen_mps: NonNegative = 2.0  # accuracy_m grows this much per silent second
    # warn from dispatch: a CAD route for a unit with no live alert covers the first this many
    # metres of the route from its arrival until the unit's fixes take over, at most
    # dispatch_cover_s (then it expires: the unit never moved). 0: off
    dispatch_cover_m: NonNegative = 500.0
    dispatch_cover_s: NonNegative = 90.0
    # ...starting this many seconds after the route (by the tick, or the unit's next fix):
    # a unit already rolling when its route comes has its own emergency fix within that time,
    # which makes its zone at once; the dispatch zone would be built and sent only to be
    # replaced (two zones and two messages per unit in a start burst). 0: at the route
    dispatch_hold_s: NonNegative = 2.0
    alert_ttl_s: NonNegative = 60.0  # expires_at = last update + this
    min_update_distance_m: NonNegative = 50.0  # moved this far along -> update
    min_update_heading_deg: NonNegative = 30.0  # turned this much (no route) -> update
    # never update more often (inf: no updates but the expiry's refresh, once per alert_ttl_s/2)
    min_update_interval_s: NeverOrSeconds = 2.0
    # with roads, an update along the route is sent only if the stretch ahead reaches this much
    # further (or the zone grows otherwise): one that only trims behind the unit is not (0: off)
    min_update_reach_m: NonNegative = 5.0
    max_vertices: Annotated[int, msgspec.Meta(ge=8)] = 64  # vertex cap of a zone (all rings)
    simplify_tolerance_m: NonNegative = 4.0  # first simplification step; doubled until under cap
    max_implied_speed_mps: NonNegative = 70.0  # faster than this between fixes -> a GPS jump
    jump_reanchor_after: Count = 3  # accept the new place after this many jumps in a row
    max_future_skew_s: NonNegative = 60.0  # a ts further ahead than this is rejected
    max_message_bytes: Count = 64 * 1024
    # [west, south, east, north] degrees: fixes and routes outside are rejected (out_of_area)
    service_area: tuple[Lon, Lat, Lon, Lat] = WORLD
    # a unit whose lightbar is on but of which CAD has said nothing: warn as if responding?
    # (off: only CAD puts a unit in emergency mode; docs/ingest.md)
    lights_without_cad: bool = False
    # a status change with no fix of its own instant acts alone this long after its stamp
    # (a fix up to then is merged with it as it comes; broker.join)
    status_grace_s: NonNegative = 3.0
    # every alert also carries its warning segments (broker.geo.segments); they cost about as
    # much again as the zone with roads, so only a deployment whose partners take them pays:
    # the worker turns this on when a partner's policy has the 'segments' field, simulate for
    # its heading-aware receiver, broker replay with --segments
    warning_segments: bool = False
    # seconds added to every warning segment's ETA (the unit slows for junctions and traffic
    # after the version's speed was taken; a receiver stops warning at the ETA)
    segment_eta_slack_s: NonNegative = 30.0
    # with roads: of the stretch ahead's segments that name the unit's own direction alone, only
    # the pieces that start within max(lookahead_floor_m, speed x this) ahead are kept (the last
    # may run up to a piece's length, 150 m, further; None: the whole stretch, as the zone)
    segment_same_way_s: NonNegative | None = 30.0
    # with roads: a responding unit that has stopped also names the roads it walks behind it
    # (stopped_walk_s) as warning segments; false: they stay in the zone only. Most of their
    # drivers queue behind the unit and follow it: true until 2026-12-07, false cut the heading
    # receiver's tuning bystander-seconds 7.2 % and cost 17 of 4,229 drivers their warning
    # (docs/simulation.md). Either way the cross streets of a junction it stands in are named
    # (zoning.STOPPED_JUNCTION_M), and oncoming lanes ahead the route's match left out
    segment_stopped_behind: bool = False
    # with roads: the scene's road walked upstream this many seconds for the warning segments
    # (on scene, and the scene's upstream named while arriving; None: on_scene_upstream_s, as
    # the zone; never more than it). Keep it above on_scene_branch_s: at or below it the walk
    # is a plain tree of that many seconds (every branch, no turn_offs), which names more, not
    # less; 0 names none of the scene's roads
    segment_scene_upstream_s: NonNegative | None = 25.0

    def __post_init__(self) -> None:
        check_bounds(self, "engine setting")
        west, south, east, north = self.service_area
        if not (west < east and south < north):
            raise Invalid("service_area", "want [west, south, east, north] with west < east "
                          f"and south < north, got {list(self.service_area)}")


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def respell(raw: str, tp: mi.Type) -> Any:
    """The environment's spellings in msgspec's terms: stripped; ``''``/``none`` for an
    optional setting is None; yes/on/no/off/'' are booleans; choices are case-insensitive.
    Anything else goes to msgspec as it is, to be refused there. The worker's BROKER_*
    variables and ``broker simulate --set`` read a value this way."""
    value = raw.strip()
    kinds = tp.types if isinstance(tp, mi.UnionType) else (tp,)
    if value.lower() in ("", "none") and any(isinstance(t, mi.NoneType) for t in kinds):
        return None
    if any(isinstance(t, mi.BoolType) for t in kinds):
        low = value.lower()
        return True if low in _TRUE else False if low in _FALSE else value
    if any(isinstance(t, mi.TupleType) for t in kinds):  # "LON,LAT" -> a list
        return [part.strip() for part in value.split(",")]
    for t in kinds:
        if isinstance(t, mi.LiteralType):  # the choice as the setting spells it
            return next((v for v in t.values if str(v).lower() == value.lower()), value)
    return value
