"""The simulator's run options that need no SUMO: the dropout's text form."""

from __future__ import annotations

import pytest

from broker.simulate.run import RunOptions, parse_dropout


def test_a_dropout_reads_after_and_length_and_none_by_default() -> None:
    assert parse_dropout("60,30") == (60.0, 30.0)
    assert parse_dropout("") == RunOptions().dropout_s == (0.0, 0.0)
    assert RunOptions().route_lead_s == 0.0  # the route with the first fix, as before


@pytest.mark.parametrize("text", ["60", "a,b", "1,2,3"])
def test_a_malformed_dropout_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dropout(text)


def test_a_set_variant_is_the_runs_engine_with_the_override_segments_included() -> None:
    from broker.simulate.sweep import _variant

    assert _variant([]) is None
    variant = _variant(["approach_s=12", "on_scene_turn_offs=2"])
    assert variant is not None
    # the heading-aware receiver reads the variant's warning segments as the run's own
    assert variant.warning_segments == RunOptions().cfg.warning_segments is True
    assert (variant.approach_s, variant.on_scene_turn_offs) == (12.0, 2)


def test_the_cad_route_stops_where_the_unit_will_stop_on_the_scene_edge() -> None:
    from broker.simulate.run import _shape_upto

    edge = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)]  # 200 m, bent halfway
    assert _shape_upto(edge, 0.25) == [(0.0, 0.0), (50.0, 0.0)]
    assert _shape_upto(edge, 0.75) == [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)]
    assert _shape_upto(edge, 1.5) == edge  # never past the edge's end
