"""
The echo service: RFC 862 echo and the socket tutorials' variants.

Embed any of these in a Twisted program::

    from twisted.internet import endpoints, reactor
    from tcplab.echo import EchoFactory
    endpoints.serverFromString(reactor, "tcp:0").listen(EchoFactory())

Protocols:
  - L{EchoProtocol}: every byte back, unchanged (RFC 862), with
    backpressure and half-close.
  - L{UpperEchoProtocol}: the same stream, upper-cased (ASCII letters).
  - L{AckProtocol}: one fixed acknowledgement per chunk read, as the
    tutorial server does (one C{recv} is not one message: see C{--trace}).
  - L{CountingLineProtocol}: a welcome banner, each line answered as
    ``N: line``, C{exit} to leave.
  - L{EchoDatagramProtocol}: UDP, each datagram answered to its sender.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from tcplab.interfaces import IGracefulStop
from tcplab.lines import LineProtocol

MODES = ("echo", "upper", "ack", "count")
"""The reply modes the echo service offers, by name."""

DEFAULT_ACK = b"received"
DEFAULT_BANNER = b"Welcome to tcplab echo. Send lines; 'exit' to leave."
EXIT_LINE = b"exit"


@implementer(IHalfCloseableProtocol, IGracefulStop)
class EchoProtocol(Protocol):
    """
    RFC 862 echo: send back every byte received, unchanged.

    Backpressure: the transport is registered as its own streaming producer,
    so when its write buffer is full it stops reading from this peer, and it
    resumes when the buffer drains.  A peer that sends without reading only
    fills its own socket buffers, never the server's memory.

    Half-close: when the peer shuts down its sending side, everything it sent
    is still echoed before the connection closes.
    """

    transport: Any
    """A stream transport: also a consumer and a push producer."""

    def connectionMade(self) -> None:
        """Pause reading whenever our outgoing buffer is full."""
        assert self.transport is not None
        self.transport.registerProducer(self.transport, True)

    def reply(self, data: bytes) -> bytes:
        """What to send back for C{data}; the identity here."""
        return data

    def dataReceived(self, data: bytes) -> None:
        """Echo the chunk."""
        self.transport.write(self.reply(data))

    def finish(self) -> None:
        """Send what we still owe, then close."""
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """The peer sent EOF: finish sending what we owe, then close."""
        self.finish()

    def serverStopping(self) -> None:
        """The server is shutting down: finish up the same way."""
        self.finish()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we never half-close ourselves."""


class UpperEchoProtocol(EchoProtocol):
    """Echo the stream with ASCII letters upper-cased (other bytes unchanged)."""

    def reply(self, data: bytes) -> bytes:
        """Upper-case C{data}."""
        return data.upper()


class AckProtocol(EchoProtocol):
    """
    Answer every chunk read with a fixed acknowledgement line, as the
    tutorial server does after each C{recv}.
    """

    def __init__(self, ack: bytes = DEFAULT_ACK) -> None:
        self.ack = ack + b"\r\n"

    def reply(self, data: bytes) -> bytes:
        """The acknowledgement, whatever arrived."""
        return self.ack


@implementer(IGracefulStop)
class CountingLineProtocol(LineProtocol):
    """
    Greet the client, answer each line with a running count (``3: hello``),
    and say goodbye and close on the line C{exit}.
    """

    log = Logger()
    transport: Any

    def __init__(self, banner: bytes = DEFAULT_BANNER, maxLineLength: int = 16384) -> None:
        self.banner = banner
        self.maxLineLength = maxLineLength
        self.count = 0

    def connectionMade(self) -> None:
        """Send the banner."""
        assert self.transport is not None
        self.transport.registerProducer(self.transport, True)
        if self.banner:
            self.sendLine(self.banner)

    def lineReceived(self, line: bytes) -> None:
        """Count the line and answer it; close on C{exit}."""
        assert self.transport is not None
        if line.strip() == EXIT_LINE:
            self.sendLine(b"bye")
            self.finish()
            return
        self.count += 1
        self.sendLine(b"%d: %s" % (self.count, line))

    def finish(self) -> None:
        """Send what we still owe, then close."""
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def serverStopping(self) -> None:
        """The server is shutting down: say so and close."""
        self.sendLine(b"server shutting down, bye")
        self.finish()

    def lineTooLong(self, size: int) -> None:
        """Say so; the connection stays open."""
        self.sendLine(b"error: line too long (%d bytes, at most %d)" % (size, self.maxLineLength))


class EchoFactory(Factory):
    """
    Build echo protocols for one reply mode (see L{MODES}).

    @ivar mode: C{echo} (RFC 862), C{upper}, C{ack} or C{count}.
    @ivar ack: the acknowledgement for C{ack} mode.
    @ivar banner: the greeting for C{count} mode.
    """

    noisy = False

    def __init__(
        self,
        mode: str = "echo",
        ack: bytes = DEFAULT_ACK,
        banner: bytes = DEFAULT_BANNER,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown echo mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode = mode
        self.ack = ack
        self.banner = banner

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A fresh protocol for the configured mode."""
        protocol: Protocol
        if self.mode == "upper":
            protocol = UpperEchoProtocol()
        elif self.mode == "ack":
            protocol = AckProtocol(self.ack)
        elif self.mode == "count":
            protocol = CountingLineProtocol(self.banner)
        else:
            protocol = EchoProtocol()
        protocol.factory = self
        return protocol


class EchoDatagramProtocol(DatagramProtocol):
    """
    UDP echo: answer each datagram to its sender, in the configured mode
    (C{count} numbers datagrams, per server, not per sender).
    """

    log = Logger()
    noisy = False

    def __init__(self, mode: str = "echo", ack: bytes = DEFAULT_ACK) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown echo mode {mode!r}")
        self.mode = mode
        self.ack = ack
        self.count = 0

    def reply(self, datagram: bytes) -> bytes:
        """What to answer C{datagram} with."""
        if self.mode == "upper":
            return datagram.upper()
        if self.mode == "ack":
            return self.ack
        if self.mode == "count":
            self.count += 1
            return b"%d: %s" % (self.count, datagram)
        return datagram

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Send the reply back to where the datagram came from."""
        assert self.transport is not None
        try:
            self.transport.write(self.reply(datagram), addr)
        except OSError as e:
            # e.g. the reply is too large for the path back; the next
            # datagram may fare better, so keep serving.
            self.log.warn("UDP reply to {peer} failed: {error}", peer=addr, error=e)
