"""Units whose fixes come ``late`` (``broker.drive.Driver.late``: a device clock behind, a
delayed feed), told to the operator once as they start and once as they stop, not at every
fix: the dead letters and ``broker_rejected_total{reason="late"}`` count each fix."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

LATE_UNITS_KEPT = 10_000  # late units remembered (for their one log line) at most


class LateUnits:
    """Units whose fixes come ``late`` (``Driver.late``: a device clock behind, a delayed
    feed): each logged once as it starts, and once as its fixes are taken again, not at every
    fix (the dead letters and ``broker_rejected_total{reason="late"}`` count each)."""

    def __init__(self) -> None:
        self._units: set[bytes] = set()

    def __bool__(self) -> bool:
        return bool(self._units)

    def note(self, key: Any, detail: str) -> None:
        """A late fix of the unit ``key`` (its Kafka key), refused."""
        unit = key if isinstance(key, bytes) else str(key).encode()
        if unit in self._units:
            return
        if len(self._units) >= LATE_UNITS_KEPT:  # keys a producer made up: logged again
            self._units.clear()
        self._units.add(unit)
        log.warning("unit %s: its fixes come late, refused (avl.dlq, reason late) until they "
                    "are within stale_timeout_s of its partition's clock: %s",
                    unit.decode(errors="replace"), detail)

    def taken(self, key: Any) -> None:
        """A fix of the unit ``key`` taken: a late unit's fixes are on time again."""
        unit = key if isinstance(key, bytes) else str(key).encode()
        if unit in self._units:
            self._units.discard(unit)
            log.info("unit %s: its fixes are taken again (no longer late)",
                     unit.decode(errors="replace"))
