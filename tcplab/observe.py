"""
Connection bookkeeping shared by every tcplab server.

L{ConnectionObserver} wraps a service's protocol factory (Twisted's
L{WrappingFactory}) and gives every service, in one place: a log line when a
connection opens and one when it closes (peer, duration, bytes in and out),
the optional wire trace of L{tcplab.trace}, and connection limits (in total
and per peer address) that refuse extra peers with a short reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides

from tcplab.addresses import describeAddress
from tcplab.trace import RECEIVED, SENT, WireTracer


def peerKey(address: IAddress) -> str:
    """
    The key per-peer limits count by: the host of an IP address.

    (Twisted 26.10's C{LimitConnectionsByPeer} indexes the address object
    like a tuple and breaks; we key on C{.host} ourselves.)
    """
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else describeAddress(address)


class RefusingProtocol(Protocol):
    """Tell a peer why it is refused, then hang up."""

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        """Send the reason and close once it is written."""
        assert self.transport is not None
        self.transport.write(self.message)
        self.transport.loseConnection()


class ObservedProtocol(ProtocolWrapper):
    """
    Stand between the transport and a service protocol, counting and tracing.

    The wrapper is half-close aware: when the peer shuts down its sending
    side, a wrapped L{IHalfCloseableProtocol} is told so; any other protocol
    gets the connection closed once everything it wrote has been sent.
    """

    factory: ConnectionObserver
    transport: Any
    tracer: WireTracer | None = None

    def __init__(self, factory: ConnectionObserver, wrappedProtocol: IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)  # type: ignore[arg-type]
        self.bytesIn = 0
        self.bytesOut = 0
        self.openedAt = 0.0
        self.peer = "?"

    def makeConnection(self, transport: Any) -> None:
        """Record the peer, start the trace, then connect the wrapped protocol."""
        self.peer = describeAddress(transport.getPeer())
        self.openedAt = self.factory.clock()
        if self.factory.traceSink is not None:
            self.tracer = WireTracer(self.peer, self.factory.traceSink, self.factory.hexdump)
        super().makeConnection(transport)

    def connectionMade(self) -> None:
        """Declare half-close support (after the transport's interfaces were copied)."""
        alsoProvides(self, IHalfCloseableProtocol)
        self.factory.log.info(
            "{service}: {peer} connected", service=self.factory.serviceName, peer=self.peer
        )
        if self.tracer is not None:
            self.tracer.event("connection opened")

    def write(self, data: bytes) -> None:
        """Count (and trace) bytes on their way out."""
        self.bytesOut += len(data)
        if self.tracer is not None:
            self.tracer.chunk(SENT, data)
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        """Count (and trace) a sequence of writes."""
        data = list(data)
        self.bytesOut += sum(map(len, data))
        if self.tracer is not None:
            self.tracer.chunk(SENT, b"".join(data))
        self.transport.writeSequence(data)

    def dataReceived(self, data: bytes) -> None:
        """Count (and trace) bytes on their way in."""
        self.bytesIn += len(data)
        if self.tracer is not None:
            self.tracer.chunk(RECEIVED, data)
        self.wrappedProtocol.dataReceived(data)

    def readConnectionLost(self) -> None:
        """The peer will send no more: tell the protocol, or finish up for it."""
        if self.tracer is not None:
            self.tracer.event("peer shut down its sending side (EOF)")
        halfCloseable = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if halfCloseable is not None:
            halfCloseable.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our sending side is shut: pass it on to a protocol that cares."""
        halfCloseable = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if halfCloseable is not None:
            halfCloseable.writeConnectionLost()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """Log the connection's totals, then pass the loss on."""
        duration = self.factory.clock() - self.openedAt
        why = reason.getErrorMessage() if reason is not None else "closed"
        self.factory.log.info(
            "{service}: {peer} disconnected after {duration:.3f}s, "
            "{bytesIn} bytes in, {bytesOut} bytes out ({why})",
            service=self.factory.serviceName,
            peer=self.peer,
            duration=duration,
            bytesIn=self.bytesIn,
            bytesOut=self.bytesOut,
            why=why,
        )
        if self.tracer is not None:
            self.tracer.event(f"connection closed ({why})")
        super().connectionLost(reason)


class ConnectionObserver(WrappingFactory):
    """
    Wrap a server factory with connection logging, tracing and limits.

    @ivar serviceName: names the service in log lines.
    @ivar traceSink: where trace lines go, or L{None} for no trace.
    @ivar maxConnections: refuse connections beyond this many at once.
    @ivar maxPerPeer: refuse a peer address holding this many already.
    @ivar refusal: turns a reason into the bytes sent to a refused peer
        (services override it to speak their own protocol).
    """

    protocol = ObservedProtocol
    log = Logger()
    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        serviceName: str,
        traceSink: Callable[[str], None] | None = None,
        hexdump: bool = False,
        maxConnections: int | None = None,
        maxPerPeer: int | None = None,
        refusal: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(wrappedFactory)
        self.serviceName = serviceName
        self.traceSink = traceSink
        self.hexdump = hexdump
        self.maxConnections = maxConnections
        self.maxPerPeer = maxPerPeer
        self.refusal = refusal or getattr(wrappedFactory, "refusal", None) or _plainRefusal
        self.clock = clock
        self.perPeer: Counter[str] = Counter()

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        """Build a wrapped protocol, or a refusal when a limit is reached."""
        key = peerKey(addr)
        reason = None
        if self.maxConnections is not None and len(self.protocols) >= self.maxConnections:
            reason = f"server full ({self.maxConnections} connections), try again later"
        elif self.maxPerPeer is not None and self.perPeer[key] >= self.maxPerPeer:
            reason = f"too many connections from {key} (at most {self.maxPerPeer})"
        if reason is not None:
            self.log.warn(
                "{service}: refused {peer}: {reason}",
                service=self.serviceName,
                peer=describeAddress(addr),
                reason=reason,
            )
            return RefusingProtocol(self.refusal(reason))
        return super().buildProtocol(addr)

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        """Count a new connection against its peer's limit."""
        super().registerProtocol(p)
        self.perPeer[peerKey(p.getPeer())] += 1

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """Release a closed connection's place."""
        super().unregisterProtocol(p)
        key = peerKey(p.getPeer())
        self.perPeer[key] -= 1
        if self.perPeer[key] <= 0:
            del self.perPeer[key]


def _plainRefusal(reason: str) -> bytes:
    return f"error: {reason}\r\n".encode()
