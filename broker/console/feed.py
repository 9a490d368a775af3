"""The live feed of the console: one bounded ring of deltas shared by every open page.

Each delta gets a sequence number; a page's Server-Sent Events stream holds only its cursor (the
last number it was sent), so a client costs O(1) memory and all clients together share at most
``size`` deltas. A page that falls further behind than the ring reaches, or reconnects to
another process (after a worker restart the instance id differs), gets a fresh snapshot instead
of the deltas it missed: the snapshot is rebuilt from Kafka, so nothing is lost either way.

Event ids on the wire are ``<instance>.<seq>``; the browser sends the last one back as
``Last-Event-ID`` when it reconnects.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


class Feed:
    """A bounded, numbered ring of deltas and a way to wait for the next one."""

    def __init__(self, size: int = 4096) -> None:
        self.instance = secrets.token_hex(4)
        self.seq = 0
        self._ring: deque[tuple[int, str, bytes]] = deque(maxlen=size)
        self._changed = asyncio.Event()

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Append one delta and wake the waiting streams."""
        self.seq += 1
        self._ring.append((self.seq, name, _encoder.encode(data)))
        self.wake()

    def wake(self) -> None:
        """Wake every waiting stream without a delta (shutdown: they see it and end)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def event_id(self, seq: int | None = None) -> str:
        """The wire id of ``seq`` (default: the newest)."""
        return f"{self.instance}.{self.seq if seq is None else seq}"

    def cursor_of(self, last_event_id: str | None) -> int | None:
        """The cursor a reconnecting page resumes from, or None when it needs a snapshot."""
        if not last_event_id:
            return None
        instance, _, seq = last_event_id.partition(".")
        # ASCII digits only ("²".isdigit() holds and int() refuses it), and few enough for
        # int() (it refuses over 4,300 digits): a header is the client's to write
        if instance != self.instance or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
            return None
        cursor = int(seq)
        return cursor if self._reachable(cursor) else None

    def since(self, cursor: int) -> list[tuple[int, str, bytes]] | None:
        """Deltas after ``cursor``, or None when the ring no longer reaches back that far."""
        if not self._reachable(cursor):
            return None
        return [item for item in self._ring if item[0] > cursor]

    async def wait(self, cursor: int, timeout_s: float) -> None:
        """Return once there is a delta after ``cursor``, or after ``timeout_s``."""
        if self.seq > cursor:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            return

    def _reachable(self, cursor: int) -> bool:
        if cursor > self.seq:
            return False
        oldest = self._ring[0][0] if self._ring else self.seq + 1
        return cursor >= oldest - 1


def sse(name: str, data: bytes, event_id: str | None = None) -> bytes:
    """One Server-Sent Events message (``data`` is one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\n".encode() + b"data: " + data + b"\n\n"


def encode(data: Any) -> bytes:
    """JSON bytes (msgspec)."""
    return _encoder.encode(data)
