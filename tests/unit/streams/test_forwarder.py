"""The forwarder's agent (``cad.status``, ``avl.traccar`` -> the units' log) on an exception
out of ``forward``: it stops the worker with the message un-acked. Raised out of the agent (a
decoder's RecursionError on deeply nested JSON, the DLQ send of a 1 MB record refused at
once by the producer), Faust restarted the agent past the message, never dead-lettered, and
the next acks committed past it: lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from broker.failure import FailurePolicy, StopWork
from broker.streams.ingest import Forwarder


class Event:
    def __init__(self, value: bytes) -> None:
        self.value = value
        self.message = SimpleNamespace(timestamp=0.0, topic="cad.status")
        self.acked = False

    def ack(self) -> None:
        self.acked = True


class Stream:
    def __init__(self, events: list[Event]) -> None:
        self.events_list = events
        self.handed = 0

    def noack(self) -> Stream:
        return self

    async def events(self) -> AsyncIterator[Event]:
        for event in self.events_list:
            self.handed += 1
            yield event


def test_an_exception_out_of_forward_stops_the_worker_with_the_message_unacked() -> None:
    stops: list[StopWork] = []

    async def stop_worker(app: object, stop: StopWork) -> None:
        stops.append(stop)

    rt = SimpleNamespace(received_at=lambda ts: datetime.now(UTC), stop_worker=stop_worker)
    loop = asyncio.new_event_loop()
    forwarder = Forwarder(app=None, topics=None, rt=rt, agencies=None,  # type: ignore[arg-type]
                          failures=FailurePolicy())

    async def forward(kind: str, raw: bytes, received_at: datetime, source: str) -> Any:
        if raw == b"poison":
            raise RecursionError("maximum recursion depth exceeded while deserializing")
        return loop.create_future(), "taken"  # not settled before the poison

    forwarder.forward = forward  # type: ignore[method-assign]
    events = [Event(b"good"), Event(b"poison"), Event(b"after")]
    stream = Stream(events)
    try:
        loop.run_until_complete(forwarder.run("cad.status", stream))  # type: ignore[arg-type]
    finally:
        loop.close()
    assert [s.failure.site for s in stops] == ["ingest"]
    assert "RecursionError" in stops[0].failure.error
    assert stream.handed == 2  # nothing after it is taken ...
    assert not any(e.acked for e in events)  # ... nor acked: all come again after the restart
