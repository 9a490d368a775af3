"""Road classes: what a file calls a road -> the OSM ``highway`` class the graph keeps.

The graph speaks OSM's words (``residential``, ``primary``, ...): a class picks the default
speed of a line without one (:data:`~broker.geo.roads.osm.DRIVABLE_SPEED_KMH`) and whether a car
may use it at all. Files from elsewhere name their classes their own way: GIS layers ("Residential
Street", "Local Road", "Minor Arterial"), exports that prefix the scheme ("highway.residential",
SUMO's edge types ``highway.primary|railway.tram``), numbers (TomTom / OpenLR FRC, HERE
FUNC_CLASS, the US FHWA functional system). This module is the one table that maps them, and the
one place a user's own mapping (a small TOML file, :func:`load_road_classes`) joins it.

How a value is read (:meth:`RoadClasses.resolve`), first match wins:

1. the user's mapping, by the value as written, then by its normalised form;
2. a number (``3``, ``"3"``, ``"FRC3"``): the numeric scheme the file names (``scheme``) or the
   property's name implies (:data:`NUMERIC_PROPERTIES`), see :data:`NUMERIC_SCHEMES`;
3. the normalised word (lower case; the part after the last ``.``, ``:`` or ``=``; the
   ``highway`` part of a SUMO ``a|b`` type; runs of other characters as ``_``): an OSM drivable
   class as it is; a class no car may use (:data:`NOT_FOR_CARS`); a synonym (:data:`SYNONYMS`);
   the same again without a ``_road`` / ``_street`` / ``_st`` / ``_rd`` suffix;
   a list of classes (osmnx's ``["residential", "unclassified"]``, or that list as text): the
   most important drivable class an item reads as;
4. anything else is *unknown*: the mapping's ``unknown`` policy says what happens (``drop``, the
   default, leaves the line out as before; ``keep`` keeps it as ``unclassified``; ``error`` stops
   the load) and every reader counts it, so nothing is lost without a word.

Only a class written in OSM's own word implies OSM's conventions (``motorway`` is one-way unless
the line says otherwise); a mapped class does not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

import msgspec

from broker.validation import described, did_you_mean, read_toml, shown

DrivableClass = Literal[
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
    "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential",
    "living_street", "service", "road",
]  # fmt: skip
DRIVABLE_CLASSES: tuple[str, ...] = get_args(DrivableClass)
NOT_A_ROAD = "none"  # the target that says "no car drives here": the line is left out
TARGETS: tuple[str, ...] = (*DRIVABLE_CLASSES, NOT_A_ROAD)
DEFAULT_CLASS = "unclassified"  # a line with no class at all, or an unknown one kept

UnknownPolicy = Literal["drop", "keep", "error"]
NumericScheme = Literal["frc", "here", "fhwa"]
How = Literal["osm", "table", "user", "number", "none_given", "unknown"]

# Properties that name a line's class, looked up in this order (case-insensitive) when the
# mapping names none: OSM's, Geofabrik's shapefiles, Overture / Protomaps, GIS layers, numbers.
CLASS_PROPERTIES: tuple[str, ...] = (
    "highway", "fclass", "kind_detail", "road_class", "roadclass", "class", "kind", "frc",
    "func_class", "functional_class", "f_system", "funcclass", "road_type", "type",
)  # fmt: skip

# Classes of OSM (and their common synonyms) that no ordinary car drives on.
NOT_FOR_CARS: frozenset[str] = frozenset({
    "footway", "sidewalk", "crossing", "cycleway", "bikeway", "cycle_track", "path", "footpath",
    "trail", "walkway", "pedestrian", "steps", "stairs", "step", "track", "track_grade1",
    "track_grade2", "track_grade3", "track_grade4", "track_grade5", "bridleway",
    "bus_guideway", "busway", "corridor", "elevator", "platform", "construction", "proposed",
    "planned", "abandoned", "disused", "razed", "raceway", "escape", "emergency_bay",
    "rest_area", "services", "bus_stop", "via_ferrata", "ferry", "rail", "railway", "tram",
    "subway",
})  # fmt: skip

# Words other vocabularies use for OSM's drivable classes. Only words with one reading are
# here; "Highway" (a motorway? a state highway?) is not, and stays unknown until mapped.
SYNONYMS: dict[str, str] = {
    "freeway": "motorway", "expressway": "motorway", "interstate": "motorway",
    "autobahn": "motorway", "autoroute": "motorway",
    "ramp": "motorway_link", "slip": "motorway_link", "slip_road": "motorway_link",
    "on_ramp": "motorway_link", "off_ramp": "motorway_link", "freeway_ramp": "motorway_link",
    "arterial": "primary", "principal_arterial": "primary", "major_arterial": "primary",
    "major": "primary", "a_road": "primary",
    "minor_arterial": "secondary", "medium": "secondary", "b_road": "secondary",
    "collector": "tertiary", "major_collector": "tertiary",
    "minor_collector": "unclassified", "minor": "unclassified",
    "local": "residential", "street": "residential", "neighbourhood": "residential",
    "neighborhood": "residential",
    "woonerf": "living_street", "home_zone": "living_street", "shared_street": "living_street",
    "alley": "service", "alleyway": "service", "driveway": "service", "private": "service",
    "access_road": "service",
}  # fmt: skip
_SUFFIX = re.compile(r"_(?:roads?|streets?|st|rd)$")

# Numbered classes. FRC: TomTom MultiNet / OpenLR (0 motorway ... 7 least important, 8 other:
# not for cars). HERE: FUNC_CLASS 1-5. FHWA: the US functional system (HPMS F_SYSTEM) 1-7.
NUMERIC_SCHEMES: dict[str, dict[int, str]] = {
    "frc": {0: "motorway", 1: "trunk", 2: "primary", 3: "secondary", 4: "tertiary",
            5: "unclassified", 6: "residential", 7: "service", 8: NOT_A_ROAD},
    "here": {1: "motorway", 2: "trunk", 3: "primary", 4: "tertiary", 5: "residential"},
    "fhwa": {1: "motorway", 2: "motorway", 3: "primary", 4: "secondary", 5: "tertiary",
             6: "unclassified", 7: "residential"},
}  # fmt: skip
# Which scheme a numbered class follows when the mapping names none: by the property's name.
NUMERIC_PROPERTIES: dict[str, str] = {
    "frc": "frc", "func_class": "here", "functional_class": "fhwa", "f_system": "fhwa",
    "fsystem": "fhwa", "funcclass": "fhwa",
}  # fmt: skip
_NUMBER = re.compile(r"(?:frc)?\s*(\d{1,2})")
# a list written as text, as osmnx's GeoPackage (and a CSV of it) writes one: "['a', 'b']"
_LIST_TEXT = re.compile(r"\[(.*)\]", re.DOTALL)
_ITEM_ENDS = re.compile(r"^[\s'\"]+|[\s'\"]+$")  # of an item of it: spaces and quotes


class RoadClassesError(ValueError):
    """A road-class mapping that cannot be used; the message names the file, field and value."""


class RoadClass(NamedTuple):
    """One line's class: the OSM class it gets (None: left out), what was written, and how."""

    highway: str | None
    raw: str  # the value as written ("" when the line names no class)
    how: How


