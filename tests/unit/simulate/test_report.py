"""Held-out scenarios stay out of the tuning summary of ``sweep matrix`` (issue 15)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.simulate.report import summary, summary_line


def _row(scenario: str, held_out: bool, warned: float, limit: float, by: float, circ: float,
         n: int = 10) -> dict[str, Any]:  # fmt: skip
    def method(w: float, b: float) -> dict[str, Any]:
        return {"affected": {"count": n, "warned_15": w}, "bystander_vehicle_s": b}

    return {
        "scenario": scenario, "units": 1, "traffic": "light", "held_out": held_out,
        "methods": {"zones+roads": method(warned, by), "limit": method(limit, 0.0),
                    "circle300": method(0.0, circ)},
        "targets": {"zones+roads": {"all_hold": warned >= 0.95 * limit and by <= circ}},
    }  # fmt: skip


share = st.floats(0.0, 1.0)


@given(st.lists(st.tuples(st.booleans(), share, share, st.floats(0, 1e5), st.floats(1, 1e5)),
                min_size=1, max_size=8))  # fmt: skip
def test_the_tuning_summary_never_counts_a_held_out_row(spec: list) -> None:
    rows = [_row(f"s{i}", *t) for i, t in enumerate(spec)]
    tuning = summary(rows, held_out=False)
    held = summary(rows, held_out=True)
    assert tuning["rows"] + held["rows"] == len(rows)
    # the same summary over the tuning rows alone: held-out rows change nothing in it
    alone = summary([r for r in rows if not r["held_out"]], held_out=False)
    assert tuning == alone
    assert set(tuning["scenarios"]).isdisjoint(held["scenarios"])
    assert tuning["affected"] == 10 * sum(not t[0] for t in spec)


def test_a_bad_held_out_row_does_not_spoil_the_tuning_figures() -> None:
    rows = [_row("grid", False, 0.9, 0.9, 50.0, 100.0), _row("kotka", True, 0.1, 0.9, 900.0, 100.0)]
    tuning, held = summary(rows, held_out=False), summary(rows, held_out=True)
    assert tuning["share15_vs_limit"] == pytest.approx(1.0)
    assert tuning["bystanders_vs_circle"] == pytest.approx(0.5)
    assert tuning["rows_all_hold"] == 1
    assert held["share15_vs_limit"] == pytest.approx(0.1 / 0.9)
    assert held["rows_all_hold"] == 0
    assert "held out" in summary_line(held) and "kotka" in summary_line(held)
    assert "tuning rows (1, grid)" in summary_line(tuning)


def test_the_trade_off_refuses_a_held_out_scenario() -> None:
    import typer

    from broker.simulate.network import scenario_names
    from broker.simulate.sweep import tuning_scenarios

    tuning = scenario_names(held_out=False)
    assert tuning_scenarios(tuning) == tuning
    with pytest.raises(typer.BadParameter, match="held out"):
        tuning_scenarios([*tuning[:1], scenario_names(held_out=True)[0]])
