"""
The echo service over TCP: RFC 862 echo and the tutorials' variants.

  - L{EchoProtocol}: every byte back, unchanged (RFC 862), with
    backpressure and half-close.
  - L{UpperEchoProtocol}: the same stream, upper-cased (ASCII letters).
  - L{AckProtocol}: one fixed acknowledgement per chunk read, as the
    tutorial server does (one C{recv} is not one message: see C{--trace}).
  - L{CountingLineProtocol}: a welcome banner, each line answered as
    ``N: line``, C{exit} to leave; L{CountingReadProtocol} answers each
    read instead, as the tutorial's server with one C{recv} does.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from tcplab.echo.modes import (
    DEFAULT_ACK,
    DEFAULT_BANNER,
    EXIT_LINE,
    LINE_END,
    Reply,
    echoed,
    parseMode,
    replyFor,
)
from tcplab.interfaces import IGracefulStop
from tcplab.lines import LineProtocol


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

    def __init__(self, reply: Reply = echoed) -> None:
        self.reply = reply
        """What a chunk read is answered with (the mode's reply)."""

    def connectionMade(self) -> None:
        """Pause reading whenever our outgoing buffer is full."""
        assert self.transport is not None
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        """Answer the chunk."""
        reply = self.reply
        # Plain echo skips calling the identity reply: one call less per read.
        self.transport.write(data if reply is echoed else reply(data))

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

    def __init__(self) -> None:
        super().__init__(replyFor("upper"))


class AckProtocol(EchoProtocol):
    """
    Answer every chunk read with a fixed acknowledgement line, as the
    tutorial server does after each C{recv}.
    """

    def __init__(self, ack: bytes = DEFAULT_ACK) -> None:
        acknowledge = replyFor("ack", ack)
        super().__init__(lambda data: acknowledge(data) + LINE_END)


class CountingReadProtocol(EchoProtocol):
    """
    Count mode, per read: greet the client, answer each chunk read with
    ``N: chunk`` (as the tutorial server answers each C{recv}, so a client
    that sends C{hello} without a newline gets its answer), and close on a
    read that is just C{exit}.
    """

    def __init__(self, banner: bytes = DEFAULT_BANNER) -> None:
        super().__init__(replyFor("count"))
        self.banner = banner

    def connectionMade(self) -> None:
        """Send the banner."""
        super().connectionMade()
        if self.banner:
            self.transport.write(self.banner + LINE_END)

    def dataReceived(self, data: bytes) -> None:
        """Number the chunk (without its line end); close on C{exit}."""
        message = data.rstrip(b"\r\n")
        if message.strip() == EXIT_LINE:
            self.transport.write(b"bye" + LINE_END)
            self.finish()
            return
        self.transport.write(self.reply(message) + LINE_END)


@implementer(IGracefulStop)
class CountingLineProtocol(LineProtocol):
    """
    Count mode, per line: greet the client, answer each line with a running
    count (``3: hello``), and say goodbye and close on the line C{exit}.
    """

    log = Logger()
    transport: Any

    def __init__(self, banner: bytes = DEFAULT_BANNER, maxLineLength: int = 16384) -> None:
        self.banner = banner
        self.maxLineLength = maxLineLength
        self.counter = replyFor("count")

    def connectionMade(self) -> None:
        """Send the banner."""
        assert self.transport is not None
        self.transport.registerProducer(self.transport, True)
        if self.banner:
            self.sendLine(self.banner)

    def lineReceived(self, line: bytes) -> None:
        """Count the line and answer it; close on C{exit}."""
        if line.strip() == EXIT_LINE:
            self.sendLine(b"bye")
            self.finish()
            return
        self.sendLine(self.counter(line))

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
    Build echo protocols for one reply mode (see L{Mode}).

    @ivar mode: C{echo} (RFC 862), C{upper}, C{ack} or C{count}.
    @ivar ack: the acknowledgement for C{ack} mode.
    @ivar banner: the greeting for C{count} mode.
    @ivar perRead: count mode answers every read (L{CountingReadProtocol})
        instead of every line (L{CountingLineProtocol}).
    """

    noisy = False

    def __init__(
        self,
        mode: str = "echo",
        ack: bytes = DEFAULT_ACK,
        banner: bytes = DEFAULT_BANNER,
        perRead: bool = False,
    ) -> None:
        self.mode = parseMode(mode)
        self.ack = ack
        self.banner = banner
        self.perRead = perRead

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A fresh protocol for the configured mode."""
        protocol: Protocol
        if self.mode == "upper":
            protocol = UpperEchoProtocol()
        elif self.mode == "ack":
            protocol = AckProtocol(self.ack)
        elif self.mode == "count" and self.perRead:
            protocol = CountingReadProtocol(self.banner)
        elif self.mode == "count":
            protocol = CountingLineProtocol(self.banner)
        else:
            protocol = EchoProtocol()
        protocol.factory = self
        return protocol