def normalise(value: str) -> str:
    """A class word in a comparable form.

    Examples
    --------
    >>> normalise("Residential Street"), normalise("highway.primary|railway.tram")
    ('residential_street', 'primary')
    >>> normalise("highway=motorway_link"), normalise(" Minor-Arterial ")
    ('motorway_link', 'minor_arterial')
    """
    text = value.strip().lower()
    parts = text.split("|")
    text = next((p for p in parts if p.startswith("highway")), parts[0])
    text = re.split(r"[.:=]", text)[-1]
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def _number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        found = _NUMBER.fullmatch(value.strip().lower())
        return int(found.group(1)) if found else None
    return None


def osmnx_list(value: object) -> list[object] | None:
    """The values of a tag that lists several, or None when it is one.

    osmnx merges OSM ways into one edge and keeps a tag they differ in as a list: a JSON array
    in GeoJSON (``["residential", "unclassified"]``), the list as text in its GeoPackage
    (``"['residential', 'unclassified']"``, each item's spaces and quotes stripped, in any
    order). The one reader of both forms, for the road class (``RoadClasses.resolve``) and the
    speed (:func:`broker.geo.roads.osm.parse_maxspeed`).

    Examples
    --------
    >>> osmnx_list(["30", "50"]), osmnx_list("['residential', 'unclassified']")
    (['30', '50'], ['residential', 'unclassified'])
    >>> osmnx_list("residential") is None, osmnx_list(30) is None
    (True, True)
    """
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and (found := _LIST_TEXT.fullmatch(value.strip())):
        return [_ITEM_ENDS.sub("", part) for part in found.group(1).split(",")]
    return None


