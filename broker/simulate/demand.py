"""Background traffic of a run: uniform random trips, routes sampled to plausible counts, or
the trips of a calibrated model recorded with the network.

``random`` (the matrix's original demand): SUMO's ``randomTrips.py``, one departure every
``period_s`` seconds between random edges (weighted to the fringe), each on its fastest route.
Side streets carry about as much as arterials per lane.

``counts`` (issue 15): real traffic concentrates on arterials and mostly turns *off* side
streets onto them. Every drivable edge gets a count, ``lane_vph`` vehicles per hour and lane
scaled by its road class (``road_class_weight``: a motorway or trunk 1, primary 0.8 ... a
residential street 0.08), and SUMO's ``routeSampler.py`` picks routes among a pool of random
candidates (routed by ``duarouter``) until the counts are met.

``recorded``: the trips of a calibrated model that come with a real network (e.g. the RESCO
benchmark's hours of TAPAS Cologne and InTAS Ingolstadt, shipped in the ``sumo-rl`` package):
real origins and destinations at a real hour, shifted to start at 0 s, all of them in heavy
traffic and a seeded share in light, routed by SUMO at departure.

All are cached per (recipe, level, seed, duration) and deterministic for a seed:
randomTrips, duarouter, routeSampler and the recorded trips' sample are all run with it.
"""

from __future__ import annotations

import hashlib
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from broker.simulate.network import (
    ScenarioError,
    cache_lock,
    python,
    resolve,
    run_tool,
    sumo_home,
    write_if_changed,
)

if TYPE_CHECKING:
    from broker.simulate.network import BuiltNetwork

DEMANDS = ("random", "counts", "recorded")

# vehicles per lane, relative to a motorway's, by OSM highway class
CLASS_WEIGHT = {
    "motorway": 1.0, "trunk": 1.0, "primary": 0.8, "secondary": 0.6, "tertiary": 0.4,
    "motorway_link": 0.5, "trunk_link": 0.5, "primary_link": 0.4, "secondary_link": 0.3,
    "tertiary_link": 0.2, "unclassified": 0.15, "residential": 0.08, "living_street": 0.04,
    "service": 0.03,
}  # fmt: skip


def road_class_weight(edge_type: str, speed_mps: float, lanes: int) -> float:
    """An edge's share of an arterial lane's flow: by its OSM class where the net has one
    (``highway.primary``), else by its speed and lanes (synthetic and plain-XML networks)."""
    for part in edge_type.split("|"):
        if part.startswith("highway."):
            cls = part.removeprefix("highway.")
            if cls in CLASS_WEIGHT:
                return CLASS_WEIGHT[cls]
    if speed_mps >= 25.0:
        return 1.0
    if speed_mps >= 16.0:
        return 0.8
    if speed_mps >= 12.5:
        return 0.6 if lanes >= 2 else 0.4
    if speed_mps >= 10.0:
        return 0.15
    return 0.08


def background_trips(
    built: BuiltNetwork, level: str, seed: int, end_s: float, demand: str | None = None
) -> Path:
    """The run's civilian demand (a SUMO route or trip file), built once and cached."""
    t = built.scenario.traffic
    demand = demand or t.demand
    if demand not in DEMANDS:
        raise ScenarioError(f"demand must be one of {', '.join(DEMANDS)}, got {demand!r}")
    key = hashlib.sha256(repr((t, level, seed, int(end_s))).encode()).hexdigest()[:10]
    with cache_lock(built.dir):
        if demand == "random":
            out = built.dir / f"trips-{level}-s{seed}-{key}.rou.xml"
            if not out.is_file():
                _random_trips(built, out, period_s=t.period_s(level), seed=seed, end_s=end_s)
            return out
        if demand == "recorded":
            out = built.dir / f"recorded-{level}-s{seed}-{key}.rou.xml"
            if not out.is_file():
                write_if_changed(out, recorded_trips(built, t.share(level), seed, end_s))
            return out
        out = built.dir / f"counts-{level}-s{seed}-{key}.rou.xml"
        if not out.is_file():
            _counted_routes(built, out, lane_vph=t.lane_vph(level), seed=seed, end_s=end_s)
        return out


