"""SUMO ``.net.xml`` -> :class:`~broker.geo.roads.osm.RawWay` records, read with ``sumolib``.

Traffic-model users have their streets as a SUMO network; the simulate scenarios build one too.
A SUMO edge is one direction of a street between two junctions: a pair of opposite edges
becomes one two-way line, a lone edge a one-way line (as ``roads_geojson`` in
:mod:`broker.simulate.network` has always written them). Lines start and end on their
junctions' coordinates and share the junction's key, so the graph has exactly SUMO's junctions
that carry a passenger-car edge. Inner vertices get keys of their own: lines join only at
junctions, never where they cross (bridges).

The class of an edge is its ``type`` (``highway.residential``, ``highway.primary|railway.tram``),
read by the same table as every other file (:mod:`~broker.geo.roads.road_classes`); an edge
without a type, or whose type the table leaves out or does not know, is ``unclassified``: SUMO's
lane permissions already say whether a car may drive there (only a user's mapping to ``none``
drops such an edge). Its speed is the edge's own (SUMO always has one), its name the edge's
``name`` attribute (none without one: an edge id is no street name).

Coordinates: a geo-referenced net (``<location projParameter=...>``) converts with its own
projection; a net without one (``netgenerate``, plain XML) needs an ``origin`` (lon, lat) that
the (0, 0) of its input coordinates is placed on (the net's minus its ``netOffset``), with an
azimuthal equidistant projection, as ``broker simulate`` places its generated nets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from broker.geo.roads.check import ReadTally
from broker.geo.roads.osm import RawWay, way_from_tags
from broker.geo.roads.road_classes import DEFAULT_CLASS, RoadClass, RoadClasses

SUMO_SUFFIXES = (".net.xml", ".net.xml.gz")
PASSENGER = "passenger"


class SumoNetError(ValueError):
    """A SUMO network that cannot be placed or read (the caller names the file)."""


def _to_lonlat(net: object, origin: tuple[float, float] | None) -> object:
    """A function (x array, y array) -> (lon array, lat array) for this net's coordinates."""
    from pyproj import CRS, Transformer

    x_off, y_off = net.getLocationOffset()  # type: ignore[attr-defined]  # net = proj + offset
    if net.hasGeoProj():  # type: ignore[attr-defined]
        if origin is not None:  # refused, not ignored (as for GeoJSON / OSM)
            raise SumoNetError(
                "the network has its own geo-reference (projParameter in <location>): an "
                "origin (--origin; the worker: BROKER_ROADS_ORIGIN) is only for a net without "
                "one; drop it"
            )
        proj = net.getGeoProj()  # type: ignore[attr-defined]
        return lambda x, y: proj(x - x_off, y - y_off, inverse=True)
    if origin is None:
        raise SumoNetError(
            "the network has no geo-reference (no projParameter in <location>): give the "
            "lon/lat its (0, 0) lies at (--origin LON,LAT; the worker: "
            "BROKER_ROADS_ORIGIN=LON,LAT)"
        )
    lon0, lat0 = origin
    crs = CRS.from_proj4(
        f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
    )
    inv = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return lambda x, y: inv.transform(x - x_off, y - y_off)


def _edge_class(sumo_type: str, classes: RoadClasses) -> RoadClass | None:
    """The class of an edge with passenger lanes, by its type; None when it has no type.

    SUMO lets cars drive on it (its lane permissions say so, e.g. on ``highway.track``): the
    edge is drivable whatever the table makes of its type; only the user's ``none`` drops it.
    """
    if not sumo_type:
        return None
    cls = classes.resolve(sumo_type, prop="type")
    if cls.highway is None and cls.how != "user":
        return RoadClass(DEFAULT_CLASS, cls.raw, "table")
    return cls


def read_sumo_ways(
    path: Path,
    *,
    classes: RoadClasses | None = None,
    tally: ReadTally | None = None,
    origin: tuple[float, float] | None = None,
) -> Iterator[RawWay]:
    """Drivable ways of a SUMO network: edges with at least one lane open to passenger cars.

    Internal edges (inside junctions) are not read; ``lines_read`` counts SUMO edges (a two-way
    line is two of them); an edge from a junction back to itself is
    left out (counted as ``self_loop``); of several edges between the same two junctions in
    the same direction the first is read, its twins counted as ``parallel_edge``.
    Raises :class:`SumoNetError` for a net without geo-reference and no ``origin``, or with
    its own and an ``origin``, and
    whatever sumolib raises on an unreadable file (the caller names the file).
    """
    import sumolib  # local: only SUMO inputs need it (the eclipse-sumo wheel)

    classes = classes or RoadClasses()
    tally = tally if tally is not None else ReadTally()
    net = sumolib.net.readNet(str(path), withInternal=False)
    to_lonlat = _to_lonlat(net, origin)
    node_key = {node.getID(): i for i, node in enumerate(net.getNodes())}
    next_inner = len(node_key)  # inner vertices: keys no other line shares
    seen: set[tuple[str, str]] = set()  # (from, to) of the edges read
    paired: set[tuple[str, str]] = set()  # (from, to) of edges read as another line's way back
    for edge in net.getEdges():
        if edge.getFunction() == "internal":
            continue
        tally.lines_read += 1
        if (edge.getFromNode().getID(), edge.getToNode().getID()) in paired:
            tally.folded += 1  # kept: the two-way line read from its twin carries it
            continue
        if not edge.allows(PASSENGER):
            tally.drop("no_passenger_lanes")
            continue
        a, b = edge.getFromNode(), edge.getToNode()
        if a.getID() == b.getID():
            tally.drop("self_loop")
            continue
        if (a.getID(), b.getID()) in seen:
            tally.drop("parallel_edge")
            continue
        cls = _edge_class(edge.getType(), classes)
        if cls is not None:
            tally.saw_class(cls)
            if cls.highway is None:
                continue
        reverse = [e for e in b.getOutgoing() if e.getToNode() is a and e.allows(PASSENGER)]
        seen.add((a.getID(), b.getID()))
        if reverse:
            paired.add((b.getID(), a.getID()))
        shape = edge.getShape()
        xy = np.array([a.getCoord()[:2], *[p[:2] for p in shape[1:-1]], b.getCoord()[:2]])
        lon, lat = to_lonlat(xy[:, 0], xy[:, 1])  # type: ignore[operator]
        inner = len(xy) - 2
        keys = np.array(
            [node_key[a.getID()], *range(next_inner, next_inner + inner), node_key[b.getID()]],
            dtype=np.int64,
        )
        next_inner += inner
        tags = {
            # the edge's street name (netconvert copies OSM's); never its id ("-1234#2"),
            # which partners would show drivers as the street (AlertEvent.street)
            "name": edge.getName(),
            "highway": cls.highway if cls is not None else None,
            "oneway": "no" if reverse else "yes",
            "maxspeed_mps": float(edge.getSpeed()),
        }
        yield way_from_tags(np.column_stack([lon, lat]), keys, tags)
