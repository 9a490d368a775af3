"""The incident player: a replay's timeline, and the picture of any moment of it.

``broker replay PATH --serve`` runs the in-process replay once, then serves this source. The
page's player clock (play, pause, seek, 1x-60x) asks for :meth:`PlayerSource.frame` of a moment
``t`` and draws it as it draws the live console's snapshot:

- alerts: per alert, the newest version with ``ts <= t``, shown while it is not cancelled and
  not expired at ``t`` (the zone as it was at that moment);
- units: each unit with a live alert at ``t``, at its newest accepted fix while in emergency mode
  (``ReplayResult.emergency_fixes``: no fix of a unit outside emergency mode is ever kept) since
  the alert started, with those of the last ``TRAIL_S`` seconds as its trail (before its first,
  where the alert places it);
- routes: the newest CAD route of those units, if it is of their alert's incident;
- deliveries: what fan-out queued for each partner up to ``t`` (no HTTP in a replay: ``queued``);
- figures: positions per second of the recording at ``t``, rejected input of the whole
  recording, and the run's lead-time figures (``broker.evaluate``).

Frames are cached per second of event time (fixes come at 1 Hz), at most ``FRAMES_KEPT``; the
end of the recording has its own frame, at the end (the last message's event time).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from adapters.fanout import PartnerSet, fan_out
from broker.console.view import operator_alert, route_fits, unit_of
from broker.model import AlertEvent, Route
from broker.replay import ReplayResult, _ts_of
from broker.settings import EngineConfig

if TYPE_CHECKING:
    from broker.geo.roads import RoadNetwork

TRAIL_S = 30.0
FRAMES_KEPT = 512


@dataclass
class _UnitTrack:
    ts: list[float]
    lonlat: list[tuple[float, float]]


@dataclass
class PlayerSource:
    """A recorded incident as the console's source (see module doc)."""

    result: ReplayResult
    routes: list[Route]
    message_ts: list[float]  # event time of every position message, seconds, sorted
    lead_time: dict[str, Any]
    title: str = ""
    partners: PartnerSet | None = None
    roads: RoadNetwork | None = None
    cfg: EngineConfig = field(default_factory=EngineConfig)
    mode: str = "player"

    def __post_init__(self) -> None:
        self.events = sorted(self.result.events, key=lambda e: e.ts)
        self.event_ts = [e.ts.timestamp() for e in self.events]
        self.tracks = {
            vid: _UnitTrack([f[0].timestamp() for f in fx], [(f[1], f[2]) for f in fx])
            for vid, fx in self.result.emergency_fixes.items()
        }
        self.route_list = sorted(self.routes, key=lambda r: r.ts)
        self.queued = list(_fanned_out(self.events, self.partners))
        self.queued_ts = [q[0] for q in self.queued]
        self._views: LRUCache[tuple[str, int], dict[str, Any]] = LRUCache(4096)
        self._frames: LRUCache[float, dict[str, Any]] = LRUCache(FRAMES_KEPT)
        self._roads: bytes | None = None
        first = [*self.event_ts[:1], *self.message_ts[:1]]
        last = [*self.event_ts[-1:], *self.message_ts[-1:]]
        self.start_s = min(first) if first else 0.0
        self.end_s = max(last) if last else 0.0

    # ---- Source ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "title": self.title,
            "start": _iso(self.start_s),
            "end": _iso(self.end_s),
            "lead_time": self.lead_time,
            "delivery_columns": ["queued"],
            "alerts_total": len({e.alert_id for e in self.events}),
            "bbox": self._bbox(),
            "rejected": dict(sorted(Counter(r.reason for r in self.result.rejections).items())),
        }

    def snapshot(self) -> dict[str, Any]:
        return self.frame(datetime.fromtimestamp(self.start_s, UTC))

    def roads_geojson(self) -> bytes | None:
        if self.roads is None:
            return None
        if self._roads is None:
            from broker.console.roads import roads_geojson

            self._roads = roads_geojson(self.roads)
        return self._roads

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _bbox(self) -> list[float] | None:
        """[west, south, east, north] of the units' emergency fixes and their routes."""
        pts = [p for tr in self.tracks.values() for p in tr.lonlat]
        pts += [(c[0], c[1]) for r in self.route_list for c in r.route.coordinates]
        if not pts:
            return None
        lons, lats = [p[0] for p in pts], [p[1] for p in pts]
        return [min(lons), min(lats), max(lons), max(lats)]

    # ---- frames ----------------------------------------------------------------------------

    def frame(self, t: datetime) -> dict[str, Any]:
        """The picture at ``t`` (clamped to the recording), cached per second.

        A moment inside the recording shows its whole second; from the end on, the end itself.
        Its whole second would miss whatever the last message did (the recording's last fix
        is rarely on a whole second): a recording that stops as the unit leaves emergency
        mode kept its cancelled alert on the map once playback stopped there.
        """
        at = t.timestamp()
        # the page's end is info()'s, cut to milliseconds: within one of end_s is the end
        key = self.end_s if at > self.end_s - 1e-3 else float(int(max(at, self.start_s)))
        cached = self._frames.get(key)
        if cached is None:
            cached = self._frames[key] = self._build(key)
        return cached

    def _build(self, t: float) -> dict[str, Any]:
        live = self._live_alerts(t)
        alerts = []
        for ev in live:
            view = self._view(ev)
            unit = self._unit(ev, view, t)
            alerts.append({"alert": view, "unit": unit})
        return {
            "at": _iso(t),
            "alerts": alerts,
            "routes": [_route_out(r) for r in self._routes_at(t, live)],
            "deliveries": self._queued_at(t, {ev.alert_id for ev in live}),
            "rejected": self.info()["rejected"],
            "figures": {"positions_per_s": self._rate_at(t), "lag": None,
                        "delivery_p50_ms": None, "delivery_p99_ms": None},
        }

    def _live_alerts(self, t: float) -> list[AlertEvent]:
        newest: dict[str, AlertEvent] = {}
        for ev in self.events[: bisect.bisect_right(self.event_ts, t)]:
            newest[ev.alert_id] = ev
        return [ev for ev in newest.values()
                if ev.action != "cancel" and ev.expires_at.timestamp() > t]

    def _view(self, ev: AlertEvent) -> dict[str, Any]:
        key = (ev.alert_id, ev.version)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = operator_alert(ev, self.cfg)
        return view

    def _unit(self, ev: AlertEvent, view: dict[str, Any], t: float) -> dict[str, Any] | None:
        unit = unit_of(view)
        track = self.tracks.get(ev.vehicle_id)
        if unit is None or track is None:
            return unit
        # this alert's run only: a unit dispatched again was drawn at the last fix of its
        # earlier run (and trailed from it) until its first fix of this one
        first = bisect.bisect_left(track.ts, ev.started_at.timestamp())
        i = bisect.bisect_right(track.ts, t)
        if i <= first:
            return {**unit, "trail": []}
        j = max(first, bisect.bisect_left(track.ts, t - TRAIL_S))
        trail = track.lonlat[j:i]
        lon, lat = track.lonlat[i - 1]
        return {**unit, "lon": lon, "lat": lat, "heading_deg": _heading(trail, unit),
                "trail": [list(p) for p in trail[::3]] + [[lon, lat]]}

    def _routes_at(self, t: float, live: list[AlertEvent]) -> Iterable[Route]:
        """The newest route (by ``ts``, as the engine keeps it) of each unit with a live alert,
        if it is of the alert's incident (the engine uses no other's)."""
        alerts = {ev.vehicle_id: ev for ev in live}
        newest: dict[str, Route] = {}
        for r in self.route_list:
            if r.ts.timestamp() > t:
                break
            if r.vehicle_id in alerts:
                newest[r.vehicle_id] = r
        return [r for vid, r in newest.items() if route_fits(alerts[vid], r)]

    def _queued_at(self, t: float, alert_ids: set[str]) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {aid: {} for aid in alert_ids}
        for _ts, aid, pid in self.queued[: bisect.bisect_right(self.queued_ts, t)]:
            if aid in out:
                row = out[aid].setdefault(pid, {"queued": 0})
                row["queued"] += 1
        return out

    def _rate_at(self, t: float) -> float:
        """Position messages with event time in the second up to ``t``."""
        return float(bisect.bisect_right(self.message_ts, t)
                     - bisect.bisect_right(self.message_ts, t - 1.0))


