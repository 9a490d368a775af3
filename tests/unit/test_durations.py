"""broker.durations: timedelta thresholds that decide exactly as ``total_seconds()`` would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.durations import reaching, seconds

_SECONDS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(_SECONDS, st.integers(min_value=-3, max_value=3))
def test_reaching_decides_as_total_seconds(value: float, nudge: int) -> None:
    threshold = reaching(value)
    us = threshold // timedelta(microseconds=1) + nudge
    d = timedelta(microseconds=us)
    assert (d >= threshold) == (d.total_seconds() >= value)
    assert (d < threshold) == (d.total_seconds() < value)


@pytest.mark.parametrize("value", [29.999, 0.1, 0.3, 7.7777775, 3.0000005])
def test_reaching_is_the_shortest(value: float) -> None:
    threshold = reaching(value)
    assert threshold.total_seconds() >= value
    assert (threshold - timedelta(microseconds=1)).total_seconds() < value


def test_reaching_refuses_infinity() -> None:
    with pytest.raises(ValueError, match="finite"):
        reaching(float("inf"))


def test_seconds_is_the_timedelta() -> None:
    assert seconds(45.5) == timedelta(seconds=45.5)
    assert seconds(45.5) is seconds(45.5)
