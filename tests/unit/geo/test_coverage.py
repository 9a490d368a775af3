"""Partner coverage in an STRtree."""

from __future__ import annotations

import shapely

from broker.geo.coverage import CoverageIndex
from tests.unit.adapters.factory import LAT0, LON0, multipolygon_zone, polygon_zone


def test_partners_touching_returns_only_intersecting_areas_in_config_order() -> None:
    index = CoverageIndex({
        "city": shapely.box(-81.0, 35.0, -80.6, 35.4),
        "far": shapely.box(-79.0, 36.0, -78.0, 37.0),
        "metro": shapely.box(-81.3, 34.9, -80.4, 35.6),
    })
    assert index.partners_touching(polygon_zone()) == ["city", "metro"]
    assert index.partners_touching(polygon_zone(-78.5, 36.5)) == ["far"]
    assert index.partners_touching(polygon_zone(0.0, 0.0)) == []


def test_a_multipolygon_touching_through_its_second_part_counts() -> None:
    part2_only = shapely.box(LON0 + 0.0095, LAT0 + 0.0045, LON0 + 0.02, LAT0 + 0.02)
    index = CoverageIndex({"edge": part2_only})
    assert index.partners_touching(multipolygon_zone()) == ["edge"]
    assert index.partners_touching(polygon_zone()) == []


def test_thousands_of_areas_still_answer_correctly() -> None:
    areas = {f"p{i}": shapely.box(i, 0, i + 0.5, 0.5) for i in range(-170, 170)}
    index = CoverageIndex(areas)
    zone = {"type": "Polygon", "coordinates": [[[10.1, 0.1], [10.2, 0.1], [10.2, 0.2],
                                                [10.1, 0.1]]]}
    assert index.partners_touching(zone) == ["p10"]
