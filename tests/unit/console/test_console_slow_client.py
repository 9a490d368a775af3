"""A live page that stops reading its event stream (a laptop closed, a network gone) must not
hold one of the console's ``MAX_STREAMS`` slots until TCP gives up (many minutes): a write that
does not finish within the console's write timeout ends the stream and frees the slot."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from broker.console.access import Access
from broker.console.server import Console
from tests.unit.console.fakes import TOKEN, Live, serving, wait_until

DELTA = {"blob": "x" * 256 * 1024}  # a quarter MiB a delta: the socket buffers fill fast


async def test_a_client_that_stops_reading_loses_its_stream_after_the_write_timeout() -> None:
    live = Live()
    console = Console(live, Access(TOKEN), write_timeout_s=0.5)
    async with serving(console) as runner:
        port = runner.addresses[0][1]
        host = f"127.0.0.1:{port}"
        page = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        try:
            async with aiohttp.ClientSession() as http:
                r = await http.post(f"http://{host}/console/api/session", json={"token": TOKEN},
                                    headers=page)
                assert r.status == 200
                cookie = r.cookies["ev_console"].value
            # a page that opens its stream, then never reads again (and never closes it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            request = (f"GET /console/api/events HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}"
                       f"\r\nSec-Fetch-Site: same-origin\r\nCookie: ev_console={cookie}\r\n\r\n")
            await loop.sock_sendall(sock, request.encode())
            assert await wait_until(lambda: console.streams == 1, 5.0)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux: a vanished page's unacked bytes
                (conn,) = [h for h in runner.server.connections if h.transport]  # type: ignore[union-attr]
                server_sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
                assert server_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 500
            for _ in range(200):  # 50 MiB of deltas: far more than the socket buffers take
                live.feed.publish("alert", DELTA)
                await asyncio.sleep(0.005)
                if console.streams == 0:
                    break
            started = time.monotonic()
            freed = await wait_until(lambda: console.streams == 0, 5.0)
            assert freed, "the stream of a client that stopped reading still holds its slot"
            assert time.monotonic() - started < 3.0
        finally:
            sock.close()


def test_the_write_timeout_is_a_setting() -> None:
    from broker.console.config import ConsoleConfigError, console_from_env

    env = {"BROKER_CONSOLE_TOKEN": TOKEN}
    assert console_from_env(env, host="127.0.0.1", allow_dev=False).write_timeout_s == 30.0  # type: ignore[union-attr]
    env["BROKER_CONSOLE_WRITE_TIMEOUT_S"] = "5"
    assert console_from_env(env, host="127.0.0.1", allow_dev=False).write_timeout_s == 5.0  # type: ignore[union-attr]
    env["BROKER_CONSOLE_WRITE_TIMEOUT_S"] = "0"
    with pytest.raises(ConsoleConfigError, match="BROKER_CONSOLE_WRITE_TIMEOUT_S='0'"):
        console_from_env(env, host="127.0.0.1", allow_dev=False)
