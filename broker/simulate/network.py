"""Scenario recipes -> SUMO networks in a cache directory, and their lon/lat geo-reference.

A recipe (``broker/simulate/scenarios/<name>.toml``) is a few lines that say where a street
network comes from; nothing generated is committed. ``build_network`` turns it into
``<cache>/<name>-<hash>/net.net.xml`` with SUMO's own tools (netconvert / netgenerate), plus
``roads.geojson`` (the same streets as GeoJSON centrelines, lon/lat, for the engine's
``roads=``). The hash covers the recipe's network section, so editing a recipe rebuilds it;
the tools are run with fixed options and seeds, so a build is deterministic.

Sources (``[network] source``):

- ``osm``: an ``.osm.pbf`` / ``.osm`` file -> OSM XML (pyosmium) -> ``netconvert``;
- ``net``: an existing SUMO ``.net.xml`` -> ``netconvert`` (optionally cropped to ``bbox``);
- ``plain``: SUMO plain XML files (``<prefix>.nod/edg/con/tll.xml``) -> ``netconvert``;
- ``netgenerate``: a synthetic network, placed at ``origin`` (lon, lat) on the globe;
- ``synthetic``: a hand-laid ``layout`` of ``broker.simulate.synthetic`` (divided arterial,
  motorway interchange, old town) written as plain XML -> ``netconvert``, placed at ``origin``.

A recipe with ``held_out = true`` is a check of generalisation: ``sweep matrix`` reports it
apart and keeps it out of every tuning summary (``sweep tradeoff`` and ``diagnose`` leave it
out unless named).

File names may be ``<package>:<path inside the package>``, e.g. ``sumo:tools/game/...``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from filelock import FileLock
from msgspec import Meta
from pyproj import CRS, Transformer

from broker.validation import Invalid, described, read_toml

SCENARIO_DIR = Path(__file__).parent / "scenarios"
OSM_NETCONVERT_OPTS = [
    "--geometry.remove",
    "--ramps.guess",
    "--junctions.join",
    "--tls.guess-signals",
    "--tls.discard-simple",
    "--tls.join",
    "--roundabouts.guess",
    "--keep-edges.by-vclass",
    "passenger",
    "--remove-edges.isolated",
    "--output.street-names",
]


class ScenarioError(Exception):
    """A recipe that cannot be read or built (the message names the file)."""


Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Share = Annotated[float, Meta(gt=0, le=1)]


class TrafficRecipe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Background traffic.

    ``demand = "random"``: randomTrips, one departure every ``period_s`` seconds.
    ``demand = "counts"``: routeSampler picks routes among randomTrips' candidates to match
    plausible counts per edge: ``lane_vph`` vehicles per hour and lane on an arterial, scaled
    down by road class (``broker.simulate.demand.road_class_weight``), so the traffic
    concentrates on arterials and turns where their routes do (``broker.simulate.demand``).
    ``demand = "recorded"``: the network's own calibrated trips (``trips``, a SUMO trip file,
    e.g. the hour of a city's model that comes with the network), from ``trips_begin_s`` on;
    heavy keeps ``heavy_share`` of them, light ``light_share`` (a seeded sample).
    """

    light_period_s: Positive = 1.5
    heavy_period_s: Positive = 0.5
    fringe_factor: Positive = 5.0
    min_distance_m: NonNegative = 300.0
    speed_exponent: float = 0.0
    demand: Literal["random", "counts", "recorded"] = "random"
    light_lane_vph: Positive = 250.0
    heavy_lane_vph: Positive = 550.0
    candidate_routes: Annotated[int, Meta(ge=1)] = 3000  # random routes routeSampler picks from
    trips: str = ""  # recorded: a SUMO trip file (``pkg:path`` or a path)
    trips_begin_s: NonNegative = 0.0  # ...whose first departure is this time of day (s)
    light_share: Share = 0.5  # ...the share of its trips kept at each level (seeded)
    heavy_share: Share = 1.0

    def share(self, level: str) -> float:
        self.period_s(level)  # checks the level
        return self.light_share if level == "light" else self.heavy_share

    def period_s(self, level: str) -> float:
        if level not in ("light", "heavy"):
            raise ScenarioError(f"traffic level must be light or heavy, got {level!r}")
        return self.light_period_s if level == "light" else self.heavy_period_s

    def lane_vph(self, level: str) -> float:
        self.period_s(level)  # checks the level
        return self.light_lane_vph if level == "light" else self.heavy_lane_vph


