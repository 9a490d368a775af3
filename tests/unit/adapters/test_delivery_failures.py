"""Delivery when our own code fails (adapters.delivery, adapters.delivery_loop): a render bug, a
dead letter that cannot be written, an ``on_settled`` that raises. Each either settles the
delivery (a dead letter with its reason) or stops the partner's worker through the failure
policy; none may leave the alert's task dead, its key taken and its record never acked with
nothing stopping. In fake time against ``httpx.MockTransport``: no sockets, no waiting (a
``wait_for`` only guards the test against a hang)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from adapters.audit import MemoryAudit
from adapters.dead_letters import DeadLetter
from adapters.delivery import PartnerWorker
from adapters.fanout import AlertView, Delivery, LastSent
from adapters.hub import DeliveryHub
from adapters.payload import Payload
from broker.failure import FailurePolicy, StopWork
from tests.unit.adapters.factory import PARTNERS, T0, FakeTime, alert, navapp_deliveries

HANG_GUARD_S = 5.0  # a drain that has not returned by then never will (fake time: it is instant)
Render = Callable[[object, AlertView, LastSent | None], Payload]


def a_cancel() -> Delivery:
    """navapp's delivery of the cancel (v2) of the alert whose create is ``alert(...)`` v1."""
    steps = navapp_deliveries(alert("create", 1, ttl_s=3600), alert("cancel", 2, ttl_s=3600))
    return next(d for d in steps if d.version == 2)


def buggy_render(real: Render, bad: Callable[[AlertView], bool]) -> Render:
    def render(p: object, view: AlertView, delivered: LastSent | None) -> Payload:
        if bad(view):
            raise ValueError("a bug in a renderer")
        return real(p, view, delivered)

    return render


async def drained(hub: DeliveryHub) -> None:
    await asyncio.wait_for(hub.drain(), HANG_GUARD_S)


async def test_a_render_bug_is_dead_lettered_without_a_body_and_the_cancel_still_goes() -> None:
    """The render bug was re-rendered for the dead letter inside the failure's handler, which
    raised again and killed the task: key taken for good, the cancel never sent, drain hung."""
    sent: list[str] = []

    def partner(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        return httpx.Response(200)

    fake = FakeTime(T0)
    letters: list[DeadLetter] = []
    settled: list[tuple[int, str]] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), letters.append,
                          clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.5)
        w = hub.worker("navapp")
        w.render = buggy_render(w.render, lambda view: view.version == 1)
        v1, = navapp_deliveries(alert("create", 1, ttl_s=3600))
        hub.submit(v1, lambda d, how, _l, _m: settled.append((d.version, how)))
        await drained(hub)
        hub.submit(a_cancel(), lambda d, how, _l, _m: settled.append((d.version, how)))
        await drained(hub)
        await hub.stop()
    assert settled == [(1, "dead_letter"), (2, "delivered")]
    assert sent == [a_cancel().message_id] and w.active == {} and w.stopped is None
    letter, = letters
    assert letter.reason.startswith("delivery_error: ValueError('a bug in a renderer')")
    assert letter.body == b"" and letter.content_type == ""  # nothing rendered: no body


async def test_a_dead_letter_that_cannot_be_written_stops_the_worker_loudly() -> None:
    """A bug in the dead-letter sink, inside the failure's handler: was a silently dead task."""
    def sink(letter: DeadLetter) -> None:
        raise RuntimeError("a bug writing the dead letter")

    fake = FakeTime(T0)
    stops: list[StopWork] = []
    settled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))
                                 ) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), sink, on_stop=stops.append,
                          clock=fake.clock, sleep=fake.sleep)
        w = hub.worker("navapp")
        w.render = buggy_render(w.render, lambda view: True)
        for d in navapp_deliveries(alert("create", 1)):
            hub.submit(d, lambda d, how, _l, _m: settled.append(how))
        with pytest.raises(StopWork, match="settle failed"):
            await drained(hub)
        await hub.stop()
    assert settled == []  # never acked: a restarted worker tries again
    assert len(stops) == 1 and stops[0].failure.site == "settle"
    assert "a bug writing the dead letter" in stops[0].failure.error


