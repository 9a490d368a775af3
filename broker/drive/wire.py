"""The wire format's topics, and a message decoded by the topic it came on.

:class:`Decoding` is the part of :class:`~broker.drive.Driver` that turns bytes into a fix, a
route or a status (or a :class:`~broker.model.Rejection`), judged against a clock: a unit the
agency file lacks is refused, and so is a time too far ahead, but not for ever on a driver's own
clock (:meth:`Decoding._after_a_quiet_spell`).
"""

from __future__ import annotations

from datetime import datetime

from broker import codec
from broker.drive.base import DriverBase, K
from broker.model import Fix, Rejection, Route, UnitStatus
from broker.traccar import decode_traccar

# The topics of the wire format, defined once (the worker prefixes them: broker.streams.topics).
POSITIONS = "avl.positions"  # AVL fixes, key = vehicle id
ROUTES = "cad.routes"  # CAD routes of responding units, same key, co-partitioned
CAD_STATUS = "cad.status"  # CAD status changes of units, same key, co-partitioned
TRACCAR = "avl.traccar"  # Traccar's forwarded positions, key = Traccar device id
ALERTS = "alerts"  # alert events, key = alert id
DLQ = "avl.dlq"  # rejected input, with reason and original bytes
AUDIT = "audit"  # one record per delivery attempt or feed response (adapters.audit)
DELIVERY_DLQ = "delivery.dlq"  # deliveries that could not be made, with the reason
INPUTS = (POSITIONS, ROUTES, CAD_STATUS)  # co-partitioned: one agent sees a unit's all


class Decoding(DriverBase[K]):
    """Decoding by topic, and the driver's own clock's judgement of a time ahead."""

    def decode(
        self, topic: str, raw: bytes, at: datetime | None, unknown: list[str] | None = None
    ) -> Fix | Route | UnitStatus | Rejection:
        """The message of ``topic``, or why not (including a unit the agency file lacks).
        ``unknown`` gets the field of each reading of a fix taken as unknown (``-1``: no
        heading, ...: :func:`broker.codec.check_fix`)."""
        noted = None if unknown is None else unknown.append
        cfg = self.cfg
        msg: Fix | Route | UnitStatus | Rejection
        if topic == ROUTES:
            msg = codec.decode_route(
                raw, received_at=at, max_future_skew=self._skew, area=cfg.service_area
            )
        elif topic == CAD_STATUS:
            msg = codec.decode_status(
                raw, received_at=at, max_bytes=cfg.max_message_bytes, max_future_skew=self._skew
            )
        elif topic == TRACCAR:
            return decode_traccar(
                raw, self.agencies, received_at=at, max_bytes=cfg.max_message_bytes,
                max_future_skew=self._skew, area=cfg.service_area, noted=noted,
            )
        else:
            msg = codec.decode_position(
                raw, received_at=at, max_bytes=cfg.max_message_bytes,
                max_future_skew=self._skew, area=cfg.service_area, noted=noted,
            )
        if (
            self.agencies is not None
            and not isinstance(msg, Rejection)
            and self.agencies.unit(msg.vehicle_id) is None
        ):
            detail = f"unit {msg.vehicle_id!r} is not in the agency file"
            return Rejection(reason="unknown_unit", detail=detail, raw=bytes(raw))
        return msg

    def _after_a_quiet_spell(
        self, topic: str, raw: bytes, msg: Fix | Route | UnitStatus | Rejection,
        unknown: list[str],
    ) -> Fix | Route | UnitStatus | Rejection:
        """Judged against this driver's own clock (a recording has no receive times), a message
        more than the skew past the newest event time is refused, and so was everything after
        a stream's first quiet spell longer than the skew: the clock never moved again. The
        stream has moved on when the next message agrees (within the skew of the refused one):
        that one is taken. One device's clock far ahead stays refused; the first message after
        a quiet spell is lost (a ``future_timestamp`` rejection), not the rest of the replay.
        ``unknown`` gets the readings taken as unknown of the message taken after all."""
        if not isinstance(msg, Rejection):
            self._ahead = None
            return msg
        if msg.reason != "future_timestamp":
            return msg
        again: list[str] = []
        unjudged = self.decode(topic, raw, None, again)
        if isinstance(unjudged, Rejection):  # a time past any clock
            return msg
        before, self._ahead = self._ahead, unjudged.ts
        if before is not None and abs(unjudged.ts - before) <= self._skew:
            self._ahead = None
            unknown[:] = again
            return unjudged
        return msg

    def _tell(self, unknown: list[str]) -> None:
        """``noted`` hears of the readings taken as unknown of a message taken (not of one
        refused after all: an unknown unit, a time ahead)."""
        if self.noted is not None:
            for name in unknown:
                self.noted(name)
