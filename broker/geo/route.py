"""A CAD route in local metres: where a unit is along it, and the stretch ahead.

Linear referencing is done with numpy over the route's vertex array, kept once per route
(cumulative distances precomputed), so the hot path never calls ``shapely.ops.substring``
(a pure-Python loop over vertices, ~100 us) or rebuilds geometry per fix. The same two
functions (:func:`cumulative_m`, :func:`stretch_between`) serve the road network's segments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np
import numpy.typing as npt
import shapely

from broker.geo.projection import LocalFrame

_FEW_SEGMENTS = 16  # windows up to this many segments are searched in plain floats


def cumulative_m(xy: np.ndarray) -> np.ndarray:
    """Distance (metres) from the first vertex of a polyline ``xy`` (n, 2) to each vertex.

    Examples
    --------
    >>> cumulative_m(np.array([[0.0, 0], [3, 4], [3, 10]])).tolist()
    [0.0, 5.0, 11.0]
    """
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])


def stretch_between(
    xy: np.ndarray,
    cum_m: np.ndarray,
    from_m: float,
    to_m: float,
    *,
    fast_straight: bool = False,
) -> np.ndarray:
    """Vertices of a polyline between two distances along it, ends interpolated.

    ``cum_m`` is :func:`cumulative_m` of ``xy``. ``from_m`` is raised to 0 and ``to_m`` lowered
    to the length; nothing else is clamped (callers that need ``from_m <= to_m`` clamp first).
    A numpy stand-in for ``shapely.ops.substring`` (which is pure Python).

    ``fast_straight``: a 2-vertex line is cut with plain float arithmetic, no numpy calls (~5x
    faster; most road segments between junctions are straight). Its ends can differ from
    ``np.interp``'s in the last bit (it scales by ``from_m / length`` where ``np.interp``
    multiplies by the slope), so it is a choice, not a default: the road walks have always used
    it and :meth:`ProjectedRoute.stretch` never has, and either change would move outputs.

    Examples
    --------
    >>> xy = np.array([[0.0, 0], [100, 0], [100, 100]])
    >>> stretch_between(xy, cumulative_m(xy), 50, 150).tolist()
    [[50.0, 0.0], [100.0, 0.0], [100.0, 50.0]]
    """
    total = float(cum_m[-1])
    from_m, to_m = max(0.0, from_m), min(total, to_m)
    if fast_straight and len(xy) == 2:
        (x0, y0), (x1, y1) = xy.tolist()
        a, b = from_m / total, to_m / total
        return np.array(
            [[x0 + a * (x1 - x0), y0 + a * (y1 - y0)], [x0 + b * (x1 - x0), y0 + b * (y1 - y0)]]
        )
    # cum_m never decreases, so these are the vertices with from_m < cum < to_m
    i = int(cum_m.searchsorted(from_m, side="right"))
    j = int(cum_m.searchsorted(to_m, side="left"))
    ends = [from_m, to_m]
    first_last = np.column_stack(
        [np.interp(ends, cum_m, xy[:, 0]), np.interp(ends, cum_m, xy[:, 1])]
    )
    return np.concatenate([first_last[:1], xy[i:j], first_last[1:]])


@dataclass(frozen=True, eq=False)
class ProjectedRoute:
    """A route as an (n, 2) array of metres in ``frame``, with cumulative distance per vertex."""

    key: str
    frame: LocalFrame
    xy: np.ndarray  # (n, 2) metres, travel order
    cum_m: np.ndarray  # (n,) distance from the start to each vertex
    end_lonlat: tuple[float, float]

    @property
    def length_m(self) -> float:
        """Total length in metres."""
        return float(self.cum_m[-1])

    @classmethod
    def from_lonlat(
        cls, key: str, coords: list[tuple[float, float]], frame: LocalFrame
    ) -> ProjectedRoute:
        """Project ``[lon, lat]`` pairs, dropping repeated vertices (zero-length segments)."""
        xy = frame.coords_to_xy(np.asarray(coords, dtype=float))
        keep = np.ones(len(xy), dtype=bool)
        keep[1:] = np.any(np.abs(np.diff(xy, axis=0)) > 1e-6, axis=1)
        xy = xy[keep]
        if len(xy) < 2:
            raise ValueError("route has fewer than 2 distinct points")
        return cls(key, frame, xy, cumulative_m(xy), (float(coords[-1][0]), float(coords[-1][1])))

    def locate(
        self, x: float, y: float, *, lo_m: float = 0.0, hi_m: float = float("inf")
    ) -> tuple[float, float]:
        """Distance along the route of the point nearest (x, y), searched within [lo_m, hi_m].

        Returns ``(along_m, offset_m)``: where along, and how far from the route. Windowing the
        search keeps a route that crosses itself or doubles back from snapping to the wrong leg.

        Examples
        --------
        >>> from broker.geo.projection import frame_for
        >>> r = ProjectedRoute("r", frame_for(0.1, 0.1), np.array([[0.0, 0], [100, 0], [100, 100]]),
        ...                    np.array([0.0, 100, 200]), (0.0, 0.0))
        >>> r.locate(50.0, 3.0)
        (50.0, 3.0)
        """
        cum = self.cum_m
        last = len(cum) - 1
        i0 = max(int(cum.searchsorted(lo_m, side="right")) - 1, 0)
        i1 = min(int(cum.searchsorted(hi_m, side="left")), last)
        if i1 <= i0:
            i1 = min(i0 + 1, last)
            i0 = i1 - 1
        if i1 - i0 <= _FEW_SEGMENTS:
            return self._locate_few(x, y, i0, i1)
        # Per segment: direction (dx, dy), and 1/length^2 (0 for a zero-length segment).
        # Array methods and ufuncs only: at a few dozen segments per call, numpy's Python-level
        # wrappers (np.clip, np.einsum dispatch) cost more than the arithmetic.
        ab_x, ab_y, inv_len2 = self._segments
        ax = self.xy[i0:i1, 0]
        ay = self.xy[i0:i1, 1]
        sx = ab_x[i0:i1]
        sy = ab_y[i0:i1]
        apx = x - ax
        apy = y - ay
        t = (apx * sx + apy * sy) * inv_len2[i0:i1]
        t.clip(0.0, 1.0, out=t)
        dx = apx - t * sx
        dy = apy - t * sy
        d2 = dx * dx + dy * dy
        k = int(d2.argmin())
        along = float(cum[i0 + k] + t[k] * (cum[i0 + k + 1] - cum[i0 + k]))
        return along, math.sqrt(float(d2[k]))

    def _locate_few(self, x: float, y: float, i0: int, i1: int) -> tuple[float, float]:
        """:meth:`locate` over segments ``i0..i1-1`` in plain floats: the same operations in
        the same order as the numpy path (so the same bits), without numpy's per-call cost,
        which dominates for the handful of segments a window usually holds."""
        xs, ys, sxs, sys_, invs, cum = self._segment_lists
        best_k, best_d2, best_t = i0, math.inf, 0.0
        for k in range(i0, i1):
            apx = x - xs[k]
            apy = y - ys[k]
            sx, sy = sxs[k], sys_[k]
            t = (apx * sx + apy * sy) * invs[k]
            t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
            dx = apx - t * sx
            dy = apy - t * sy
            d2 = dx * dx + dy * dy
            if d2 < best_d2:  # the first of equal distances, as argmin
                best_k, best_d2, best_t = k, d2, t
        along = cum[best_k] + best_t * (cum[best_k + 1] - cum[best_k])
        return along, math.sqrt(best_d2)

    @cached_property
    def _segment_lists(
        self,
    ) -> tuple[list[float], list[float], list[float], list[float], list[float], list[float]]:
        """The per-segment arrays as Python lists, for :meth:`_locate_few`."""
        ab_x, ab_y, inv_len2 = self._segments
        return (self.xy[:, 0].tolist(), self.xy[:, 1].tolist(), ab_x.tolist(), ab_y.tolist(),
                inv_len2.tolist(), self.cum_m.tolist())

    @cached_property
    def _segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment directions (x, y) and 1/length^2 per segment, computed once per route."""
        ab = np.diff(self.xy, axis=0)
        len2 = np.einsum("ij,ij->i", ab, ab)
        inv = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)
        return np.ascontiguousarray(ab[:, 0]), np.ascontiguousarray(ab[:, 1]), inv

    def point_at(self, along_m: float) -> tuple[float, float]:
        """(x, y) of the point ``along_m`` metres from the start (clamped to the route)."""
        along_m = min(max(along_m, 0.0), self.length_m)
        return (
            float(np.interp(along_m, self.cum_m, self.xy[:, 0])),
            float(np.interp(along_m, self.cum_m, self.xy[:, 1])),
        )

    def stretch(self, from_m: float, to_m: float) -> np.ndarray:
        """Vertices of the route between two distances, in travel order, ends interpolated.

        Examples
        --------
        >>> from broker.geo.projection import frame_for
        >>> r = ProjectedRoute("r", frame_for(0.1, 0.1), np.array([[0.0, 0], [100, 0], [100, 100]]),
        ...                    np.array([0.0, 100, 200]), (0.0, 0.0))
        >>> r.stretch(50, 150).tolist()
        [[50.0, 0.0], [100.0, 0.0], [100.0, 50.0]]
        """
        from_m = min(max(from_m, 0.0), self.length_m)
        to_m = min(max(to_m, from_m), self.length_m)
        return stretch_between(self.xy, self.cum_m, from_m, to_m)


def line_array(xy: np.ndarray, indices: np.ndarray) -> npt.NDArray[np.object_]:
    """LineStrings from stacked vertices ``xy`` (n, 2), one per run of equal ``indices``.

    ``shapely.linestrings`` with ``indices`` always returns an array; this says so to the type
    checker (its stubs also allow a single LineString).
    """
    return cast("npt.NDArray[np.object_]", shapely.linestrings(xy, indices=indices))


def dead_reckoned_path(x: float, y: float, heading_deg: float, length_m: float) -> np.ndarray:
    """A straight path of ``length_m`` from (x, y) along a compass heading (0 north, 90 east)."""
    rad = np.radians(heading_deg)
    return np.array([[x, y], [x + length_m * np.sin(rad), y + length_m * np.cos(rad)]])
