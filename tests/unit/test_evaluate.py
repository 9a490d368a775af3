"""The lead-time metric on hand-made cases, so the figures can be trusted."""

from __future__ import annotations

import math
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


def test_a_unit_standing_still_reaches_one_point_not_one_per_fix():
    """On scene a unit sends the same place for minutes; each fix counted added a lead as long
    as it had stood there (the on-scene fixture's median read 290 s, not the 53 s of the road
    it drove)."""
    from broker.evaluate import NEW_POINT_M, points_reached

    lat = 35.5
    per_m = 1 / (111_320 * math.cos(math.radians(lat)))  # degrees of longitude per metre
    driving = [(at(i), -80.5 + 20 * i * per_m, lat) for i in range(5)]  # 20 m a second
    end = driving[-1]
    jitter = [(at(5 + i), end[1] + (3 if i % 2 else -3) * per_m, lat) for i in range(60)]
    kept = points_reached(driving + jitter)
    assert kept == driving  # standing with a few metres of GPS scatter reaches nothing new
    moved_on = (at(70), end[1] + NEW_POINT_M * 1.1 * per_m, lat)
    assert points_reached(driving + jitter + [moved_on])[-1] == moved_on
    assert points_reached([]) == []
