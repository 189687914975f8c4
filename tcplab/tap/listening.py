"""
Listening services in Twisted's own shape, for twistd and for embedding.

L{EndpointService} listens on one server endpoint and L{DatagramService} on
one UDP address; both bind in C{privilegedStartService}, as Twisted's
C{StreamServerEndpointService} does, so that C{twistd --uid/--gid} can open
a port below 1024 before it drops root.  L{ListeningService} is a
C{MultiService} that binds all of its binding children or none: if one
address cannot be opened, the ones already open are closed again and the
failure is raised (and fails L{ListeningService.listening}) as
L{CannotListen}.  Nothing here ends the process: that is the tap layer's
decision (L{tcplab.tap.common.PluginService}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorUDP,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.addresses import describeAddress, withBacklog
from tcplab.errors import CannotListen
from tcplab.interfaces import IBindingService
from tcplab.observe import ConnectionObserver
from tcplab.reactors import defaultReactor
from tcplab.workers import reusePortEndpoint


def describeError(error: BaseException | None) -> str:
    """An exception as one line (CannotListenError spans several words, not lines)."""
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


# Any: handed to serverFromString, which needs what the description's kind
# of endpoint needs (TCP, SSL, UNIX) and which Twisted leaves untyped.
def parseEndpoint(
    reactor: Any, description: str, option: str = "--listen"
) -> IStreamServerEndpoint:
    """
    The server endpoint for C{description} (with tcplab's listen backlog).

    @raise CannotListen: the description is malformed; the message names
        the C{option} it came from.
    """
    try:
        # Imported here, after the options are known: endpoints loads pyOpenSSL
        # unless tcplab.tlsfree has left it out for a service without TLS.
        from twisted.internet.endpoints import serverFromString

        endpoint = serverFromString(reactor, withBacklog(description))
    except Exception as e:
        raise CannotListen(f"bad {option} {description!r}: {describeError(e)}") from None
    if description.startswith("ssl:"):
        from tcplab.alpn import tolerateALPN

        tolerateALPN(endpoint)
    return endpoint


class _BindingService(Service):
    """What the endpoint and datagram services share: one bind, one release."""

    log = Logger()
    transportName = ""
    """Said in a failure message after "cannot listen" (" on UDP")."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()
        self._attempt: defer.Deferred[IListeningPort] | None = None
        self._problem: CannotListen | None = None

    def privilegedStartService(self) -> None:
        """Bind now, while twistd may still be root."""
        super().privilegedStartService()
        self.bind()

    def startService(self) -> None:
        """Bind, unless L{privilegedStartService} did already."""
        super().startService()
        self.bind()

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening."""
        super().stopService()
        return self.release()

    def bind(self) -> None:
        """Start listening once; raise L{CannotListen} if that fails at once."""
        if self._attempt is not None:
            return
        self._attempt = self.listen()
        self._attempt.addCallbacks(self._bound, self._failed)
        if self._problem is not None:
            raise self._problem

    def listen(self) -> defer.Deferred[IListeningPort]:
        """Open the port (subclasses say how)."""
        raise NotImplementedError

    def _bound(self, port: IListeningPort) -> None:
        self.port = port
        self.log.info(
            "{label} listening on {address}",
            label=self.label,
            address=self.describe(port),
        )
        self.listening.callback(port)

    def describe(self, port: IListeningPort) -> str:
        """The address in the "listening on" log line."""
        return describeAddress(port.getHost())

    def _failed(self, failure: Failure) -> None:
        if failure.check(defer.CancelledError):
            return
        reason = describeError(failure.value)
        self._problem = CannotListen(f"{self.label}: cannot listen{self.transportName}: {reason}")
        self.listening.errback(self._problem)

    def release(self) -> defer.Deferred[None]:
        """Close the port, or cancel an attempt still under way."""
        attempt, self._attempt = self._attempt, None
        if attempt is not None and not attempt.called:
            attempt.cancel()
        port, self.port = self.port, None
        stopping = port.stopListening() if port is not None else None
        return stopping if stopping is not None else defer.succeed(None)


def readDirectly(port: IListeningPort) -> IListeningPort:
    """C{port}, its connections read directly where that is possible."""
    # Imported here: it imports twisted.internet.tcp (see tcplab.tlsfree).
    from tcplab.directread import adoptDirectReads

    adoptDirectReads(port)
    return port


@implementer(IBindingService)
class EndpointService(_BindingService):
    """
    Listen on one stream server endpoint with one factory.

    @ivar description: the endpoint description, shown in the log line.
    """

    def __init__(
        self,
        label: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
    ) -> None:
        super().__init__(label)
        self.description = description
        self.endpoint = endpoint
        self.factory = factory

    def listen(self) -> defer.Deferred[IListeningPort]:
        """
        Listen on the endpoint; a service with the fast paths on
        (C{writeDirectly}) has its TCP connections read directly (see
        L{tcplab.directread}).
        """
        listening = self.endpoint.listen(self.factory)
        factory = self.factory
        if isinstance(factory, ConnectionObserver) and factory.settings.writeDirectly:
            listening.addCallback(readDirectly)
        return listening

    def describe(self, port: IListeningPort) -> str:
        """The real address (the port of C{tcp:0} included) and the description."""
        return f"{describeAddress(port.getHost())} ({self.description})"


@implementer(IBindingService)
class DatagramService(_BindingService):
    """Listen for UDP datagrams on one address with one protocol."""

    transportName = " on UDP"

    def __init__(
        self,
        label: str,
        host: str,
        port: int,
        protocol: DatagramProtocol,
        reactor: IReactorUDP | None = None,
        maxPacketSize: int = 8192,
    ) -> None:
        super().__init__(label)
        self.host = host
        self.portNumber = port
        self.protocol = protocol
        self.reactor = defaultReactor(reactor)
        self.maxPacketSize = maxPacketSize

    def listen(self) -> defer.Deferred[IListeningPort]:
        """Bind the UDP port (which succeeds or fails at once)."""
        return defer.maybeDeferred(
            self.reactor.listenUDP,
            self.portNumber,
            self.protocol,
            interface=self.host,
            maxPacketSize=self.maxPacketSize,
        )

    def describe(self, port: IListeningPort) -> str:
        """The bound UDP address."""
        return f"UDP {describeAddress(port.getHost())}"


@implementer(IBindingService)
class ListeningService(MultiService):
    """
    Serve one factory on several endpoints, all of them or none, plus any
    other child services (metrics, UDP, a chat log, or another
    L{ListeningService}: it is itself a binding service, so a second factory
    on its own endpoints joins the same all-or-none start-up).

    Binding children (L{IBindingService}) bind when this service is
    privileged-started or started.  If any of them fails, the ones already
    bound are released, L{listening} fails with L{CannotListen}, and the
    failure is raised when it is known at once.  Stopping stops accepting
    first, then drains the factory's connections when it is a
    L{ConnectionObserver} (for at most C{shutdownTimeout} seconds), then
    stops the children.

    With C{reusePort}, every TCP address is opened with C{SO_REUSEPORT} (a
    worker of C{--workers}, see L{tcplab.workers}).

    @ivar endpoints: the L{EndpointService}s of the factory, one per description.
    @ivar listening: fires with the factory's ports once every binding child
        is bound, or fails with L{CannotListen}.
    """

    def __init__(
        self,
        serviceName: str,
        descriptions: Sequence[str],
        factory: IProtocolFactory,
        # Any: the reactor in several roles (see tcplab.reactors.defaultReactor).
        reactor: Any = None,
        shutdownTimeout: float = 10.0,
        reusePort: bool = False,
    ) -> None:
        super().__init__()
        self.serviceName = serviceName
        self.factory = factory
        self.reactor = defaultReactor(reactor)
        self.shutdownTimeout = shutdownTimeout
        self.listening: defer.Deferred[list[IListeningPort]] = defer.Deferred()
        self.endpoints: list[EndpointService] = []
        self._binding = False
        for description in descriptions:
            endpoint = parseEndpoint(self.reactor, description)
            if reusePort:
                endpoint = reusePortEndpoint(endpoint, description)
            service = EndpointService(serviceName, description, endpoint, factory)
            service.setServiceParent(self)
            self.endpoints.append(service)

    @property
    def ports(self) -> list[IListeningPort]:
        """The factory's listening ports (the real port of C{tcp:0} is in C{getHost()})."""
        return [e.port for e in self.endpoints if e.port is not None]

    def binders(self) -> list[IBindingService]:
        """The children that open ports of their own."""
        return [IBindingService(c) for c in self if IBindingService.providedBy(c)]

    def privilegedStartService(self) -> None:
        """Bind every address (all or none), then let the other children prepare."""
        self.bindAll()
        super().privilegedStartService()

    def startService(self) -> None:
        """Bind every address unless already done, then start the children."""
        self.bindAll()
        super().startService()

    def bind(self) -> None:
        """Bind every binding child (see L{bindAll}); for L{IBindingService}."""
        self.bindAll()

    def release(self) -> defer.Deferred[None]:
        """Release every binding child: stop listening everywhere."""
        released = [defer.maybeDeferred(b.release) for b in self.binders()]
        return defer.gatherResults(released).addCallback(lambda _: None)

    def bindAll(self) -> None:
        """
        Bind every binding child, once.

        @raise CannotListen: one failed at once; the others were released.
        """
        if self._binding:
            return
        self._binding = True
        binders = self.binders()
        gathered = defer.gatherResults([b.listening for b in binders], consumeErrors=True)
        gathered.addCallbacks(lambda _: self.listening.callback(self.ports), self._someFailed)
        for binder in binders:
            binder.bind()

    def _someFailed(self, failure: Failure) -> None:
        error: BaseException | None = failure.value
        if isinstance(error, defer.FirstError):
            error = error.subFailure.value
        for binder in self.binders():
            binder.release()
        if not isinstance(error, CannotListen):
            error = CannotListen(f"{self.serviceName}: cannot listen: {describeError(error)}")
        self.listening.errback(error)

    def stopService(self) -> defer.Deferred[None]:
        """Stop accepting, drain the open connections, then stop the children."""
        d = self.release()
        if isinstance(self.factory, ConnectionObserver):
            observer = self.factory
            d.addCallback(lambda _: observer.drain(self.shutdownTimeout))
        d.addCallback(lambda _: MultiService.stopService(self))
        return d
