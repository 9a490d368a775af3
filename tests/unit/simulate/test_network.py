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


@pytest.mark.parametrize("name", scenario_names())
def test_every_shipped_recipe_loads(name: str) -> None:
    sc = load_scenario(name)
    assert sc.name == name and sc.network["source"]
    assert sc.units.min_route_m <= sc.units.max_route_m


BASE = '[network]\nsource = "synthetic"\nlayout = "old-town"\norigin = [8.69, 49.41]\n'


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('held_out = "false"\n' + BASE, "held_out: want true or false, got 'false'"),
        ("held-out = true\n" + BASE,
         "top level: unknown keys ['held-out'] (did you mean 'held_out'?)"),
        (BASE + "[unit]\nmin_route_m = 1.0\n", "unknown keys ['unit'] (did you mean 'units'?)"),
        (BASE + "[trafic]\ndemand = 'counts'\n",
         "unknown keys ['trafic'] (did you mean 'traffic'?)"),
        (BASE + "box = [1.0, 2.0, 3.0, 4.0]\n", "network: unknown keys ['box']"),
        (BASE + "[traffic]\nlight_period_s = -1.0\n", "traffic.light_period_s: want a number > 0"),
        (BASE + "[traffic]\ndemand = 'rush'\n",
         "traffic.demand: want one of counts, random, recorded, got 'rush'"),
        (BASE + "[units]\nmin_route_m = 3000.0\nmax_route_m = 2000.0\n",
         "units.min_route_m: min_route_m 3000.0 is over max_route_m 2000.0"),
        ('[network]\nsource = "nett"\n', "network.source: want one of"),
        ("title = 't'\n", "network: missing"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_file_key_and_value(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(str(path))
    assert str(err.value).startswith(f"{path}: bad scenario recipe: ")
    assert said in str(err.value)
