"""The live page in a real browser, on an in-process console whose live source is fed by the
test (no Kafka): what deltas do to an open page, and an open page whose session runs out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from broker.console.access import Access
from broker.console.config import ConsoleConfig
from broker.console.serve import console_app
from broker.console.state import LiveState
from broker.replay import load_messages, replay_in_process
from broker.settings import EngineConfig
from tests.browser.fixtures import REPO, TOKEN, Page, sign_in, wait_for
from tests.unit.adapters.factory import PARTNERS
from tests.unit.console.fakes import Live

INCIDENT = REPO / "fixtures" / "incidents" / "route-downtown"


class FedLive(Live):
    """A live source whose records the test hands in (``LiveState`` and ``Feed`` as the
    worker's ``LiveSource`` has them)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = LiveState(partners=PARTNERS)

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "title": "test",
                "delivery_columns": ["delivered", "pending", "failed", "expired"]}

    def snapshot(self) -> dict[str, Any]:
        return {**self.state.snapshot(), "figures": {}, "now": None, "loading": False}


@dataclass
class Live:
    url: str
    source: FedLive
    clock: list[float]
    loop: asyncio.AbstractEventLoop

    def run(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the server's loop and wait for it."""
        done = threading.Event()

        def call() -> None:
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(call)
        assert done.wait(10)


@pytest.fixture
def live() -> Iterator[Live]:
    clock = [1_000_000.0]
    access = Access(TOKEN, clock=lambda: clock[0], session_s=3600.0)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        source = FedLive()
        runner = web.AppRunner(console_app(source, ConsoleConfig(access)), access_log=None,
                               shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        box.update(source=source, runner=runner, port=runner.addresses[0][1])

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield Live(f"http://127.0.0.1:{box['port']}/console/", box["source"], clock, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def test_a_new_alert_shows_its_pending_deliveries_and_an_ended_session_the_login(
    live: Live, console_page: Page,
) -> None:
    """Found in review: the `alert` delta had no deliveries, so an open page said "No
    deliveries" for a new alert whose deliveries were pending (a reload showed them); and the
    stream outlived its session (checked only when it opened)."""
    page = console_page.page
    sign_in(page, live.url)
    assert page.evaluate("document.querySelectorAll('#deliveries table.delivery').length") == 0
    event = replay_in_process(load_messages(INCIDENT), cfg=EngineConfig()).events[0]

    def alert() -> None:
        for name, data in live.source.state.apply_alert(event):
            live.source.feed.publish(name, data)

    live.run(alert)
    aid = event.alert_id
    rows = f"#deliveries table[data-alert-id='{aid}'] tr[data-partner]"
    cells = wait_for(page, f"""(() => {{
        const rows = document.querySelectorAll("{rows}");
        return rows.length ? [...rows].map((r) => [...r.children].map((c) => c.textContent))
                           : null;
    }})()""", timeout_s=30, what="the new alert's deliveries")
    expected = live.source.state.deliveries_of(aid)
    assert sorted(r[0] for r in cells) == sorted(expected)
    assert all(r[2] == "1" for r in cells), cells  # pending
    # the session runs out: the open stream ends, the reconnect gets a 401, the login shows
    live.clock[0] += 3601.0
    live.run(lambda: live.source.feed.publish("figures", {"figures": {}, "rejected": {}}))
    wait_for(page, "!document.getElementById('login').hidden", timeout_s=30,
             what="the login after the session ended")
    assert "session ended" in page.evaluate("document.getElementById('login-error').textContent")
    assert [e for e in console_page.errors if "401" not in e] == []
