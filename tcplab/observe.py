"""
Traffic accounting and tracing for tcplab connections, server and client.

L{ConnectionObserver} wraps a protocol factory (Twisted's
L{WrappingFactory}); each connection gets an L{ObservedProtocol} between the
transport and the real protocol, which counts the bytes in and out, traces
every chunk when asked (L{tcplab.trace}), handles half-close for protocols
that do not, and on TLS tells when the handshake is done.  The factory logs
each connection's open and close (peer, duration, bytes), and offers its
figures to a L{Metrics} registry.

On a server, the same wrapper is where the service's policies meet the
connections, each kept in its own module and configured by one
L{ServiceSettings}: the admission limits of L{tcplab.limits}, the timeout
sweeper of L{tcplab.timeouts} and the shutdown drain of L{tcplab.drain}.
The hooks a protocol may offer them are the zope interfaces of
L{tcplab.interfaces}.  The client (L{tcplab.cli.common}) uses the wrapper for
tracing and the TLS handshake only.
"""

from __future__ import annotations

import dataclasses
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
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from tcplab.addresses import describeAddress
from tcplab.drain import drainConnections
from tcplab.interfaces import IRefusalFormat
from tcplab.limits import ConnectionLimits, RefusingProtocol, plainRefusal
from tcplab.metrics import Metrics, Sample
from tcplab.reactors import defaultReactor
from tcplab.sending import canWriteDirectly, setNoDelay, setReadSize, writeDirectly
from tcplab.settings import ServiceSettings
from tcplab.timeouts import TimeoutSweeper
from tcplab.trace import RECEIVED, SENT, WireTracer


def traceToLog(serviceName: str) -> Callable[[str], None]:
    """A trace sink that writes trace lines to the twistd log."""
    traceLog = Logger(namespace=f"tcplab.trace.{serviceName}")

    def emit(line: str) -> None:
        traceLog.info("{line}", line=line)

    return emit


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

    # The two Deferreds are made on demand: most connections never need
    # them, and an idle connection should cost as little memory as it can.
    _closed: defer.Deferred[None] | None = None
    _handshakeDone: defer.Deferred[None] | None = None
    lostReason: Failure | None = None
    handshakeSucceeded = False

    # The timeout sweeper's bookkeeping (see tcplab.timeouts.Timed): class
    # defaults until a sweep has something to note.
    sweepSeen = 0
    sweepQuietSince: float | None = None
    sweepMarker: object | None = None
    sweepMarkerSince = 0.0

    @property
    def closed(self) -> defer.Deferred[None]:
        """Fires once the connection is gone."""
        if self._closed is None:
            self._closed = defer.Deferred()
            if self.lostReason is not None:
                self._closed.callback(None)
        return self._closed

    @property
    def peer(self) -> str:
        """
        The peer's printable address, worked out when a log line or trace
        needs it: kept as a string it would cost every idle connection 64
        bytes.
        """
        if self.transport is None:
            return "?"
        return describeAddress(self.transport.getPeer())

    @property
    def isOpen(self) -> bool:
        """Whether the connection is still open."""
        return self.lostReason is None

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
        settings = self.factory.settings
        self.direct = settings.writeDirectly and canWriteDirectly(transport)
        setNoDelay(transport)
        if settings.readSize:
            setReadSize(transport, settings.readSize)
        self.openedAt = self.factory.reactor.seconds()
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
        duration = self.factory.reactor.seconds() - self.openedAt
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