class UnitsRecipe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How emergency units are dispatched: route length bounds and time on scene."""

    min_route_m: NonNegative = 800.0
    max_route_m: Positive = 2000.0
    on_scene_s: NonNegative = 150.0
    stagger_s: NonNegative = 15.0  # several units leave this far apart
    max_response_s: Positive = 480.0  # a unit still not on scene by then is stood down
    scene_min_speed_mps: NonNegative = 8.0  # the scene is on a road at least this fast
    scene_min_length_m: NonNegative = 90.0  # ...and at least this long
    start_in_traffic: bool = False  # units leave from the busiest roads of the warm-up

    def __post_init__(self) -> None:
        if self.min_route_m > self.max_route_m:
            raise Invalid("min_route_m", f"min_route_m {self.min_route_m} is over max_route_m "
                          f"{self.max_route_m}")


class NetworkRecipe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The keys a ``[network]`` section may hold (checked only: the section is kept as the
    dict it is, which :attr:`Scenario.network_hash` hashes)."""

    source: Literal["osm", "net", "plain", "netgenerate", "synthetic"]
    file: str | None = None  # osm, net
    dir: str | None = None  # plain: the directory and file prefix
    prefix: str | None = None
    layout: str | None = None  # synthetic: the layout, its seed
    layout_seed: int | None = None
    origin: tuple[float, float] | None = None  # lon, lat of (0, 0): netgenerate, synthetic
    bbox: tuple[float, float, float, float] | None = None  # lon_min, lat_min, lon_max, lat_max
    args: list[str] | None = None  # netgenerate's arguments
    netconvert: list[str] | None = None  # more netconvert options


