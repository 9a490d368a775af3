"""Seconds from the settings as ``timedelta`` thresholds, for comparisons on the per-fix path.

``(a - b).total_seconds() >= s`` costs a float conversion per fix, and ``timedelta(seconds=s)``
a constructor call; the engine asks such questions several times per fix. :func:`reaching`
gives, once per value, the timedelta ``t`` for which ``d >= t`` holds exactly when
``d.total_seconds() >= s`` does, so the engine compares timedeltas and decides the same.
"""

from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction
from functools import lru_cache

_US = 10**6  # microseconds per second: timedelta's resolution
_MAX_US = timedelta.max // timedelta(microseconds=1)
_MIN_S = timedelta.min.total_seconds()  # exact: whole seconds


@lru_cache(maxsize=256)
def reaching(seconds: float) -> timedelta:
    """The shortest timedelta whose ``total_seconds()`` is at least ``seconds``.

    ``total_seconds()`` is ``microseconds / 10**6`` correctly rounded, so it is monotone in
    the microseconds: the first count that reaches ``seconds`` is bisected for between one
    below it exactly and one at or above it exactly (floats of 1e10 s and more are coarser
    than a microsecond). Past timedelta's range (``inf`` included, which a setting may be):
    ``timedelta.max`` (nothing reaches it but itself) or ``timedelta.min``.

    Examples
    --------
    >>> reaching(29.999), reaching(1.0)
    (datetime.timedelta(seconds=29, microseconds=999000), datetime.timedelta(seconds=1))
    >>> reaching(-3.0) <= timedelta(seconds=-3), reaching(float("inf")) == timedelta.max
    (True, True)
    """
    if math.isnan(seconds):
        raise ValueError("seconds must be a number, got nan")
    if seconds <= _MIN_S:
        return timedelta.min
    if seconds == math.inf:
        return timedelta.max
    below = Fraction(math.nextafter(seconds, -math.inf)) * _US  # us / 10**6 <= it: below
    lo, hi = math.floor(below), math.ceil(Fraction(seconds) * _US)  # lo misses, hi reaches
    if lo >= _MAX_US:
        return timedelta.max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid / _US >= seconds:
            hi = mid
        else:
            lo = mid
    return timedelta(microseconds=min(hi, _MAX_US))


@lru_cache(maxsize=256)
def seconds(value: float) -> timedelta:
    """``timedelta(seconds=value)``, made once per value."""
    return timedelta(seconds=value)
