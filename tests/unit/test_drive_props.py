"""Any interleaving of fixes, routes and CAD status events, for a few units, out of order and
repeated, goes through the driver without an engine or tick failure, one by one or in runs
(``handle_many``), to the same events (property tests; failures raise here: ``RAISE``)."""

from __future__ import annotations

import msgspec
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from broker import codec
from broker.settings import EngineConfig
from tests.conftest import street_grid
from tests.unit.messages import events_of, streams


@settings(max_examples=60, deadline=None)
@given(stream=streams(), with_roads=st.booleans())
def test_any_stream_of_fixes_routes_and_statuses_goes_through_without_a_failure(
    stream: list[tuple[str, dict]], with_roads: bool
) -> None:
    messages = [(topic, msgspec.json.encode(body)) for topic, body in stream]
    roads = street_grid() if with_roads else None
    events = events_of(messages, roads, many=False)  # an engine failure would raise here
    for e in events:
        zone = shape(e.zone)
        assert zone.is_valid and not zone.is_empty, e
        assert shapely.get_num_coordinates(zone) <= EngineConfig().max_vertices
    together = events_of(messages, roads, many=True)
    assert [codec.encode(e) for e in together] == [codec.encode(e) for e in events]