def _from_words(word: str) -> RoadClass | None:
    """The built-in table's answer for a normalised word, or None."""
    if word in DRIVABLE_CLASSES:
        return RoadClass(word, word, "osm")
    if word in NOT_FOR_CARS:
        return RoadClass(None, word, "osm")
    for candidate in (word, _SUFFIX.sub("", word)):
        if candidate in SYNONYMS:
            return RoadClass(SYNONYMS[candidate], word, "table")
        if candidate in DRIVABLE_CLASSES:
            return RoadClass(candidate, word, "table")
        if candidate in NOT_FOR_CARS:
            return RoadClass(None, word, "table")
    return None


@dataclass(frozen=True)
class RoadClasses:
    """How to read the road class of a line: the built-in table plus a user's mapping.

    ``RoadClasses()`` is the built-in table alone, with unknown classes dropped (and counted).

    Examples
    --------
    >>> classes = RoadClasses()
    >>> classes.resolve("Residential Street"), classes.resolve("primary_road").highway
    (RoadClass(highway='residential', raw='Residential Street', how='table'), 'primary')
    >>> classes.resolve(3, prop="FRC").highway, classes.resolve("footway").highway
    ('secondary', None)
    >>> classes.resolve("Ped Mall")
    RoadClass(highway=None, raw='Ped Mall', how='unknown')
    >>> RoadClasses(mapping={"ped_mall": "none"}, unknown="keep").resolve("Ped Mall").how
    'user'
    """

    mapping: Mapping[str, str] = field(default_factory=dict)  # normalised word -> target
    property: str | None = None  # the property that holds the class; None: CLASS_PROPERTIES
    scheme: NumericScheme | None = None  # numbers follow this scheme, whatever the property
    unknown: UnknownPolicy = "drop"
    source: str = ""  # the mapping file, for messages
    # (property, value) -> its class: a file names a handful of classes on thousands of lines
    _memo: dict[tuple[str, object], RoadClass] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def find(self, props: Mapping[str, Any]) -> tuple[str, Any] | None:
        """The (property, value) that names a line's class among its properties, or None."""
        lower = {str(k).lower(): k for k in props}
        names = (self.property,) if self.property else CLASS_PROPERTIES
        for name in names:
            key = lower.get(name.lower())
            if key is not None and props[key] is not None and str(props[key]).strip():
                return str(key), props[key]
        return None

    def resolve(self, value: object, *, prop: str = "highway") -> RoadClass:
        """The class of a line whose property ``prop`` says ``value`` (see the module's text)."""
        raw = str(value).strip()
        word = normalise(raw)
        for key in (raw, word):
            target = self.mapping.get(key)
            if target is not None:
                return RoadClass(None if target == NOT_A_ROAD else target, raw, "user")
        listed = osmnx_list(value)
        if listed is not None:
            return self._resolve_list(listed, raw, prop)
        number = _number(value)
        if number is not None:
            scheme = self.scheme or NUMERIC_PROPERTIES.get(normalise(prop))
            if scheme is None and raw.lower().startswith("frc"):
                scheme = "frc"
            target = NUMERIC_SCHEMES[scheme].get(number) if scheme else None
            if target is not None:
                return RoadClass(None if target == NOT_A_ROAD else target, raw, "number")
        found = _from_words(word) if word else None
        if found is not None:
            return RoadClass(found.highway, raw, found.how)
        return self.resolve_unknown(raw)

    def _resolve_list(self, listed: list[object], raw: str, prop: str) -> RoadClass:
        """The class of a line whose class is a list: the most important drivable class any
        item reads as (the faster guess, which warns further upstream); a list of classes no
        car drives on is left out as they are, one of unknown ones is unknown."""
        found = [self.resolve(item, prop=prop) for item in listed
                 if item is not None and str(item).strip()]  # fmt: skip
        drivable = [cls for cls in found if cls.highway is not None and cls.how != "unknown"]
        drivable = drivable or [cls for cls in found if cls.highway is not None]  # kept unknown
        if drivable:
            best = min(drivable, key=lambda cls: DRIVABLE_CLASSES.index(cls.highway or ""))
            # read from a list, not written in OSM's own word: implies no OSM convention
            return RoadClass(best.highway, raw, "table" if best.how == "osm" else best.how)
        known = [cls for cls in found if cls.how != "unknown"]
        if known:
            return RoadClass(None, raw, known[0].how)
        return self.resolve_unknown(raw)

    def resolve_unknown(self, raw: str) -> RoadClass:
        """A class nothing maps: kept as ``unclassified`` or left out, by the policy."""
        return RoadClass(DEFAULT_CLASS if self.unknown == "keep" else None, raw, "unknown")

    def of(self, props: Mapping[str, Any]) -> RoadClass:
        """The class of a line with these properties; a line that names none is drivable
        (``unclassified``), as it always was."""
        found = self.find(props)
        if found is None:
            return RoadClass(DEFAULT_CLASS, "", "none_given")
        prop, value = found
        key = (prop.lower(), value if isinstance(value, str | int | float) else repr(value))
        known = self._memo.get(key)
        if known is None:
            known = self._memo[key] = self.resolve(value, prop=prop)
        return known


