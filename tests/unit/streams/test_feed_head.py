"""A HEAD of a feed through the worker's real aiohttp app (``broker.streams.web``). Review of
2026-12-08 (feeds), item 6: Faust's views answer HEAD with the GET handler, so a HEAD rendered
the feed, took one of the partner's rate-limit tokens and wrote a ``feed_served`` audit record,
though no body went out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.audit import AuditRecord
from broker.streams import web as web_module
from broker.streams.app import create_app
from broker.streams.settings import StreamSettings
from broker.streams.web import FEED_BURST
from tests.unit.adapters.factory import CONFIG

OPENDATA = CONFIG.by_id()["opendata"]
BEARER = {"authorization": f"Bearer {OPENDATA.feed_token.reveal()}"}  # type: ignore[union-attr]


def test_a_head_of_a_feed_is_refused_unrendered_unaudited_and_costs_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[AuditRecord] = []
    monkeypatch.setattr(web_module, "reloaded_once", lambda ready, leased: lambda: True)
    monkeypatch.setattr(web_module, "WallClockAudit",
                        lambda sink: type("A", (), {"write": lambda self, r: written.append(r)})())
    rendered: list[Any] = []
    real_render = web_module.render_partner_feed

    def render(*args: Any, **kwargs: Any) -> Any:
        rendered.append(args[0].id)
        return real_render(*args, **kwargs)

    monkeypatch.setattr(web_module, "render_partner_feed", render)

    async def run() -> tuple[list[int], str | None, int]:
        app = create_app(StreamSettings(data_dir=tmp_path), partners=CONFIG)
        async with TestClient(TestServer(app.web.web_app, host="127.0.0.1")) as client:
            heads = []
            for _ in range(FEED_BURST + 5):  # more than the partner's burst
                resp = await client.head("/feeds/opendata", headers=BEARER)
                heads.append(resp.status)
            allow = resp.headers.get("allow")
            got = await client.get("/feeds/opendata", headers=BEARER)
            return heads, allow, got.status

    heads, allow, status = asyncio.run(run())
    assert set(heads) == {405} and allow == "GET"
    assert status == 200  # the burst is the GET's still: no HEAD took a token
    assert rendered == ["opendata"]  # the GET alone was rendered ...
    assert [r.status for r in written] == ["feed_served"]  # ... and audited
