"""A token bucket: how many requests of a kind are answered a second, with a burst.

The feeds, the Traccar ingest and the console's sign-in answer a flood of wrong tokens at this
rate and refuse the rest with a 429 (a guess costs the guesser, and the log stays short).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``rate`` requests a second, up to ``burst`` at once (monotonic seconds).

    >>> now = [0.0]
    >>> bucket = TokenBucket(1.0, 2.0, wall=lambda: now[0])
    >>> [bucket.take() for _ in range(3)]
    [True, True, False]
    >>> now[0] = 1.0; bucket.take()
    True
    """

    rate: float
    burst: float
    wall: Callable[[], float] = time.monotonic
    tokens: float = -1.0
    at: float = 0.0

    def take(self) -> bool:
        """Whether one more request may go now."""
        now = self.wall()
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