# ---- the mapping file ---------------------------------------------------------------------

PropertyName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class RoadClassesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A road-class mapping file (TOML), as written::

        property = "ROAD_CLASS"     # optional: the property that holds the class
        scheme = "frc"              # optional: numbers are FRC / here / fhwa classes
        unknown = "drop"            # what to do with a class still unknown: drop, keep, error
        [classes]
        "Residential Street" = "residential"
        "Ped Mall" = "none"         # not a road for cars: left out
    """

    property: PropertyName | None = None
    scheme: NumericScheme | None = None
    unknown: UnknownPolicy = "drop"
    classes: dict[str, str] = msgspec.field(default_factory=dict)


def parse_road_classes(data: Mapping[str, Any], *, source: str | Path = "") -> RoadClasses:
    """Validate a mapping already parsed from TOML; errors name ``source``, field and value."""
    head = f"{source}: " if source else "road classes: "
    try:
        file = msgspec.convert(data, RoadClassesFile)
    except msgspec.ValidationError as err:
        raise RoadClassesError(f"{head}{described(err, data, RoadClassesFile)}") from err
    mapping: dict[str, str] = {}
    written: dict[str, str] = {}  # normalised -> the key as written, to name clashes
    for key, target in file.classes.items():
        where = f"{head}classes.{key!r}"
        if not key.strip():
            raise RoadClassesError(f"{where}: want a class name, got an empty one")
        if target not in TARGETS:
            raise RoadClassesError(
                f"{where}: want one of {', '.join(TARGETS)}, got {shown(target)}"
                + did_you_mean([target], TARGETS, "")
            )
        for form in dict.fromkeys((key.strip(), normalise(key))):
            if form in mapping and mapping[form] != target:
                raise RoadClassesError(
                    f"{where}: {key!r} and {written[form]!r} read the same but map to "
                    f"{target!r} and {mapping[form]!r}"
                )
            mapping[form] = target
            written[form] = key
    return RoadClasses(
        mapping=mapping, property=file.property, scheme=file.scheme, unknown=file.unknown,
        source=str(source),
    )


def load_road_classes(path: str | Path) -> RoadClasses:
    """Read and validate a road-class mapping file (TOML)."""
    return parse_road_classes(read_toml(path, RoadClassesError), source=path)
