"""The in-process replay: every fixture, byte-stable output, inputs of every kind, clear errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import gpxpy
import gpxpy.gpx
import pytest

from broker import codec
from broker.evaluate import evaluate_replay
from broker.model import Fix
from broker.replay import (
    CAD_STATUS,
    POSITIONS,
    ROUTES,
    ReplayInputError,
    load_messages,
    merge_by_time,
    merge_routes,
    replay_in_process,
    write_alerts,
)
from broker.settings import EngineConfig
from tests.conftest import at, east_route, fix

ROOT = Path(__file__).resolve().parents[2]
INCIDENTS = ROOT / "fixtures" / "incidents"
REQUIRED = ["route-downtown", "dead-reckoning", "on-scene", "noisy-gps", "fleet-200"]
SMALL = [n for n in REQUIRED if n != "fleet-200"]


def test_every_required_fixture_exists():
    for name in REQUIRED:
        assert (INCIDENTS / name / "positions.ndjson").is_file(), name


@pytest.mark.parametrize("name", SMALL)
def test_replaying_a_fixture_twice_gives_byte_identical_alerts(name, tmp_path):
    cfg = EngineConfig()
    outs = []
    for i in range(2):
        result = replay_in_process(load_messages(INCIDENTS / name), cfg=cfg)
        out = tmp_path / f"alerts-{i}.ndjson"
        write_alerts(result.events, out)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0], f"{name} produced no alerts"


@pytest.mark.parametrize("name", SMALL)
def test_every_alert_of_a_fixture_has_increasing_versions_and_ends_cancelled(name):
    result = replay_in_process(load_messages(INCIDENTS / name), cfg=EngineConfig())
    by_alert: dict[str, list] = {}
    for ev in result.events:
        by_alert.setdefault(ev.alert_id, []).append(ev)
    for evs in by_alert.values():
        versions = [e.version for e in evs]
        assert versions == sorted(set(versions))
        assert evs[0].action == "create" and evs[-1].action == "cancel"


def at_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_noisy_gps_counts_what_it_ignored():
    result = replay_in_process(load_messages(INCIDENTS / "noisy-gps"), cfg=EngineConfig())
    ignored = result.ignored_fixes
    assert ignored["duplicates"] >= 1
    assert ignored["out_of_order"] >= 1
    assert ignored["jumps"] >= 1
    reasons = [e.cancel_reason for e in result.events if e.action == "cancel"]
    assert "stale" not in reasons  # the 45 s dropout is bridged by dead reckoning...
    gap_from, gap_to = at_utc("2026-11-25T17:32:33.120Z"), at_utc("2026-11-25T17:33:19.120Z")
    inside = [e for e in result.events if gap_from < e.ts < gap_to]
    assert len(inside) >= 3 and {e.action for e in inside} == {"update"}  # ...moving the zone


def test_routes_are_merged_in_by_time():
    pos = [codec.encode(fix(t)) for t in (1.0, 2.0, 3.0)]
    route = codec.encode(east_route(t=1.5))
    merged = merge_routes(pos, [route])
    assert [topic for topic, _ in merged] == [POSITIONS, ROUTES, POSITIONS, POSITIONS]


def test_a_fix_far_ahead_of_the_stream_pulls_no_cad_message_before_its_time():
    """A fix whose device clock is a year ahead sits among fixes of the right time: the CAD
    messages of the next hour must not all go before it (they would reach the engine ahead of
    the fixes they belong with); it is an outlier when the fix after it is back in time."""
    pos = [codec.encode(fix(t)) for t in (1.0, 2.0)]
    pos.append(codec.encode(fix(365 * 86_400.0, vehicle_id="CFD-X9")))
    pos += [codec.encode(fix(t)) for t in (3.0, 4.0)]
    route = codec.encode(east_route(t=3.5))
    merged = merge_routes(pos, [route])
    assert [topic for topic, _ in merged] == [POSITIONS] * 4 + [ROUTES, POSITIONS]
    # a quiet spell is no outlier: the fix after it agrees, and the route of its instant goes
    # before it
    pos = [codec.encode(fix(t)) for t in (1.0, 2.0, 300.0, 301.0)]
    merged = merge_routes(pos, [codec.encode(east_route(t=300.0))])
    assert [topic for topic, _ in merged] == [POSITIONS] * 2 + [ROUTES] + [POSITIONS] * 2


def test_an_incident_directory_is_merged_with_the_skew_it_is_replayed_with(tmp_path):
    """load_messages placed the CAD messages with the default skew whatever config the replay
    ran with: a fix 198 s ahead is an outlier under the default 60 s (the route after it goes
    last), but under a 300 s skew the replay takes it, and its route goes before it."""
    fixes = [fix(1.0), fix(2.0), fix(200.0, vehicle_id="CFD-X9"), fix(3.0), fix(4.0)]
    (tmp_path / "positions.ndjson").write_bytes(b"\n".join(codec.encode(f) for f in fixes))
    (tmp_path / "routes.ndjson").write_bytes(codec.encode(east_route(t=150.0)))
    default = load_messages(tmp_path)
    assert [topic for topic, _ in default] == [POSITIONS] * 5 + [ROUTES]
    wide = load_messages(tmp_path, max_future_skew_s=300.0)
    assert [topic for topic, _ in wide] == [POSITIONS] * 2 + [ROUTES] + [POSITIONS] * 3


def test_the_cli_merges_with_the_skew_of_its_config(monkeypatch, tmp_path):
    """`broker replay` and `broker evaluate` hand load_messages the skew of the config they
    replay with."""
    from typer.testing import CliRunner

    import broker.cli.common
    from broker.cli import app

    skews: list[float] = []

    def spy(path: Path, *, max_future_skew_s: float) -> list[tuple[str, bytes]]:
        skews.append(max_future_skew_s)
        return load_messages(path, max_future_skew_s=max_future_skew_s)

    monkeypatch.setattr(broker.cli.common, "load_messages", spy)
    for module in ("broker.cli.replay", "broker.cli.evaluate"):
        monkeypatch.setattr(f"{module}.EngineConfig",
                            lambda **kw: EngineConfig(**{"max_future_skew_s": 7.0, **kw}))
    incident = str(INCIDENTS / "route-downtown")
    for args in (["replay", incident, "--out", str(tmp_path), "--show", "0"],
                 ["evaluate", incident, "--json"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    assert skews == [7.0, 7.0]


def test_one_fix_from_a_device_clock_far_ahead_changes_no_alert():
    """The split form of route-downtown with one fix of another unit dated a year ahead: that
    fix is refused, and the alerts are the ones of the incident without it (its statuses used
    to be merged in ahead of the fixes, three of them refused as future, the 'available'
    cancel lost)."""
    split = ROOT / "fixtures" / "ingest" / "route-downtown-split"
    clean = replay_in_process(load_messages(split), cfg=EngineConfig())
    lines = (split / "positions.ndjson").read_bytes().splitlines()
    stray = codec.encode(fix(365 * 86_400.0, vehicle_id="CFD-X9"))
    fixes = [(POSITIONS, raw) for raw in [*lines[:3], stray, *lines[3:]]]
    cad = [(CAD_STATUS, raw) for raw in (split / "cad_status.ndjson").read_bytes().splitlines()]
    cad += [(ROUTES, raw) for raw in (split / "routes.ndjson").read_bytes().splitlines()]
    result = replay_in_process(merge_by_time(fixes, cad), cfg=EngineConfig())
    assert result.rejected_by_reason == {"future_timestamp": 1}
    assert result.events == clean.events


def test_a_future_timestamp_is_rejected_against_the_replay_clock():
    msgs = [(POSITIONS, codec.encode(fix(t))) for t in (1.0, 2.0)]
    msgs.append((POSITIONS, codec.encode(fix(3_600.0))))
    result = replay_in_process(msgs, cfg=EngineConfig())
    assert result.rejected_by_reason == {"future_timestamp": 1}


def test_the_message_after_a_quiet_spell_is_taken_as_the_worker_takes_it():
    """A unit reporting from its station, then its AVL quiet for five minutes (longer than the
    skew); CAD sends its route, and the unit leaves. The worker judges each message against
    when it came (never refused here); the replay's clock has only the recording, and refused
    the first message after the spell as future - the route, so the unit had no dispatch zone
    and no route to follow. The message after it agrees with it: the stream moved on."""
    msgs = [(POSITIONS, codec.encode(fix(float(t), status="available", lights_sirens=False,
                                         speed_mps=0.0))) for t in range(0, 20, 2)]
    msgs.append((ROUTES, codec.encode(east_route(t=300.0))))
    msgs += [(POSITIONS, codec.encode(fix(float(t), 15.0 * (t - 310)))) for t in range(310, 340)]
    result = replay_in_process(msgs, cfg=EngineConfig())
    assert result.rejections == []
    create = result.events[0]
    assert (create.action, create.ts) == ("create", at(300.0 + EngineConfig().dispatch_hold_s))
    assert all(e.alert_id == create.alert_id for e in result.events)


def test_a_message_far_ahead_with_nothing_agreeing_after_it_is_still_refused():
    """One fix a year ahead among fixes of the right time (the one after it does not agree),
    or as the last message (nothing after it): refused as future, as before."""
    lone = [fix(1.0), fix(365 * 86_400.0, vehicle_id="CFD-X9"), fix(2.0, 15.0)]
    result = replay_in_process([(POSITIONS, codec.encode(m)) for m in lone], cfg=EngineConfig())
    assert result.rejected_by_reason == {"future_timestamp": 1}
    last = [fix(1.0), fix(2.0, 15.0), fix(365 * 86_400.0, vehicle_id="CFD-X9")]
    result = replay_in_process([(POSITIONS, codec.encode(m)) for m in last], cfg=EngineConfig())
    assert result.rejected_by_reason == {"future_timestamp": 1}  # nothing after it agrees


def test_the_replay_repairs_no_state_it_made_itself(monkeypatch):
    """Every message was taken as trusted, so the worker's repair of a stored fix from the
    future (engine.forget_future_fix) ran on each, and never found one: the replay's states
    are its own, no fix of them dated past its clock. It is off; with it on, the same alerts
    (a quiet spell, a fix far ahead, out-of-order and noisy fixes)."""
    from broker import drive, engine, replay

    split = ROOT / "fixtures" / "ingest" / "route-downtown-split"
    lines = (split / "positions.ndjson").read_bytes().splitlines()
    stray = codec.encode(fix(365 * 86_400.0, vehicle_id="CFD-X9"))
    fixes = [(POSITIONS, raw) for raw in [*lines[:3], stray, *lines[3:]]]
    cad = [(CAD_STATUS, raw) for raw in (split / "cad_status.ndjson").read_bytes().splitlines()]
    quiet = [(POSITIONS, codec.encode(fix(float(t), status="available", lights_sirens=False,
                                          speed_mps=0.0))) for t in range(0, 20, 2)]
    quiet.append((ROUTES, codec.encode(east_route(t=300.0))))
    quiet += [(POSITIONS, codec.encode(fix(float(t), 15.0 * (t - 310)))) for t in range(310, 340)]
    inputs = [load_messages(INCIDENTS / "noisy-gps"), merge_by_time(fixes, cad), quiet]

    calls: list[object] = []
    forget = engine.forget_future_fix
    monkeypatch.setattr(engine, "forget_future_fix",
                        lambda *a, **kw: calls.append(a) or forget(*a, **kw))
    without = [replay_in_process(msgs, cfg=EngineConfig()).events for msgs in inputs]
    assert calls == []
    monkeypatch.setattr(replay, "Driver",
                        lambda *a, **kw: drive.Driver(*a, **{**kw, "repairs": True}))
    assert [replay_in_process(msgs, cfg=EngineConfig()).events for msgs in inputs] == without
    assert calls  # it ran, and changed nothing


def test_bad_lines_are_rejected_and_the_replay_goes_on(tmp_path):
    lines = [codec.encode(fix(1.0)), b"{oops", codec.encode(fix(2.0, 15.0))]
    path = tmp_path / "p.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = replay_in_process(load_messages(path), cfg=EngineConfig())
    assert result.positions_read == 3
    assert result.rejected_by_reason == {"bad_json": 1}
    assert result.rejections[0].raw == b"{oops"
    assert result.alerts_by_action["create"] == 1


def test_gpx_track_replays_as_one_responding_unit(tmp_path):
    gpx = gpxpy.gpx.GPX()
    track = gpxpy.gpx.GPXTrack(name="E7")
    seg = gpxpy.gpx.GPXTrackSegment()
    for i in range(20):
        p = fix(float(i), 15.0 * i)
        seg.points.append(gpxpy.gpx.GPXTrackPoint(p.lat, p.lon, time=at(float(i))))
    track.segments.append(seg)
    gpx.tracks.append(track)
    path = tmp_path / "e7.gpx"
    path.write_text(gpx.to_xml())
    msgs = load_messages(path)
    first = codec.decode_position(msgs[1][1])
    assert isinstance(first, Fix)
    assert first.vehicle_id == "E7" and first.status == "responding" and first.lights_sirens
    assert first.speed_mps == pytest.approx(15.0, rel=0.05)
    assert first.heading_deg == pytest.approx(90.0, abs=1.0)
    result = replay_in_process(msgs, cfg=EngineConfig())
    assert result.alerts_by_action["create"] == 1


def test_unreadable_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(ReplayInputError, match="no such file"):
        load_messages(tmp_path / "missing")
    with pytest.raises(ReplayInputError, match=r"positions\.ndjson"):
        load_messages(tmp_path)
    bad_gpx = tmp_path / "bad.gpx"
    bad_gpx.write_text("<gpx><trk>")
    with pytest.raises(ReplayInputError, match="GPX"):
        load_messages(bad_gpx)
    other = tmp_path / "x.csv"
    other.write_text("a,b")
    with pytest.raises(ReplayInputError, match="unknown input"):
        load_messages(other)


def test_lead_time_targets_hold_on_route_downtown():
    """The design's targets: with a CAD route median >= 45 s and >= 95 % warned >= 15 s."""
    result = replay_in_process(load_messages(INCIDENTS / "route-downtown"), cfg=EngineConfig())
    report = evaluate_replay(result)
    assert report.lead_time_median_s >= 45.0, report
    assert report.frac_warned_15s >= 0.95, report


def test_lead_time_target_holds_on_dead_reckoning():
    result = replay_in_process(load_messages(INCIDENTS / "dead-reckoning"), cfg=EngineConfig())
    assert evaluate_replay(result).lead_time_median_s >= 20.0


def test_replay_output_is_identical_across_processes_and_hash_seeds(tmp_path):
    """The engine's caches live per process; output must not depend on them or on hash seeds."""
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"run-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "broker", "replay", str(INCIDENTS / "noisy-gps"),
             "--out", str(out), "--show", "0"],
            check=True, env=env, cwd=ROOT, capture_output=True,
        )
        outs.append((out / "alerts.ndjson").read_bytes())
    assert outs[0] == outs[1] and outs[0]