class SendError(Exception):
    """A library's wrapper of its client's error (as Faust's ProducerSendError of a
    KafkaError)."""


async def test_a_dead_letter_refused_in_an_outage_stops_the_worker_as_an_outage() -> None:
    """The dead-letter sink's error wraps an outage (``raise ... from``): the policy sees the
    outage, the worker stops without settling (was judged a bug: 'skip', then the re-dead-letter
    raised in the handler and the task died silently)."""
    async def sink(letter: DeadLetter) -> None:
        raise SendError("Error while sending") from ConnectionError("Kafka away")

    fake = FakeTime(T0)
    stops: list[StopWork] = []
    settled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(400))
                                 ) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), sink, on_stop=stops.append,
                          failures=FailurePolicy(), clock=fake.clock, sleep=fake.sleep)
        for d in navapp_deliveries(alert("create", 1)):
            hub.submit(d, lambda d, how, _l, _m: settled.append(how))
        with pytest.raises(StopWork, match="delivery failed"):
            await drained(hub)
        await hub.stop()
    assert settled == []
    assert len(stops) == 1 and stops[0].failure.site == "delivery"


async def test_a_render_bug_on_the_breakers_probe_gives_the_probe_back() -> None:
    """render raised while the attempt held the open breaker's one probe: the probe was never
    given back, and no alert of the partner was ever sent again (given up as 'partner down')."""
    statuses = [503]  # the partner's answer, from now on

    def partner(request: httpx.Request) -> httpx.Response:
        return httpx.Response(statuses[-1])

    fake = FakeTime(T0)
    settled: list[tuple[str, str]] = []

    def on_settled(d: Delivery, how: str, _l: object, _m: bool) -> None:
        settled.append((d.alert_id.split(":")[0], how))

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), lambda _: None,
                          clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.5)
        w: PartnerWorker = hub.worker("navapp")
        a, = navapp_deliveries(alert("create", 1, alert_id="A:F1:approaching", vehicle_id="A",
                                     at=T0, ttl_s=3))
        hub.submit(a, on_settled)  # the partner is down: the breaker opens
        await drained(hub)
        assert not w.breaker.closed
        statuses.append(200)  # back; B's render fails once, on the probe
        b, = navapp_deliveries(alert("create", 1, alert_id="B:F1:approaching", vehicle_id="B",
                                     at=fake.now, ttl_s=60))
        once = [b.view.message_id]  # a transient bug: B's first render only
        w.render = buggy_render(
            w.render, lambda view: view.message_id in once and not once.remove(view.message_id))
        hub.submit(b, on_settled)
        await drained(hub)
        assert not w.attempts.probing
        c, = navapp_deliveries(alert("create", 1, alert_id="C:F1:approaching", vehicle_id="C",
                                     at=fake.now, ttl_s=30))
        hub.submit(c, on_settled)
        await drained(hub)
        await hub.stop()
    assert settled == [("A", "expired"), ("B", "dead_letter"), ("C", "delivered")]


async def test_an_on_settled_that_raises_stops_the_worker_loudly() -> None:
    """The shell's callback failed (writing the ``delivered`` table): its record would never be
    acked, the partition's acks held for good. It was logged and swallowed; now a stop."""
    def on_settled(d: Delivery, how: str, _l: object, _m: bool) -> None:
        raise RuntimeError("the delivered table write failed")

    fake = FakeTime(T0)
    stops: list[StopWork] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))
                                 ) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), lambda _: None, on_stop=stops.append,
                          clock=fake.clock, sleep=fake.sleep)
        for d in navapp_deliveries(alert("create", 1)):
            hub.submit(d, on_settled)
        with pytest.raises(StopWork, match="settle failed"):
            await drained(hub)
        await hub.stop()
    assert len(stops) == 1 and stops[0].failure.site == "settle"


# ---- a create whose answer never came: the partner may have it ------------------------------