def recorded_trips(built: BuiltNetwork, share: float, seed: int, end_s: float) -> str:
    """The recipe's trip file as a run's demand: its vehicle types, and ``share`` of its trips
    that depart within ``end_s`` of ``trips_begin_s`` (a sample seeded by ``seed``; all at
    1.0), shifted to depart from 0 s, ids prefixed ``civ`` (never a unit's), in order."""
    t = built.scenario.traffic
    if not t.trips:
        raise ScenarioError(f"{built.scenario.name}: demand 'recorded' needs [traffic] trips")
    path = resolve(t.trips)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ScenarioError(f"{path}: not a readable SUMO trip file ({exc})") from exc
    rng = random.Random(seed)
    out = ET.Element("routes")
    out.extend(el for el in root if el.tag == "vType")
    trips = sorted(
        ((float(el.get("depart", "0")) - t.trips_begin_s, i, el)
         for i, el in enumerate(root) if el.tag == "trip"),
        key=lambda row: (row[0], row[1]),
    )  # fmt: skip
    for depart, _, el in trips:
        keep = rng.random() < share  # drawn for every trip: the sample does not shift with end_s
        if not keep or not 0.0 <= depart < end_s:
            continue
        trip = ET.SubElement(out, "trip", dict(el.attrib))
        trip.set("id", f"civ{el.get('id')}")
        trip.set("depart", f"{depart:.2f}")
        trip.set("departLane", "best")
        trip.set("departSpeed", "max")
    if not any(el.tag == "trip" for el in out):
        raise ScenarioError(f"{path}: no trips depart within {end_s:g} s of {t.trips_begin_s:g}")
    ET.indent(out)
    return ET.tostring(out, encoding="unicode") + "\n"


def _random_trips(
    built: BuiltNetwork, out: Path, *, period_s: float, seed: int, end_s: float,
    routes: Path | None = None,
) -> None:
    """randomTrips.py into ``out`` (trips; with ``routes``, also duarouter's routes there)."""
    t = built.scenario.traffic
    tmp = built.dir / f"tmp-{out.name}"
    args = [
        python(),
        str(sumo_home() / "tools" / "randomTrips.py"),
        "-n", str(built.net),
        "--seed", str(seed),
        "-b", "0",
        "-e", str(int(end_s)),
        "-p", f"{period_s:.3f}",
        "--fringe-factor", str(t.fringe_factor),
        "--min-distance", str(t.min_distance_m),
        "--vehicle-class", "passenger",
        "--vclass", "passenger",
        "--prefix", "civ",
        "--validate",
        "--trip-attributes", 'departLane="best" departSpeed="max"',
        "-o", str(tmp),
    ]  # fmt: skip
    if t.speed_exponent:
        args += ["--speed-exponent", str(t.speed_exponent)]
    if routes is not None:
        args += ["-r", str(routes)]  # duarouter's fastest routes: no randomness
    run_tool(args, built.dir)
    tmp.replace(out)
    for junk in built.dir.glob("tmp-*.rou.xml"):
        junk.unlink()


def edge_counts(built: BuiltNetwork, lane_vph: float, duration_s: float) -> dict[str, int]:
    """Plausible vehicles entering each drivable edge over ``duration_s`` (see module doc)."""
    import sumolib

    net = sumolib.net.readNet(str(built.net), withInternal=False)
    counts: dict[str, int] = {}
    for edge in net.getEdges():
        if edge.getFunction() == "internal" or not edge.allows("passenger"):
            continue
        lanes = sum(1 for lane in edge.getLanes() if lane.allows("passenger"))
        w = road_class_weight(edge.getType() or "", edge.getSpeed(), lanes)
        counts[edge.getID()] = round(w * lanes * lane_vph * duration_s / 3600.0)
    return counts


def _counted_routes(
    built: BuiltNetwork, out: Path, *, lane_vph: float, seed: int, end_s: float
) -> None:
    """routeSampler: routes among seeded random candidates that meet ``edge_counts``."""
    key = out.name.removesuffix(".rou.xml").rsplit("-", 1)[-1]  # candidates follow the recipe
    cand_trips = built.dir / f"cand-s{seed}-{key}.trips.xml"
    cand = built.dir / f"cand-s{seed}-{key}.rou.xml"
    if not cand.is_file():
        n = built.scenario.traffic.candidate_routes
        _random_trips(built, cand_trips, period_s=end_s / n, seed=seed,
                      end_s=end_s, routes=cand)  # fmt: skip
    counts = edge_counts(built, lane_vph, end_s)
    data = built.dir / f"tmp-counts-{out.stem}.xml"
    lines = ["<data>", f'  <interval id="plausible" begin="0" end="{int(end_s)}">']
    lines += [f'    <edge id="{e}" entered="{n}"/>' for e, n in sorted(counts.items()) if n > 0]
    data.write_text("\n".join([*lines, "  </interval>", "</data>", ""]))
    tmp = built.dir / f"tmp-{out.name}"
    run_tool([
        python(), str(sumo_home() / "tools" / "routeSampler.py"),
        "-r", str(cand), "-d", str(data), "-o", str(tmp),
        "--seed", str(seed), "-b", "0", "-e", str(int(end_s)), "--prefix", "civ",
        "--attributes", 'departLane="best" departSpeed="max"',
    ], built.dir)  # fmt: skip
    tmp.replace(out)
    data.unlink()
