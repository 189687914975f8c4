"""
Idle and slow-drip timeouts: one periodic sweep per service.

Instead of a timer reset on every chunk (which puts timer work on the data
path), a L{TimeoutSweeper} looks at every open connection a few times per
timeout period and disconnects:

  - an idle peer: no byte moved either way for the idle timeout (a transfer
    in progress is never idle);
  - a slow-drip peer: its protocol (L{IMessageProgress}) reported the same
    unfinished message (line, frame) for the message timeout -- one byte
    every few seconds keeps a connection busy but never finishes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.internet.task import LoopingCall

from tcplab.interfaces import IMessageProgress

SWEEPS_PER_PERIOD = 4
"""Sweeps per (shortest) timeout: a peer is cut at most a quarter late."""


class Timed(Protocol):
    """
    What the sweeper needs of a connection (L{tcplab.observe.ObservedProtocol}).

    The C{sweep*} attributes are the sweeper's own bookkeeping, kept on the
    connection (as class-level defaults there, so that a connection that
    never moves a byte pays no memory for them).
    """

    bytesIn: int
    bytesOut: int
    openedAt: float
    wrappedProtocol: IProtocol
    sweepSeen: int
    """Bytes in + out at the last sweep."""
    sweepQuietSince: float | None
    """When a sweep last saw the byte count change (L{None}: never)."""
    sweepMarker: object | None
    """The unfinished message the last sweep saw (see L{IMessageProgress})."""
    sweepMarkerSince: float
    """Since when that message has been unfinished."""

    def disconnectBecause(self, reason: str) -> None:
        """Tell the peer why, and close."""


class TimeoutSweeper:
    """
    Periodically check every connection of one service for the timeouts.

    @ivar idleTimeout: seconds without traffic before a peer is cut (L{None}: never).
    @ivar messageTimeout: seconds one unfinished message may take (L{None}: never).
    """

    def __init__(
        self,
        connections: Callable[[], Iterable[Timed]],
        idleTimeout: float | None,
        messageTimeout: float | None,
        reactor: IReactorTime,
    ) -> None:
        self.connections = connections
        self.idleTimeout = idleTimeout or None
        self.messageTimeout = messageTimeout or None
        self.reactor = reactor
        self._loop: LoopingCall | None = None

    @property
    def period(self) -> float | None:
        """Seconds between sweeps, or L{None} when no timeout is set."""
        timeouts = [t for t in (self.idleTimeout, self.messageTimeout) if t]
        return max(min(timeouts) / SWEEPS_PER_PERIOD, 0.01) if timeouts else None

    def start(self) -> None:
        """Start sweeping (nothing is scheduled when no timeout is set)."""
        period = self.period
        if period is None or self._loop is not None:
            return
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = self.reactor
        self._loop.start(period, now=False)

    def stop(self) -> None:
        """Stop sweeping."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def sweep(self) -> None:
        """Check every open connection once."""
        now = self.reactor.seconds()
        for connection in list(self.connections()):
            self.check(connection, now)

    def check(self, connection: Timed, now: float) -> None:
        """Disconnect C{connection} if it is idle or dripping one message."""
        total = connection.bytesIn + connection.bytesOut
        if total != connection.sweepSeen:
            connection.sweepSeen = total
            connection.sweepQuietSince = now
        elif self.idleTimeout:
            quietSince = connection.sweepQuietSince
            if quietSince is None:
                quietSince = connection.openedAt
            if now - quietSince >= self.idleTimeout:
                connection.disconnectBecause(f"idle for {self.idleTimeout:g} seconds")
                return
        limit = self.messageTimeout
        protocol = connection.wrappedProtocol
        marker = None
        if limit and IMessageProgress.providedBy(protocol):
            marker = IMessageProgress(protocol).messageInProgress()
        if marker is None:
            if connection.sweepMarker is not None:
                connection.sweepMarker = None
        elif marker != connection.sweepMarker:
            connection.sweepMarker = marker
            connection.sweepMarkerSince = now
        elif limit is not None and now - connection.sweepMarkerSince >= limit:
            connection.disconnectBecause(f"message not completed within {limit:g} seconds")