@pytest.mark.parametrize(("error", "cancel"), [
    (httpx.ReadTimeout, "delivered"),  # the request went: the partner may hold the alert
    (httpx.RemoteProtocolError, "delivered"),  # the connection dropped before the answer
    (httpx.ConnectError, "expired"),  # nothing left: nothing to cancel after the expiry
])
async def test_a_cancel_is_owed_when_the_create_may_have_arrived(
    error: type[httpx.TransportError], cancel: str,
) -> None:
    """The create's answer timed out (the partner processed it), then the partner is down past
    the alert's expiry: its cancel was given up at the expiry, the partner holding the alert."""
    fake = FakeTime(T0)
    v1, v2 = navapp_deliveries(alert("create", 1, ttl_s=60), alert("cancel", 2, ttl_s=60))
    expiry = v2.expires_at  # the cancel's own (a cancel lives a while past its alert)
    came: list[str] = []

    async def partner(request: httpx.Request) -> httpx.Response:
        came.append(json.loads(request.content)["type"])
        if error is not httpx.ConnectError:  # as httpcore tells once it writes the request
            await request.extensions["trace"]("http11.send_request_headers.started", {})
        if len(came) == 1:
            raise error("the create's answer never came", request=request)
        return httpx.Response(503 if fake.now < expiry + timedelta(seconds=120) else 200)

    settled: list[tuple[int, str]] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), lambda _: None,
                          clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.5)
        hub.submit(v1, lambda d, how, _l, _m: settled.append((d.version, how)))
        for _ in range(10):  # until v1's first attempt has failed
            if came:
                break
            await asyncio.sleep(0)
        assert came == ["alert.created"]
        hub.submit(v2, lambda d, how, _l, _m: settled.append((d.version, how)))
        await drained(hub)
        await hub.stop()
    assert settled == [(1, "superseded"), (2, cancel)]
    if cancel == "delivered":
        assert fake.now > expiry  # retried past the alert's expiry, as a cancel owed


async def test_a_bug_before_any_render_is_dead_lettered_with_the_rendered_body() -> None:
    """Only a render that raised leaves the dead letter without a body: a bug before any
    attempt rendered (here reading the partner's durable status) still parks the payload."""
    fake = FakeTime(T0)
    letters: list[DeadLetter] = []
    settled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))
                                 ) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), letters.append, clock=fake.clock,
                          sleep=fake.sleep, rand=lambda: 0.5)

        def status_read_bug() -> bool:
            raise KeyError("a bug reading partner-status")

        hub.worker("navapp")._durably_disabled = status_read_bug  # type: ignore[method-assign]
        (v1,) = navapp_deliveries(alert("create", 1, ttl_s=3600))
        hub.submit(v1, lambda d, how, _l, _m: settled.append(how))
        await drained(hub)
        await hub.stop()
    assert settled == ["dead_letter"]
    (letter,) = letters
    assert letter.reason.startswith("delivery_error") and "KeyError" in letter.reason
    assert letter.content_type == "application/json"
    assert json.loads(letter.body)["type"] == "alert.created"


def a_hub_whose_stop_fails(client: httpx.AsyncClient, stopped: list[str]) -> DeliveryHub:
    """A hub whose dead letters cannot be written (its drain raises the ``settle`` StopWork)
    and whose navapp worker's stop raises after stopping."""
    def sink(letter: DeadLetter) -> None:
        raise RuntimeError("a bug writing the dead letter")

    fake = FakeTime(T0)
    hub = DeliveryHub(PARTNERS, client, MemoryAudit(), sink, clock=fake.clock, sleep=fake.sleep)
    w = hub.worker("navapp")
    w.render = buggy_render(w.render, lambda view: True)
    real_stop = w.stop

    async def stop() -> None:
        await real_stop()
        stopped.append("navapp")
        raise RuntimeError("a bug stopping the worker")

    w.stop = stop  # type: ignore[method-assign]
    return hub


async def test_the_hubs_exit_raises_the_drains_failure_not_a_later_stops(caplog) -> None:
    """The first failure is the cause: a stop failing after the drain failed is logged and
    noted on it. It replaced it (a RuntimeError of the stop, the StopWork only its context)."""
    stopped: list[str] = []
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as client:
        hub = a_hub_whose_stop_fails(client, stopped)
        with pytest.raises(StopWork, match="settle failed") as raised:
            async with hub:
                for d in navapp_deliveries(alert("create", 1)):
                    hub.submit(d)
    assert stopped == ["navapp"]  # the partners' tasks were stopped all the same
    assert any("a bug stopping the worker" in n for n in raised.value.__notes__)
    assert "a bug stopping the worker" in caplog.text


