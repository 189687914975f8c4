"""
Connection bookkeeping shared by every tcplab server.

L{ConnectionObserver} wraps a service's protocol factory (Twisted's
L{WrappingFactory}) and gives every service, in one place: a log line when a
connection opens and one when it closes (peer, duration, bytes in and out),
the optional wire trace of L{tcplab.trace}, connection limits (in total and
per peer address) that refuse extra peers with a short reason, timeouts for
idle and slow-drip peers, and a graceful drain at shutdown.

Wrapped protocols may offer two optional hooks:
  - C{messageInProgress() -> object | None}: L{None} when no message (line,
    frame) is half-received, else a marker that changes with every message
    completed (a count).  A peer that keeps the same message unfinished for
    longer than the message timeout is a slow-drip client and is
    disconnected; a long upload of many frames is not.
  - C{serverStopping() -> None}: the server is shutting down; say goodbye
    and close when convenient (a running transfer may finish first).  Without
    it the connection is closed after its pending output is sent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from tcplab.addresses import describeAddress
from tcplab.metrics import Metrics, Sample
from tcplab.reactors import defaultReactor
from tcplab.sending import canWriteDirectly, setNoDelay, setReadSize, writeDirectly
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


@implementer(IHandshakeListener)
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
        self.seenTotal = 0
        """Bytes in + out at the last timeout sweep."""
        self.quietSince = 0.0
        """When the byte count last changed, as seen by the sweeps."""
        self.partialSince = 0.0
        """Since when the protocol has held the same unfinished message."""
        self.partialMarker: object | None = None
        """The protocol's marker for that message (see messageInProgress)."""

    # The two Deferreds are made on demand: most connections never need
    # them, and an idle connection should cost as little memory as it can.
    _closed: defer.Deferred[None] | None = None
    _handshakeDone: defer.Deferred[None] | None = None
    lostReason: Failure | None = None
    handshakeSucceeded = False

    @property
    def closed(self) -> defer.Deferred[None]:
        """Fires once the connection is gone."""
        if self._closed is None:
            self._closed = defer.Deferred()
            if self.lostReason is not None:
                self._closed.callback(None)
        return self._closed

    @property
    def handshakeDone(self) -> defer.Deferred[None]:
        """
        On TLS: fires when the handshake succeeds, fails if the connection
        is lost first (a failed verification, say).
        """
        if self._handshakeDone is None:
            self._handshakeDone = defer.Deferred()
            if self.handshakeSucceeded:
                self._handshakeDone.callback(None)
            elif self.lostReason is not None:
                self._handshakeDone.errback(self.lostReason)
        return self._handshakeDone

    def makeConnection(self, transport: Any) -> None:
        """
        Record the peer, start the trace, pick the fastest way to send (see
        L{tcplab.sending}), then connect the wrapped protocol.
        """
        self.direct = self.factory.writeDirectly and canWriteDirectly(transport)
        setNoDelay(transport)
        if self.factory.readSize:
            setReadSize(transport, self.factory.readSize)
        self.peer = describeAddress(transport.getPeer())
        self.openedAt = self.quietSince = self.factory.clock()
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
        if self.direct:
            writeDirectly(self.transport, data)
        else:
            self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        """Count (and trace) a sequence of writes, sent as one."""
        self.write(b"".join(data))

    def dataReceived(self, data: bytes) -> None:
        """Count (and trace) bytes on their way in."""
        self.bytesIn += len(data)
        if self.tracer is not None:
            self.tracer.chunk(RECEIVED, data)
        self.wrappedProtocol.dataReceived(data)

    def handshakeCompleted(self) -> None:
        """TLS is up: tell whoever waits, and a wrapped protocol that listens."""
        listener = IHandshakeListener(self.wrappedProtocol, None)
        if listener is not None:
            listener.handshakeCompleted()
        self.handshakeSucceeded = True
        if self._handshakeDone is not None and not self._handshakeDone.called:
            self._handshakeDone.callback(None)

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
        self.lostReason = reason if reason is not None else Failure(ConnectionDone())
        super().connectionLost(reason)
        if self._handshakeDone is not None and not self._handshakeDone.called:
            self._handshakeDone.errback(self.lostReason)
            self._handshakeDone.addErrback(lambda _: None)
        if self._closed is not None:
            self._closed.callback(None)

    def disconnectBecause(self, reason: str) -> None:
        """
        Tell the peer C{reason} (in the service's own refusal format) and
        close; a peer that does not read is cut off a few seconds later.
        """
        self.factory.log.info(
            "{service}: disconnecting {peer}: {reason}",
            service=self.factory.serviceName,
            peer=self.peer,
            reason=reason,
        )
        self.transport.write(self.factory.refusal(reason))
        self.transport.loseConnection()
        self.factory.reactor.callLater(ABORT_GRACE, self._abortIfStillOpen)

    def _abortIfStillOpen(self) -> None:
        if self.lostReason is None:
            self.transport.abortConnection()

    def checkTimeouts(self, now: float) -> None:
        """Disconnect if idle, or if one message has been dripping in too long."""
        factory = self.factory
        total = self.bytesIn + self.bytesOut
        if total != self.seenTotal:
            self.seenTotal = total
            self.quietSince = now
        elif factory.idleTimeout and now - self.quietSince >= factory.idleTimeout:
            self.disconnectBecause(f"idle for {factory.idleTimeout:g} seconds")
            return
        messageInProgress = getattr(self.wrappedProtocol, "messageInProgress", None)
        marker = messageInProgress() if messageInProgress is not None else None
        if not factory.messageTimeout or marker is None:
            self.partialMarker = None
        elif marker != self.partialMarker:
            self.partialMarker = marker
            self.partialSince = now
        elif now - self.partialSince >= factory.messageTimeout:
            self.disconnectBecause(
                f"message not completed within {factory.messageTimeout:g} seconds"
            )

    def stopGracefully(self) -> None:
        """The server is stopping: let the protocol wind down, or just close."""
        serverStopping = getattr(self.wrappedProtocol, "serverStopping", None)
        if serverStopping is not None:
            serverStopping()
        else:
            self.transport.loseConnection()


