"""Delivery against real HTTP sinks on 127.0.0.1 (``broker.sink`` in a thread), no mocks.

Assertions are on what arrived, in which order, and what completed first; the one time-based
check (Retry-After) is a lower bound the code guarantees, never an upper bound that could flake.
"""

from __future__ import annotations

import asyncio
import base64
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from adapters.audit import MemoryAudit
from adapters.dead_letters import DeadLetter
from adapters.fanout import PartnerSet, fan_out
from adapters.hub import DeliveryHub, deliver_events
from adapters.partners_file import parse_partners
from adapters.retry import RetryPolicy
from tests.partner_double import Behaviour, ScriptedPartner
from tests.unit.adapters.factory import alert, lifecycle

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "partners.toml"
FAST = RetryPolicy(base_s=0.05, max_backoff_s=0.2)


def partners_for(urls: dict[str, str], **overrides) -> PartnerSet:
    """The sample partners with push URLs pointed at local sinks."""
    data = tomllib.loads(SAMPLE.read_text())
    for p in data["partner"]:
        if p["id"] in urls:
            p["push_url"] = urls[p["id"]]
            p.update(overrides.get(p["id"], {}))
        elif "push_url" in p:
            del p["push_url"]  # keep other push partners out of the way
            p["feed"] = True
            p.setdefault("feed_token", {"env": "UNUSED", "dev_default": True})
    return PartnerSet.from_config(parse_partners(data, env={}, allow_dev_defaults=True))


def secret_of(partners: PartnerSet, pid: str) -> str:
    secret = partners.partners[pid].secret
    assert secret is not None
    return secret.reveal()


