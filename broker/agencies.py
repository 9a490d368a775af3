"""The agency file: which apparatus the broker knows, and how each one's AVL device reports it.

Agencies connect their vehicles' modems through an AVL server (Traccar), which names a device
by its ``uniqueId`` (usually the modem's IMEI) and a ``name``; CAD names the same vehicle by its
unit id. The agency file ties them together and says, per agency or per unit, which input of
the modem the lightbar is wired to::

    [[agency]]
    id = "charlotte-fd"
    lightbar = { attribute = "in2", equals = true }

    [[agency.unit]]
    vehicle_id = "CFD-E1"
    unit_type = "engine"
    device = "356307042441013"      # Traccar device.uniqueId, or device.name

With a file configured, every input (a fix in either form, a status event, a Traccar position)
must name a unit in it, else it is refused as ``unknown_unit``: the broker tracks the fleet it
was told about and nothing else. Without one, broker-JSON input is taken as it comes and
Traccar input cannot be mapped (docs/ingest.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec

from broker.model import Identifier, ShortText
from broker.validation import Invalid, explain, locate, read_toml, type_at, value_at


class AgencyFileError(ValueError):
    """The agency file cannot be used; the message names the file, the place and the value."""


AttributeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
BitIndex = Annotated[int, msgspec.Meta(ge=0, le=63)]


class LightbarRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which attribute of an AVL position says "lights and sirens on", and how.

    Exactly one test: ``equals`` (``in2 == true``; a number or text compares as written, so
    ``"1"`` and ``1`` both match ``equals = 1``), ``above`` (``io5 > 0``) or ``bit`` (bit N of
    an integer bitmask such as Traccar's ``input``, bit 0 the lowest).
    """

    attribute: AttributeName
    equals: bool | float | str | None = None
    above: float | None = None
    bit: BitIndex | None = None

    def __post_init__(self) -> None:
        tests = [name for name in ("equals", "above", "bit") if getattr(self, name) is not None]
        if len(tests) != 1:
            raise Invalid("", "want exactly one of equals, above or bit, got "
                          + (", ".join(tests) or "none"))
        # TOML has nan and +/-inf: a threshold no reading passes (or every one does) read the
        # lightbar as always off, which outweighs CAD's word (broker.join): no alert at all
        for name in ("equals", "above"):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise Invalid(name, f"want a finite number, got {value}")

    def lights(self, attributes: Mapping[str, Any]) -> bool | None:
        """On, off, or None when the position does not carry the attribute (or carries
        something the rule cannot read, such as a list)."""
        value = attributes.get(self.attribute)
        if value is None:
            return None
        if self.equals is not None:
            return _same(value, self.equals)
        number = _number(value)
        if number is None:
            return None
        if self.above is not None:
            return number > self.above
        if self.bit is not None and number == int(number):
            return bool(int(number) >> self.bit & 1)
        return None


def _number(value: Any) -> float | None:
    """A finite number from a JSON value: numbers, booleans (1/0) and numeric text; else None
    (``"inf"``, ``"nan"`` and ``"1e999"`` are numeric text to Python: not a reading)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # not numeric text; an int past a float's range
        return None
    return number if math.isfinite(number) else None


_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


def _same(value: Any, wanted: bool | float | str) -> bool | None:
    """``value == wanted`` across the types devices use for one input (true, 1, "1", "true").
    Wanted text that reads as a boolean (``equals = "true"``, quoted in the file) is that
    boolean: compared as text it made a device's JSON ``true`` read as lights off, which
    overrode CAD's word and left a responding unit with no approach warning."""
    if isinstance(wanted, str) and wanted.strip().lower() in _TRUE | _FALSE:
        wanted = wanted.strip().lower() in _TRUE
    if isinstance(wanted, bool):
        if isinstance(value, bool):
            return value is wanted
        if isinstance(value, int | float):
            return (value != 0) is wanted
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return (value.strip().lower() in _TRUE) is wanted
        return None
    if isinstance(wanted, int | float):
        number = _number(value)
        return None if number is None else number == wanted
    return str(value) == wanted


class UnitEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One apparatus: its CAD unit id, what it is, and its AVL device."""

    vehicle_id: Identifier
    unit_type: ShortText = "unknown"
    device: Identifier | None = None  # Traccar device.uniqueId, or device.name
    lightbar: LightbarRule | None = None  # overrides the agency's rule


class AgencyEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One agency: its id (the ``agency`` of its alerts), its lightbar rule, its units."""

    id: ShortText
    name: str = ""
    lightbar: LightbarRule | None = None
    unit: list[UnitEntry] = []


class AgencyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The whole file: one ``[[agency]]`` table per agency."""

    agency: list[AgencyEntry]

    def __post_init__(self) -> None:
        units: set[str] = set()
        devices: set[str] = set()
        for a, agency in enumerate(self.agency):
            for u, unit in enumerate(agency.unit):
                where = f"agency[{a}].unit[{u}]"
                if unit.vehicle_id in units:
                    raise Invalid(f"{where}.vehicle_id", f"{unit.vehicle_id!r} is named twice")
                units.add(unit.vehicle_id)
                if unit.device is not None:
                    if unit.device in devices:
                        raise Invalid(f"{where}.device", f"{unit.device!r} is named twice")
                    devices.add(unit.device)
        if not units:  # every input must name a unit of the file: none would be taken
            raise Invalid("", "no [[agency.unit]] in it: with an agency file every input must "
                          "name one of its units, so every one would be refused (unknown_unit); "
                          "list the units, or give no agency file")


@dataclass(frozen=True, slots=True)
class Unit:
    """What the broker knows of one apparatus from the agency file."""

    vehicle_id: str
    agency: str
    unit_type: str
    lightbar: LightbarRule | None
    device: str | None = None  # its AVL device (Traccar uniqueId or name)


@dataclass(frozen=True, slots=True)
class Agencies:
    """The units of an agency file, found by CAD unit id or by AVL device."""

    units: Mapping[str, Unit]  # by vehicle id
    devices: Mapping[str, Unit]  # by device uniqueId / name

    def unit(self, vehicle_id: str) -> Unit | None:
        """The unit CAD and the broker call ``vehicle_id``."""
        return self.units.get(vehicle_id)

    def device(self, unique_id: str | None, name: str | None) -> Unit | None:
        """The unit of an AVL device, by its ``uniqueId`` first, then its ``name``."""
        for key in (unique_id, name):
            if key and (unit := self.devices.get(key)) is not None:
                return unit
        return None


def parse_agencies(data: Mapping[str, Any], *, source: str | Path | None = None) -> Agencies:
    """Validate already-parsed TOML data; errors name ``source``, the place and the value."""
    try:
        file = msgspec.convert(data, AgencyFile)
    except msgspec.ValidationError as err:
        path, message = locate(err)
        value = value_at(data, path)
        where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")
        head = f"{source}: " if source else "agency file: "
        raise AgencyFileError(
            f"{head}{where or 'top level'}: {explain(message, type_at(AgencyFile, path), value)}"
        ) from err
    units: dict[str, Unit] = {}
    devices: dict[str, Unit] = {}
    for agency in file.agency:
        for entry in agency.unit:
            unit = Unit(entry.vehicle_id, agency.id, entry.unit_type,
                        entry.lightbar or agency.lightbar, entry.device)
            units[entry.vehicle_id] = unit
            if entry.device is not None:
                devices[entry.device] = unit
    return Agencies(units=units, devices=devices)


def load_agencies(path: Path) -> Agencies:
    """Read and validate an agency file (TOML)."""
    return parse_agencies(read_toml(path, AgencyFileError), source=path)


