"""The incident player's frames (broker/console/player.py), without a browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker.console.player import PlayerSource, message_times
from broker.drive import POSITIONS
from broker.model import LatLon, LineStringGeometry, Route
from broker.replay import _ts_of, load_messages, replay_in_process
from broker.settings import EngineConfig

REPO = Path(__file__).resolve().parents[3]
ROUTE = REPO / "fixtures" / "incidents" / "route-downtown"


def test_the_end_of_a_recording_shows_what_happened_in_its_last_second() -> None:
    """A recording that stops with the unit leaving emergency mode: its last message cancels
    the alert. The end frame was built at the whole second before the last message, so the
    cancelled alert (zone and unit) stayed on the map once playback stopped there."""
    messages = load_messages(ROUTE)
    full = replay_in_process(messages, cfg=EngineConfig())
    cancel = [e for e in full.events if e.cancel_reason == "left_emergency"][-1]
    assert cancel.ts.microsecond, "the fixture's fixes are not on whole seconds"
    cut = [m for m in messages if (_ts_of(m[1]) or cancel.ts) <= cancel.ts]
    result = replay_in_process(cut, cfg=EngineConfig())
    assert result.events[-1].action == "cancel"
    source = PlayerSource(result, [], message_times(cut, POSITIONS), {})
    end = datetime.fromisoformat(source.info()["end"].replace("Z", "+00:00"))
    assert end == cancel.ts
    for t in (end, end + timedelta(seconds=30)):
        frame = source.frame(t)
        assert frame["alerts"] == [], f"a cancelled alert is drawn at {frame['at']}"
        assert frame["at"] == source.info()["end"]
    # a moment inside the recording still shows the whole second it falls in
    inside = source.frame(end - timedelta(seconds=5))
    assert inside["at"] == (end - timedelta(seconds=5)).replace(microsecond=0).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    assert len(inside["alerts"]) == 1
    assert source.frame(datetime(2000, 1, 1, tzinfo=UTC))["alerts"] == []


def test_the_player_draws_a_route_only_of_the_alerts_incident() -> None:
    """Found in review: the player drew a unit's newest route even when it was of another
    incident than its alert's (the engine uses no such route: broker.reckoning)."""
    messages = load_messages(ROUTE)
    result = replay_in_process(messages, cfg=EngineConfig())
    ev = next(e for e in result.events if e.action == "create" and e.incident_id)
    coords = [(ev.lon, ev.lat), (ev.lon + 1e-3, ev.lat + 1e-3)]

    def route(incident: str, ts: datetime) -> Route:
        return Route(vehicle_id=ev.vehicle_id, incident_id=incident, ts=ts,
                     destination=LatLon(lat=ev.lat, lon=ev.lon),
                     route=LineStringGeometry(coordinates=coords))

    own = route(ev.incident_id or "", ev.ts - timedelta(seconds=2))
    other = route("OTHER-INCIDENT", ev.ts - timedelta(seconds=1))
    times = message_times(messages, POSITIONS)
    t = ev.ts + timedelta(seconds=1)
    assert [r["incident_id"] for r in PlayerSource(result, [own], times, {}).frame(t)["routes"]
            ] == [ev.incident_id]
    # the newest (the one the engine keeps) is another incident's: no route
    assert PlayerSource(result, [other, own], times, {}).frame(t)["routes"] == []


def test_a_unit_dispatched_again_is_not_drawn_at_its_earlier_runs_fix() -> None:
    """Found in review: the unit was drawn at its newest emergency fix at or before t from any
    run, so a unit dispatched again showed at the last fix of its earlier run (and trailed
    from it) until its first fix of this one. Only fixes since the alert started count."""
    messages = load_messages(ROUTE)
    result = replay_in_process(messages, cfg=EngineConfig())
    ev = result.events[0]
    fixes = result.emergency_fixes[ev.vehicle_id]
    assert fixes[0][0] > ev.started_at, "the fixture's first alert comes before any fix"
    earlier = (ev.started_at - timedelta(seconds=5), ev.lon + 0.01, ev.lat + 0.01)
    result.emergency_fixes[ev.vehicle_id] = [earlier, *fixes]
    source = PlayerSource(result, [], message_times(messages, POSITIONS), {})
    (alert,) = source.frame(ev.ts + timedelta(seconds=10))["alerts"]
    unit = alert["unit"]
    assert (unit["lon"], unit["lat"]) == (ev.lon, ev.lat)  # where the alert places it
    assert [earlier[1], earlier[2]] not in unit["trail"]
    later = source.frame(fixes[0][0] + timedelta(seconds=1))["alerts"][0]["unit"]
    assert [earlier[1], earlier[2]] not in later["trail"]
