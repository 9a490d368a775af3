"""Counted demand weighs roads by class: arterials carry more per lane than side streets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.simulate.demand import CLASS_WEIGHT, road_class_weight

ORDER = ["motorway", "primary", "secondary", "tertiary", "unclassified", "residential", "service"]


def test_osm_classes_rank_arterials_above_side_streets() -> None:
    weights = [road_class_weight(f"highway.{c}", 13.9, 1) for c in ORDER]
    assert weights == sorted(weights, reverse=True)
    assert len(set(weights)) == len(weights)
    # a combined SUMO type (road + tram) still reads the road's class
    assert road_class_weight("railway.tram|highway.primary", 5.0, 1) == CLASS_WEIGHT["primary"]


@given(st.floats(0.0, 40.0), st.floats(0.0, 40.0), st.integers(1, 4))
def test_without_a_class_a_faster_road_never_weighs_less(a: float, b: float, lanes: int) -> None:
    lo, hi = sorted((a, b))
    assert road_class_weight("", lo, lanes) <= road_class_weight("", hi, lanes)
    assert 0.0 < road_class_weight("", lo, lanes) <= 1.0
