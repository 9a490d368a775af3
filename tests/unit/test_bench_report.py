"""docs/benchmarks.md's end-to-end rows: the burst measured from a worker's start and, when the
run has them, again on a running pipeline (bench.run.WARM_LEAD_IN_S of patrol traffic first)."""

from __future__ import annotations

from typing import Any

from bench import report


def _run(p99_all: float, p99_steady: float, lead_in_s: float = 0.0) -> dict[str, Any]:
    return {"units": 500, "rate_positions_per_s": 500.0, "duration_s": 45.0,
            "lead_in_s": lead_in_s, "positions_sent": 22_500, "producer_worst_lag_s": 0.1,
            "warmup_s": 5.0, "latency_all": {"n": 1_200, "p50_ms": 20.0, "p99_ms": p99_all},
            "latency_steady": {"n": 1_000, "p50_ms": 18.0, "p99_ms": p99_steady},
            "alert_events": {"create": 90, "update": 700}, "engine_alert_versions": 790,
            "versions_delivered_to_a_partner": 600,
            "versions_held_back_by_min_update_interval": 190,
            "deliveries_queued": 1_200, "deliveries_queued_by_partner": {"waze": 600, "cap": 600},
            "webhooks_received": 1_200, "lost": 0}


def _burst_rows(results: dict[str, Any]) -> dict[str, report.Figure]:
    return {f.what: f for f in report.ratio_figures(results) if "burst" in f.what}


def test_a_run_with_warm_runs_reports_their_burst_beside_the_start_burst() -> None:
    results = {"e2e_kafka": {
        "head": _run(90.0, 30.0), "base": _run(120.0, 40.0),
        "head_warm": _run(42.0, 30.0, lead_in_s=10.0),
        "head_warm_runs": [report.e2e_brief(_run(p, 30.0, 10.0)) for p in (40.0, 42.0, 60.0)]}}
    rows = _burst_rows(results)
    start = rows["end to end through Kafka (head): p99 with the start burst / steady p99"]
    warm = rows["end to end through Kafka (head, the burst after 10 s of patrol traffic): "
                "p99 with the burst / steady p99"]
    assert (start.value, start.holds) == (3.0, False)
    assert (warm.value, warm.holds) == (1.4, True)
    page = report.render(results)
    assert "the burst on a running pipeline (10 s of patrol traffic first, no alerts)" in page
    assert "40.0 / 30.0 ms (1.33x); 42.0 / 30.0 ms (1.40x); 60.0 / 30.0 ms (2.00x)" in page


def test_a_run_without_warm_runs_has_no_warm_row() -> None:
    rows = _burst_rows({"e2e_kafka": {"head": _run(45.0, 30.0), "base": _run(60.0, 30.0)}})
    assert [f.value for f in rows.values()] == [1.5, 2.0]
    assert rows["end to end through Kafka (head): p99 with the start burst / steady p99"].holds
