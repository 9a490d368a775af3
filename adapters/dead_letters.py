"""Dead letters of push delivery: a message a partner will never get, kept with why, and
the in-process sink that writes them as JSON lines (the worker's goes to ``delivery.dlq``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import msgspec


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An undeliverable message, with why. Holds the body (to re-drive it), never a secret."""

    at: datetime
    partner: str
    message_id: str  # as it was (or would have been) sent: the partner's version in it
    alert_id: str
    version: int  # the engine's (``AlertView.version``)
    reason: str
    attempts: int
    content_type: str
    body: bytes


DeadLetterSink = Callable[[DeadLetter], Awaitable[None] | None]


class JsonlDeadLetter:
    """Dead letters as JSON lines in a file (in-process mode)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._encoder = msgspec.json.Encoder()

    def __call__(self, letter: DeadLetter) -> None:
        with self.path.open("ab") as fh:
            fh.write(self._encoder.encode(letter) + b"\n")
