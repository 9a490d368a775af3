"""Where an incident's fixes lie against a road network's extent: a file of another place, or
one written [lat, lon], holds none of them (``broker replay``/``evaluate`` say so)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.geo.projection import span_degrees

PLACE_PAD_M = 1000.0  # the margin around the network's bounding box its "extent" has


@dataclass(frozen=True)
class NetworkPlacement:
    """Where an incident's fixes lie against a network (:func:`place_points`)."""

    points: int
    inside: int  # within the network's extent
    inside_swapped: int  # within it were the network's lon and lat read the other way round
    bounds: tuple[float, float, float, float]  # the network's (west, south, east, north)

    def elsewhere(self, share: float = 0.1) -> bool:
        """Whether under ``share`` of the points lie within the network's extent."""
        return self.points > 0 and self.inside < share * self.points

    def said(self, source: str) -> str:
        """Why the network looks misplaced, and what to check, naming ``source``."""
        w, s, e, n = self.bounds
        text = (f"{source}: the road network (lon {w:.3f} to {e:.3f}, lat {s:.3f} to {n:.3f}) "
                f"holds {self.inside} of the incident's {self.points} emergency fixes: zones "
                "there get no approaches from it")
        if self.inside_swapped * 2 > self.points:
            return (text + f"; with its lon and lat swapped it would hold "
                    f"{self.inside_swapped}: the file looks written [lat, lon], GeoJSON wants "
                    "[lon, lat] (docs/roads.md)")
        return text + ("; is it the incident's area? (GeoJSON coordinates are [lon, lat]; "
                       "docs/roads.md)")


def place_points(
    bounds: tuple[float, float, float, float], points: Iterable[tuple[float, float]]
) -> NetworkPlacement:
    """How many of ``points`` (lon, lat) lie within ``bounds`` (a network's west, south, east,
    north) grown by ``PLACE_PAD_M``, and how many would were the network's lon and lat read the
    other way round (a file written [lat, lon]: it then lies elsewhere)."""
    w, s, e, n = bounds
    pad_lon, pad_lat = span_degrees(PLACE_PAD_M, s, n)
    total = inside = swapped = 0
    for lon, lat in points:
        total += 1
        inside += w - pad_lon <= lon <= e + pad_lon and s - pad_lat <= lat <= n + pad_lat
        swapped += s - pad_lat <= lon <= n + pad_lat and w - pad_lon <= lat <= e + pad_lon
    return NetworkPlacement(total, inside, swapped, bounds)
