"""broker.durations: timedelta thresholds that decide exactly as ``total_seconds()`` would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.durations import reaching, seconds

# over timedelta's whole range: past ~1.7e10 s a float is coarser than a microsecond
_SECONDS = st.floats(min_value=-8.6e13, max_value=8.6e13, allow_nan=False, allow_infinity=False)


@given(_SECONDS, st.integers(min_value=-3, max_value=3))
def test_reaching_decides_as_total_seconds(value: float, nudge: int) -> None:
    threshold = reaching(value)
    us = threshold // timedelta(microseconds=1) + nudge
    if not -(2**63) < us < timedelta.max // timedelta(microseconds=1):
        return  # past timedelta's range: no such d
    d = timedelta(microseconds=us)
    assert (d >= threshold) == (d.total_seconds() >= value)
    assert (d < threshold) == (d.total_seconds() < value)


@pytest.mark.parametrize("value", [29.999, 0.1, 0.3, 7.7777775, 3.0000005, 1e12, -1e12,
                                   2.0**34 + 0.5, 5e-324, -0.0])
def test_reaching_is_the_shortest(value: float) -> None:
    threshold = reaching(value)
    assert threshold.total_seconds() >= value
    assert (threshold - timedelta(microseconds=1)).total_seconds() < value


def test_reaching_past_timedeltas_range() -> None:
    # a setting may be inf (never): every duration falls short of it, as of total_seconds()
    assert reaching(float("inf")) == timedelta.max
    assert reaching(1e20) == timedelta.max
    assert reaching(float("-inf")) == timedelta.min
    with pytest.raises(ValueError, match="nan"):
        reaching(float("nan"))


def test_seconds_is_the_timedelta() -> None:
    assert seconds(45.5) == timedelta(seconds=45.5)
    assert seconds(45.5) is seconds(45.5)
