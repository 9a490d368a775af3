"""Issue 15's scenarios: a hand-laid network (the old town) builds with netconvert, and counted
demand (routeSampler) is the same for a seed, different across seeds, and heavier on the
through roads than the random routes it was sampled from."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("libsumo")

from broker.simulate.demand import background_trips
from broker.simulate.network import BuiltNetwork, build_network, load_scenario

pytestmark = pytest.mark.sim

RECIPE = """
title = "old town"
[network]
source = "synthetic"
layout = "old-town"
origin = [8.69, 49.41]
[traffic]
demand = "counts"
candidate_routes = 200
light_lane_vph = 250.0
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltNetwork:
    d = tmp_path_factory.mktemp("scen")
    (d / "town.toml").write_text(RECIPE)
    return build_network(load_scenario(str(d / "town.toml")), d / "cache")


def _routes(path: Path) -> list[list[str]]:
    return [m.split() for m in re.findall(r'<route edges="([^"]+)"', path.read_text())]


def test_counted_demand_is_deterministic_per_seed(built: BuiltNetwork) -> None:
    one = background_trips(built, "light", 1, 200.0)
    first = one.read_text().split("<routes", 1)[1]  # past the dated header
    for f in [one, *built.dir.glob("cand-*")]:  # from nothing again: candidates, counts, sample
        f.unlink()
    again = background_trips(built, "light", 1, 200.0)
    assert again.read_text().split("<routes", 1)[1] == first
    other = background_trips(built, "light", 2, 200.0)
    assert _routes(one) and _routes(one) != _routes(other)


def test_counted_demand_loads_the_through_roads_more_than_random_routes(
    built: BuiltNetwork,
) -> None:
    """Share of edge uses on the ring, the tunnels and the viaduct (priority >= 7): routes
    sampled to counts against the random candidates (uniform random trips on their fastest
    routes) they were sampled from."""
    through = set(re.findall(r'<edge id="([^":]+)"[^>]*priority="[7-9]"', built.net.read_text()))
    assert through

    def share(path: Path) -> float:
        uses = Counter(e for r in _routes(path) for e in r)
        return sum(n for e, n in uses.items() if e in through) / sum(uses.values())

    counted = share(background_trips(built, "light", 1, 200.0))
    (candidates,) = built.dir.glob("cand-s1-*.rou.xml")
    assert counted > 2 * share(candidates)