class Recipe(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A scenario recipe file as written (broker/simulate/scenarios/*.toml)."""

    title: str | None = None
    kind: str = "city"
    held_out: bool = False
    network: NetworkRecipe
    traffic: TrafficRecipe = field(default_factory=TrafficRecipe)
    units: UnitsRecipe = field(default_factory=UnitsRecipe)


@dataclass(frozen=True)
class Scenario:
    """One recipe, read from TOML (or made up for a bare net / OSM file)."""

    name: str
    title: str
    kind: str
    network: dict[str, Any]
    traffic: TrafficRecipe = field(default_factory=TrafficRecipe)
    units: UnitsRecipe = field(default_factory=UnitsRecipe)
    path: Path | None = field(default=None, compare=False)
    held_out: bool = False  # never tuned on: reported apart, outside tuning summaries

    @property
    def network_hash(self) -> str:
        spec = dict(self.network)
        if spec.get("source") == "synthetic":
            from broker.simulate.synthetic import VERSION

            spec["layout_version"] = VERSION
        blob = json.dumps(spec, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


def scenario_names(held_out: bool | None = None) -> list[str]:
    """Names of the shipped recipes: all, or only those held out (True) / tuned on (False)."""
    names = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
    if held_out is None:
        return names
    return [n for n in names if load_scenario(n).held_out == held_out]


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped recipe by name, a recipe file, or a bare ``.net.xml`` / ``.osm(.pbf)`` file."""
    path = Path(name_or_path)
    if not path.suffix and (SCENARIO_DIR / f"{name_or_path}.toml").is_file():
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if path.name.endswith(".toml"):
        doc = read_toml(path, ScenarioError)
        try:
            recipe = msgspec.convert(doc, Recipe)
        except msgspec.ValidationError as err:
            raise ScenarioError(
                f"{path}: bad scenario recipe: {described(err, doc, Recipe)}") from err
        return Scenario(
            name=path.stem, title=recipe.title or path.stem, kind=recipe.kind,
            network=dict(doc["network"]), traffic=recipe.traffic, units=recipe.units,
            path=path, held_out=recipe.held_out,
        )  # fmt: skip
    if not path.is_file():
        known = ", ".join(scenario_names())
        raise ScenarioError(f"{name_or_path}: no such scenario ({known}) or network file")
    stem = path.name.split(".")[0]
    if path.name.endswith((".net.xml", ".net.xml.gz")):
        return Scenario(stem, path.name, "file", {"source": "net", "file": str(path.resolve())})
    if path.name.endswith((".osm", ".osm.xml", ".osm.pbf", ".pbf")):
        return Scenario(stem, path.name, "file", {"source": "osm", "file": str(path.resolve())})
    raise ScenarioError(f"{path}: expected a scenario .toml, a SUMO .net.xml or an OSM file")


def resolve(ref: str) -> Path:
    """``pkg:path/in/package`` or a plain path -> a file path. The package is found, not
    imported (``sumo_rl`` ships networks but importing it starts its RL stack)."""
    if ":" in ref and not Path(ref).exists():
        pkg, _, rel = ref.partition(":")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ScenarioError(f"{ref}: package {pkg} is not installed (make install)")
        return Path(spec.submodule_search_locations[0]) / rel
    return Path(ref)


def sumo_home() -> Path:
    """SUMO_HOME of the eclipse-sumo wheel."""
    import sumo  # the eclipse-sumo wheel

    return Path(sumo.SUMO_HOME)


def sumo_tool(name: str) -> Path:
    return sumo_home() / "bin" / name


def run_tool(args: list[str], cwd: Path) -> None:
    """Run a SUMO binary or tool; raise with its stderr tail on failure."""
    env = {**os.environ, "SUMO_HOME": str(sumo_home())}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise ScenarioError(f"{Path(args[0]).name} failed in {cwd}:\n{tail}")


@dataclass(frozen=True)
class BuiltNetwork:
    """A built scenario network: the SUMO net, its GeoJSON roads and its geo-reference."""

    scenario: Scenario
    dir: Path
    net: Path
    roads_geojson: Path
    geo: NetGeo


def cache_lock(directory: Path) -> FileLock:
    """The lock of one scenario's cache directory: whoever builds a file there (net, roads,
    demand) holds it from the check that the file is missing until it is in place, so two
    runs at once (two sweeps, a sweep beside a test) never build the same file together or
    read one half written."""
    directory.mkdir(parents=True, exist_ok=True)
    return FileLock(directory / ".build.lock")


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it holds it already, atomically (a reader sees the old
    file or the new one, never a truncated one). Call with the directory's lock held."""
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_name(f"tmp-{path.name}")
    tmp.write_text(text)
    tmp.replace(path)


def build_network(scenario: Scenario, cache_dir: Path) -> BuiltNetwork:
    """Build (or reuse from the cache) the SUMO network of a scenario."""
    out = cache_dir.resolve() / f"{scenario.name}-{scenario.network_hash}"
    net = out / "net.net.xml"
    roads = out / "roads.geojson"
    with cache_lock(out):
        if not net.is_file():
            tmp = out / "net.tmp.net.xml"
            _convert(scenario, out, tmp)
            tmp.replace(net)
        geo = NetGeo.from_net(net, scenario.network.get("origin"))
        if not roads.is_file():
            tmp_roads = out / "roads.tmp.geojson"
            tmp_roads.write_text(json.dumps(roads_geojson(net, geo)))
            tmp_roads.replace(roads)
    return BuiltNetwork(scenario, out, net, roads, geo)


def _convert(scenario: Scenario, out: Path, target: Path) -> None:
    spec = scenario.network
    source = spec.get("source")
    netconvert = str(sumo_tool("netconvert"))
    common = ["--seed", "1", "--no-warnings", "--output-file", str(target)]
    crop = []
    if "bbox" in spec:
        crop = ["--keep-edges.in-geo-boundary", ",".join(str(v) for v in spec["bbox"])]
    extra = [str(a) for a in spec.get("netconvert", [])]
    if source == "osm":
        src = resolve(spec["file"])
        if not src.is_file():
            raise ScenarioError(f"{src}: OSM file not found")
        osm_xml = out / "source.osm.xml"
        _osm_to_xml(src, osm_xml)
        args = [netconvert, "--osm-files", str(osm_xml), *OSM_NETCONVERT_OPTS, *crop, *extra]
        run_tool([*args, *common], out)
        osm_xml.unlink()
    elif source == "net":
        src = resolve(spec["file"])
        if not src.is_file():
            raise ScenarioError(f"{src}: SUMO network not found")
        args = [netconvert, "--sumo-net-file", str(src), *crop, *extra]
        if crop:
            args += ["--remove-edges.isolated"]
        run_tool([*args, *common], out)
    elif source == "plain":
        d, prefix = resolve(spec["dir"]), spec["prefix"]
        args = [netconvert, "--ignore-errors.edge-type"]
        for opt, ext in (
            ("node", "nod"),
            ("edge", "edg"),
            ("connection", "con"),
            ("tllogic", "tll"),
        ):
            f = d / f"{prefix}.{ext}.xml"
            if f.is_file():
                args += [f"--{opt}-files", str(f)]
        run_tool([*args, *crop, *extra, *common], out)
    elif source == "synthetic":
        from broker.simulate.synthetic import write_layout

        try:
            nod, edg = write_layout(spec["layout"], out, int(spec.get("layout_seed", 1)))
        except (KeyError, ValueError) as exc:
            raise ScenarioError(f"{scenario.path}: bad synthetic layout ({exc})") from exc
        args = [netconvert, "--node-files", str(nod), "--edge-files", str(edg)]
        run_tool([*args, *extra, *common], out)
    elif source == "netgenerate":
        args = [str(sumo_tool("netgenerate")), *[str(a) for a in spec.get("args", [])]]
        run_tool([*args, "--seed", "1", "--no-warnings", "--output-file", str(target)], out)
    else:
        raise ScenarioError(f"{scenario.path}: unknown network source {source!r}")


def _osm_to_xml(src: Path, dst: Path) -> None:
    """Any OSM file pyosmium reads (pbf included) -> OSM XML, which netconvert wants."""
    if src.name.endswith((".osm", ".osm.xml")):
        dst.write_bytes(src.read_bytes())
        return
    import osmium

    if dst.exists():
        dst.unlink()
    with osmium.SimpleWriter(str(dst)) as writer:
        for obj in osmium.FileProcessor(str(src)):
            writer.add(obj)


# --------------------------------------------------------------------------- geo-reference


@dataclass(frozen=True, eq=False)
class NetGeo:
    """SUMO net x/y (metres) <-> lon/lat, vectorised.

    A net imported from OSM carries ``projParameter`` (e.g. UTM) and ``netOffset``
    (net = projected + offset). A synthetic net has none: it is placed with an azimuthal
    equidistant projection centred on the recipe's ``origin`` (lon, lat) at net (0, 0).
    """

    _to_ll: Transformer
    _to_proj: Transformer
    offset_x: float
    offset_y: float
    bounds: tuple[float, float, float, float]  # net x/y: xmin, ymin, xmax, ymax

    @classmethod
    def from_net(cls, net: Path, origin: list[float] | None = None) -> NetGeo:
        attrs = _location(net)
        proj = attrs.get("projParameter", "!")
        off_x, off_y = (float(v) for v in attrs.get("netOffset", "0,0").split(","))
        bounds = tuple(float(v) for v in attrs.get("convBoundary", "0,0,0,0").split(","))
        if proj == "!":
            if origin is None:
                raise ScenarioError(f"{net}: the network has no geo-reference; give an origin")
            lon0, lat0 = float(origin[0]), float(origin[1])
            crs = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +ellps=WGS84 +units=m")
        else:
            crs = CRS.from_proj4(proj)
        to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        to_proj = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        return cls(to_ll, to_proj, off_x, off_y, bounds)  # type: ignore[arg-type]

    def to_lonlat(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Net metres -> (lon, lat) degrees."""
        lon, lat = self._to_ll.transform(
            np.asarray(x, float) - self.offset_x, np.asarray(y, float) - self.offset_y
        )
        return np.asarray(lon), np.asarray(lat)

    def to_xy(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) degrees -> net metres."""
        px, py = self._to_proj.transform(np.asarray(lon, float), np.asarray(lat, float))
        return np.asarray(px) + self.offset_x, np.asarray(py) + self.offset_y

    def coords_to_xy(self, lonlat: np.ndarray) -> np.ndarray:
        """(n, 2) [lon, lat] -> (n, 2) net [x, y]; fits ``shapely.transform``."""
        arr = np.asarray(lonlat, float)
        x, y = self.to_xy(arr[:, 0], arr[:, 1])
        return np.column_stack([x, y])

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bounds
        lon, lat = self.to_lonlat(np.array([(x0 + x1) / 2]), np.array([(y0 + y1) / 2]))
        return float(lon[0]), float(lat[0])

    @property
    def area_m2(self) -> float:
        x0, y0, x1, y1 = self.bounds
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


def _location(net: Path) -> dict[str, str]:
    """Attributes of the net's ``<location>`` element (read from the head of the file)."""
    import re

    with open(net, encoding="utf-8") as fh:
        head = fh.read(20_000)
    m = re.search(r"<location\s+([^>]*)/>", head)
    if not m:
        raise ScenarioError(f"{net}: no <location> element")
    return dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))


def roads_geojson(net: Path, geo: NetGeo) -> dict[str, Any]:
    """The net's drivable edges as GeoJSON centrelines (lon/lat), for ``RoadNetwork.load``.

    A SUMO edge is one direction of a street. A pair of opposite edges between the same two
    junctions becomes one two-way line; a lone edge a one-way line. Lines start and end on
    the junction coordinates so that they join at shared vertices.
    """
    import sumolib

    sumo_net = sumolib.net.readNet(str(net), withInternal=False)
    features: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for edge in sumo_net.getEdges():
        if edge.getFunction() == "internal" or not edge.allows("passenger"):
            continue
        a, b = edge.getFromNode(), edge.getToNode()
        if a.getID() == b.getID():
            continue
        key = (a.getID(), b.getID())
        if key in seen:
            continue
        reverse = [e for e in a.getIncoming() if e.getFromNode() is b and e.allows("passenger")]
        two_way = bool(reverse)
        seen.add(key)
        if two_way:
            seen.add((b.getID(), a.getID()))
        shape = edge.getShape()
        xy = np.array([a.getCoord()[:2], *[p[:2] for p in shape[1:-1]], b.getCoord()[:2]])
        lon, lat = geo.to_lonlat(xy[:, 0], xy[:, 1])
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "name": edge.getName(),  # no street name: "" (an id is none; sumo_edge)
                    "oneway": not two_way,
                    "maxspeed_mps": round(float(edge.getSpeed()), 2),
                    "sumo_edge": edge.getID(),
                },
                "geometry": {
                    "type": "LineString",
                    "coordinates": [
                        [round(float(o), 7), round(float(t), 7)]
                        for o, t in zip(lon, lat, strict=True)
                    ],
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def python() -> str:
    """The interpreter that runs SUMO's Python tools (ours, so sumolib is importable)."""
    return sys.executable
