"""
Relaying the terminal (or a pipe) to a connection, shared by the interactive
clients: paced writes for the lab options, and stdin with EOF handling.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.stdio import StandardIO
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.cli.common import connect, forProtocol
from tcplab.cli.running import ICommandReactor
from tcplab.transports import ConnectionTransport


class PacedWriter:
    """
    Write to a transport in pieces of C{chunk} bytes, C{delay} seconds apart.

    @ivar sent: bytes handed to the transport so far.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        transport: ConnectionTransport,
        chunk: int | None,
        delay: float,
    ) -> None:
        self.reactor = reactor
        self.transport = transport
        self.chunk = chunk
        self.delay = delay
        self.sent = 0

    async def write(self, data: bytes) -> None:
        """Send C{data}, split and paced as configured."""
        size = self.chunk or len(data) or 1
        for offset in range(0, len(data), size):
            if offset and self.delay:
                await deferLater(self.reactor, self.delay, lambda: None)
            piece = data[offset : offset + size]
            self.sent += len(piece)
            self.transport.write(piece)


class StdoutSink:
    """
    Print bytes on stdout as they come; notice when its reader has gone
    away (a closed pipe, as with ``| head``) and call C{onGone} once.

    @ivar gone: stdout's reader is gone; nothing more is written.
    """

    def __init__(self, onGone: Callable[[], None] | None = None) -> None:
        self.onGone = onGone
        self.gone = False

    def write(self, data: bytes) -> None:
        """Write and flush C{data}, unless stdout's reader is gone."""
        if self.gone:
            return
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            self.gone = True
            # Python flushes stdout once more at exit: point it somewhere
            # that accepts the bytes left in its buffer.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            if self.onGone is not None:
                self.onGone()


def shutdownSending(transport: ConnectionTransport) -> None:
    """Half-close when the transport can, otherwise close after flushing."""
    if not getattr(transport, "connected", True):
        return
    try:
        transport.loseWriteConnection()
    except (AttributeError, NotImplementedError):
        transport.loseConnection()


def halfClose(client: RelayedClient, writer: PacedWriter) -> None:
    """The default end of stdin: shut down our sending side, if still connected."""
    if not client.lost:
        shutdownSending(writer.transport)


class RelayedClient(Protocol):
    """
    A client protocol whose session L{interact} runs: it says when the
    connection is gone (L{lost} at once, L{closed} once it is cleaned up).
    """

    transport: ConnectionTransport  # type: ignore[assignment]
    lost = False
    closed: defer.Deferred[None]


ClientT = TypeVar("ClientT", bound=RelayedClient)

EndOfInput = Callable[[ClientT, PacedWriter], None]
"""What to do at the end of stdin, given the client protocol and its writer."""


@implementer(IHalfCloseableProtocol)
class StdinRelay(Protocol, Generic[ClientT]):
    """
    Relay stdin to the server, paced; at EOF, once everything is sent, call
    C{atEOF(client, writer)} (by default: half-close the connection).

    L{writer} is set once the connection is up (stdin is paused until then);
    L{done} fires when stdio is finished (stdout flushed and closed).
    """

    writer: PacedWriter | None = None
    client: ClientT | None = None
    outputGone = False
    """stdout's reader went away."""
    transport: StandardIO

    def __init__(self, atEOF: EndOfInput[ClientT] | None = None) -> None:
        self.pending: defer.Deferred[None] = defer.succeed(None)
        self.done: defer.Deferred[None] = defer.Deferred()
        self.atEOF = atEOF or halfClose

    def dataReceived(self, data: bytes) -> None:
        """Forward a chunk of stdin, holding stdin while a paced write runs."""
        assert self.transport is not None and self.writer is not None
        stdio = self.transport
        stdio.pauseProducing()
        self.pending = defer.ensureDeferred(self.writer.write(data))
        self.pending.addCallback(lambda _: stdio.resumeProducing())

    def readConnectionLost(self) -> None:
        """stdin is at EOF: once everything is sent, shut down our sending side."""
        writer, client = self.writer, self.client
        if writer is not None and client is not None:
            self.pending.addCallback(lambda _: self.atEOF(client, writer))

    def writeConnectionLost(self) -> None:
        """
        stdout went away (its reader closed the pipe, as ``| head`` does):
        nothing more can be shown, so hang up and end the session quietly.
        """
        self.outputGone = True
        client = self.client
        if client is not None and client.transport is not None and not client.lost:
            client.transport.unregisterProducer()
            client.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """stdio is closed and flushed."""
        self.done.callback(None)


async def interact(
    reactor: ICommandReactor,
    args: argparse.Namespace,
    makeClient: Callable[[Callable[[bytes], None]], ClientT],
    atEOF: EndOfInput[ClientT] | None = None,
    chunk: int | None = None,
    delay: float = 0.0,
    greeting: bytes = b"",
    ready: Callable[[ClientT], Awaitable[None]] | None = None,
    farewell: bytes = b"",
) -> ClientT:
    """
    Connect a client protocol to the server and stdin/stdout to it, until
    the server closes the connection; return the client protocol.

    C{makeClient(output)} builds the protocol; C{output} writes to stdout.
    C{greeting} is sent first (a nickname, say); with C{ready}, stdin is
    relayed only once C{ready(client)} has succeeded (a login confirmed);
    C{farewell} is sent if the session is cancelled (Ctrl-C).
    Backpressure runs both ways: stdin is not read while the socket's
    buffer is full, and the socket is not read while stdout's buffer is
    full.  However it ends (Ctrl-C included), stdout is flushed and closed
    and the connection dropped.
    """
    relay: StdinRelay[ClientT] = StdinRelay(atEOF)
    stdio = StandardIO(relay, reactor=reactor)
    stdio.pauseProducing()
    client = makeClient(stdio.write)
    relay.client = client
    try:
        await connect(reactor, args, forProtocol(lambda: client))
        if greeting:
            client.transport.write(greeting)
        if ready is not None:
            await ready(client)
        relay.writer = PacedWriter(reactor, client.transport, chunk, delay)
        client.transport.registerProducer(stdio, True)
        stdio.registerProducer(client.transport, True)
        stdio.resumeProducing()
        await client.closed
    except defer.CancelledError:
        if farewell and client.transport is not None and not client.lost:
            client.transport.write(farewell)
        raise
    finally:
        if client.transport is not None and client.transport.connected:
            client.transport.loseConnection()
        stdio.loseConnection()
        if not relay.outputGone:
            # Whatever ended the session, what the server said reaches stdout.
            await relay.done
    return client
