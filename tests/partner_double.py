"""A partner that misbehaves on purpose: the sample partner (``broker.sink``) with a script.

Real HTTP on 127.0.0.1 (the sink's threaded server), answering after signature verification as
the ``Behaviour`` says: fail the next N requests, answer 429 with Retry-After, answer 410 Gone
to everything, or hang without answering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.sink import SinkServer


@dataclass
class Behaviour:
    """How the partner answers the next requests (after signature verification)."""

    fail_next: int = 0
    fail_status: int = 500
    throttle_next: int = 0  # answer 429 with Retry-After to this many requests
    retry_after_s: int = 1
    gone: bool = False  # answer 410 Gone to everything
    hang_s: float = 0.0  # sleep this long without answering (client timeout tests)


@dataclass
class ScriptedPartner(SinkServer):
    """A sink that answers as ``behaviour`` says once a request's signature has verified."""

    behaviour: Behaviour = field(default_factory=Behaviour)

    def _decide(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]] | float:
        answer = super()._decide(headers, body)
        if answer != (200, {}):
            return answer
        b = self.behaviour
        with self._lock:
            if b.gone:
                return 410, {}
            if b.hang_s > 0:
                return float(b.hang_s)
            if b.throttle_next > 0:
                b.throttle_next -= 1
                return 429, {"retry-after": str(b.retry_after_s)}
            if b.fail_next > 0:
                b.fail_next -= 1
                return b.fail_status, {}
        return 200, {}
