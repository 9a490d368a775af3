"""The Kafka bench's sustained rate: crossings interpolated between samples of positions taken."""

from __future__ import annotations

import pytest

from bench.kafka_bench import TAKEN, crossing, sustained_rate


def test_crossing_interpolates_between_the_samples_around_the_level() -> None:
    series = [(0.0, 0.0), (1.0, 100.0), (2.0, 300.0)]
    assert crossing(series, 200.0) == pytest.approx(1.5)
    assert crossing(series, 100.0) == 1.0  # a sample on the level is the crossing
    assert crossing(series, 301.0) is None


def test_a_flat_stretch_crosses_at_its_first_sample() -> None:
    assert crossing([(0.0, 0.0), (1.0, 50.0), (2.0, 50.0)], 50.0) == 1.0


def test_sustained_rate_is_the_middle_80_percent_over_its_interpolated_window() -> None:
    # 1,000 positions/s from t = 3 s, sampled every 0.7 s (no sample on either crossing)
    taken = [(t / 10, max(0.0, (t / 10 - 3.0) * 1000)) for t in range(0, 200, 7)]
    out = sustained_rate(taken, 10_000)
    assert out["sustained_positions_per_s"] == 1000
    assert out["window"]["from_s"] == pytest.approx(4.0)
    assert out["window"]["to_s"] == pytest.approx(12.0)


def test_no_rate_when_the_backlog_was_not_reached() -> None:
    assert sustained_rate([(0.0, 0.0), (5.0, 5000.0)], 10_000) == {
        "sustained_positions_per_s": None}


def test_the_positions_counter_is_read_from_prometheus_text() -> None:
    text = ('# TYPE broker_messages_in_total counter\n'
            'broker_messages_in_total{topic="routes"} 12.0\n'
            'broker_messages_in_total{topic="avl.positions"} 4567.0\n')
    match = TAKEN.search(text)
    assert match is not None and float(match.group(1)) == 4567.0