def _fanned_out(events: list[AlertEvent], partners: PartnerSet | None
                ) -> Iterable[tuple[float, str, str]]:
    """(event time, alert id, partner) of every delivery fan-out queues, in order."""
    if partners is None:
        return
    state: Any = {}
    for ev in events:
        state, deliveries = fan_out(ev, partners, state, now=ev.ts)
        for d in deliveries:
            if not d.replace_only:  # a throttled update makes no request of its own
                yield ev.ts.timestamp(), ev.alert_id, d.partner_id


def _heading(trail: list[tuple[float, float]], unit: dict[str, Any]) -> float | None:
    """Bearing of the last move in the trail (degrees from north), else the alert's heading."""
    for (lon0, lat0) in reversed(trail[:-1]):
        lon1, lat1 = trail[-1]
        dx = (lon1 - lon0) * math.cos(math.radians(lat1))
        dy = lat1 - lat0
        if abs(dx) + abs(dy) > 2e-5:  # ~2 m
            return round(math.degrees(math.atan2(dx, dy)) % 360.0, 1)
    heading = unit.get("heading_deg")
    return float(heading) if heading is not None else None


def _route_out(route: Route) -> dict[str, Any]:
    return {"vehicle_id": route.vehicle_id, "incident_id": route.incident_id,
            "coordinates": [list(c) for c in route.route.coordinates]}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def message_times(messages: Iterable[tuple[str, bytes]], positions_topic: str) -> list[float]:
    """Sorted event times (seconds) of the position messages that carry a readable ts."""
    out = []
    for topic, raw in messages:
        if topic == positions_topic:
            ts = _ts_of(raw)
            if ts is not None:
                out.append(ts.timestamp())
    out.sort()
    return out

