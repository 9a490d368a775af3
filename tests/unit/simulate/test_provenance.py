"""A result says what was run: the units' form, the CAD route lead, the dropout and the engine
settings that differ from the default, in ``broker simulate --json`` and in every row of
``sweep matrix``'s matrix.json (a hand-made run, no SUMO)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest
from typer.testing import CliRunner

from broker.simulate import report, scorer, sweep
from broker.simulate.cli import engine_config, result_json
from broker.simulate.network import BuiltNetwork, Scenario
from broker.simulate.options import RunOptions
from broker.simulate.run import RunResult
from broker.simulate.scorer import MODE_RESPONDING, Traffic, UnitTrack

T = 61


def _result(opts: RunOptions) -> RunResult:
    """A unit driving east at 10 m/s, one civilian coming the other way, no zones."""
    xs = 10.0 * np.arange(T)
    unit = UnitTrack("E1", xs, np.zeros(T), xs.copy(), np.zeros(T), np.full(T, MODE_RESPONDING))
    k = np.arange(T)
    traffic = Traffic(k, np.zeros(T, int), 600.0 - 10.0 * k, np.full(T, 1.5), np.full(T, 270.0))
    encounters = scorer.find_encounters(traffic, [unit])
    warners = [scorer.Warner("zones+roads"), scorer.Warner("zones"),
               scorer.limit_warning([unit]), scorer.circle_warning()]  # fmt: skip
    figures = {w.name: scorer.score(traffic, [unit], w, encounters) for w in warners}
    figures |= {f"{n} (set)": figures[n] for n in ("zones+roads", "zones") if opts.variants}
    # no geometry is read: the network's projection is never asked for
    built = BuiltNetwork(Scenario("line", "line", "city", {}), Path("."), Path("n"), Path("r"),
                         None)  # type: ignore[arg-type]  # fmt: skip
    return RunResult(
        options=opts, built=built, traffic=traffic, units=[unit], plans=[],
        events={"zones+roads": [], "zones": []}, spans={}, encounters=encounters,
        figures=figures,
    )  # fmt: skip


def test_a_result_says_its_form_route_lead_dropout_and_engine_settings() -> None:
    cfg = engine_config(None, None, ["stopped_walk_s=20", "approach_s=12"])
    opts = RunOptions(form="split", route_lead_s=30.0, dropout_s=(60.0, 30.0), cfg=cfg)
    doc = json.loads(json.dumps(result_json(_result(opts))))
    assert (doc["form"], doc["route_lead_s"], doc["dropout_s"]) == ("split", 30.0, [60.0, 30.0])
    assert doc["engine_set"] == {"stopped_walk_s": 20.0, "approach_s": 12.0}
    plain = result_json(_result(RunOptions()))
    assert (plain["form"], plain["route_lead_s"], plain["dropout_s"]) == ("combined", 0.0, [0, 0])
    assert plain["engine_set"] == {}


def test_a_matrix_row_says_its_set_route_lead_and_dropout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def run(opts: RunOptions, progress: object = None) -> RunResult:
        return _result(opts)

    monkeypatch.setattr(sweep, "run_isolated", run)
    res = CliRunner().invoke(sweep.app, [
        "matrix", "--scenarios", "grid", "--seeds", "1", "--units", "1", "--levels", "light",
        "--out", str(tmp_path), "--set", "stopped_walk_s=20", "--route-lead-s", "30",
        "--dropout", "60,30",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = json.loads((tmp_path / "matrix.json").read_text())
    assert row["set"] == {"stopped_walk_s": 20.0}
    assert (row["route_lead_s"], row["dropout_s"]) == (30.0, [60.0, 30.0])
    assert report.LIMIT in row["methods"] and "zones+roads (set)" in row["methods"]
    assert msgspec.json.decode((tmp_path / "matrix.json").read_bytes())  # still plain JSON
