"""One incident in the three forms the broker takes it in: combined, split, Traccar.

The *combined* form is the broker's own: every fix carries its unit's status, incident and
lights. The *split* form is what agencies have: fixes with the position only (``avl.positions``)
and CAD status events when a unit's status changes (``cad.status``). The *Traccar* form has the
fixes as Traccar forwards them, the lightbar on a device input, and the same status events
without the lights.

:func:`split_form` and :func:`traccar_form` turn a combined incident into the others, so a
replay of each can be compared (they must give the same alerts), the simulator can emit either
(``broker simulate --form``) and the fixtures hold a sample of each. A status event is stamped
at the first fix that shows the change and goes before it (``broker.replay`` puts a status
before the fixes of its instant); fixes the engine would not take in order (older than or as
old as the unit's newest) do not start one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from broker import codec
from broker.agencies import Agencies, LightbarRule
from broker.drive import CAD_STATUS, POSITIONS, TRACCAR
from broker.model import Fix, Position, UnitStatus
from broker.traccar import KNOT_MPS

Form = Literal["combined", "split", "traccar"]
Message = tuple[str, bytes]  # (topic, raw bytes), as replays and producers take them

_fix = msgspec.json.Decoder(Fix)
_plain = msgspec.json.Encoder()


def _decoded(raw: bytes) -> Fix | None:
    """A well-formed combined-form fix, or None (malformed lines pass through unchanged)."""
    try:
        fix = _fix.decode(raw)
    except msgspec.DecodeError:
        return None
    return fix if fix.status is not None and fix.ts.tzinfo is not None else None


def _status_of(fix: Fix, *, lights: bool) -> UnitStatus:
    assert fix.status is not None
    return UnitStatus(
        vehicle_id=fix.vehicle_id,
        ts=fix.ts,
        status=fix.status,
        incident_id=fix.incident_id,
        lights_sirens=bool(fix.lights_sirens) if lights else None,
        agency=fix.agency,
        unit_type=fix.unit_type,
    )


class StatusEvents:
    """A CAD status event per unit whenever what its fixes say of it changes (status, incident,
    agency, unit type, and the lights when ``lights``): how a CAD publishes."""

    def __init__(self, *, lights: bool) -> None:
        self.lights = lights
        self.said: dict[str, UnitStatus] = {}

    def change(self, fix: Fix) -> Message | None:
        """The status event ``fix`` starts, or None when it says nothing new."""
        status = _status_of(fix, lights=self.lights)
        last = self.said.get(fix.vehicle_id)
        if last is not None and msgspec.structs.replace(last, ts=status.ts) == status:
            return None
        self.said[fix.vehicle_id] = status
        return (CAD_STATUS, codec.encode(status))


def _with_status_events(
    messages: list[Message], *, lights: bool
) -> list[tuple[str, bytes, Fix | None]]:
    """The messages with a status event before each fix that changes its unit's status."""
    out: list[tuple[str, bytes, Fix | None]] = []
    events = StatusEvents(lights=lights)
    newest: dict[str, datetime] = {}
    for topic, raw in messages:
        fix = _decoded(raw) if topic == POSITIONS else None
        if fix is None:
            out.append((topic, raw, None))
            continue
        if fix.vehicle_id not in newest or fix.ts > newest[fix.vehicle_id]:
            newest[fix.vehicle_id] = fix.ts
            if (event := events.change(fix)) is not None:
                out.append((*event, None))
        out.append((topic, raw, fix))
    return out


def _position_only(fix: Fix) -> dict[str, Any]:
    return {
        "vehicle_id": fix.vehicle_id, "ts": fix.ts, "lat": fix.lat, "lon": fix.lon,
        "speed_mps": fix.speed_mps, "heading_deg": fix.heading_deg, "accuracy_m": fix.accuracy_m,
    }


def split_form(messages: list[Message]) -> list[Message]:
    """Fixes without status, lights or incident, and CAD status events that carry them."""
    return [
        (topic, raw if fix is None else _plain.encode(_position_only(fix)))
        for topic, raw, fix in _with_status_events(messages, lights=True)
    ]


