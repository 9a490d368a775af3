"""A live alert's zone as its state keeps it: the GeoJSON with its rings as one encoded value.

A zone's rings are a list per ring and a ``(lon, lat)`` tuple of two floats per vertex: about
80 objects for a usual zone, which an alert state held until its next update. With 10,000
units those were most of the states' live objects (about 440,000), and every fix of a big fleet
paid for them in cache misses (loading the state, freeing the zone it replaced, the collector's
passes). The state only needs its zone again for the cancel's event (and its table changelog),
so it keeps a :class:`KeptZone`: ``{"type": ..., "coordinates": msgspec.Raw}``, the rings as
the JSON bytes msgspec writes for them. It encodes to the same bytes as the zone it keeps (a
state's changelog is unchanged, and a state read back holds the plain GeoJSON, as before), and
:func:`as_geojson` gives the zone back as the engine made it: the same floats (JSON numbers
round-trip exactly), the same ``(lon, lat)`` tuples.

A zone deferred to a :class:`~broker.geo.zoning.ZoneBatch` is not built yet when the state
takes it: its ``KeptZone`` is empty and holds the event's dict (filled by the batch), which a
cancel before the batch is built copies, as it did; :meth:`KeptZone.fill` keeps the built zone
and lets that dict go.
"""

from __future__ import annotations

from typing import Any

import msgspec

_rings = msgspec.json.Encoder()
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "Polygon": msgspec.json.Decoder(list[list[tuple[float, float]]]),
    "MultiPolygon": msgspec.json.Decoder(list[list[list[tuple[float, float]]]]),
}


class KeptZone(dict[str, Any]):
    """A zone with its rings encoded (``coordinates`` a :class:`msgspec.Raw`); empty, with the
    event's zone in ``unbuilt``, while a batch has still to build it."""

    __slots__ = ("unbuilt",)

    def __init__(self, unbuilt: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.unbuilt = unbuilt

    def fill(self, zone: dict[str, Any]) -> None:
        """Keep ``zone`` (a built GeoJSON Polygon or MultiPolygon), its rings encoded."""
        self.clear()
        for key, value in zone.items():  # the same keys in the same order: the same bytes
            self[key] = msgspec.Raw(_rings.encode(value)) if key == "coordinates" else value
        self.unbuilt = None


def kept(zone: dict[str, Any]) -> KeptZone:
    """A built ``zone`` as an alert state keeps it."""
    out = KeptZone()
    out.fill(zone)
    return out


def as_geojson(zone: dict[str, Any]) -> dict[str, Any]:
    """The GeoJSON zone a state keeps (:func:`kept`, or a plain one read from a changelog)."""
    if not isinstance(zone, KeptZone):
        return zone
    if zone.unbuilt is not None:
        return zone.unbuilt  # the batch fills it in place, as it fills the update's
    out = dict(zone)
    coords = out.get("coordinates")
    if isinstance(coords, msgspec.Raw):
        decoder = _decoders.get(str(out.get("type")))
        out["coordinates"] = (msgspec.json.decode(coords) if decoder is None
                              else decoder.decode(coords))
    return out
