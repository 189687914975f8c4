"""
Newcomers joining the default room a moment after they arrive, on one timer.

A chat client may open with ``/nick NAME [PASSWORD]`` or ``/nohistory``
before it is put in the default room, so every connection waits
L{tcplab.chat.protocol.JOIN_DELAY} before joining.  One C{callLater} per
connection for that costs a C{DelayedCall}, its bound method and its
arguments: about 250 bytes of RSS per connection at 5000 arriving together
(`python -m bench idle`: 1,662 B per idle chat connection with a timer
each, 1,416 B with none), for a wait that is the same for everyone.
L{DelayedJoins} keeps the waiting connections in arrival order instead, in
batches of those that arrived within L{GRANULARITY} of each other, under
one timer for the oldest batch: a few bytes per connection.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

GRANULARITY = 0.01
"""Seconds of arrivals that share a batch: each joins this much later at most."""


class Joiner(Protocol):
    """A connection waiting to join (L{tcplab.chat.protocol.ChatProtocol})."""

    def joinWhenDue(self) -> None:
        """Its wait is over: join, unless it has joined, left or is logging in."""


class DelayedJoins:
    """
    Connections waiting C{delay} seconds before they join, in batches due
    in arrival order, with one timer for them all.

    A connection that joined earlier (it asked to), is logging in or has
    gone is still called when its batch is due and does nothing then
    (L{Joiner.joinWhenDue}); the batch holds it until then, at most C{delay}
    plus L{GRANULARITY} seconds.

    @ivar batches: the waiting connections: when each batch is due, and who
        is in it, oldest first.
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, delay: float) -> None:
        self.reactor = reactor
        self.delay = delay
        self.batches: deque[tuple[float, list[Joiner]]] = deque()
        self.call: IDelayedCall | None = None

    def add(self, joiner: Joiner) -> None:
        """Have C{joiner} join once C{delay} has passed (and at most L{GRANULARITY} more)."""
        now = self.reactor.seconds()
        batches = self.batches
        if batches and batches[-1][0] >= now + self.delay:
            batches[-1][1].append(joiner)
            return
        batches.append((now + self.delay + GRANULARITY, [joiner]))
        if self.call is None:
            self.call = self.reactor.callLater(self.delay + GRANULARITY, self.run)

    def run(self) -> None:
        """Let every batch that is due join, then wait for the next one."""
        self.call = None
        batches = self.batches
        now = self.reactor.seconds()
        while batches and batches[0][0] <= now:
            for joiner in batches.popleft()[1]:
                try:
                    joiner.joinWhenDue()
                except Exception:
                    self.log.failure("joining the default room failed")
        if batches and self.call is None:
            self.call = self.reactor.callLater(max(batches[0][0] - now, 0.0), self.run)
