"""The fast subset of the fault suite (``make faults``, docs/reliability.md) in ``make test``.

Two short scenarios on the real parts - live traffic through Kafka into a worker process that
delivers to scripted partners on 127.0.0.1 - and the goals that must hold whatever the timing:
nothing lost, nothing out of order, nothing stale sent as live, for every partner. Time to
recover and superseded versions are measured by ``make faults`` but never asserted here: they
are durations and races, and tests assert no duration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.runner import Options, run_scenario
from tests.faults.scenarios import by_name

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["partner_down", "worker_kill9"])
def test_a_short_fault_loses_reorders_and_staleness_nothing(
    name: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    scenario = by_name(quick=True)[name]
    result = run_scenario(scenario, Options(bootstrap=kafka_bootstrap, kafka=None, out=tmp_path,
                                            drain_max_s=60.0))
    assert result["alerts"] > 0
    for partner, f in result["figures"].items():
        shown = ("should_reach", "delivered_current", "lost_final", "lost_live", "out_of_order",
                 "stale_as_live", "superseded", "recover_s", "examples")
        why = f"{scenario.title}, {partner}: {({k: f[k] for k in shown})} (logs: {result['logs']})"
        assert f["should_reach"] > 0, why
        assert f["lost"] == 0, why
        assert f["out_of_order"] == 0, why
        assert f["stale_as_live"] == 0, why
