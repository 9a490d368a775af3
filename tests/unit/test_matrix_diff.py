"""bench.matrix_diff --base: two matrices of the same rows compared method by method."""

from __future__ import annotations

from typing import Any

import pytest

from bench.matrix_diff import paired, rows


def _method(warned: float, bystander_s: float) -> dict[str, Any]:
    return {"alert_messages": 10, "affected": {"warned_15": warned, "count": 100,
            "median_lead_s": 30.0}, "passers": {"warned_15": 1.0, "count": 20},
            "bystander_vehicle_s": bystander_s}  # fmt: skip


def _row(scenario: str, heading_s: float, held_out: bool = False) -> dict[str, Any]:
    return {"scenario": scenario, "units": 1, "traffic": "light", "held_out": held_out,
            "methods": {"zones+roads": _method(0.9, 500.0), "zones": _method(0.8, 700.0),
                        "zones+roads heading": _method(0.85, heading_s),
                        "circle300": _method(0.5, 1000.0),
                        "limit": _method(1.0, 0.0)}}  # fmt: skip


def test_the_after_matrix_comes_in_as_the_variant_and_rows_in_one_only_are_left_out():
    before = [_row("grid", 400.0), _row("kotka", 900.0, held_out=True), _row("gone", 1.0)]
    after = [_row("kotka", 450.0, held_out=True), _row("grid", 300.0), _row("new", 1.0)]
    doc = paired(before, after, "(after)")
    assert [r["scenario"] for r in doc] == ["grid", "kotka"]
    assert doc[0]["methods"]["zones+roads heading"]["bystander_vehicle_s"] == 400.0
    assert doc[0]["methods"]["zones+roads (after) heading"]["bystander_vehicle_s"] == 300.0
    text = "\n".join(rows(doc, "(after)"))
    assert (
        "| grid 1u light | zones+roads heading | 10 -> 10 | 85% -> 85% | 30.0 -> 30.0 "
        "| 100% -> 100% | 400 -> 300 |" in text
    )
    assert "400 -> 300 (0.40x -> 0.30x the circle's)" in text  # tuning rows: grid alone
    assert "900 -> 450 (0.90x -> 0.45x the circle's)" in text  # held out: kotka


def test_other_traffic_is_refused_and_the_totals_count_passers():
    before, after = [_row("grid", 400.0)], [_row("grid", 300.0)]
    text = "\n".join(rows(paired(before, after, "(after)"), "(after)"))
    assert "20 -> 20 passers" in text
    after[0]["methods"]["circle300"]["bystander_vehicle_s"] = 999.0  # another simulation
    with pytest.raises(ValueError, match="circle300 differs"):
        paired(before, after, "(after)")
