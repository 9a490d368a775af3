"""The sample partner sink: 401 on a bad signature, de-dup on webhook-id, JSON lines out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import pytest

from adapters import cap, webhook
from adapters.policy import Policy, view_for
from broker.sink import SinkServer
from tests.unit.adapters.factory import KEY, alert

pytestmark = pytest.mark.integration
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
WRONG = "whsec_" + base64.b64encode(b"w" * 32).decode()


def post(url: str, payload) -> int:
    headers = {"content-type": payload.content_type, **payload.headers}
    return httpx.post(url + "/hooks/x", content=payload.body, headers=headers).status_code


def test_bad_signature_is_401_and_not_recorded_good_one_recorded_once(tmp_path) -> None:
    view = view_for(alert(), Policy(), key=KEY)
    now = datetime.now(UTC)
    with SinkServer(secrets=[SECRET], out=tmp_path / "sink.jsonl") as sink:
        assert post(sink.url, webhook.render(view, secret=WRONG, at=now)) == 401
        good = webhook.render(view, secret=SECRET, at=now)
        assert post(sink.url, good) == 200
        assert post(sink.url, good) == 200  # a retry: accepted, not recorded twice
        tampered = type(good)(good.body.replace(b'"version":1', b'"version":9'),
                              good.content_type, good.message_id, good.headers)
        assert post(sink.url, tampered) == 401
        assert (sink.rejected, sink.duplicates, len(sink.received)) == (2, 1, 1)
        summary = json.loads(httpx.get(sink.url).content)
    lines = (tmp_path / "sink.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["message_id"] == view.message_id
    assert summary["received"] == 1


def test_cap_messages_are_verified_and_timed_from_sent() -> None:
    ev = alert()
    view = view_for(ev, Policy(), key=KEY)
    body = cap.render(view, sender="s@x")
    headers = webhook.sign_headers(view.message_id, body.body, SECRET, datetime.now(UTC))
    with SinkServer(secrets=[WRONG, SECRET]) as sink:  # any of several secrets
        assert post(sink.url, type(body)(body.body, body.content_type, body.message_id,
                                         headers)) == 200
        (rec,) = sink.received
    assert rec.event_ts == ev.ts.replace(microsecond=0)
    assert rec.version == 1 and rec.delay_ms is not None


def test_connections_opened_at_once_queue_while_the_sink_accepts_none() -> None:
    """A burst's connections wait in the listen backlog while the sink is busy, not dropped:
    with socketserver's backlog of 5 the kernel dropped the SYNs past it and each of those
    requests waited the 1 s SYN retransmit."""
    import selectors
    import socket
    import time

    with SinkServer(secrets=[SECRET]) as sink:
        host, port = sink.url.removeprefix("http://").split(":")
        sel = selectors.DefaultSelector()
        socks = []
        with sink._lock:  # the accept loop counts each connection under this lock: it stalls
            for _ in range(32):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex((host, int(port)))
                sel.register(s, selectors.EVENT_WRITE)
                socks.append(s)
            connected = 0
            deadline = time.monotonic() + 0.5  # a dropped SYN is retried after 1 s
            while connected < len(socks) and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.05):
                    sel.unregister(key.fileobj)
                    if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        connected += 1
        for s in socks:
            s.close()
        sel.close()
    assert connected == len(socks)
