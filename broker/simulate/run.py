"""Drive SUMO (libsumo, in-process) and the alert engine side by side, then score the zones.

One run: build the scenario's network (cached), generate seeded background traffic
(``broker.simulate.demand``: uniform random trips, or routes sampled to plausible counts), warm
the traffic up, pick a scene on a busy road and the units' origins (seeded; from the busiest
roads where the recipe says ``start_in_traffic``), dispatch the units (vClass ``emergency``
with the bluelight device) to stop on scene (a parking stop, so traffic streams past), and
every simulated second:

- build each unit's wire-format Position (true position + seeded GPS noise, lon/lat via the
  net's projection; status ``responding`` with lights and sirens, ``on_scene`` while stopped,
  ``returning`` once it leaves) and, at dispatch, its CAD Route (the planned edges' shapes as a
  lon/lat LineString, ending where the unit will stop, as a CAD route ends at the incident),
  encode them with ``broker.codec`` and feed them through the driver loop
  (``broker.drive``: decode, ``engine.step``, ``tick``), exactly as replay and the worker do;
- record every civilian's true position and heading (float32 arrays, one chunk per step).

The same fixes go through one engine per entry of ``engines`` (e.g. with and without the road
network), so the variants are scored on identical traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import shapely
import shapely.geometry
import shapely.ops

from broker import codec
from broker.agencies import parse_agencies
from broker.drive import ROUTES, Driver
from broker.ingest_forms import Emitter, Form
from broker.model import AlertEvent, LatLon, LineStringGeometry, Position, Route, Status
from broker.settings import EngineConfig
from broker.simulate import scorer
from broker.simulate.demand import background_trips
from broker.simulate.network import (
    BuiltNetwork,
    NetGeo,
    ScenarioError,
    build_network,
    cache_lock,
    load_scenario,
    write_if_changed,
)
from broker.simulate.options import RunOptions

T0 = datetime(2026, 1, 15, 8, 0, 0, tzinfo=UTC)  # simulated second 0
EV_TYPE = """<additional>
  <vType id="ev" vClass="emergency" guiShape="emergency" speedFactor="1.4" minGap="2.0"
         jmDriveAfterRedTime="300" jmDriveRedSpeed="5.56" impatience="1.0" sigma="0.2">
    <param key="has.bluelight.device" value="true"/>
  </vType>