class ConnectionObserver(WrappingFactory):
    """
    Wrap a server factory with connection logging, tracing and limits.

    @ivar serviceName: names the service in log lines.
    @ivar traceSink: where trace lines go, or L{None} for no trace.
    @ivar maxConnections: refuse connections beyond this many at once.
    @ivar maxPerPeer: refuse a peer address holding this many already.
    @ivar refusal: turns a reason into the bytes sent to a refused peer
        (services override it to speak their own protocol).
    @ivar idleTimeout: disconnect a peer after this many seconds without a
        byte in either direction (transfers in progress are never idle).
    @ivar messageTimeout: disconnect a peer whose protocol reports the same
        unfinished message (C{messageInProgress}) for this many seconds.
    @ivar metrics: the service's metrics registry; connection and byte
        figures are added here, services add their own.
    @ivar writeDirectly: send each write at once when nothing is queued
        (L{tcplab.sending.writeDirectly}): right for a protocol that answers
        each read with one write (echo, file chunks), or that gathers its
        small writes itself (chat, with L{tcplab.sending.BatchedWriter}); a
        protocol making many small writes is better off without it, letting
        Twisted gather them into one send per reactor iteration.
    @ivar readSize: read up to this many bytes at a time (and queue up to
        as many before pausing the reader), instead of Twisted's 64 KiB;
        see L{tcplab.sending.setReadSize}.
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
        idleTimeout: float | None = None,
        messageTimeout: float | None = None,
        reactor: Any = None,
        clock: Callable[[], float] | None = None,
        metrics: Metrics | None = None,
        readSize: int | None = None,
        writeDirectly: bool = False,
    ) -> None:
        super().__init__(wrappedFactory)
        self.readSize = readSize
        self.writeDirectly = writeDirectly
        self.serviceName = serviceName
        self.traceSink = traceSink
        self.hexdump = hexdump
        self.maxConnections = maxConnections
        self.maxPerPeer = maxPerPeer
        self.refusal = refusal or getattr(wrappedFactory, "refusal", None) or _plainRefusal
        reactor = defaultReactor(reactor)
        self.reactor = reactor
        self.clock = clock or (reactor.seconds if hasattr(reactor, "seconds") else time.monotonic)
        self.idleTimeout = idleTimeout or None
        self.messageTimeout = messageTimeout or None
        self.perPeer: Counter[str] = Counter()
        self._sweeper: LoopingCall | None = None
        self.connectionsTotal = 0
        self.refusedTotal = 0
        self.closedBytesIn = 0
        self.closedBytesOut = 0
        if metrics is None:
            metrics = getattr(wrappedFactory, "metrics", None) or Metrics(serviceName)
        self.metrics = metrics
        self.metrics.addCollector(self.collectMetrics)
        for name, kind, text in _CONNECTION_METRICS:
            self.metrics.describe(name, kind, text)

    def collectMetrics(self) -> list[Sample]:
        """Connection and byte figures, computed at scrape time."""
        open_: list[ObservedProtocol] = list(self.protocols)
        return [
            ("tcplab_connections_open", {}, len(open_)),
            ("tcplab_connections_total", {}, self.connectionsTotal),
            ("tcplab_connections_refused_total", {}, self.refusedTotal),
            (
                "tcplab_bytes_received_total",
                {},
                self.closedBytesIn + sum(p.bytesIn for p in open_),
            ),
            ("tcplab_bytes_sent_total", {}, self.closedBytesOut + sum(p.bytesOut for p in open_)),
        ]

    def startFactory(self) -> None:
        """Start the timeout sweeps (if any timeout is set)."""
        timeouts = [t for t in (self.idleTimeout, self.messageTimeout) if t]
        if timeouts:
            self._sweeper = LoopingCall(self.sweep)
            self._sweeper.clock = self.reactor
            self._sweeper.start(max(min(timeouts) / 4, 0.01), now=False)

    def stopFactory(self) -> None:
        """Stop the timeout sweeps."""
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def sweep(self) -> None:
        """
        Check every connection's timeouts.

        One periodic pass instead of a timer reset per chunk keeps the data
        path free of timer work.
        """
        now = self.clock()
        for protocol in list(self.protocols):
            protocol.checkTimeouts(now)

    def drain(self, timeout: float) -> defer.Deferred[None]:
        """
        Ask every connection to wind down; fire when all are closed, cutting
        off whatever is still open after C{timeout} seconds.
        """
        connections: list[ObservedProtocol] = list(self.protocols)
        if not connections:
            return defer.succeed(None)
        self.log.info(
            "{service}: closing {count} connections (at most {timeout:g}s)",
            service=self.serviceName,
            count=len(connections),
            timeout=timeout,
        )
        for connection in connections:
            connection.stopGracefully()
        allClosed = defer.gatherResults([c.closed for c in connections])

        def cutOff() -> None:
            for connection in connections:
                if connection.lostReason is None:
                    connection.transport.abortConnection()

        deadline = self.reactor.callLater(timeout, cutOff)
        allClosed.addBoth(lambda _: deadline.cancel() if deadline.active() else None)
        return allClosed  # type: ignore[return-value]

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        """Build a wrapped protocol, or a refusal when a limit is reached."""
        key = peerKey(addr)
        reason = None
        if self.maxConnections is not None and len(self.protocols) >= self.maxConnections:
            reason = f"server full ({self.maxConnections} connections), try again later"
        elif self.maxPerPeer is not None and self.perPeer[key] >= self.maxPerPeer:
            reason = f"too many connections from {key} (at most {self.maxPerPeer})"
        if reason is not None:
            self.refusedTotal += 1
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
        self.connectionsTotal += 1
        self.perPeer[peerKey(p.getPeer())] += 1

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """Release a closed connection's place."""
        super().unregisterProtocol(p)
        if isinstance(p, ObservedProtocol):
            self.closedBytesIn += p.bytesIn
            self.closedBytesOut += p.bytesOut
        key = peerKey(p.getPeer())
        self.perPeer[key] -= 1
        if self.perPeer[key] <= 0:
            del self.perPeer[key]


_CONNECTION_METRICS = [
    ("tcplab_connections_open", "gauge", "Connections open now."),
    ("tcplab_connections_total", "counter", "Connections accepted since start."),
    ("tcplab_connections_refused_total", "counter", "Connections refused by a limit."),
    ("tcplab_bytes_received_total", "counter", "Bytes received from peers."),
    ("tcplab_bytes_sent_total", "counter", "Bytes sent to peers."),
]

ABORT_GRACE = 5.0
"""Seconds a disconnected peer gets to read our last words before the cut."""


def _plainRefusal(reason: str) -> bytes:
    return f"error: {reason}\r\n".encode()
