"""The heading-aware receiver's pieces (``broker.simulate.receiver``); how it warns drivers is
tested through the scorer (here rule 5, a driver standing behind a standing unit; rules 1-4 in
tests/unit/simulate/test_scorer.py, "standing drivers")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from broker.simulate import scorer
from broker.simulate.receiver import civilian_speeds
from broker.simulate.scorer import MODE_RESPONDING, Traffic, UnitTrack, Warner, ZoneSpan


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


# Rule 5. A unit standing at (1000, 0) heading east (90 deg), its path on east, its road behind
# it named eastbound (the walk up its road); drivers on that road, heading east.
UNIT_XY = (1000.0, 0.0)
PATH = shapely.LineString([UNIT_XY, (3000.0, 0.0)])
ROAD_BEHIND = shapely.LineString([(0.0, 0.0), UNIT_XY])
STEPS = 20


def _behind_traffic(drivers: dict[int, tuple[float, float, float]]) -> Traffic:
    """civ -> (x, y, speed m/s east) from step 0 to STEPS - 1, heading east."""
    rows = [(k, civ, x + v * k, y) for civ, (x, y, v) in drivers.items() for k in range(STEPS)]
    rows.sort()
    arr = np.array(rows, dtype=float)
    return Traffic(step=arr[:, 0].astype(int), civ=arr[:, 1].astype(int), x=arr[:, 2],
                   y=arr[:, 3], heading_deg=np.full(len(arr), 90.0))  # fmt: skip


def _warned(traffic: Traffic, rx: scorer.Receiver, **span: object) -> dict[int, bool]:
    """Per driver: warned on every row from step 1 on (row 0 has no speed: never standing)."""
    fields = {"path": PATH, "unit_xy": UNIT_XY, "unit_heading_deg": 90.0,
              "unit_speed_mps": 0.0} | span  # fmt: skip
    zone = ZoneSpan("E1", 0, STEPS, shapely.box(-1e5, -1e5, 1e5, 1e5),
                    segments=[scorer.Segment(ROAD_BEHIND, both=False, until=None)],
                    **fields)  # type: ignore[arg-type]
    far = UnitTrack("E1", np.full(STEPS, 5000.0), np.zeros(STEPS), np.full(STEPS, 5000.0),
                    np.zeros(STEPS), np.full(STEPS, MODE_RESPONDING))  # fmt: skip
    mask = scorer.inside_masks(traffic, [far], Warner("h", spans=[zone], heading_aware=rx))["E1"]
    later = traffic.step >= 1
    return {int(c): bool(mask[later & (traffic.civ == c)].all())
            for c in np.unique(traffic.civ)}  # fmt: skip


@given(behind=st.floats(0.0, 900.0), off_axis=st.floats(-11.0, 11.0),
       limit=st.floats(5.0, 200.0))  # fmt: skip
def test_a_driver_standing_behind_a_standing_unit_is_not_warned(behind, off_axis, limit):
    traffic = _behind_traffic({0: (UNIT_XY[0] - behind, off_axis, 0.0)})
    rx = scorer.Receiver(hold_s=0.0, standing_far_m=None, behind_standing_m=limit)
    if behind > limit + 1e-6:  # behind the unit along its heading (east), metres
        assert _warned(traffic, rx) == {0: False}
    elif behind < limit - 1e-6:
        assert _warned(traffic, rx) == {0: True}
    off = scorer.Receiver(hold_s=0.0, standing_far_m=None, behind_standing_m=None)
    assert _warned(traffic, off) == {0: True}


def test_only_standing_drivers_on_the_units_axis_behind_a_standing_unit_with_a_path():
    traffic = _behind_traffic({
        0: (700.0, 0.0, 0.0),  # 300 m behind, standing
        1: (200.0, 0.0, 8.0),  # driving up behind it
        2: (700.0, 11.0, 0.0),  # standing beside the axis (the road's far lane)
    })  # fmt: skip
    rx = scorer.Receiver(hold_s=0.0, standing_far_m=None, behind_standing_m=20.0,
                         behind_axis_m=10.0)  # fmt: skip
    assert _warned(traffic, rx) == {0: False, 1: True, 2: True}
    everyone = {0: True, 1: True, 2: True}
    assert _warned(traffic, rx, unit_speed_mps=1.5) == everyone  # the unit moves
    assert _warned(traffic, rx, unit_heading_deg=270.0) == everyone  # they are ahead of it
    assert _warned(traffic, rx, path=None) == everyone  # on scene: they pass it
    for missing in ("unit_xy", "unit_heading_deg", "unit_speed_mps"):  # not in the message
        assert _warned(traffic, rx, **{missing: None}) == everyone
