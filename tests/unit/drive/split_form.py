"""Messages the driver tests feed it as raw records: CAD status events, split-form fixes (no
status of their own) and engine messages by topic."""

from __future__ import annotations

import json

from broker import codec
from broker.drive import POSITIONS, ROUTES
from broker.model import UnitStatus
from tests.conftest import at, fix


def cad_status(t: float, status: str, *, lights: bool | None = True,
               incident: str | None = "F1", vehicle_id: str = "CFD-E7") -> bytes:
    """A CAD status event of the unit at ``t`` s."""
    return codec.encode(UnitStatus(vehicle_id=vehicle_id, ts=at(t), status=status,  # type: ignore[arg-type]
                                   incident_id=incident, lights_sirens=lights))


def split_fix(t: float, east_m: float = 0.0, vehicle_id: str = "CFD-E7") -> bytes:
    """A fix without status: the split form."""
    pos = json.loads(codec.encode(fix(t, east_m, vehicle_id=vehicle_id)))
    for key in ("status", "lights_sirens", "incident_id"):
        del pos[key]
    return json.dumps(pos).encode()


def as_records(msgs: list) -> list[tuple[str, bytes]]:
    """Engine messages as (topic, bytes): routes to the routes topic, the rest as fixes."""
    return [(ROUTES if m.__class__.__name__ == "Route" else POSITIONS, codec.encode(m))
            for m in msgs]
