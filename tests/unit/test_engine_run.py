"""The engine benchmark's runner (``bench/engine_run.py``): its command line, run as a file the
way ``bench.fleets.run_one`` runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.fleets import RUNNER


def test_help_exits_0_and_names_the_arguments() -> None:
    proc = subprocess.run([sys.executable, str(RUNNER), "--help"], capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "INPUT.tsv" in proc.stdout
    assert "--no-zones" in proc.stdout
    assert "JSON" in proc.stdout  # the description says what it prints


def test_the_fleets_command_line_parses_as_before() -> None:
    from bench.engine_run import parse_args

    with_zones = parse_args(["fleet.tsv"])
    assert with_zones.input == Path("fleet.tsv") and with_zones.time_zones
    without = parse_args(["fleet.tsv", "--no-zones"])
    assert without.input == Path("fleet.tsv") and not without.time_zones
    assert with_zones.warmup is None  # the input's own, as before


def test_the_warm_up_is_never_the_measured_input() -> None:
    # a warm-up on the measured messages fills the process's caches with them: the small
    # fleets' short runs then hit them, and the flatness ratio leans on it
    from bench.engine_run import parse_args
    from bench.fleetgen import SIZES
    from bench.fleets import WARMUP_S, WARMUP_SEED, WARMUP_UNITS

    assert parse_args(["fleet.tsv", "--warmup", "w.tsv"]).warmup == Path("w.tsv")
    measured = {(units, float(window), 1) for units, window in SIZES}
    assert (WARMUP_UNITS, WARMUP_S, WARMUP_SEED) not in measured