async def test_the_hubs_exit_cancelled_while_stopping_tells_the_drains_failure(caplog) -> None:
    """The drain failed, then the exit was cancelled stopping the partners' workers: the
    cancellation goes on, the drain's failure (the cause) logged and noted on it. The stop was
    caught as an ``Exception`` only: the cancellation left the exit before the drain's failure
    was told anywhere."""
    hung = asyncio.Event()
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as client:
        hub = a_hub_whose_stop_fails(client, [])
        w = hub.worker("navapp")

        async def stop() -> None:
            await PartnerWorker.stop(w)
            hung.set()
            await asyncio.Event().wait()  # cancelled here

        w.stop = stop  # type: ignore[method-assign]
        raised: list[BaseException] = []

        async def deliver() -> None:
            try:
                async with hub:
                    for d in navapp_deliveries(alert("create", 1)):
                        hub.submit(d)
            except BaseException as err:
                raised.append(err)
                raise

        delivering = asyncio.create_task(deliver())
        await hung.wait()
        delivering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await delivering
    (cancelled,) = raised
    assert isinstance(cancelled, asyncio.CancelledError)
    assert any("settle failed" in n for n in getattr(cancelled, "__notes__", []))
    told = [r for r in caplog.records if r.name == "adapters.hub"]
    assert any("settle failed" in repr(r.exc_info and r.exc_info[1]) for r in told)


async def test_the_hubs_exit_keeps_the_blocks_own_failure() -> None:
    stopped: list[str] = []
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as client:
        hub = a_hub_whose_stop_fails(client, stopped)
        with pytest.raises(KeyError, match="the block's own") as raised:
            async with hub:
                raise KeyError("the block's own")
    assert stopped == ["navapp"]
    assert any("a bug stopping the worker" in n for n in raised.value.__notes__)


async def test_the_hubs_exit_raises_a_failed_stop_when_nothing_failed_before() -> None:
    stopped: list[str] = []
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as client:
        hub = a_hub_whose_stop_fails(client, stopped)
        with pytest.raises(RuntimeError, match="a bug stopping the worker"):
            async with hub:
                pass
    assert stopped == ["navapp"]


async def test_a_failed_stop_is_raised_once_every_partners_worker_has_stopped() -> None:
    """One partner's stop failing at once: the others' stops still run to their end before
    the hub's stop raises (a plain gather raised at once, leaving them running)."""
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    stopped: list[str] = []
    async with httpx.AsyncClient(transport=transport) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), lambda letter: None)
        broken, slow = (hub.worker(pid) for pid in sorted(PARTNERS.partners)[:2])

        async def fails() -> None:
            raise RuntimeError("a bug stopping the worker")

        async def takes_turns() -> None:
            for _ in range(3):
                await asyncio.sleep(0)  # cancelled tasks being awaited, as PartnerWorker.stop
            stopped.append("slow")

        broken.stop = fails  # type: ignore[method-assign]
        slow.stop = takes_turns  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="a bug stopping the worker"):
            await hub.stop()
        assert stopped == ["slow"]


async def test_every_failed_stop_is_told_not_only_the_first(caplog) -> None:
    """Two partners' stops failing: the first is raised, the second logged and noted on it
    (it was dropped without a word)."""
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as client:
        hub = DeliveryHub(PARTNERS, client, MemoryAudit(), lambda letter: None)
        first, second = (hub.worker(pid) for pid in sorted(PARTNERS.partners)[:2])

        def failing(what: str) -> Any:
            async def stop() -> None:
                raise RuntimeError(what)
            return stop

        first.stop = failing("the first stop's bug")  # type: ignore[method-assign]
        second.stop = failing("the second stop's bug")  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="the first stop's bug") as raised:
            await hub.stop()
    assert any("the second stop's bug" in n for n in raised.value.__notes__)
    assert "the second stop's bug" in caplog.text
