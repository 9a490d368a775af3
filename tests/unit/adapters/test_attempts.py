"""The attempts at one partner (``adapters.attempts``) on their own, without a mailbox: one
attempt's bound, outcome and breaker record, the probe while the breaker is open, and a
retry's wait that ends when the partner comes back. ``httpx.MockTransport`` in fake time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx

from adapters.attempts import Attempts, Permit
from adapters.delivery_loop import NEVER
from adapters.payload import Payload
from adapters.retry import Breaker, Outcome, Retry, RetryPolicy, next_attempt
from tests.unit.adapters.factory import CONFIG, T0, FakeTime

NAVAPP = CONFIG.by_id()["navapp"]
PAYLOAD = Payload(b"{}", "application/json", "ev-1:1")


def attempts(client: httpx.AsyncClient, fake: FakeTime, breaker: Breaker | None = None
             ) -> Attempts:
    return Attempts(client=client, scrub=lambda s: s,
                    clock=fake.clock, expiry_clock=fake.clock, sleep=fake.sleep,
                    rand=lambda: 0.5, retry=RetryPolicy(), breaker=breaker or Breaker())


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


async def test_an_attempt_is_signed_bounded_by_the_deadline_and_recorded_in_the_breaker() -> None:
    fake = FakeTime(T0)
    seen: list[httpx.Request] = []

    async def partner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            await asyncio.Event().wait()  # never answers
        return httpx.Response(503, headers={"retry-after": "7"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        a = attempts(client, fake)
        assert a.bound_s(NAVAPP, at(0.1)) == 0.1  # the deadline, sooner than timeout_s (5 s)
        hung, _ = await a.send(NAVAPP, NAVAPP.push_url or "", PAYLOAD, lambda: at(0.1))
        refused, _ = await a.send(NAVAPP, NAVAPP.push_url or "", PAYLOAD, lambda: at(60))
    assert hung.status is None and hung.error == "ReadTimeout: no answer within 0.1 s"
    assert refused.status == 503 and refused.retry_after_s == 7
    assert seen[0].headers["webhook-id"] == "ev-1:1" and "webhook-signature" in seen[0].headers
    assert a.breaker.next_probe == at(7)  # the Retry-After opened it
    decision = a.decide(refused, 2, lambda: at(60))
    assert isinstance(decision, Retry) and decision.at == at(7)


async def test_while_the_breaker_is_open_one_probe_goes_and_the_rest_wait_or_expire() -> None:
    fake = FakeTime(T0)
    open_until = replace(Breaker(), failures=3, next_probe=at(1))
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204))
                                 ) as client:
        a = attempts(client, fake, open_until)
        probe = await a.permit(lambda: at(60), lambda: False)
        assert probe == Permit("probe", 0) and fake.now == at(1)
        # the probe is out: another alert waits for its answer, and expires meanwhile
        assert await a.permit(lambda: at(1.5), lambda: False) is None
        a.release(probe)
        await a.send(NAVAPP, NAVAPP.push_url or "", PAYLOAD, lambda: at(60), probe)
        assert a.breaker.closed and a.recoveries == 1
        free = await a.permit(lambda: at(60), lambda: False)
        assert free == Permit("free", 0) and not a.lapsed(free)
        # the breaker opens (another alert's 429) before this permit's request went
        a.breaker = a.breaker.record(Outcome(429, retry_after_s=60), fake.now)
        assert a.lapsed(free) and not a.lapsed(Permit("probe", a.breaker.opened))


async def test_a_retry_waits_until_its_time_unless_the_partner_comes_back() -> None:
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204))
                                 ) as client:
        a = attempts(client, fake, replace(Breaker(), failures=3, next_probe=T0))
        await a.wait_until(at(2), lambda: False)
        assert fake.now == at(2)
        waiting = asyncio.create_task(a.wait_until(at(30), lambda: False))
        await asyncio.sleep(0)
        await a.send(NAVAPP, NAVAPP.push_url or "", PAYLOAD, lambda: at(60))  # the probe: 204
        await waiting
    assert fake.now < at(3)  # woken by the recovery, not at its own time


async def test_a_retry_the_partners_retry_after_set_is_not_woken_by_a_recovery() -> None:
    """That message's next attempt is the partner's word (docs/partners.md, item 7)."""
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204))
                                 ) as client:
        a = attempts(client, fake, replace(Breaker(), failures=3, next_probe=T0))
        decision = a.decide(Outcome(429, retry_after_s=30), 1, lambda: at(60))
        assert isinstance(decision, Retry) and decision.retry_after and decision.at == at(30)
        backoff = next_attempt(Outcome(503), 1, T0, expires_at=at(60))
        assert isinstance(backoff, Retry) and not backoff.retry_after
        waiting = asyncio.create_task(a.wait_until(decision.at, lambda: False, retry_after=True))
        await asyncio.sleep(0)
        await a.send(NAVAPP, NAVAPP.push_url or "", PAYLOAD, lambda: at(60))  # the probe: 204
        assert a.recoveries == 1
        await waiting
    assert fake.now == at(30)


async def test_an_older_requests_success_does_not_end_a_retry_after() -> None:
    """Two requests out; the second is answered 429 (Retry-After: 60), then the first 200: the
    breaker stays open until 60 s on, and no retry's wait ends early."""
    fake = FakeTime(T0)
    limited = asyncio.Event()

    async def partner(request: httpx.Request) -> httpx.Response:
        if request.headers["webhook-id"] == "slow:1":
            await limited.wait()
            return httpx.Response(200)
        limited.set()
        return httpx.Response(429, headers={"retry-after": "60"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        a = attempts(client, fake)
        slow = asyncio.create_task(a.send(NAVAPP, NAVAPP.push_url or "",
                                          replace(PAYLOAD, message_id="slow:1"), lambda: at(90)))
        await asyncio.sleep(0)
        refused, _ = await a.send(NAVAPP, NAVAPP.push_url or "", PAYLOAD, lambda: at(90))
        assert refused.status == 429 and a.breaker.next_probe == at(60)
        waiting = asyncio.create_task(a.wait_until(at(2), lambda: False))  # a backoff's wait
        accepted, _ = await slow
        assert accepted.status == 200
        assert a.breaker.next_probe == at(60) and a.recoveries == 0
        await waiting
    assert fake.now == at(2)  # its own time: the partner has not come back


def test_a_retry_far_into_an_outage_waits_the_longest_backoff_not_an_overflow() -> None:
    """A cancel owed is retried until the partner takes it: attempt 1,026 computed 2.0 ** 1025
    (OverflowError) and the cancel was dead-lettered as a bug ~1.7 h into an outage."""
    policy = RetryPolicy()
    for attempt in (1_026, 100_000):
        decision = next_attempt(Outcome(503), attempt, T0, expires_at=NEVER, policy=policy,
                                rand=lambda: 1.0)
        assert isinstance(decision, Retry) and decision.at == T0 + timedelta(
            seconds=policy.max_backoff_s)


async def test_a_request_may_have_arrived_only_once_it_went_out_on_a_connection() -> None:
    """Our own bound also trips in a connect or TLS handshake that hangs (a black-holed
    partner): nothing went, so the partner cannot hold the alert and no cancel is owed for it.
    A request written to a partner that then never answers may have arrived."""
    held: list[asyncio.StreamWriter] = []

    async def tls_never(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)  # accepts TCP, never answers the TLS handshake

    async def answer_never(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)
        await r.readuntil(b"\r\n\r\n")  # the request's head came: the partner has it

    tls = await asyncio.start_server(tls_never, "127.0.0.1", 0)
    plain = await asyncio.start_server(answer_never, "127.0.0.1", 0)
    try:
        def now() -> datetime:
            return datetime.now(UTC)

        async with httpx.AsyncClient() as client:
            a = Attempts(client=client, scrub=lambda s: s, clock=now, expiry_clock=now,
                         sleep=asyncio.sleep, rand=lambda: 0.5, retry=RetryPolicy(),
                         breaker=Breaker())
            outcomes = []
            for scheme, server in (("https", tls), ("http", plain)):
                port = server.sockets[0].getsockname()[1]
                deadline = now() + timedelta(seconds=0.5)  # our bound, before timeout_s
                out, _ = await a.send(NAVAPP, f"{scheme}://127.0.0.1:{port}/hook", PAYLOAD,
                                      lambda d=deadline: d)
                outcomes.append(out)
    finally:
        for w in held:
            w.close()
        tls.close()
        plain.close()
    hung_tls, unanswered = outcomes
    assert hung_tls.error is not None and hung_tls.error.startswith("ReadTimeout")
    assert not hung_tls.may_have_arrived
    assert unanswered.error is not None and unanswered.may_have_arrived


async def test_a_proxys_connect_is_not_the_request_going_out() -> None:
    """Through an HTTPS proxy httpcore writes the CONNECT first, with the request's trace: the
    event fires before the target's TLS handshake, which may then hang. Only the request's own
    headers say it went."""
    fake = FakeTime(T0)
    outcomes = []
    for method in (b"CONNECT", b"POST"):
        async def partner(request: httpx.Request, method: bytes = method) -> httpx.Response:
            event = {"request": SimpleNamespace(method=method)}
            await request.extensions["trace"]("http11.send_request_headers.started", event)
            raise httpx.ReadTimeout("no answer", request=request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
            out, _ = await attempts(client, fake).send(NAVAPP, NAVAPP.push_url or "", PAYLOAD,
                                                        lambda: at(60))
        outcomes.append(out.may_have_arrived)
    assert outcomes == [False, True]


async def test_while_a_secret_rotates_each_request_verifies_with_the_old_and_the_new() -> None:
    from standardwebhooks import Webhook

    from adapters.config import Secret, dev_secret

    new = dev_secret("rotated-in", "webhook secret")
    rotating = replace(NAVAPP, next_secret=Secret("env:NEXT", new))
    fake = FakeTime(datetime.now(UTC))  # the verifier checks the timestamp against the clock
    seen: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        a = attempts(client, fake)
        far = fake.now + timedelta(seconds=60)
        await a.send(rotating, NAVAPP.push_url or "", PAYLOAD, lambda: far)
    assert NAVAPP.secret is not None
    for secret in (NAVAPP.secret.reveal(), new):
        Webhook(secret).verify(seen[0].content, dict(seen[0].headers))
