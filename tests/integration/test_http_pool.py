"""The delivery client against real sockets on 127.0.0.1: its connection pool, and a
delivery attempt bounded as a whole (a partner trickling its headers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from adapters.audit import MemoryAudit
from adapters.fanout import PartnerSet, fan_out
from adapters.http_pool import OriginPool, OriginPoolTransport, make_client
from adapters.hub import DeliveryHub
from adapters.partners_file import load_partners
from tests.unit.adapters.factory import alert

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "partners.toml"


@dataclass
class Server:
    """A minimal HTTP/1.1 endpoint: counts the connections it accepts and what is open."""

    requests_per_connection: int | None = None  # close a connection after this many answers
    hold: asyncio.Event | None = None  # answer only once this is set
    accepted: int = 0
    open: int = 0
    answered: int = 0
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.writers.append(writer)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                if self.hold is not None:
                    await self.hold.wait()
                served += 1
                last = self.requests_per_connection is not None and \
                    served >= self.requests_per_connection
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
                             + (b"connection: close\r\n" if last else b"") + b"\r\nok")
                await writer.drain()
                self.answered += 1
                if last:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = srv.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        for w in server.writers:
            w.close()
        srv.close()


def client(max_connections: int = 100, *, pool_s: float = 5.0,
           expiry_s: float = 5.0) -> tuple[httpx.AsyncClient, OriginPool]:
    transport = OriginPoolTransport(limits=httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections,
        keepalive_expiry=expiry_s))
    return (httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, pool=pool_s)),
            transport.pool)


async def post(c: httpx.AsyncClient, url: str) -> int:
    async with c.stream("POST", url, content=b"{}") as resp:
        await resp.aread()
        return resp.status_code


async def test_requests_one_after_another_reuse_one_connection() -> None:
    async with serving(Server()) as server:
        c, pool = client()
        async with c:
            assert [await post(c, server.url()) for _ in range(20)] == [200] * 20
            assert server.accepted == 1
            assert (pool.open_connections, pool.idle_connections) == (1, 1)
        assert pool.open_connections == 0  # closing the client closed it


async def test_a_burst_opens_one_connection_per_request_in_flight_and_keeps_them() -> None:
    async with serving(Server()) as server:
        c, pool = client()
        async with c:
            for _ in range(3):
                assert await asyncio.gather(*(post(c, server.url()) for _ in range(12))) \
                    == [200] * 12
            assert server.accepted == 12  # the second and third bursts opened nothing
            assert pool.idle_connections == 12


async def test_never_more_requests_in_flight_or_sockets_open_than_the_limit() -> None:
    other = Server()
    async with serving(Server()) as server, serving(other):
        c, pool = client(max_connections=3)
        async with c:
            await asyncio.gather(*(post(c, server.url()) for _ in range(10)))
            assert server.accepted <= 3
            # another origin: an idle connection of the first is closed to make room
            await asyncio.gather(*(post(c, other.url()) for _ in range(10)))
            assert pool.open_connections <= 3
            # the partners see the closes once this loop has run their handlers
            for _ in range(200):
                if server.open + other.open <= 3:
                    break
                await asyncio.sleep(0.01)
            assert server.open + other.open <= 3


async def test_a_request_waits_for_a_slot_up_to_the_pool_timeout() -> None:
    hold = asyncio.Event()
    async with serving(Server(hold=hold)) as server:
        c, _ = client(max_connections=1, pool_s=0.2)
        async with c:
            first = asyncio.create_task(post(c, server.url()))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await post(c, server.url())
            hold.set()
            assert await first == 200
            assert await post(c, server.url()) == 200  # the slot came back


async def test_a_connection_the_partner_closed_is_replaced() -> None:
    async with serving(Server(requests_per_connection=2)) as server:
        c, pool = client()
        async with c:
            assert [await post(c, server.url()) for _ in range(7)] == [200] * 7
            assert server.accepted == 4
            assert pool.open_connections <= 1


async def test_an_idle_connection_closed_by_the_partner_is_not_used_again() -> None:
    async with serving(Server()) as server:
        c, pool = client()
        async with c:
            assert await post(c, server.url()) == 200
            for w in server.writers:  # the partner drops its idle connection
                w.close()
            await asyncio.sleep(0.05)
            assert await post(c, server.url()) == 200
            assert server.accepted == 2 and pool.open_connections == 1


async def test_idle_connections_past_their_expiry_are_closed() -> None:
    async with serving(Server()) as server:
        c, pool = client(expiry_s=0.1)
        async with c:
            await asyncio.gather(*(post(c, server.url()) for _ in range(4)))
            await asyncio.sleep(0.2)
            assert await post(c, server.url()) == 200
            # the one taken was past expiry and replaced; giving it back closed the oldest
            assert pool.open_connections < 4


async def test_a_cancelled_request_gives_its_slot_back() -> None:
    hold = asyncio.Event()
    async with serving(Server(hold=hold)) as server:
        c, pool = client(max_connections=1, pool_s=0.5)
        async with c:
            task = asyncio.create_task(post(c, server.url()))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            hold.set()
            assert await post(c, server.url()) == 200
            assert pool.open_connections == 1


async def test_a_refused_connection_is_an_httpx_connect_error_and_frees_its_slot() -> None:
    async with serving(Server()) as server:
        url = server.url()
    c, pool = client(max_connections=1, pool_s=0.2)
    async with c:
        for _ in range(3):  # the slot comes back each time: no PoolTimeout
            with pytest.raises(httpx.ConnectError):
                await post(c, url)
        assert pool.open_connections == 0


def test_the_delivery_client_uses_it_unless_the_environment_names_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    direct = make_client()
    assert isinstance(direct._transport, OriginPoolTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    proxied = make_client()
    assert not isinstance(proxied._transport, OriginPoolTransport)
    assert any(m is not None for m in proxied._mounts.values())


async def test_a_response_still_open_when_the_client_closes_closes_its_connection() -> None:
    async with serving(Server()) as server:
        c, pool = client()
        async with c.stream("POST", server.url(), content=b"{}") as resp:
            await c.aclose()
            await resp.aread()
        assert pool.open_connections == 0 and pool.idle_connections == 0


@dataclass
class TrickledHeaders(Server):
    """Answers its first request with a status line, then one header byte every 50 ms until
    the client hangs up (each read is quick, so httpx's per-read timeout never fires); later
    requests are answered as by :class:`Server`."""

    trickled: asyncio.Event = field(default_factory=asyncio.Event)  # the trickle ended

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.accepted:  # only the first connection trickles
            await super().handle(reader, writer)
            return
        self.accepted += 1
        self.writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(600):  # 30 s at most
                if reader.at_eof():
                    break
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        finally:
            self.trickled.set()
            writer.close()


async def test_a_partner_trickling_its_headers_is_cut_off_at_timeout_s_and_retried() -> None:
    """The attempt ends at the partner's timeout_s (a ReadTimeout, audited as a failed attempt
    and retried) rather than lasting as long as the partner keeps trickling."""
    async with serving(TrickledHeaders()) as server:
        config = load_partners(SAMPLE, env={}, allow_dev_defaults=True)
        navapp = replace(config.by_id()["navapp"], push_url=server.url(), timeout_s=0.5)
        partners = PartnerSet.from_config(replace(config, partners=(navapp,)))
        now = datetime.now(UTC)
        _, (d,) = fan_out(alert("create", 1, at=now, ttl_s=60), partners, {}, now)
        audit, settled = MemoryAudit(), []
        async with make_client() as c:
            hub = DeliveryHub(partners, c, audit, lambda _: None, rand=lambda: 0.0)
            hub.submit(d, lambda d, how, _last, _maybe: settled.append(how))
            await asyncio.wait_for(hub.drain(), 5)
            await hub.stop()
        await asyncio.wait_for(server.trickled.wait(), 5)  # we hung up on it
    outcomes = [r for r in audit.records if r.status != "sending"]  # one before each attempt
    statuses = [r.status for r in outcomes]
    assert settled == ["delivered"] and statuses[-1] == "delivered"
    assert set(statuses[:-1]) == {"failed"}
    assert len(audit.records) == 2 * len(outcomes)
    assert outcomes[0].detail.startswith("error: ReadTimeout")
