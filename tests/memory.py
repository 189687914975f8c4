"""
An in-memory client/server pair for protocol tests, as treq's C{testing}
module does for HTTP: no sockets, no real clock, fully deterministic.

L{connectInMemory} builds the server protocol from a factory (wrapping
factories such as L{tcplab.observe.ConnectionObserver} included), connects
it to a client protocol over L{twisted.test.iosim} transports, and returns a
L{MemoryConnection} whose C{flush()} moves bytes both ways until nothing is
left to move and whose C{advance(seconds)} moves the shared clock.  Build the
factory with C{reactor=connection.clock} (or pass your own C{clock}) so that
its timers run on the same clock.

Beyond iosim, the transports here support half-close (C{loseWriteConnection}
reaches the peer's C{readConnectionLost}) and record whether reading is paused
(C{pauseProducing}/C{resumeProducing}), so backpressure can be asserted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import FakeTransport, IOPump

SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 8007)


class MemoryTransport(FakeTransport):
    """An iosim transport with half-close and a visible paused/reading state."""

    def __init__(self, protocol: IProtocol, isServer: bool, host: Any, peer: Any) -> None:
        super().__init__(protocol, isServer, hostAddress=host, peerAddress=peer)
        self.paused = False
        self.writeClosed = False
        self.peerTransport: MemoryTransport | None = None
        self._eofDelivered = False

    def pauseProducing(self) -> None:
        """Stop reading (the pump holds back what the peer sends meanwhile)."""
        self.paused = True

    def resumeProducing(self) -> None:
        """Read again."""
        self.paused = False

    def loseWriteConnection(self) -> None:
        """Half-close: the peer is told, after everything written so far."""
        self.writeClosed = True

    def deliverEOF(self) -> bool:
        """If our sending side was shut, tell the peer once; say whether we did."""
        peer = self.peerTransport
        if not self.writeClosed or self._eofDelivered or self.stream or peer is None:
            return False
        self._eofDelivered = True
        halfCloseable = IHalfCloseableProtocol(peer.protocol, None)
        if halfCloseable is not None:
            halfCloseable.readConnectionLost()
        else:
            self.disconnecting = True
        return True


class MemoryPump(IOPump):
    """An iosim pump that honours paused readers and delivers half-closes."""

    serverIO: MemoryTransport
    clientIO: MemoryTransport

    def pump(self, debug: bool = False, advanceClock: bool = True) -> bool:
        """Move bytes to every side that is reading; then EOFs; then closes."""
        if advanceClock:
            self.clock.advance(0)
        self.clientIO._checkProducer()
        self.serverIO._checkProducer()
        moved = False
        for source, sink in ((self.clientIO, self.serverIO), (self.serverIO, self.clientIO)):
            if sink.paused or sink.disconnected:
                continue
            data = source.getOutBuffer()
            if data:
                sink.bufferReceived(data)
                moved = True
        if moved:
            return True
        if self.clientIO.deliverEOF() or self.serverIO.deliverEOF():
            return True
        for closing, other in ((self.serverIO, self.clientIO), (self.clientIO, self.serverIO)):
            if closing.disconnecting and not closing.disconnected:
                # As iosim does: a close reaches both protocols once the
                # closing side's output has been delivered.
                if closing.stream:
                    return False
                closing.disconnected = True
                other.disconnecting = True
                other.reportDisconnect()
                if not other.disconnected:
                    other.disconnected = True
                    closing.reportDisconnect()
                return True
        return False


@dataclass
class MemoryConnection:
    """A connected in-memory client and server, and the clock they share."""

    server: Any
    client: Any
    serverTransport: MemoryTransport
    clientTransport: MemoryTransport
    clock: MemoryReactorClock
    pump: MemoryPump = field(repr=False)

    def flush(self) -> None:
        """Move bytes both ways until nothing more moves."""
        self.pump.flush()

    def advance(self, seconds: float) -> None:
        """Let C{seconds} pass on the shared clock, then flush."""
        self.clock.advance(seconds)
        self.flush()

    def clientSends(self, data: bytes) -> None:
        """Write C{data} from the client and deliver it (and any replies)."""
        self.clientTransport.write(data)
        self.flush()

    def received(self) -> bytes:
        """Everything the client has received so far (its C{received} buffer)."""
        return bytes(self.client.received)


def connectInMemory(
    serverFactory: IProtocolFactory,
    client: IProtocol | None = None,
    clock: MemoryReactorClock | None = None,
    peer: IAddress | None = None,
) -> MemoryConnection:
    """
    Build a server protocol from C{serverFactory} for a peer at C{peer}
    (any address: IPv4 127.0.0.1:40000 by default, IPv6 or UNIX too), connect C{client} (a
    L{tests.support.Collector} by default) to it and deliver the greeting.

    The factory is started (C{doStart}) if it has not been already; stop it
    with C{doStop()} when a test cares about its timers.
    """
    from tests.support import Collector

    clock = clock if clock is not None else MemoryReactorClock()
    peer = peer if peer is not None else IPv4Address("TCP", "127.0.0.1", 40000)
    client = client if client is not None else Collector()
    if not getattr(serverFactory, "numPorts", 0):
        serverFactory.doStart()
    server = serverFactory.buildProtocol(peer)
    assert server is not None, "the factory refused the connection"
    serverTransport = MemoryTransport(server, True, SERVER_ADDRESS, peer)
    clientTransport = MemoryTransport(client, False, peer, SERVER_ADDRESS)
    serverTransport.peerTransport = clientTransport
    clientTransport.peerTransport = serverTransport
    server.makeConnection(serverTransport)
    client.makeConnection(clientTransport)
    pump = MemoryPump(client, server, clientTransport, serverTransport, False, clock=clock)
    connection = MemoryConnection(server, client, serverTransport, clientTransport, clock, pump)
    connection.flush()
    return connection
