"""Warm-up of a worker before it reports ready: pay start-only costs before the first message.

A worker that takes partitions meets every responding unit at once (the start burst: ~100
alerts created within a second at 500 units). Whatever is paid on first use then lands on the
messages queued behind it, and showed in a py-spy profile of that burst (docs/benchmarks.md):
lazy imports and first-use set-up on the first zone, payload, signature and HTTP request,
and the console's first figures (numpy loads ``numpy.ma`` on a first percentile): ~170 ms
under load, in front of every message of the burst. (The local frames' pyproj Transformers,
~130 ms each, were the largest such cost; they are now built in ~0.2 ms, see
``broker.geo.projection``.)

:func:`warm_up` pays them at start instead, on a made-up unit that never leaves this process:
one engine lifecycle
through a throwaway :class:`~broker.drive.Driver` (its own states and memo) at the centre of
the road network or of the first partner's coverage, one fan-out with each push partner's
payload rendered and signed. Nothing is produced, sent or
stored, so it changes no output; it only moves time from the first messages to start-up.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from broker import codec
from broker.drive import POSITIONS, ROUTES, Driver
from broker.model import AlertEvent, LatLon, LineStringGeometry, Position, Route
from broker.settings import EngineConfig

if TYPE_CHECKING:
    from adapters.config import PartnersConfig
    from broker.geo.roads import RoadNetwork

log = logging.getLogger(__name__)
_M_PER_DEG_LAT = 110_950.0
WARM_UNIT = "warm-up"  # the made-up unit's id (it exists only in the throwaway driver)


def warm_engine(cfg: EngineConfig, lon: float, lat: float,
                roads: RoadNetwork | None = None) -> list[AlertEvent]:
    """One made-up responding unit through a throwaway driver near (lon, lat): a CAD route
    east, fixes along it, then its alert's end. Returns the alert events (discarded by the
    worker; tests look at them)."""
    t0 = datetime(2000, 1, 1, tzinfo=UTC)
    m_lon = _M_PER_DEG_LAT * math.cos(math.radians(lat))
    coords = [(lon + i * 100.0 / m_lon, lat) for i in range(31)]
    route = Route(vehicle_id=WARM_UNIT, incident_id="warm-up", ts=t0,
                  destination=LatLon(lat=lat, lon=coords[-1][0]),
                  route=LineStringGeometry(coordinates=coords))
    driver: Driver[str] = Driver(cfg, roads=roads)
    # as bytes through ``handle``, as the agent does: the decoders warm up too
    events: list[AlertEvent] = list(driver.handle(ROUTES, codec.encode(route),
                                                  received_at=None).events)
    for k in range(6):
        fix = Position(vehicle_id=WARM_UNIT, ts=t0 + timedelta(seconds=2 * k + 1),
                       lat=lat, lon=lon + 30.0 * k / m_lon, status="responding",
                       lights_sirens=True, speed_mps=15.0, heading_deg=90.0,
                       incident_id="warm-up", accuracy_m=5.0)
        events += driver.handle(POSITIONS, codec.encode(fix), received_at=None).events
    events += driver.drain()
    return events


def warm_fan_out(partners: PartnersConfig, events: list[AlertEvent]) -> int:
    """Fan the made-up events out and render and sign each push partner's payload (nothing is
    sent). Returns how many payloads were made."""
    from adapters.fanout import PartnerSet, ThrottleState, fan_out, render_for
    from adapters.webhook import sign_headers

    partner_set = PartnerSet.from_config(partners)
    state: ThrottleState = {}  # fan-out's throttle state, thrown away
    made = 0
    for ev in events:
        state, deliveries = fan_out(ev, partner_set, state, ev.ts)
        for d in deliveries:
            partner = partner_set.partners[d.partner_id]
            payload = render_for(partner, d.view, sender=partners.cap_sender, delivered=None)
            if partner.secret is not None:
                sign_headers(payload.message_id, payload.body, partner.signing_secrets(), ev.ts)
            made += 1
    return made


def warm_imports() -> None:
    """What the first HTTP request and the console's first figures import lazily."""
    np.percentile(np.zeros(2), 50)  # numpy.ma, imported by the first percentile
    # anyio's asyncio backend, which httpcore's first lock imports (by this name, as anyio's
    # get_async_backend does); no event loop is run here: Faust's is not made yet
    importlib.import_module("anyio._backends._asyncio")


def warm_up(cfg: EngineConfig, partners: PartnersConfig | None = None,
            roads: RoadNetwork | None = None) -> dict[str, float]:
    """Everything above; returns what it did and how long it took (logged by the worker)."""
    started = time.perf_counter()
    west, south, east, north = cfg.service_area
    lon, lat = (west + east) / 2, (south + north) / 2
    if roads is not None and roads.frame is not None:
        lon, lat = roads.frame.lon0, roads.frame.lat0
    elif partners is not None and partners.partners:
        x0, y0, x1, y1 = partners.partners[0].coverage.bounds
        lon, lat = (x0 + x1) / 2, (y0 + y1) / 2
    lon, lat = min(max(lon, west), east), min(max(lat, south), north)
    events = warm_engine(cfg, lon, lat, roads)
    payloads = warm_fan_out(partners, events) if partners is not None else 0
    warm_imports()
    took = time.perf_counter() - started
    log.info("warm-up: %d alert events, %d payloads in %.2f s", len(events), payloads, took)
    return {"events": len(events), "payloads": payloads, "seconds": took}
