"""Any interleaving of fixes, routes and CAD status events, for a few units, out of order and
repeated, goes through the driver without an engine or tick failure, one by one or in runs
(``handle_many``), to the same events (property tests; failures raise here: ``RAISE``), and the
events of each alert never go back in time: partners get them in version order and time them
by ``ts`` (the delivery's age limit, CAP's ``sent``, the console, ``broker evaluate``); and a
unit's events do not depend on when, or whether, the driver ticks (docs/engine.md)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import pairwise

import msgspec
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from broker import codec
from broker.drive import Driver
from broker.model import AlertEvent
from broker.settings import EngineConfig
from tests.conftest import street_grid
from tests.unit.messages import events_of, silences, streams, timelines


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
    assert_times_keep_order(events)
    together = events_of(messages, roads, many=True)
    assert [codec.encode(e) for e in together] == [codec.encode(e) for e in events]


@settings(max_examples=300, deadline=None)
@given(stream=timelines())
def test_the_events_of_an_alert_never_go_back_in_time(stream: list[tuple[str, dict]]) -> None:
    messages = [(topic, msgspec.json.encode(body)) for topic, body in stream]
    assert_times_keep_order(events_of(messages, None))


def assert_times_keep_order(events: list[AlertEvent]) -> None:
    """Per alert id, in version order: ``ts`` never decreases (also across a cancel and a
    re-create), and every event starts no later than it is stamped, a live one expiring after."""
    by_alert: defaultdict[str, list[AlertEvent]] = defaultdict(list)
    for e in events:
        by_alert[e.alert_id].append(e)
    for alert in by_alert.values():
        alert.sort(key=lambda e: e.version)
        for before, after in pairwise(alert):
            assert after.ts >= before.ts, (before, after)
        for e in alert:
            assert e.started_at <= e.ts, e
            assert e.action == "cancel" or e.expires_at > e.ts, e


def _in_time_order(stream: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The stream sorted by event time (the order a worker meets a partition's messages in)."""
    at = lambda m: datetime.fromisoformat(m[1]["ts"].replace("Z", "+00:00"))  # noqa: E731
    return sorted(stream, key=at)


def _events_by_unit(messages: list[tuple[str, bytes]], tick_every_s: float | None) -> dict:
    """Each unit's events (encoded), in the order sent, for a driver ticking every
    ``tick_every_s`` of event time (None: never, only the drain at the end)."""
    driver: Driver[str] = Driver(EngineConfig(), tick_every_s=tick_every_s)
    out: defaultdict[str, list[bytes]] = defaultdict(list)
    for e in [e for t, r in messages for e in driver.handle(t, r).events] + driver.drain():
        out[e.vehicle_id].append(codec.encode(e))
    return dict(out)


@settings(max_examples=150, deadline=None)
@given(stream=(streams() | timelines()).map(_in_time_order) | silences())
def test_a_units_events_do_not_depend_on_when_the_driver_ticks(
    stream: list[tuple[str, dict]],
) -> None:
    """Fixes, routes and CAD statuses in time order: every unit's events are the same, byte for
    byte, whether the driver ticks every second, every 7 s, or never (then its messages and the
    drain alone send them). Before the engine caught up on its own (``engine.step``), a
    dispatch alert kept by turn-out fixes past its cover, or started by one message's catch-up
    after its cover had ended, lived on until a tick came. Before a status was taken in time
    order with the unit's ticks (``Restating.elapse``), a status newer than a held dispatch
    alert stood it down only if a tick had started it first, one judged "too old to start an
    alert" was judged before or after the stale cancel that came before it, and a tick inside
    the status's grace sent the stale cancel or a dead-reckoning step that the status, acting at
    its own instant, should have come before (``silences``).

    Not promised, so not generated: a message older than a tick the driver already ran (the
    tick acted before it)."""
    messages = [(topic, msgspec.json.encode(body)) for topic, body in stream]
    every_second = _events_by_unit(messages, 1.0)
    assert _events_by_unit(messages, 7.0) == every_second
    assert _events_by_unit(messages, None) == every_second
