"""
Drain on shutdown: let a service's open connections wind down, then cut.

When a service stops, it first stops accepting; then every open connection
is asked to wind down -- a protocol that provides L{IGracefulStop} says
goodbye in its own way (a running file transfer may finish), any other is
closed once its pending output is sent -- and whatever is still open after
the shutdown timeout is aborted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.logger import Logger

from tcplab.interfaces import IGracefulStop
from tcplab.transports import ConnectionTransport

log = Logger()


class Drainable(Protocol):
    """What a drain needs of a connection (L{tcplab.observe.ObservedProtocol})."""

    wrappedProtocol: IProtocol
    transport: ConnectionTransport

    @property
    def closed(self) -> defer.Deferred[None]:
        """Fires once the connection is gone."""

    @property
    def isOpen(self) -> bool:
        """Whether the connection is still open."""


def stopGracefully(connection: Drainable) -> None:
    """Ask one connection to wind down: its protocol's way, or just close."""
    protocol = connection.wrappedProtocol
    if IGracefulStop.providedBy(protocol):
        IGracefulStop(protocol).serverStopping()
    else:
        connection.transport.loseConnection()


def plural(count: int, noun: str) -> str:
    """C{"1 connection"}, C{"2 connections"}."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def drainConnections(
    serviceName: str, connections: Sequence[Drainable], timeout: float, reactor: IReactorTime
) -> defer.Deferred[None]:
    """
    Ask every connection to wind down; fire when all are closed, aborting
    whatever is still open after C{timeout} seconds.
    """
    if not connections:
        return defer.succeed(None)
    log.info(
        "{service}: closing {connections} (at most {timeout:g}s)",
        service=serviceName,
        connections=plural(len(connections), "connection"),
        timeout=timeout,
    )
    for connection in connections:
        stopGracefully(connection)
    allClosed = defer.gatherResults([c.closed for c in connections])

    def cutOff() -> None:
        for connection in connections:
            if connection.isOpen:
                connection.transport.abortConnection()

    deadline = reactor.callLater(timeout, cutOff)

    def done(_: object) -> None:
        if deadline.active():
            deadline.cancel()

    allClosed.addBoth(done)
    return allClosed  # type: ignore[return-value]
