"""
The transports tcplab's protocols use, named by what they call.

Twisted types C{Protocol.transport} as an optional L{ITransport}, which
names neither the producer/consumer half nor the TCP extras (half-close,
abort) every connection here relies on.  These structural types say which
methods a class really calls, so mypy checks the calls and a test's memory
transport (L{twisted.internet.testing.StringTransport}) still fits.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IAddress, IProducer


class WritingTransport(Protocol):
    """A transport that is written to with flow control: the L{IConsumer} half."""

    def write(self, data: bytes) -> None:
        """Send C{data}."""

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """Let C{producer} be paused and resumed as the buffer fills and drains."""

    def unregisterProducer(self) -> None:
        """Forget the producer."""


class ConnectionTransport(WritingTransport, Protocol):
    """
    A TCP connection as tcplab's services use it: writes with flow control,
    reading paused and resumed, half-close, abort, and both addresses.
    """

    connected: int
    """True (Twisted keeps 1, then 0) until the connection is gone."""
    disconnecting: bool
    """Whether a close has started."""

    def loseConnection(self) -> None:
        """Close once the buffer is written."""

    def loseWriteConnection(self) -> None:
        """Half-close: send FIN, keep reading."""

    def abortConnection(self) -> None:
        """Close at once, dropping the buffer."""

    def pauseProducing(self) -> None:
        """Stop reading from the peer."""

    def resumeProducing(self) -> None:
        """Read from the peer again."""

    def getPeer(self) -> IAddress:
        """The remote address."""

    def getHost(self) -> IAddress:
        """The local address."""