@pytest.fixture
def sink_factory():
    started: list[ScriptedPartner] = []

    def make(secret: str, **behaviour) -> ScriptedPartner:
        server = ScriptedPartner(secrets=[secret], behaviour=Behaviour(**behaviour)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


async def test_failing_then_recovering_partner_gets_every_alert_once_in_version_order(
    sink_factory,
) -> None:
    probe = partners_for({"navapp": "http://127.0.0.1:9/"})
    sink = sink_factory(secret_of(probe, "navapp"), fail_next=3, fail_status=503)
    partners = partners_for({"navapp": sink.url + "/hooks/navapp"})
    events = lifecycle(n_updates=3) + lifecycle(n_updates=1, alert_id="CFD-L2:F9:approaching")
    events.sort(key=lambda e: e.ts)
    audit, letters = MemoryAudit(), []
    async with httpx.AsyncClient() as client:
        summary = await deliver_events(events, partners, client, audit,
                                       dead_letter=letters.append, retry=FAST)
    stats = summary.stats["navapp"]
    assert letters == [] and stats.delivered + stats.superseded == len(events)
    by_alert: dict[str, list[int]] = {}
    for rec in sink.received:
        by_alert.setdefault(rec.alert_id, []).append(rec.version)
    # latest state wins: each alert ends on its last version (the cancel), in version order
    assert sorted(v[-1] for v in by_alert.values()) == [3, 5]
    assert all(v == sorted(set(v)) for v in by_alert.values())
    assert len({r.message_id for r in sink.received}) == len(sink.received)
    assert all(r.delay_ms is not None for r in sink.received)


async def test_a_retried_message_is_deduplicated_by_webhook_id(sink_factory) -> None:
    """The partner processed the message but the answer got lost: we resend, it de-dups."""
    probe = partners_for({"navapp": "http://127.0.0.1:9/"})
    sink = sink_factory(secret_of(probe, "navapp"))
    partners = partners_for({"navapp": sink.url + "/hooks/navapp"})
    ev = alert()
    _, (d,) = fan_out(ev, partners, {}, ev.ts)
    audit = MemoryAudit()
    async with httpx.AsyncClient() as client:
        for _ in range(2):
            hub = DeliveryHub(partners, client, audit, lambda _: None,
                              expiry_clock=lambda: ev.ts)
            async with hub:
                hub.submit(d)
    assert len(sink.received) == 1 and sink.duplicates == 1


async def test_429_with_retry_after_is_honoured(sink_factory) -> None:
    probe = partners_for({"navapp": "http://127.0.0.1:9/"})
    sink = sink_factory(secret_of(probe, "navapp"), throttle_next=1, retry_after_s=1)
    partners = partners_for({"navapp": sink.url + "/hooks/navapp"})
    async with httpx.AsyncClient() as client:
        await deliver_events([alert()], partners, client, MemoryAudit(),
                             dead_letter=lambda _: None, retry=FAST)
    statuses = [a.status for a in sink.attempts]
    assert statuses == [429, 200]
    gap = (sink.attempts[1].at - sink.attempts[0].at).total_seconds()
    assert gap >= 0.9  # waited for Retry-After (1 s), not the 0.05 s backoff


async def test_410_disables_the_partner(sink_factory) -> None:
    probe = partners_for({"navapp": "http://127.0.0.1:9/"})
    sink = sink_factory(secret_of(probe, "navapp"), gone=True)
    partners = partners_for({"navapp": sink.url + "/hooks/navapp"})
    letters: list[DeadLetter] = []
    async with httpx.AsyncClient() as client:
        summary = await deliver_events(lifecycle(n_updates=2), partners, client, MemoryAudit(),
                                       dead_letter=letters.append, retry=FAST)
    assert [a.status for a in sink.attempts] == [410]
    stats = summary.stats["navapp"]
    assert stats.disabled and len(letters) + stats.superseded == 4  # never a second request


async def test_a_hanging_partner_does_not_delay_another(sink_factory) -> None:
    probe = partners_for({"navapp": "http://127.0.0.1:9/", "county": "http://127.0.0.1:9/"})
    hanging = sink_factory(secret_of(probe, "navapp"), hang_s=30)
    healthy = sink_factory(secret_of(probe, "county"))
    partners = partners_for(
        {"navapp": hanging.url + "/hooks/navapp", "county": healthy.url + "/hooks/county"},
        navapp={"timeout_s": 1.0},
    )
    events = lifecycle(n_updates=1)
    now = events[0].ts
    audit = MemoryAudit()
    async with httpx.AsyncClient() as client:
        hub = DeliveryHub(partners, client, audit, lambda _: None,
                          expiry_clock=lambda: now, retry=FAST)
        state: dict = {}
        for ev in events:
            state, ds = fan_out(ev, partners, state, ev.ts)
            for d in ds:
                hub.submit(d)
        # county completes while navapp is still stuck in its first (hanging) attempt
        await asyncio.wait_for(hub.workers["county"].join(), timeout=20)
        navapp = [r.status for r in audit.records
                  if r.partner == "navapp" and r.status != "superseded"]
        assert healthy.received and healthy.received[-1].version == 3  # current: the cancel
        assert navapp == ["sending"]  # its first attempt began and has not even finished yet
        await hub.stop()


def test_the_wall_clock_is_what_the_sink_checks(sink_factory) -> None:
    """Sanity: the sink rejects a signature made 10 minutes ago (standardwebhooks tolerance)."""
    from adapters.webhook import sign_headers

    probe = partners_for({"navapp": "http://127.0.0.1:9/"})
    secret = secret_of(probe, "navapp")
    sink = sink_factory(secret)
    body = b'{"data":{}}'
    old = sign_headers("m-v1", body, secret, datetime.now(UTC) - timedelta(minutes=10))
    fresh = sign_headers("m-v1", body, secret, datetime.now(UTC))
    with httpx.Client() as client:
        headers = {"content-type": "application/json"}
        assert client.post(sink.url, content=body, headers={**headers, **old}).status_code == 401
        assert client.post(sink.url, content=body, headers={**headers, **fresh}).status_code == 200


async def test_deliveries_reuse_keep_alive_connections(sink_factory) -> None:
    # an answer whose body is left unread closes its connection: every delivery then paid a
    # new TCP connection (and the sink a new thread), which showed in the start burst's profile
    probe = partners_for({"navapp": "http://127.0.0.1:9/"})
    sink = sink_factory(secret_of(probe, "navapp"))
    partners = partners_for({"navapp": sink.url + "/hooks/navapp"})
    events = [alert("create", 1, alert_id=f"CFD-E{i}:F1:approaching") for i in range(40)]
    audit, letters = MemoryAudit(), []
    async with httpx.AsyncClient() as client:
        summary = await deliver_events(events, partners, client, audit,
                                       dead_letter=letters.append, retry=FAST)
    assert letters == [] and summary.stats["navapp"].delivered == len(events)
    assert len(sink.received) == len(events)
    in_flight = partners.partners["navapp"].max_in_flight
    assert 1 <= sink.connections <= in_flight < len(events)


def test_a_second_burst_reuses_the_connections_of_the_first() -> None:
    """As many connections are kept open between requests as may be opened: with fewer kept
    (20 of 100), each burst past 20 requests in flight closed the extra connections and opened
    new ones for the next (a handshake and an accept at the partner each)."""
    from adapters.http_pool import make_client
    from broker.sink import SinkServer

    class SlowPartner(SinkServer):
        def _decide(self, headers, body):
            time.sleep(0.3)  # holds every request of a burst in flight at once
            return super()._decide(headers, body)

    async def two_bursts(url: str) -> list[int]:
        async with make_client(max_connections=24) as client:
            codes = []
            for _ in range(2):
                answers = await asyncio.gather(*(client.post(url, content=b"{}")
                                                 for _ in range(24)))
                codes += [r.status_code for r in answers]
            return codes

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    with SlowPartner(secrets=[secret]) as sink:
        codes = asyncio.run(two_bursts(sink.url + "/hooks/x"))
        assert codes == [401] * 48  # unsigned: refused, but answered on a kept connection
        # never more connections than the pool may hold: none closed and opened again (a
        # loaded machine may start fewer than 24 at once, so not "exactly 24")
        assert sink.connections <= 24
