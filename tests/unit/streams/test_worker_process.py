"""Ports for child workers (``broker.streams.worker_process.free_port``): below the kernel's
ephemeral range, so no outgoing connection takes one between the draw and the worker's bind."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.streams.worker_process import CHILD_PORTS, ephemeral_low, free_port


def test_the_ephemeral_range_is_read_from_the_kernel_with_linux_s_default(tmp_path: Path) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("15000\t60999\n")
    assert ephemeral_low(str(ranges)) == 15000
    assert ephemeral_low(str(tmp_path / "absent")) == 32768


def test_ports_come_from_below_the_ephemeral_range_and_skip_besides() -> None:
    assert CHILD_PORTS.stop <= max(ephemeral_low(), CHILD_PORTS.start + 100)
    drawn = [free_port(besides=(10_001,)) for _ in range(50)]
    assert all(p in CHILD_PORTS and p != 10_001 for p in drawn)
    assert len(set(drawn)) > 1  # not one seeded sequence shared by every caller


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        other = next(p for p in CHILD_PORTS if p != busy)
        draws: Iterator[int] = iter([busy, busy, other])
        monkeypatch.setattr(random.Random, "choice", lambda self, seq: next(draws))
        assert free_port() == other
