"""The incident player in a real browser: ``broker replay route-downtown --serve``.

What a person sees is checked on the map itself: the features of the page's Leaflet GeoJSON
layers (``toGeoJSON()``), the unit markers' positions, and a pixel of the screenshot where the
unit is drawn. Expected values come from the in-process replay of the same incident.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.geo.roads import RoadNetwork
from broker.model import AlertEvent
from broker.replay import ReplayResult, load_messages, replay_in_process
from broker.settings import EngineConfig
from tests.browser.fixtures import (
    REPO,
    TOKEN,
    Page,
    Served,
    api,
    serve_replay,
    sign_in,
    stop,
    wait_for,
)

INCIDENT = REPO / "fixtures" / "incidents" / "route-downtown"
ROADS = REPO / "fixtures" / "roads" / "charlotte-uptown.geojson"
SHOTS = REPO / "docs" / "img"


@pytest.fixture(scope="module")
def replay() -> ReplayResult:
    return replay_in_process(load_messages(INCIDENT), cfg=EngineConfig(),
                             roads=RoadNetwork.load(ROADS))


@pytest.fixture(scope="module")
def player(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = serve_replay(INCIDENT, tmp_path_factory.mktemp("player"), "--roads", str(ROADS))
    try:
        yield served
    finally:
        output = stop(served)
        assert TOKEN not in output, "the operator token was printed"


def live_at(events: list[AlertEvent], t: datetime) -> list[AlertEvent]:
    """Per alert, the newest version at ``t``, if it is neither cancelled nor expired."""
    newest: dict[str, AlertEvent] = {}
    for ev in sorted(events, key=lambda e: e.ts):
        if ev.ts <= t:
            newest[ev.alert_id] = ev
    return [e for e in newest.values() if e.action != "cancel" and e.expires_at > t]


def start_of(served: Served, page: Any) -> datetime:
    return datetime.fromisoformat(page.evaluate("window.evConsole.info.start")
                                  .replace("Z", "+00:00"))


def seek(page: Any, seconds: int) -> str:
    """Move the seek bar to ``seconds`` after the start; the frame time the page then shows."""
    before = page.evaluate("window.evConsole.frames")
    page.evaluate(f"""(() => {{ const s = document.getElementById('seek');
        s.value = '{seconds}'; s.dispatchEvent(new Event('input')); }})()""")
    wait_for(page, f"window.evConsole.frames > {before} && !window.evConsole.player.busy",
             what="the frame after seeking")
    return str(page.evaluate("window.evConsole.frameAt"))


def map_zones(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("window.evConsole.layers.zones.toGeoJSON().features")  # type: ignore[no-any-return]


def map_units(page: Any) -> list[dict[str, Any]]:
    # x, y: where the marker is on the page (the map's container point plus its offset)
    return page.evaluate("""(() => {
        const map = window.evConsole.map, box = map.getContainer().getBoundingClientRect();
        return window.evConsole.layers.units.getLayers().map(m => ({
            lat: m.getLatLng().lat, lon: m.getLatLng().lng,
            id: m.feature.properties.vehicle_id,
            x: box.left + map.latLngToContainerPoint(m.getLatLng()).x,
            y: box.top + map.latLngToContainerPoint(m.getLatLng()).y }));
    })()""")  # type: ignore[no-any-return]


def rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    polys = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [
        geometry["coordinates"]]
    return [ring for poly in polys for ring in poly]


def same_zone(drawn: dict[str, Any], expected: dict[str, Any]) -> bool:
    a, b = rings(drawn), rings(expected)
    return len(a) == len(b) and all(
        len(ra) == len(rb) and all(abs(p[0] - q[0]) < 2e-6 and abs(p[1] - q[1]) < 2e-6
                                   for p, q in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True))


def last_fix(replay: ReplayResult, vid: str, t: datetime) -> tuple[float, float]:
    fixes = [f for f in replay.emergency_fixes[vid] if f[0] <= t]
    return fixes[-1][1], fixes[-1][2]


def at_second(start: datetime, seconds: int) -> datetime:
    """The moment the player shows for a seek position (whole seconds of event time)."""
    t = start + timedelta(seconds=seconds)
    return t.replace(microsecond=0)


def test_without_a_token_only_the_login_renders(console_page: Page, player: Served) -> None:
    page = console_page.page
    page.goto(player.url)
    page.wait_for_selector("#login:not([hidden])")
    assert page.is_hidden("#app")
    assert page.evaluate("window.evConsole.layers") is None, "a map was built before sign-in"
    for path in ("info", "snapshot", "frame?t=2026-11-25T14:02:00Z", "roads"):
        assert api(player.url, path).status_code == 401, path
    # a wrong token: refused, still only the login
    page.fill("#token", "not-the-token-at-all")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:text('Wrong operator token.')")
    assert page.is_hidden("#app")
    # another origin may not sign in, nor read with a stolen cookie
    refused = httpx.post(player.url + "api/session", json={"token": TOKEN}, timeout=10,
                         headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
    assert all(TOKEN not in u for u in console_page.urls)


def test_player_shows_the_unit_and_zone_of_a_moment(
    console_page: Page, player: Served, replay: ReplayResult
) -> None:
    page = console_page.page
    sign_in(page, player.url)
    start = start_of(player, page)
    shown = {}
    for seconds in (100, 160, 380):  # approaching early, approaching later, on scene
        frame_at = seek(page, seconds)
        t = at_second(start, seconds)
        assert frame_at.startswith(t.strftime("%Y-%m-%dT%H:%M:%S")), (frame_at, t)
        expected = live_at(replay.events, t)
        assert len(expected) == 1, f"the fixture has one live alert at {t}"
        ev = expected[0]
        zones = map_zones(page)
        assert len(zones) == 1
        assert zones[0]["properties"]["version"] == ev.version
        assert zones[0]["properties"]["kind"] == ev.kind
        assert same_zone(zones[0]["geometry"], ev.zone), f"zone at {t} is not v{ev.version}'s"
        units = map_units(page)
        assert len(units) == 1
        lon, lat = last_fix(replay, ev.vehicle_id, t)
        assert abs(units[0]["lon"] - lon) < 1e-6 and abs(units[0]["lat"] - lat) < 1e-6
        # the unit is drawn there: the pixel under its marker has the kind's colour
        png = page.screenshot(clip={"x": units[0]["x"] - 1, "y": units[0]["y"] - 1,
                                    "width": 3, "height": 3})
        r, g, b = centre_pixel(png)
        colour = (0xE0, 0x70, 0x1B) if ev.kind == "approaching" else (0xC6, 0x28, 0x28)
        assert max(abs(r - colour[0]), abs(g - colour[1]), abs(b - colour[2])) < 40, (r, g, b)
        row = page.locator(f"#alerts tr[data-alert-id='{ev.alert_id}'] td").all_inner_texts()
        assert row[0] == ev.vehicle_id and row[2] == str(ev.version)
        shown[seconds] = ev
        if ev.kind == "approaching":
            stubs = page.evaluate("window.evConsole.layers.approaches.toGeoJSON().features")
            assert stubs, "with a road network an approaching zone has approach stubs"
            assert page.evaluate("window.evConsole.layers.routes.getLayers().length") == 1
    assert shown[100].version < shown[160].version, "seek shows the zone of that moment"
    assert shown[380].kind == "on_scene"
    assert page.evaluate("window.evConsole.layers.roads.getLayers().length") > 100
    page.screenshot(path=str(SHOTS / "console-player.png")) if _shots() else None
    assert console_page.errors == []


def test_a_cancelled_alert_disappears(console_page: Page, player: Served,
                                      replay: ReplayResult) -> None:
    page = console_page.page
    sign_in(page, player.url)
    start = start_of(player, page)
    last_cancel = max(e.ts for e in replay.events if e.action == "cancel")
    before = int((last_cancel - start).total_seconds()) - 2
    seek(page, before)
    assert len(map_zones(page)) == 1
    seek(page, before + 4)
    assert live_at(replay.events, at_second(start, before + 4)) == []
    assert map_zones(page) == [] and map_units(page) == []
    assert page.locator("#alerts tr").count() == 0
    assert page.is_visible("#no-alerts")
    assert console_page.errors == []


def test_play_pause_and_speed(console_page: Page, player: Served) -> None:
    page = console_page.page
    sign_in(page, player.url)
    page.select_option("#speed", "60")
    seek(page, 0)
    page.click("#play")
    # at 60x, a minute of the incident passes in about a second of wall time
    wait_for(page, "window.evConsole.frameAt > window.evConsole.info.start.slice(0, 14) + "
                   "String(Number(window.evConsole.info.start.slice(14, 16)) + 1).padStart(2, '0')",
             what="a minute of playback")
    page.click("#play")  # pause
    wait_for(page, "!window.evConsole.player.playing && !window.evConsole.player.busy")
    paused_at = page.evaluate("window.evConsole.player.t")
    page.wait_for_timeout(1500)
    assert page.evaluate("window.evConsole.player.t") == paused_at, "pause stops the clock"
    assert page.inner_text("#play") == "Play"
    lead = page.inner_text("#lead")
    assert "median" in lead and " s" in lead
    assert console_page.errors == []


def centre_pixel(png: bytes) -> tuple[int, int, int]:
    """The middle pixel of a small PNG screenshot (decoded with matplotlib's PNG reader)."""
    import io

    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")
    h, w = img.shape[0], img.shape[1]
    px = img[h // 2, w // 2]
    return int(px[0] * 255), int(px[1] * 255), int(px[2] * 255)


def _shots() -> bool:
    """Whether to (re)write docs/img/ screenshots: ``EV_CONSOLE_SCREENSHOTS=1``."""
    import os

    return os.environ.get("EV_CONSOLE_SCREENSHOTS") == "1"



def test_signing_in_again_leaves_one_set_of_player_controls(console_page: Page,
                                                            player: Served) -> None:
    """A session that ends mid-replay (12 h, or signed out elsewhere) shows the login; signing
    in again must not wire the player a second time: with two click handlers on Play, one
    click played and paused at once, and the operator could no longer start the replay."""
    page = console_page.page
    sign_in(page, player.url)
    seek(page, 10)
    page.context.clear_cookies()  # the session ends
    page.evaluate("""(() => { const s = document.getElementById('seek');
        s.value = '20'; s.dispatchEvent(new Event('input')); })()""")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token", TOKEN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")
    seek(page, 0)
    page.click("#play")
    assert page.evaluate("window.evConsole.player.playing") is True, "Play did not play"
    assert page.inner_text("#play") == "Pause"
    page.click("#play")
    assert page.evaluate("window.evConsole.player.playing") is False, "Pause did not pause"
    assert page.inner_text("#play") == "Play"
    assert [e for e in console_page.errors if "401" not in e] == []


def stop_on_a_status(incident: Path, out: Path) -> Path:
    """``incident`` cut where the unit starts returning, ending with a CAD status that takes it
    out of emergency mode 0.3 s after its last fix (so the recording is 440.3 s long)."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(incident / "routes.ndjson", out)
    keep = []
    for line in (incident / "positions.ndjson").read_text().splitlines():
        if json.loads(line)["status"] == "returning":
            break
        keep.append(line)
    (out / "positions.ndjson").write_text("\n".join(keep) + "\n")
    last = json.loads(keep[-1])
    assert last["ts"].endswith(".120Z")
    status = {"vehicle_id": last["vehicle_id"], "ts": last["ts"].replace(".120Z", ".420Z"),
              "status": "available", "incident_id": last["incident_id"]}
    (out / "cad_status.ndjson").write_text(json.dumps(status) + "\n")
    return out


def test_the_seek_bar_s_end_is_the_end_of_the_recording(
    console_page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The seek bar counts whole seconds. Its last step was start + round(duration): for a
    recording 440.3 s long that is 0.3 s before the end, whose frame misses the last
    message, so dragging the bar to the end showed an alert the recording had cancelled (its
    last message takes the unit out of emergency mode) and playing to the end did not."""
    incident = stop_on_a_status(INCIDENT, tmp_path_factory.mktemp("incident") / "status-end")
    served = serve_replay(incident, tmp_path_factory.mktemp("status-end"))
    try:
        page = console_page.page
        sign_in(page, served.url)
        assert page.evaluate("window.evConsole.info.end").endswith(".420Z")
        seek(page, 400)
        assert len(map_zones(page)) == 1 and len(map_units(page)) == 1
        last = int(page.evaluate("document.getElementById('seek').max"))
        seek(page, last)
        assert page.evaluate("window.evConsole.frameAt") == page.evaluate(
            "window.evConsole.info.end")
        assert map_zones(page) == [] and map_units(page) == [], "a cancelled alert is drawn"
        assert page.locator("#alerts tr").count() == 0
        assert console_page.errors == []
    finally:
        stop(served)
