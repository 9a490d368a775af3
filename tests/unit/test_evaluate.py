"""The lead-time metric on hand-made cases, so the figures can be trusted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker.evaluate import ZoneInterval, lead_times, zone_intervals
from tests.conftest import at, drive, east_route, fix

BIG = {"type": "Polygon", "coordinates": [[[-81, 35], [-80, 35], [-80, 36], [-81, 36], [-81, 35]]]}


def test_no_zones_means_zero_lead():
    fixes = [(at(10), -80.5, 35.5)]
    assert lead_times(fixes, []).tolist() == [0.0]


def test_a_zone_over_everything_gives_time_since_it_went_live():
    import shapely

    iv = ZoneInterval("v", at(0).timestamp(), at(100).timestamp(), shapely.geometry.shape(BIG))
    fixes = [(at(10), -80.5, 35.5), (at(50), -80.5, 35.5), (at(150), -80.5, 35.5)]
    assert lead_times(fixes, [iv]).tolist() == [10.0, 50.0, 0.0]


def test_contiguous_versions_count_as_continuous_and_a_gap_resets():
    import shapely

    z = shapely.geometry.shape(BIG)
    ivs = [
        ZoneInterval("v", at(0).timestamp(), at(20).timestamp(), z),
        ZoneInterval("v", at(20).timestamp(), at(40).timestamp(), z),
        ZoneInterval("v", at(45).timestamp(), at(60).timestamp(), z),
    ]
    fixes = [(at(30), -80.5, 35.5), (at(50), -80.5, 35.5)]
    assert lead_times(fixes, ivs).tolist() == [30.0, 5.0]


def test_cancel_ends_a_zone_interval():
    _, events = drive([east_route(), fix(1.0), fix(2.0, status="available", lights_sirens=False)])
    ivs = zone_intervals(events)
    assert len(ivs) == 1
    assert ivs[0].end_s - ivs[0].start_s == pytest.approx(1.0)


def test_expiry_ends_a_zone_interval_without_cancel():
    _, events = drive([east_route(), fix(1.0)])
    (iv,) = zone_intervals(events)
    assert iv.end_s == (events[0].ts + timedelta(seconds=60)).timestamp()
