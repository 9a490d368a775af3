"""Seconds from the settings as ``timedelta`` thresholds, for comparisons on the per-fix path.

``(a - b).total_seconds() >= s`` costs a float conversion per fix, and ``timedelta(seconds=s)``
a constructor call; the engine asks such questions several times per fix. :func:`reaching`
gives, once per value, the timedelta ``t`` for which ``d >= t`` holds exactly when
``d.total_seconds() >= s`` does, so the engine compares timedeltas and decides the same.
"""

from __future__ import annotations

import math
from datetime import timedelta
from functools import lru_cache

_US = 10**6  # microseconds per second: timedelta's resolution


@lru_cache(maxsize=256)
def reaching(seconds: float) -> timedelta:
    """The shortest timedelta whose ``total_seconds()`` is at least ``seconds``.

    ``total_seconds()`` is ``microseconds / 10**6`` correctly rounded, so it is monotone in
    the microseconds and the first count that reaches ``seconds`` is found among the two
    around ``seconds * 10**6``.

    Examples
    --------
    >>> reaching(29.999), reaching(1.0)
    (datetime.timedelta(seconds=29, microseconds=999000), datetime.timedelta(seconds=1))
    >>> reaching(-3.0) <= timedelta(seconds=-3)
    True
    """
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be finite, got {seconds}")
    us = math.floor(seconds * _US) - 1
    while us / _US < seconds:
        us += 1
    return timedelta(microseconds=us)


@lru_cache(maxsize=256)
def seconds(value: float) -> timedelta:
    """``timedelta(seconds=value)``, made once per value."""
    return timedelta(seconds=value)
