"""A cancel owed to a partner that *may* hold the alert though nothing of it was confirmed (the
create's answer never came after the request went out, or a gateway's 504 answered it:
``Outcome.may_have_arrived``) is never given up: not after a restart or a rebalance either
(the ``delivered`` table's ``PartnerRecord.maybe_live``), and not when the answer was a
gateway's. Real adapter objects over ``httpx.MockTransport`` in fake time (no sockets, no
waiting; a bounded loop of ``sleep(0)`` only lets the tasks run)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from adapters.audit import MemoryAudit
from adapters.dispatch import Dispatcher, PartnerRecord, decode_settled, encode_settled, settle
from adapters.fanout import LastSent
from adapters.hub import DeliveryHub
from tests.unit.adapters.factory import PARTNERS, T0, FakeTime, alert, navapp_deliveries
from tests.unit.adapters.test_dispatch import CountingMetrics, RecordingHub

HANG_GUARD_S = 30.0  # a drain that has not returned by then never will (fake time: instant)
CREATE, CANCEL = alert("create", 1, ttl_s=60), alert("cancel", 2, ttl_s=60)
OUTAGE = timedelta(minutes=10)  # the partner answers 503 this long after the cancel


def _hub(client: httpx.AsyncClient, fake: FakeTime) -> DeliveryHub:
    return DeliveryHub(PARTNERS, client, MemoryAudit(), lambda _: None, clock=fake.clock,
                       sleep=fake.sleep, rand=lambda: 0.5)


def _dispatcher(hub: DeliveryHub, table: dict[str, bytes], fake: FakeTime) -> Dispatcher:
    def put(key: str, value: bytes | None) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    return Dispatcher(partners=PARTNERS, hub=hub, metrics=CountingMetrics(),
                      settled_get=table.get, settled_put=put, owns=lambda _: True,
                      wall=fake.clock)


async def _until(done: Callable[[], bool], guard: int = 100_000) -> None:
    """Let the tasks run until ``done()`` (fake time moves only as they sleep)."""
    for _ in range(guard):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


def _navapp(first: Callable[[httpx.Request], Awaitable[httpx.Response]], fake: FakeTime,
            came: list[str]) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """navapp: ``first`` answers the create; then down (503) until ``OUTAGE`` after the cancel.
    Every other partner takes everything."""
    async def partner(request: httpx.Request) -> httpx.Response:
        if "navapp" not in str(request.url):
            return httpx.Response(200)
        came.append(json.loads(request.content)["type"])
        # as httpcore tells once it writes the request on a connection
        await request.extensions["trace"]("http11.send_request_headers.started", {})
        if len(came) == 1:
            return await first(request)
        return httpx.Response(503 if fake.now < CANCEL.ts + OUTAGE else 200)

    return partner


async def _timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("the create's answer never came (the partner stored it)",
                            request=request)


def _answered(status: int) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    async def first(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status)

    return first


async def _restarted(
    hub: DeliveryHub, how: str, client: httpx.AsyncClient, fake: FakeTime
) -> DeliveryHub:
    """The hub that has the alert's partition after a restart, or after a rebalance moved it
    to another worker (the old one revoked it and goes on with its others)."""
    if how == "restart":
        await hub.stop()
    else:
        await hub.revoke(lambda _: True)
    return _hub(client, fake)


def _noting(hub: DeliveryHub, settled: list[tuple[str, int, str]]) -> None:
    """Note in ``settled`` how each delivery ``hub`` is given settles."""
    real = hub.submit

    def submit(d: Any, on_settled: Any, delivered: Any = None, **kw: Any) -> None:
        def noted(d: Any, how: str, last: LastSent | None, *owed: bool) -> None:
            settled.append((d.partner_id, d.version, how))
            on_settled(d, how, last, *owed)
        real(d, noted, delivered, **kw)

    hub.submit = submit  # type: ignore[method-assign]


@pytest.mark.parametrize("how", ["restart", "rebalance"])
async def test_a_restart_or_rebalance_keeps_the_cancel_owed_of_an_unconfirmed_create(
    how: str,
) -> None:
    """The create's answer never came after it went out; its cancel is retried through a
    10-minute outage. A restart (or a rebalance) 20 s into the outage: that the cancel was
    owed lived only in the worker's memory, the durable record said navapp had nothing, so
    the cancel handed back by Kafka was given up at +330 s, the partner still down and
    holding the alert. Now the record says ``maybe_live`` and the cancel goes at +610 s."""
    fake = FakeTime(T0)
    table: dict[str, bytes] = {}
    came: list[str] = []
    settled: list[tuple[str, int, str]] = []
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(_navapp(_timed_out, fake, came))
    ) as client:
        hub = _hub(client, fake)
        fan = _dispatcher(hub, table, fake)
        fan.handle(CREATE, lambda: None)
        await _until(lambda: bool(came))
        fake.now = CANCEL.ts
        fan.handle(CANCEL, lambda: None)
        await _until(lambda: fake.now >= CANCEL.ts + timedelta(seconds=20))  # 503s
        record = decode_settled(table[CREATE.alert_id])["navapp"]
        hub = await _restarted(hub, how, client, fake)
        fan = _dispatcher(hub, table, fake)
        _noting(hub, settled)
        fan.handle(CANCEL, lambda: None)  # Kafka hands the un-acked cancel back
        await asyncio.wait_for(hub.drain(), HANG_GUARD_S)
        await hub.stop()
    assert ("navapp", 2, "delivered") in settled
    assert came[-1] == "alert.cancelled"
    assert fake.now >= CANCEL.ts + OUTAGE  # retried past the cancel's expiry, as owed
    # the create settled superseded, unconfirmed: the partner may hold it
    assert (record.version, record.delivered, record.maybe_live) == (1, None, True)


@pytest.mark.parametrize("how", ["restart", "rebalance"])
async def test_a_restart_while_the_unconfirmed_create_is_retried_keeps_its_cancel_owed(
    how: str,
) -> None:
    """The create's answer never came after it went out, and the partner is down: the create
    is retried (503s) when the worker restarts (or the partition moves), before the cancel
    came. Nothing had settled, so nothing durable said the partner may hold the alert: Kafka
    handed both events back, the new worker's attempts got only 503s, and the cancel was given
    up at its expiry. Now that is kept as soon as the attempt failed (a version-0 record)."""
    fake = FakeTime(T0)
    table: dict[str, bytes] = {}
    came: list[str] = []
    settled: list[tuple[str, int, str]] = []
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(_navapp(_timed_out, fake, came))
    ) as client:
        hub = _hub(client, fake)
        fan = _dispatcher(hub, table, fake)
        fan.handle(CREATE, lambda: None)
        await _until(lambda: fake.now >= T0 + timedelta(seconds=5))  # v1 retried: 503s
        assert came[0] == "alert.created" and len(came) > 1
        hub = await _restarted(hub, how, client, fake)
        fan = _dispatcher(hub, table, fake)
        _noting(hub, settled)
        fake.now = CANCEL.ts
        fan.handle(CREATE, lambda: None)  # Kafka hands both un-acked events back
        fan.handle(CANCEL, lambda: None)
        await asyncio.wait_for(hub.drain(), HANG_GUARD_S)
        await hub.stop()
    navapp = [(v, s) for p, v, s in settled if p == "navapp"]
    assert navapp == [(1, "superseded"), (2, "delivered")]
    assert fake.now >= CANCEL.ts + OUTAGE  # retried past the cancel's expiry, as owed


@pytest.mark.parametrize(("status", "cancel"), [
    (504, "delivered"),  # a gateway timed out: the backend behind it may have stored it
    (502, "expired"),  # a gateway could not reach the backend: nothing went, as for a 503
    (503, "expired"),  # the service was unavailable: it took nothing, nothing to cancel
])
async def test_a_gateways_answer_to_the_create_leaves_its_cancel_owed(
    status: int, cancel: str,
) -> None:
    """A 504 to the create (its gateway gave up, the backend stored it) counted as "the
    partner did not get it": the cancel was given up at its expiry while the partner was
    down, and the partner kept the zone."""
    fake = FakeTime(T0)
    came: list[str] = []
    settled: list[tuple[int, str]] = []
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(_navapp(_answered(status), fake, came))
    ) as client:
        hub = _hub(client, fake)
        v1, v2 = navapp_deliveries(CREATE, CANCEL)
        hub.submit(v1, lambda d, how, *_: settled.append((d.version, how)))
        await _until(lambda: bool(came))
        fake.now = CANCEL.ts
        hub.submit(v2, lambda d, how, *_: settled.append((d.version, how)))
        await asyncio.wait_for(hub.drain(), HANG_GUARD_S)
        await hub.stop()
    assert settled == [(1, "superseded"), (2, cancel)]
    if cancel == "delivered":
        assert fake.now >= CANCEL.ts + OUTAGE


# ---- the record ------------------------------------------------------------------------------

def test_a_record_from_before_reads_as_not_maybe_live_and_the_flag_round_trips() -> None:
    older = b'{"p": {"version": 2, "until": "2030-01-01T00:00:00Z", "delivered": null}}'
    assert decode_settled(older)["p"].maybe_live is False
    one = settle({}, "p", 1, None, T0, started_at=T0, maybe_live=True)
    assert decode_settled(encode_settled(one)) == one and one["p"].maybe_live


def test_maybe_live_stays_once_reported_and_goes_with_its_life_into_earlier() -> None:
    later = T0 + timedelta(minutes=1)
    until = T0 + timedelta(hours=1)
    one = settle({}, "p", 1, None, until, started_at=T0, maybe_live=True)
    # a later settle of the life that does not report it (nothing new) keeps it
    two = settle(one, "p", 2, None, until, started_at=T0)
    assert two["p"].maybe_live and two["p"].version == 2
    # a new life starts afresh; the earlier life keeps its flag (its cancel may come back)
    three = settle(two, "p", 3, None, until, started_at=later)
    assert not three["p"].maybe_live
    earlier = three["p"].for_life(T0)
    assert isinstance(earlier, PartnerRecord) and earlier.maybe_live
    # a late settle of the earlier life reporting it, into ``earlier``
    fresh = settle(settle({}, "p", 3, None, until, started_at=later), "p", 1, None, until,
                   started_at=T0, maybe_live=True)
    assert not fresh["p"].maybe_live and fresh["p"].for_life(T0).maybe_live  # type: ignore[union-attr]


def test_the_dispatcher_hands_the_record_s_maybe_live_to_the_worker() -> None:
    table: dict[str, bytes] = {}
    hub = RecordingHub()
    fan = Dispatcher(partners=PARTNERS, hub=hub, metrics=CountingMetrics(),  # type: ignore[arg-type]
                     settled_get=table.get, settled_put=table.__setitem__, owns=lambda _: True,
                     wall=lambda: T0)
    fan.handle(CREATE, lambda: None)
    ((d1, cb1),) = [(d, cb) for d, cb in hub.queued if d.partner_id == "navapp"]
    cb1(d1, "superseded", None, True)  # settled unconfirmed: may be live at navapp
    hub2 = RecordingHub()
    fan2 = Dispatcher(partners=PARTNERS, hub=hub2, metrics=CountingMetrics(),  # type: ignore[arg-type]
                      settled_get=table.get, settled_put=table.__setitem__,
                      owns=lambda _: True, wall=lambda: T0)
    fan2.handle(CANCEL, lambda: None)
    assert ("navapp", 2, True) in hub2.owed
    assert all(not owed for p, _, owed in hub2.owed if p != "navapp")