</additional>
"""

Progress = Callable[[float, float], None]


@dataclass
class UnitPlan:
    """One emergency unit: where it starts, its planned edges, its scene, when it leaves."""

    vehicle_id: str
    edges: list[str]
    depart_s: float
    scene_pos_m: float
    scene_lane: int
    route_ll: list[tuple[float, float]]  # planned route, [lon, lat]
    incident_id: str


@dataclass
class RunResult:
    """Everything a run produced: traffic, units, alert events per engine variant, figures."""

    options: RunOptions
    built: BuiltNetwork
    traffic: scorer.Traffic
    units: list[scorer.UnitTrack]
    plans: list[UnitPlan]
    events: dict[str, list[AlertEvent]]
    spans: dict[str, list[scorer.ZoneSpan]]
    encounters: list[scorer.Encounter]
    figures: dict[str, scorer.MethodFigures]
    rejections: int = 0
    sim_end_s: float = 0.0
    civilians: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- planning


def _edge_shape(ls: Any, edge: str) -> list[tuple[float, float]]:
    n = ls.edge.getLaneNumber(edge)
    return [tuple(p) for p in ls.lane.getShape(f"{edge}_{n // 2}")]


def _shape_upto(shape: list[tuple[float, float]], fraction: float) -> list[tuple[float, float]]:
    """The first ``fraction`` (0-1, of its length) of a polyline."""
    line = shapely.LineString(shape)
    part = shapely.ops.substring(line, 0.0, min(max(fraction, 0.0), 1.0), normalized=True)
    return [(float(a), float(b)) for a, b in shapely.get_coordinates(part)]


def _route_length(ls: Any, edges: list[str]) -> float:
    return float(sum(ls.lane.getLength(f"{e}_0") for e in edges))


def _ev_lane(ls: Any, edge: str) -> int | None:
    """The rightmost lane of an edge an emergency vehicle may use (None: none may)."""
    for i in range(ls.edge.getLaneNumber(edge)):
        lane = f"{edge}_{i}"
        allowed = ls.lane.getAllowed(lane)
        if "emergency" in ls.lane.getDisallowed(lane) or (allowed and "emergency" not in allowed):
            continue
        return i
    return None


class RoadIndex:
    """Small integers for SUMO's roads, and the junctions at each road's ends (what the scorer
    needs to tell a crossing from a road passing under the path). A junction's internal road
    (``:J_3``) has that junction at both ends; edges are asked of libsumo once each."""

    def __init__(self, ls: Any) -> None:
        self._ls = ls
        self._ids: dict[str, int] = {}
        self._junction_ids: dict[str, int] = {}
        self._ends: list[tuple[int, int]] = []

    def of(self, road: str) -> int:
        """The index of a road id (an edge or a junction's internal edge); -1 for none."""
        if not road:
            return -1
        found = self._ids.get(road)
        if found is not None:
            return found
        if road.startswith(":"):  # internal edge ":<junction>_<n>"
            a = b = road[1:].rsplit("_", 1)[0]
        else:
            a, b = self._ls.edge.getFromJunction(road), self._ls.edge.getToJunction(road)
        ends = (self._junction(a), self._junction(b))
        self._ids[road] = len(self._ends)
        self._ends.append(ends)
        return self._ids[road]

    def _junction(self, name: str) -> int:
        return self._junction_ids.setdefault(name, len(self._junction_ids))

    def junctions(self) -> np.ndarray:
        """Per road index, its two junctions (int, shape (roads, 2))."""
        return np.array(self._ends, dtype=np.int32).reshape(-1, 2)


def plan_units(
    ls: Any, built: BuiltNetwork, busy: dict[str, int], opts: RunOptions, start_s: float
) -> list[UnitPlan]:
    """Pick a scene on a busy, fast enough road and one origin per unit (seeded)."""
    rng = np.random.default_rng(opts.seed + 1000 * opts.units)
    rec = built.scenario.units
    edges = [
        e
        for e in ls.edge.getIDList()
        if not e.startswith(":")
        and ls.lane.getLength(f"{e}_0") >= 40.0
        and _ev_lane(ls, e) is not None
    ]
    scene_candidates = [
        e for e in edges
        if ls.lane.getLength(f"{e}_0") >= rec.scene_min_length_m
        and ls.lane.getMaxSpeed(f"{e}_0") >= rec.scene_min_speed_mps
    ]  # fmt: skip
    if not scene_candidates:
        raise ScenarioError(f"{built.scenario.name}: no road fit for a scene")
    scene_candidates.sort(key=lambda e: (-busy.get(e, 0), e))
    top = scene_candidates[: max(5, len(scene_candidates) // 10)]
    rng.shuffle(edges)
    if rec.start_in_traffic:  # units leave from the busiest third of the roads, in traffic
        edges.sort(key=lambda e: -busy.get(e, 0))  # stable: ties keep the shuffled order
        edges = edges[: max(10, len(edges) // 3)]
    for scene in [top[int(i)] for i in rng.permutation(len(top))]:
        plans: list[UnitPlan] = []
        used: set[str] = {scene}
        for origin in edges:
            if len(plans) == opts.units:
                break
            if origin in used:
                continue
            try:
                stage = ls.simulation.findRoute(origin, scene, vType="ev")
            except ls.TraCIException:
                continue
            length = _route_length(ls, list(stage.edges)) if stage.edges else 0.0
            if not (rec.min_route_m <= length <= rec.max_route_m):
                continue
            used.add(origin)
            i = len(plans)
            route_edges = list(stage.edges)
            scene_len = ls.lane.getLength(f"{scene}_0")
            scene_pos = min(scene_len * 0.6 + 12.0 * i, scene_len - 5.0)
            # the CAD route ends at the incident, where the unit will stop: the scene edge up to
            # the stop, not to its end (on a motorway that is hundreds of metres further)
            xy = [p for e in route_edges[:-1] for p in _edge_shape(ls, e)]
            xy += _shape_upto(_edge_shape(ls, scene), scene_pos / scene_len)
            arr = np.asarray(xy, float)
            keep = np.concatenate([[True], np.any(np.abs(np.diff(arr, axis=0)) > 0.01, axis=1)])
            lon, lat = built.geo.to_lonlat(arr[keep, 0], arr[keep, 1])
            plans.append(
                UnitPlan(
                    vehicle_id=f"E{i + 1}",
                    edges=route_edges,
                    depart_s=start_s + i * rec.stagger_s,
                    scene_pos_m=scene_pos,
                    scene_lane=_ev_lane(ls, scene) or 0,
                    route_ll=[(float(a), float(b)) for a, b in zip(lon, lat, strict=True)],
                    incident_id=f"SIM-{built.scenario.name}-{opts.seed}-{opts.units}u-"
                    f"{opts.traffic}-{opts.roads}",
                )
            )
        if len(plans) == opts.units:
            return plans
    raise ScenarioError(
        f"{built.scenario.name}: found no {opts.units} unit route(s) of "
        f"{rec.min_route_m:.0f}-{rec.max_route_m:.0f} m to a scene"
    )


# --------------------------------------------------------------------------- engine feeding


class EngineFeed:
    """One engine variant: the driver loop (``broker.drive``) and every event it emitted."""

    def __init__(self, cfg: EngineConfig, roads: Any | None) -> None:
        self.cfg, self.roads = cfg, roads
        self.driver: Driver[str] = Driver(cfg, roads=roads)
        self.events: list[AlertEvent] = []
        self.rejections = 0

    def send(self, raw: bytes, topic: str, now: datetime) -> None:
        handled = self.driver.handle(topic, raw, received_at=now)
        if handled.rejection is not None:
            self.rejections += 1
            return
        self.events.extend(handled.events)

    def tick(self, now: datetime) -> None:
        """The clock moved to ``now``: the driver's clock move, as the worker's tick has it
        (statuses due restated, live units ticked)."""
        self.events.extend(self.driver.pass_time(now))


def form_emitter(form: Form, units: list[str], feeds: dict[str, EngineFeed]) -> Emitter:
    """The units' messages in ``form``; for Traccar, an agency file of the simulated units (a
    modem each, the lightbar on input 2), given to every feed's driver too."""
    agencies = None
    if form == "traccar":
        agencies = parse_agencies({"agency": [{
            "id": "sim-fd", "lightbar": {"attribute": "in2", "equals": True},
            "unit": [{"vehicle_id": v, "unit_type": "engine", "device": f"sim-{v}"}
                     for v in units],
        }]})
        for feed in feeds.values():
            feed.driver.agencies = agencies
    return Emitter(form, agencies)


def load_roads(built: BuiltNetwork, roads: str | None) -> Any | None:
    """The engine's road network: the scenario's own GeoJSON ("auto"), a file, or none."""
    if roads is None or roads == "none":
        return None
    from broker.geo.projection import frame_for
    from broker.geo.roads import RoadNetwork

    path = built.roads_geojson if roads == "auto" else Path(roads)
    return RoadNetwork.load(path, frame=frame_for(*built.geo.centre_lonlat))


# --------------------------------------------------------------------------- the run


def simulate(opts: RunOptions, progress: Progress | None = None) -> RunResult:
    """Run one scenario end to end and score it (deterministic for ``opts.seed``)."""
    import libsumo as ls

    scenario = load_scenario(opts.scenario)
    built = build_network(scenario, opts.cache_dir)
    end_trips = opts.max_s
    trips = background_trips(built, opts.traffic, opts.seed, end_trips, opts.demand)
    add = built.dir / "ev.add.xml"
    with cache_lock(built.dir):
        write_if_changed(add, EV_TYPE)
    roads = load_roads(built, opts.roads)
    feeds: dict[str, EngineFeed] = {}
    if roads is not None:
        feeds["zones+roads"] = EngineFeed(opts.cfg, roads)
    feeds["zones"] = EngineFeed(opts.cfg, None)
    for lookahead_s, approach_s in opts.sweep:  # trade-off variants, scored on the same traffic
        cfg = msgspec.structs.replace(opts.cfg, lookahead_s=lookahead_s, approach_s=approach_s)
        feeds[f"la{lookahead_s:g}-ap{approach_s:g}"] = EngineFeed(cfg, roads)
    for name, cfg in opts.variants:
        feeds[name] = EngineFeed(cfg, roads)
    for name, cfg in opts.variants_without_roads:
        feeds[name] = EngineFeed(cfg, None)
    rng = np.random.default_rng(opts.seed)

    ls.start([
        "sumo", "-n", str(built.net), "-r", str(trips), "-a", str(add),
        "--seed", str(opts.seed), "--step-length", "1", "--no-step-log", "true",
        "--no-warnings", "true", "--time-to-teleport", "60", "--ignore-junction-blocker", "10",
        "--ignore-route-errors", "true", "--max-depart-delay", "60",
        "--device.bluelight.reactiondist", "60", "--collision.action", "warn",
    ])  # fmt: skip
    try:
        busy: dict[str, int] = {}
        t = 0.0
        while t < opts.warmup_s:
            ls.simulation.step()
            t = ls.simulation.getTime()
            if int(t) % 10 == 0:
                for vid in ls.vehicle.getIDList():
                    e = ls.vehicle.getRoadID(vid)
                    busy[e] = busy.get(e, 0) + 1
            if progress:
                progress(t, opts.max_s)
        plans = plan_units(ls, built, busy, opts, start_s=t + 1.0 + opts.route_lead_s)
        for p in plans:
            ls.route.add(f"r-{p.vehicle_id}", p.edges)
            ls.vehicle.add(p.vehicle_id, f"r-{p.vehicle_id}", typeID="ev", depart=str(p.depart_s),
                           departLane="best", departSpeed="max")  # fmt: skip
            ls.vehicle.setStop(
                p.vehicle_id, p.edges[-1], pos=p.scene_pos_m, laneIndex=p.scene_lane,
                duration=scenario.units.on_scene_s + 60.0, flags=ls.constants.STOP_PARKING,
            )  # fmt: skip
        first = int(plans[0].depart_s - opts.route_lead_s)  # traffic is scored from the route
        steps = int(opts.max_s) + 1
        ux = {p.vehicle_id: np.full(steps, np.nan) for p in plans}
        uy = {p.vehicle_id: np.full(steps, np.nan) for p in plans}
        fx = {p.vehicle_id: np.full(steps, np.nan) for p in plans}
        fy = {p.vehicle_id: np.full(steps, np.nan) for p in plans}
        mode = {p.vehicle_id: np.zeros(steps, dtype=np.int8) for p in plans}
        phase = {p.vehicle_id: "waiting" for p in plans}
        since = {p.vehicle_id: 0.0 for p in plans}
        first_fix = {p.vehicle_id: 0.0 for p in plans}
        abandoned: list[str] = []
        rec = scenario.units
        civ_ids: dict[str, int] = {}
        road_index = RoadIndex(ls)  # SUMO's roads as ints (the scorer's crossing rule)
        uroad = {p.vehicle_id: np.full(steps, -1, dtype=np.int32) for p in plans}
        chunks: list[tuple[np.ndarray, ...]] = []
        ev_ids = {p.vehicle_id for p in plans}
        emitter = form_emitter(opts.form, sorted(ev_ids), feeds)
        done_at: float | None = None
        routed: set[str] = set()  # units whose CAD route was sent
        routed_at: dict[str, int] = {}  # ...and the step it was sent at
        gap_from, gap_s = opts.dropout_s
        while t < opts.max_s:
            ls.simulation.step()
            t = ls.simulation.getTime()
            k = round(t)
            now = T0 + timedelta(seconds=t)
            ids = ls.vehicle.getIDList()  # SUMO's order: the same in every process
            present = set(ids)
            arrived = set(ls.simulation.getArrivedIDList())
            for p in plans:
                vid = p.vehicle_id
                # with its first fix (SUMO may insert it late), or route_lead_s before its depart
                lead = opts.route_lead_s
                if vid not in routed and (vid in present or (lead > 0 and t >= p.depart_s - lead)):
                    routed.add(vid)
                    routed_at[vid] = k
                    _send_route(feeds, p, now)
                if phase[vid] == "waiting" and vid in present:
                    phase[vid], since[vid] = "responding", t
                    first_fix[vid] = t
                if phase[vid] not in ("responding", "on_scene"):
                    continue
                if vid in arrived:  # left the network: it goes silent (the engine times out)
                    phase[vid] = "gone"
                    continue
                if vid not in present:  # teleporting out of a jam: no fix this second
                    continue
                x, y = ls.vehicle.getPosition(vid)
                stopped = ls.vehicle.isStoppedParking(vid) or ls.vehicle.isStopped(vid)
                if phase[vid] == "responding" and (
                    stopped and ls.vehicle.getRoadID(vid) == p.edges[-1]
                ):
                    phase[vid], since[vid] = "on_scene", t
                elif phase[vid] == "responding" and t - since[vid] > rec.max_response_s:
                    phase[vid] = "abandoned"  # stuck in a jam: stand it down
                    abandoned.append(vid)
                elif phase[vid] == "on_scene" and t - since[vid] >= rec.on_scene_s:
                    phase[vid] = "returning"
                status: Status = "returning"
                if phase[vid] in ("responding", "on_scene"):
                    status = "on_scene" if phase[vid] == "on_scene" else "responding"
                nx, ny = x + rng.normal(0, opts.gps_sigma_m), y + rng.normal(0, opts.gps_sigma_m)
                lon, lat = built.geo.to_lonlat(np.array([nx]), np.array([ny]))
                speed = max(0.0, min(ls.vehicle.getSpeed(vid), 149.0))
                pos = Position(
                    vehicle_id=vid, ts=now, lat=float(lat[0]), lon=float(lon[0]), status=status,
                    agency="sim-fd", speed_mps=round(speed, 2),
                    heading_deg=round(ls.vehicle.getAngle(vid) % 360.0, 1),
                    lights_sirens=status != "returning", incident_id=p.incident_id,
                    unit_type="engine", accuracy_m=max(5.0, 2 * opts.gps_sigma_m),
                )  # fmt: skip
                unseen = (
                    gap_s > 0 and status == "responding"
                    and 0.0 <= t - first_fix[vid] - gap_from < gap_s
                )
                if unseen:  # in the tunnel: the unit drives on, the broker hears nothing
                    nx, ny = fx[vid][k - 1], fy[vid][k - 1]  # the circle keeps its last fix
                else:
                    for topic, raw in emitter.messages(pos):
                        for feed in feeds.values():
                            feed.send(raw, topic, now)
                if status == "returning":
                    phase[vid] = "done"
                    ls.vehicle.remove(vid)
                    continue
                ux[vid][k], uy[vid][k], fx[vid][k], fy[vid][k] = x, y, nx, ny
                uroad[vid][k] = road_index.of(ls.vehicle.getRoadID(vid))
                mode[vid][k] = (
                    scorer.MODE_ON_SCENE if status == "on_scene" else scorer.MODE_RESPONDING
                )
            for feed in feeds.values():
                feed.tick(now)
            if k >= first:
                # in SUMO's order, not the set's (string hashing differs between processes):
                # civilian indices and rows the same in every run of a seed
                civs = [v for v in ids if v not in ev_ids]
                if civs:
                    xy = np.array([ls.vehicle.getPosition(v) for v in civs], dtype=np.float32)
                    ang = np.array([ls.vehicle.getAngle(v) for v in civs], dtype=np.float32)
                    idx = np.array([civ_ids.setdefault(v, len(civ_ids)) for v in civs], np.int32)
                    road = np.array(
                        [road_index.of(ls.vehicle.getRoadID(v)) for v in civs], np.int32
                    )
                    chunks.append(
                        (np.full(len(civs), k, np.int32), idx, xy[:, 0], xy[:, 1], ang, road)
                    )
            if progress:
                progress(t, opts.max_s)
            if all(ph in ("done", "gone", "abandoned") for ph in phase.values()):
                done_at = done_at if done_at is not None else t
                if t >= done_at + 5:
                    break
        sim_end = t
    finally:
        ls.close()
    if progress:
        progress(opts.max_s, opts.max_s)

    cols = [np.concatenate(c) for c in zip(*chunks, strict=True)] if chunks else [np.zeros(0)] * 6
    traffic = scorer.Traffic(
        step=cols[0].astype(np.int64), civ=cols[1].astype(np.int64),
        x=cols[2].astype(float), y=cols[3].astype(float), heading_deg=cols[4].astype(float),
        road=cols[5].astype(np.int32), junctions=road_index.junctions(),
    )  # fmt: skip
    units = [
        scorer.UnitTrack(p.vehicle_id, ux[p.vehicle_id], uy[p.vehicle_id], fx[p.vehicle_id],
                         fy[p.vehicle_id], mode[p.vehicle_id], road=uroad[p.vehicle_id],
                         routed_step=routed_at.get(p.vehicle_id))
        for p in plans
    ]  # fmt: skip
    encounters = scorer.find_encounters(traffic, units)
    spans = {name: zone_spans(feed.events, built.geo) for name, feed in feeds.items()}
    warnings = [
        scorer.Warner(name, spans=spans[name], alert_messages=len(feed.events))
        for name, feed in feeds.items()
    ]
    # the same alerts read by a heading-aware navigation app (their warning segments), for the
    # engines with a road network (without one a corridor's segments name no lanes)
    warnings += [
        scorer.Warner(
            f"{name}{scorer.HEADING}", spans=spans[name], alert_messages=len(feed.events),
            heading_aware=scorer.Receiver(),
        )
        for name, feed in feeds.items()
        if feed.roads is not None
    ]
    warnings.append(scorer.limit_warning(units, area_m2=built.geo.area_m2))
    warnings.append(scorer.circle_warning(opts.circle_radius_m))
    figures = {w.name: scorer.score(traffic, units, w, encounters) for w in warnings}
    return RunResult(
        options=opts, built=built, traffic=traffic, units=units, plans=plans,
        events={n: f.events for n, f in feeds.items()}, spans=spans, encounters=encounters,
        figures=figures, rejections=sum(f.rejections for f in feeds.values()),
        sim_end_s=sim_end, civilians=len(civ_ids),
        meta={"abandoned": abandoned, "scene_edge": plans[0].edges[-1]},
    )  # fmt: skip


def _send_route(feeds: dict[str, EngineFeed], p: UnitPlan, now: datetime) -> None:
    """The CAD route of a unit, at dispatch (GeoJSON LineString, lon/lat order)."""
    dest_lon, dest_lat = p.route_ll[-1]
    route = Route(
        vehicle_id=p.vehicle_id,
        incident_id=p.incident_id,
        ts=now,
        destination=LatLon(lat=dest_lat, lon=dest_lon),
        route=LineStringGeometry(coordinates=[(round(a, 7), round(b, 7)) for a, b in p.route_ll]),
    )
    raw = codec.encode(route)
    for feed in feeds.values():
        feed.send(raw, ROUTES, now)


def zone_spans(events: list[AlertEvent], geo: NetGeo) -> list[scorer.ZoneSpan]:
    """AlertEvents -> live intervals of each zone version, in net metres.

    A zone is live from its create/update until the next event of the same alert (an update
    replaces it, a cancel ends it) or its ``expires_at``, whichever comes first.
    """
    by_alert: dict[str, list[AlertEvent]] = {}
    for ev in events:
        by_alert.setdefault(ev.alert_id, []).append(ev)
    spans: list[scorer.ZoneSpan] = []
    for evs in by_alert.values():
        evs.sort(key=lambda e: (e.ts, e.version))
        for i, ev in enumerate(evs):
            if ev.action == "cancel":
                continue
            start = _step_of(ev.ts)
            end = math.ceil((ev.expires_at - T0).total_seconds())
            if i + 1 < len(evs):
                end = min(end, _step_of(evs[i + 1].ts))
            geom = shapely.geometry.shape(ev.zone)
            segments = [
                scorer.Segment(
                    line=shapely.transform(shapely.LineString(seg.line), geo.coords_to_xy),
                    both=seg.directions == "both",
                    until=None if seg.eta_s is None else start + math.floor(seg.eta_s),
                )
                for seg in ev.segments
            ]
            ux, uy = geo.to_xy(np.array([ev.lon]), np.array([ev.lat]))
            spans.append(
                scorer.ZoneSpan(
                    ev.vehicle_id,
                    start,
                    end,
                    shapely.transform(geom, geo.coords_to_xy),
                    segments=segments,
                    path=shapely.transform(shapely.LineString(ev.path), geo.coords_to_xy)
                    if len(ev.path) >= 2
                    else None,
                    unit_xy=(float(ux[0]), float(uy[0])),
                )
            )
    return spans


def _step_of(ts: datetime) -> int:
    return round((ts - T0).total_seconds())
