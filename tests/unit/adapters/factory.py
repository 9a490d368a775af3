"""Hand-built AlertEvents for adapter, fan-out and delivery tests (the engine is not needed),
and the delivery tests' scaffolding: the sample partners, navapp's deliveries of events, and a
hub over ``httpx.MockTransport`` in fake time (no sockets, no waiting).

Coordinates are around uptown Charlotte; zones are GeoJSON (``[lon, lat]``, CCW exteriors).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters.audit import AuditSink, JsonlAudit, MemoryAudit, read_audit
from adapters.dead_letters import DeadLetter, DeadLetterSink
from adapters.fanout import Delivery, PartnerSet, fan_out
from adapters.hub import DeliveryHub
from adapters.partners_file import load_partners
from broker.model import AlertEvent

T0 = datetime(2026, 11, 25, 14, 3, 5, 120_000, tzinfo=UTC)
LON0, LAT0 = -80.8431, 35.2271
KEY = b"test pseudonym key"


def square(lon: float, lat: float, half: float = 0.002) -> list[list[float]]:
    """A closed CCW ring around (lon, lat), ``[lon, lat]`` pairs."""
    return [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]


def polygon_zone(lon: float = LON0, lat: float = LAT0) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [square(lon, lat)]}


def multipolygon_zone(lon: float = LON0, lat: float = LAT0) -> dict[str, Any]:
    return {
        "type": "MultiPolygon",
        "coordinates": [[square(lon, lat)], [square(lon + 0.01, lat + 0.005, 0.001)]],
    }


# Travel order: north-east along a street from the unit's position.
PATH = [(LON0, LAT0), (LON0 + 0.001, LAT0 + 0.0005), (LON0 + 0.002, LAT0 + 0.0011)]


def alert(
    action: str = "create",
    version: int = 1,
    *,
    alert_id: str = "CFD-E7:F261125-0042:approaching",
    kind: str = "approaching",
    at: datetime | None = None,
    zone: dict[str, Any] | None = None,
    path: list[tuple[float, float]] | None = None,
    street: str | None = "N Tryon St",
    vehicle_id: str = "CFD-E7",
    incident_id: str | None = "F261125-0042",
    ttl_s: float = 60.0,
    lon: float = LON0,
    lat: float = LAT0,
    started_at: datetime | None = None,
    first_version: int = 1,
) -> AlertEvent:
    """One alert step; ``at`` defaults to T0 + 10 s per version after the first, ``started_at``
    to the default ``at`` of the life's first version, whatever ``at`` is: steps built with
    the same ``first_version`` are of one life (partners' ids and delivery are per life), and
    another life needs its own ``started_at``."""
    ts = at or (T0 + timedelta(seconds=10 * (version - 1)))
    return AlertEvent(
        action=action,  # type: ignore[arg-type]
        alert_id=alert_id,
        version=version,
        kind=kind,  # type: ignore[arg-type]
        vehicle_id=vehicle_id,
        incident_id=incident_id,
        agency="charlotte-fd",
        unit_type="engine",
        ts=ts,
        started_at=started_at or T0 + timedelta(seconds=10 * (first_version - 1)),
        expires_at=ts + timedelta(seconds=ttl_s),
        lat=lat,
        lon=lon,
        speed_mps=14.2,
        heading_deg=87.0,
        zone=zone or polygon_zone(lon, lat),
        path=PATH if path is None else path,
        street=street,
        cancel_reason="left_emergency" if action == "cancel" else None,
        first_version=first_version,
    )


def lifecycle(n_updates: int = 2, **kw: Any) -> list[AlertEvent]:
    """create, ``n_updates`` updates, cancel: versions 1..n+2, 10 s apart."""
    out = [alert("create", 1, **kw)]
    out += [alert("update", v, **kw) for v in range(2, n_updates + 2)]
    out.append(alert("cancel", n_updates + 2, **kw))
    return out


# ---- delivery through a hub in fake time ----------------------------------------------------

SAMPLE = Path(__file__).resolve().parents[3] / "fixtures" / "partners.toml"
SAMPLE_CONFIG = load_partners(SAMPLE, env={}, allow_dev_defaults=True)
# the sample with its Waze feed taking approaching alerts too (``kinds`` both: the default, and
# the sample's before 2026-12-08, now warned at load): the adapter tests render a moving
# unit's CIFS item (its path, ONE_DIRECTION) and feed mechanics with approaching alerts; the
# sample as shipped takes on-scene alerts only (``SAMPLE_CONFIG``, test_feeds)
CONFIG = replace(SAMPLE_CONFIG, partners=tuple(
    replace(p, kinds=frozenset({"approaching", "on_scene"})) if p.id == "waze" else p
    for p in SAMPLE_CONFIG.partners))
PARTNERS = PartnerSet.from_config(CONFIG)


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)  # yield, as a real sleep does


def navapp_deliveries(*events: AlertEvent) -> list[Delivery]:
    """navapp's deliveries of ``events`` (in order), as fan-out makes them."""
    state: dict[Any, Any] = {}
    out: list[Delivery] = []
    for ev in events:
        state, ds = fan_out(ev, PARTNERS, state, ev.ts)
        out += [d for d in ds if d.partner_id == "navapp"]
    return out


def fake_hub(
    client: httpx.AsyncClient, tmp_path: Path | None, fake: FakeTime,
    audit: AuditSink | None = None, dead_letter: DeadLetterSink = lambda _: None, **kw: Any,
) -> DeliveryHub:
    """The sample partners' hub over ``client`` in ``fake`` time, auditing to
    ``tmp_path/a.jsonl`` (in memory without a ``tmp_path``) unless given ``audit``; backoff
    jitter in the middle (``rand`` 0.5)."""
    if audit is None:
        audit = JsonlAudit(tmp_path / "a.jsonl") if tmp_path is not None else MemoryAudit()
    return DeliveryHub(PARTNERS, client, audit, dead_letter,
                       clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.5, **kw)


async def run_hub(  # type: ignore[no-untyped-def]
    handler, deliveries, tmp_path: Path, start: datetime = T0, fake: FakeTime | None = None,
    sequential: bool = False, **kw,
):
    """Deliver through a hub over ``httpx.MockTransport`` in fake time; ``sequential``: wait
    for each delivery to settle before submitting the next."""
    fake = fake or FakeTime(start)
    audit = JsonlAudit(tmp_path / "audit.jsonl")
    letters: list[DeadLetter] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with client:
        hub = fake_hub(client, tmp_path, fake, audit, letters.append, **kw)
        async with hub:
            for d in deliveries:
                hub.submit(d)
                if sequential:
                    await hub.drain()
    return hub, list(read_audit(audit.path)), letters, fake


KNOWN = [f"U{i}" for i in range(4)]  # units whose alerts navapp has, in ``known_steps``


def known_steps(action: str, version: int) -> list[Delivery]:
    """navapp's deliveries of step ``version`` of each ``KNOWN`` unit's alert (an hour's ttl)."""
    return [d for v in KNOWN for d in navapp_deliveries(
        alert(action, version, alert_id=f"{v}:F1:approaching", vehicle_id=v, ttl_s=3600))]


async def one_at_a_time(
    tmp_path: Path, delivered: list[Delivery], queued: list[Delivery]
) -> list[str]:
    """navapp's requests, as ``UNIT:type`` (the alert id's first part): ``delivered`` is sent
    one delivery after the other, then ``queued`` waits in the held mailbox and goes with one
    request at a time (``max_in_flight`` 1)."""
    order: list[str] = []
    label = {d.message_id: d.alert_id.split(":")[0] for d in [*delivered, *queued]}

    def partner(request: httpx.Request) -> httpx.Response:
        order.append(f"{label[request.headers['webhook-id']]}:{json.loads(request.content)['type']}")
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, FakeTime(T0))
        for d in delivered:
            hub.submit(d)
            await hub.drain()
        navapp = hub.worker("navapp")
        navapp.partner = replace(navapp.partner, max_in_flight=1)
        hub.hold()
        for d in queued:
            hub.submit(d)
        hub.release()
        await hub.drain()
    return order
