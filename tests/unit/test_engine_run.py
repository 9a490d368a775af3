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
