"""The heading-aware receiver's pieces (``broker.simulate.receiver``); how it warns drivers is
tested through the scorer (tests/unit/simulate/test_scorer.py, "standing drivers")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.simulate.receiver import civilian_speeds
from broker.simulate.scorer import Traffic


@given(st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)), min_size=1, max_size=12),
       st.integers(0, 5))  # fmt: skip
def test_civilian_speeds_are_the_step_to_step_displacement(points, gap_at):
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    steps = np.arange(len(points))
    steps[gap_at:] += 1 if 0 < gap_at < len(points) else 0  # a missing step: speed unknown
    rows = [(int(k), 1, x, y) for k, x, y in zip(steps, xs, ys, strict=True)]
    rows += [(k, 0, 0.0, 0.0) for k in range(3)]
    rows.sort()
    arr = np.array(rows, dtype=float)
    traffic = Traffic(step=arr[:, 0].astype(int), civ=arr[:, 1].astype(int), x=arr[:, 2],
                      y=arr[:, 3], heading_deg=np.zeros(len(arr)))  # fmt: skip
    speeds = civilian_speeds(traffic)
    mine = speeds[traffic.civ == 1]
    assert np.isnan(mine[0])
    for i in range(1, len(points)):
        if steps[i] - steps[i - 1] == 1:
            assert mine[i] == pytest.approx(math.hypot(xs[i] - xs[i - 1], ys[i] - ys[i - 1]))
        else:
            assert np.isnan(mine[i])
    assert np.isnan(speeds[traffic.civ == 0][0]) and (speeds[traffic.civ == 0][1:] == 0).all()


def test_speeds_never_run_from_one_driver_into_the_next_and_use_the_step_length():
    # civilian 1 starts the step after civilian 0's last one, at the same place
    rows = [(0, 0, 0.0, 0.0), (1, 0, 4.0, 0.0), (2, 1, 4.0, 0.0), (3, 1, 10.0, 0.0)]
    arr = np.array(rows, dtype=float)
    traffic = Traffic(step=arr[:, 0].astype(int), civ=arr[:, 1].astype(int), x=arr[:, 2],
                      y=arr[:, 3], heading_deg=np.zeros(len(arr)), dt_s=2.0)  # fmt: skip
    speeds = civilian_speeds(traffic)
    assert np.isnan(speeds[0]) and speeds[1] == pytest.approx(2.0)  # 4 m in 2 s
    assert np.isnan(speeds[2]) and speeds[3] == pytest.approx(3.0)  # its own first row
