"""Scenario recipes: the held-out flag and the demand option are read; names split by them."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.simulate.network import ScenarioError, load_scenario, scenario_names

RECIPE = """
title = "t"
held_out = {held}
[network]
source = "synthetic"
layout = "old-town"
origin = [8.69, 49.41]
[traffic]
demand = "counts"
heavy_lane_vph = 700.0
"""


@pytest.mark.parametrize("held", [True, False])
def test_a_recipe_says_whether_it_is_held_out(tmp_path: Path, held: bool) -> None:
    path = tmp_path / "town.toml"
    path.write_text(RECIPE.format(held=str(held).lower()))
    sc = load_scenario(str(path))
    assert sc.held_out is held
    assert sc.traffic.demand == "counts"
    assert sc.traffic.lane_vph("heavy") == 700.0
    with pytest.raises(ScenarioError):
        sc.traffic.lane_vph("rush")


def test_the_shipped_scenarios_split_into_tuning_and_held_out() -> None:
    tuning, held = scenario_names(held_out=False), scenario_names(held_out=True)
    assert held, "some scenarios must be kept out of tuning"
    assert sorted(tuning + held) == scenario_names()
    assert {"grid", "helsinki", "berlin", "braunschweig", "highway"} <= set(tuning)


def test_a_synthetic_network_rebuilds_when_its_layout_changes(tmp_path: Path) -> None:
    path = tmp_path / "town.toml"
    path.write_text(RECIPE.format(held="false"))
    a = load_scenario(str(path)).network_hash
    path.write_text(RECIPE.format(held="false").replace('"old-town"', '"interchange"'))
    assert load_scenario(str(path)).network_hash != a