class ConnectionObserver(WrappingFactory):
    """
    Wrap a protocol factory with connection logging, accounting and tracing,
    and, on a server, the service's limits, timeouts and shutdown drain.

    Build it from the service's L{ServiceSettings}, or, for embedding, from
    a service name and any settings fields as keywords::

        ConnectionObserver(factory, "my-service", maxPerPeer=5, idleTimeout=60)

    @ivar settings: the service's settings.
    @ivar traceSink: where trace lines go, or L{None} for no trace.
    @ivar refusal: turns a reason into the bytes sent to a refused or
        disconnected peer: the wrapped factory's own (L{IRefusalFormat}), or
        a plain C{error: ...} line.
    @ivar limits: the admission table (total and per-host limits).
    @ivar sweeper: the idle and slow-drip timeout sweeper.
    @ivar metrics: the service's metrics registry; connection and byte
        figures are added here, services add their own.
    """

    protocol = ObservedProtocol
    log = Logger()
    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        settings: ServiceSettings | str,
        reactor: Any = None,
        traceSink: Callable[[str], None] | None = None,
        metrics: Metrics | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(wrappedFactory)
        if isinstance(settings, str):
            settings = ServiceSettings(serviceName=settings, **fields)
        elif fields:
            settings = dataclasses.replace(settings, **fields)
        self.settings = settings
        self.serviceName = settings.serviceName
        self.reactor = defaultReactor(reactor)
        if traceSink is None and settings.tracing:
            traceSink = traceToLog(settings.serviceName)
        self.traceSink = traceSink
        self.hexdump = settings.hexdump
        self.refusal: Callable[[str], bytes] = (
            IRefusalFormat(wrappedFactory).refusal
            if IRefusalFormat.providedBy(wrappedFactory)
            else plainRefusal
        )
        self.limits = ConnectionLimits(settings.maxConnections, settings.maxPerPeer)
        self.sweeper = TimeoutSweeper(
            self.openConnections, settings.idleTimeout, settings.messageTimeout, self.reactor
        )
        self.connectionsTotal = 0
        self.refusedTotal = 0
        self.closedBytesIn = 0
        self.closedBytesOut = 0
        self.metrics = metrics if metrics is not None else Metrics(settings.serviceName)
        self.metrics.addCollector(self.collectMetrics)
        for name, kind, text in _CONNECTION_METRICS:
            self.metrics.describe(name, kind, text)

    @property
    def perPeer(self) -> Counter[str]:
        """Open connections by peer host (see L{ConnectionLimits.perHost})."""
        return self.limits.perHost

    def openConnections(self) -> list[ObservedProtocol]:
        """The connections open now."""
        return list(self.protocols)

    def collectMetrics(self) -> list[Sample]:
        """Connection and byte figures, computed at scrape time."""
        open_ = self.openConnections()
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
        self.sweeper.start()

    def stopFactory(self) -> None:
        """Stop the timeout sweeps."""
        self.sweeper.stop()

    def drain(self, timeout: float | None = None) -> defer.Deferred[None]:
        """
        Ask every connection to wind down (see L{tcplab.drain}); fire when
        all are closed, cutting off whatever is still open after C{timeout}
        seconds (default: the settings' shutdown timeout).
        """
        if timeout is None:
            timeout = self.settings.shutdownTimeout
        return drainConnections(self.serviceName, self.openConnections(), timeout, self.reactor)

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        """Build a wrapped protocol, or a refusal when a limit is reached."""
        reason = self.limits.refusal(addr)
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
        """Count a new connection, in total and against its peer's limit."""
        super().registerProtocol(p)
        self.connectionsTotal += 1
        self.limits.opened(p.getPeer())

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """Release a closed connection's place, keeping its byte counts."""
        super().unregisterProtocol(p)
        if isinstance(p, ObservedProtocol):
            self.closedBytesIn += p.bytesIn
            self.closedBytesOut += p.bytesOut
        self.limits.closed(p.getPeer())


_CONNECTION_METRICS = [
    ("tcplab_connections_open", "gauge", "Connections open now."),
    ("tcplab_connections_total", "counter", "Connections accepted since start."),
    ("tcplab_connections_refused_total", "counter", "Connections refused by a limit."),
    ("tcplab_bytes_received_total", "counter", "Bytes received from peers."),
    ("tcplab_bytes_sent_total", "counter", "Bytes sent to peers."),
]

ABORT_GRACE = 5.0
"""Seconds a disconnected peer gets to read our last words before the cut."""
