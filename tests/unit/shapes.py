"""Named edge-case routes in local metres (a catalogue reused by parametrised tests)."""

from __future__ import annotations

import numpy as np

SHAPES: dict[str, np.ndarray] = {
    "straight": np.array([[0.0, 0.0], [1_000.0, 0.0]]),
    "two-point-short": np.array([[0.0, 0.0], [5.0, 0.0]]),
    "right-angle": np.array([[0.0, 0.0], [400.0, 0.0], [400.0, 400.0]]),
    "u-turn": np.array([[0.0, 0.0], [500.0, 0.0], [500.0, 30.0], [0.0, 30.0]]),
    "crosses-itself": np.array(
        [[0.0, 0.0], [600.0, 0.0], [600.0, 300.0], [300.0, 300.0], [300.0, -300.0]]
    ),
    "zigzag": np.array([[i * 60.0, (i % 2) * 60.0] for i in range(30)]),
    "repeated-vertex": np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 0.0], [200.0, 50.0]]),
}