def lightbar_attributes(rule: LightbarRule | None, on: bool) -> dict[str, Any]:
    """Device attributes that make ``rule`` read ``on`` (what a modem wired that way sends)."""
    if rule is None:
        return {}
    if rule.equals is not None:
        wanted = rule.equals
        if isinstance(wanted, bool):
            return {rule.attribute: wanted if on else not wanted}
        if isinstance(wanted, int | float):
            return {rule.attribute: wanted if on else wanted + 1}
        return {rule.attribute: wanted if on else ""}
    if rule.above is not None:
        return {rule.attribute: rule.above + 1 if on else rule.above}
    assert rule.bit is not None
    return {rule.attribute: (1 << rule.bit) if on else 0}


def traccar_message(fix: Fix, agencies: Agencies, *, device_id: int) -> bytes:
    """``fix`` as Traccar forwards it (``PositionData``: position and device), for the device
    the agency file names for its unit."""
    unit = agencies.unit(fix.vehicle_id)
    if unit is None:
        raise KeyError(f"{fix.vehicle_id!r} is not in the agency file")
    attributes = {"ignition": True, "sat": 9, "distance": 12.5, "motion": fix.speed_mps > 0.5}
    attributes.update(lightbar_attributes(unit.lightbar, bool(fix.lights_sirens)))
    fix_time = fix.ts.astimezone(UTC).isoformat(timespec="milliseconds")
    return _plain.encode({
        "position": {
            "id": 0, "deviceId": device_id, "protocol": "teltonika",
            "serverTime": fix_time, "deviceTime": fix_time, "fixTime": fix_time,
            "outdated": False, "valid": True,
            "latitude": fix.lat, "longitude": fix.lon, "altitude": 230.0,
            "speed": fix.speed_mps / KNOT_MPS,
            "course": fix.heading_deg if fix.heading_deg is not None else 0.0,
            "address": None, "accuracy": fix.accuracy_m, "network": None,
            "attributes": attributes,
        },
        "device": {"id": device_id, "name": unit.vehicle_id, "uniqueId": unit.device,
                   "status": "online", "disabled": False},
    })


def traccar_form(messages: list[Message], agencies: Agencies) -> list[Message]:
    """Fixes as Traccar forwards them (the lights on the lightbar input) and CAD status events
    without the lights."""
    ids: dict[str, int] = {}
    out: list[Message] = []
    for topic, raw, fix in _with_status_events(messages, lights=False):
        if fix is None:
            out.append((topic, raw))
            continue
        device_id = ids.setdefault(fix.vehicle_id, len(ids) + 1)
        out.append((TRACCAR, traccar_message(fix, agencies, device_id=device_id)))
    return out


class Emitter:
    """Live positions (the simulator's) as the messages of ``form``, one position at a time."""

    def __init__(self, form: Form, agencies: Agencies | None = None) -> None:
        if form == "traccar" and agencies is None:
            raise ValueError("the Traccar form needs an agency file (its devices and lightbars)")
        self.form, self.agencies = form, agencies
        self.events = StatusEvents(lights=form == "split")
        self.devices: dict[str, int] = {}

    def messages(self, pos: Position) -> list[Message]:
        """What a feed of this form carries for ``pos``: the fix, after a status event when the
        unit's status changed."""
        if self.form == "combined":
            return [(POSITIONS, codec.encode(pos))]
        fix = msgspec.convert(msgspec.structs.asdict(pos), Fix)
        event = self.events.change(fix)
        out = [event] if event is not None else []
        if self.form == "split":
            out.append((POSITIONS, _plain.encode(_position_only(fix))))
        else:
            assert self.agencies is not None
            device_id = self.devices.setdefault(fix.vehicle_id, len(self.devices) + 1)
            out.append((TRACCAR, traccar_message(fix, self.agencies, device_id=device_id)))
        return out


def in_form(messages: list[Message], form: Form, agencies: Agencies | None) -> list[Message]:
    """``messages`` (combined form) in ``form``; the Traccar form needs the agency file."""
    if form == "split":
        return split_form(messages)
    if form == "traccar":
        if agencies is None:
            raise ValueError("the Traccar form needs an agency file (its devices and lightbars)")
        return traccar_form(messages, agencies)
    return messages
