"""Flood control: a token bucket per connection or peer, on an injected clock."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """
    Allow C{rate} lines per second on average and bursts of C{burst} lines.

    A person pasting a short block stays within the burst; a script sending
    without pause runs dry and is told how long to wait.
    """

    __slots__ = ("burst", "clock", "rate", "tokens", "updated")  # one per connection

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def take(self) -> float:
        """
        Spend one token; return 0 if allowed, else the seconds to wait
        until a line would be allowed again.
        """
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate
