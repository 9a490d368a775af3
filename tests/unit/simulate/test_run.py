"""The simulator's run (broker/simulate/run.py) in the parts that need no SUMO."""

from __future__ import annotations

from broker.simulate.run import _shape_upto


def test_the_cad_route_stops_where_the_unit_will_stop_on_the_scene_edge() -> None:
    edge = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)]  # 200 m, bent halfway
    assert _shape_upto(edge, 0.25) == [(0.0, 0.0), (50.0, 0.0)]
    assert _shape_upto(edge, 0.75) == [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)]
    assert _shape_upto(edge, 1.5) == edge  # never past the edge's end
