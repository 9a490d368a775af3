"""What the worker's HTTP surfaces take from a client: a body that arrives in pieces, tokens in
any bytes, a feed request with a body, a bad record in the feeds' table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.feeds import FeedResponse
from broker import codec
from broker.agencies import load_agencies
from broker.streams.ingest import INGEST_PATH, IngestEndpoint, whole_body
from broker.streams.runtime import Runtime
from broker.streams.settings import StreamSettings
from broker.streams.tables import table_feeds
from broker.streams.topics import TopicNames
from broker.streams.web import FeedServer
from tests.unit.adapters.factory import CONFIG, alert
from tests.unit.streams.test_forwarder import FIXTURES, POSITION, Producer, _forwarder


class Pieces:
    """An aiohttp body as it arrives: ``read(n)`` returns what came so far, at most n bytes,
    and b"" at the end."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)

    async def read(self, n: int) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > n:
            self.pieces.insert(0, piece[n:])
        return piece[:n]


def test_a_body_in_pieces_is_read_whole_and_a_long_one_only_past_the_limit() -> None:
    """A Traccar position sent in two TCP pieces (or chunked) was cut at the first and
    dead-lettered as bad_json with half its bytes; the 202 told Traccar not to retry."""
    body = b'{"position": {"id": 1}, "device": {"id": 7}}'
    got = asyncio.run(whole_body(Pieces(body[:10], body[10:30], body[30:]), 1024))
    assert got == body
    long = asyncio.run(whole_body(Pieces(b"x" * 700, b"y" * 700, b"z" * 700), 1024))
    assert len(long) == 1025  # the caller refuses it (413), nothing more is read
    assert asyncio.run(whole_body(Pieces(), 1024)) == b""


def test_a_feed_request_with_a_body_is_counted_without_the_paths_partner() -> None:
    """The 413 came before the partner was known, labelled with whatever the path said: each
    made-up name was a Prometheus series of its own, never freed."""
    rt = Runtime(settings=StreamSettings(), names=TopicNames.for_prefix())
    server = FeedServer(rt=rt, tables=None, partners=CONFIG, clock=None, audit=None,  # type: ignore[arg-type]
                        ready=lambda: True)
    for i in range(5):
        refused = server.check(f"nosuch-{i}-{'A' * 200}", {"content-length": "5000"})
        assert isinstance(refused, FeedResponse) and refused.status == 413
    series = [line for line in rt.metrics.render().decode().splitlines()
              if line.startswith("broker_feed_requests_total{")]  # fmt: skip
    assert series == ['broker_feed_requests_total{partner="-",status="413"} 5.0']


def test_a_record_that_is_not_an_alert_leaves_the_feeds_serving() -> None:
    """One such record on ``alerts`` made every partner's feed answer 500, for good."""
    good = codec.encode(alert("create", 1))
    deep = b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # msgspec: RecursionError
    odd = good[:-1] + b',"feeds_reached": 5}'  # an alert whose memory is not ours: the alert
    events, reached = table_feeds([good, b'{"not": "an alert"}', b"\xff", None, b"", deep, odd])
    assert [e.version for e in events] == [1, 1] and reached == {}


async def test_a_body_the_http_layer_cannot_decode_is_a_400_not_a_500() -> None:
    """A body whose ``Content-Encoding`` it is not (``deflate`` over plain bytes) raised
    aiohttp's ``RequestPayloadError`` out of the endpoint: a 500 ("Server got itself in
    trouble") with a traceback, uncounted, and Traccar retrying a body that can never be read.
    Now 400 saying why, counted, with nothing sent to Kafka (there are no bytes to keep)."""
    producer = Producer()
    forwarder, stops = _forwarder(producer)
    forwarder.agencies = load_agencies(FIXTURES / "agencies.toml")
    endpoint = IngestEndpoint(forwarder, "t" * 32)

    async def view(request: web.Request) -> web.Response:  # what the worker's Ingest view does
        status, body = await endpoint.post(request.headers, partial(whole_body, request.content),
                                           datetime.now(UTC))
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post(INGEST_PATH, view)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        auth = {"Authorization": "Bearer " + "t" * 32}
        ok = await client.post(INGEST_PATH, data=POSITION, headers=auth)
        assert (ok.status, await ok.json()) == (200, {"taken": True})
        bad = await client.post(INGEST_PATH, data=b"not deflate at all",
                                headers={**auth, "Content-Encoding": "deflate"})
        assert bad.status == 400
        assert "could not be read" in (await bad.json())["error"]
    assert len(producer.sent) == 1 and stops == []  # the good one only
    metrics = forwarder.rt.metrics.render().decode()
    assert 'broker_ingest_requests_total{status="400"} 1.0' in metrics
