"""
What every tcplab twistd plugin shares: listening, tracing and limits.

L{ServiceOptions} gives each plugin a repeatable C{--listen ENDPOINT}, the
wire trace switches and the connection limits.  L{ListeningService} opens
every listening address when the service starts, logs each one with its real
port, and turns a busy port or a bad description into one line on stderr and
exit status L{ExitCode.CANNOT_LISTEN} instead of a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from twisted.application.service import MultiService
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from tcplab.addresses import describeAddress, withBacklog
from tcplab.auth import Authenticator
from tcplab.errors import CannotListen
from tcplab.metrics import metricsSite
from tcplab.observe import ConnectionObserver
from tcplab.reactors import defaultReactor


def _positiveInt(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, not {number}")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"must be a number of seconds, 0 or more, not {value}")
    return number


class ServiceOptions(usage.Options):
    """
    Options common to every tcplab plugin; subclasses add their own.

    @cvar defaultListen: the endpoint used when no C{--listen} is given.
    @cvar defaultIdleTimeout: seconds without traffic before a peer is
        disconnected, when C{--idle-timeout} is not given (0: never).
    """

    defaultListen: ClassVar[str] = "tcp:8007:interface=127.0.0.1"
    defaultIdleTimeout: ClassVar[float] = 300.0

    optFlags = [
        ["trace", None, "Log every chunk read or written: size, direction, time."],
        [
            "hexdump",
            None,
            "With --trace, also log a hex/ASCII dump of each chunk: payloads, passwords included.",
        ],
    ]
    optParameters = [
        [
            "max-connections",
            None,
            None,
            "Refuse connections beyond this many at once (default: no limit).",
            _positiveInt,
        ],
        [
            "max-per-ip",
            None,
            None,
            "Refuse a peer address that already holds this many connections.",
            _positiveInt,
        ],
        [
            "idle-timeout",
            None,
            None,
            "Disconnect a peer after this many seconds without a byte either way "
            "(0: never; default depends on the service).",
            _seconds,
        ],
        [
            "message-timeout",
            None,
            30.0,
            "Disconnect a peer that takes longer than this to finish one line or "
            "frame it has started (slow-drip defence; 0: never).",
            _seconds,
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics over HTTP on this endpoint, e.g. "
            "tcp:9100:interface=127.0.0.1 (default: off).",
        ],
        [
            "shutdown-timeout",
            None,
            10.0,
            "On SIGTERM/SIGINT, give open connections this many seconds to finish.",
            _seconds,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on this Twisted server endpoint (repeatable), for example
        tcp:8007, tcp:8007:interface=127.0.0.1, tcp6:8007, unix:/tmp/s.sock,
        ssl:8443:privateKey=key.pem:certKey=cert.pem.
        """
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        """Fill in the default listening address."""
        if not self["listen"]:
            self["listen"] = [self.defaultListen]
        if self["idle-timeout"] is None:
            self["idle-timeout"] = self.defaultIdleTimeout
        if self["hexdump"]:
            self["trace"] = True


class AuthServiceOptions(ServiceOptions, strcred.AuthOptionMixin):
    """
    Service options plus Twisted's C{--auth} (user name and password
    checkers), for the services that have accounts (chat, files).
    """

    supportedInterfaces = [IUsernamePassword]

    def authenticator(self) -> Authenticator:
        """An L{Authenticator} for the checkers given (none: logins disabled)."""
        return Authenticator(list(self.get("credCheckers", [])))


def traceToLog(serviceName: str) -> Callable[[str], None]:
    """A trace sink that writes trace lines to the twistd log."""
    log = Logger(namespace=f"tcplab.trace.{serviceName}")

    def emit(line: str) -> None:
        log.info("{line}", line=line)

    return emit


def observe(
    factory: IProtocolFactory,
    serviceName: str,
    options: ServiceOptions,
    refusal: Callable[[str], bytes] | None = None,
    readSize: int | None = None,
    writeDirectly: bool = False,
) -> ConnectionObserver:
    """
    Wrap C{factory} with the logging, trace and limits the options ask
    for, and the service's own I/O tuning (see L{ConnectionObserver}).
    """
    return ConnectionObserver(
        factory,
        serviceName,
        traceSink=traceToLog(serviceName) if options["trace"] else None,
        hexdump=options["hexdump"],
        maxConnections=options["max-connections"] or None,
        maxPerPeer=options["max-per-ip"] or None,
        refusal=refusal,
        idleTimeout=options["idle-timeout"],
        messageTimeout=options["message-timeout"],
        readSize=readSize,
        writeDirectly=writeDirectly,
    )


def _exitNow(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ListeningService(MultiService):
    """
    Listen on several endpoints with one factory; all of them or none.

    If any address cannot be opened, the ones already open are closed, one
    line goes to stderr and the process exits with
    L{ExitCode.CANNOT_LISTEN}: a server is never left running half-up.

    @ivar ports: the listening ports, once started (the real port numbers of
        C{tcp:0} are in C{port.getHost()}).
    """

    log = Logger()

    def __init__(
        self,
        serviceName: str,
        descriptions: list[str],
        factory: IProtocolFactory,
        reactor: Any = None,
        exitOnFailure: bool = True,
        shutdownTimeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.exitOnFailure = exitOnFailure
        self.shutdownTimeout = shutdownTimeout
        reactor = defaultReactor(reactor)
        self.serviceName = serviceName
        self.factory = factory
        self.reactor = reactor
        self.ports: list[IListeningPort] = []
        self.endpoints: list[tuple[str, IStreamServerEndpoint]] = []
        for description in descriptions:
            try:
                endpoint = serverFromString(reactor, withBacklog(description))
            except Exception as e:
                raise CannotListen(f"bad --listen {description!r}: {describeError(e)}") from None
            self.endpoints.append((description, endpoint))
        self.listening: defer.Deferred[list[IListeningPort]] = defer.Deferred()
        """Fires with the ports once all are listening, or fails with L{CannotListen}."""

    def startService(self) -> None:
        """Open every endpoint; on the first failure, close the rest and exit."""
        super().startService()
        results = [
            endpoint.listen(self.factory).addCallback(self._listening, description)
            for description, endpoint in self.endpoints
        ]
        gathered = defer.gatherResults(results, consumeErrors=True)
        failures: list[Failure] = []
        gathered.addCallbacks(self.listening.callback, failures.append)
        if failures:
            # TCP, UNIX and SSL endpoints fail synchronously: raise here, where
            # twistd can still turn SystemExit into an exit status.
            self._cannotListen(failures[0], synchronous=True)
        else:
            gathered.addErrback(self._cannotListen, synchronous=False)

    def _listening(self, port: IListeningPort, description: str) -> IListeningPort:
        self.ports.append(port)
        self.log.info(
            "{service} listening on {address} ({description})",
            service=self.serviceName,
            address=describeAddress(port.getHost()),
            description=description,
        )
        return port

    def _cannotListen(self, failure: Failure, synchronous: bool) -> None:
        error: BaseException = failure.value  # type: ignore[assignment]
        if isinstance(error, defer.FirstError):
            error = error.subFailure.value  # type: ignore[assignment]
        problem = CannotListen(f"{self.serviceName}: cannot listen: {describeError(error)}")
        for port in self.ports:
            port.stopListening()
        self.ports = []
        if self.exitOnFailure:
            exitCannotListen(problem, self.reactor, synchronous)
        else:
            self.listening.errback(problem)

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop accepting, then let open connections wind down (a factory that
        can L{drain<ConnectionObserver.drain>} is given C{shutdownTimeout}
        seconds), then stop.
        """
        ports, self.ports = self.ports, []
        stopping = [defer.maybeDeferred(port.stopListening) for port in ports]
        d = defer.gatherResults(stopping)
        drain = getattr(self.factory, "drain", None)
        if drain is not None:
            d.addCallback(lambda _: drain(self.shutdownTimeout))
        d.addCallback(lambda _: MultiService.stopService(self))
        return d  # type: ignore[return-value]


def exitCannotListen(problem: CannotListen, reactor: IReactorCore, synchronous: bool) -> None:
    """
    Print C{problem} on one line and end the process with its exit status.

    Before the reactor runs (twistd starts services then), C{SystemExit}
    does it; inside the running reactor (the ``twist`` runner, or an endpoint
    that fails later) every exception is logged and swallowed, so the process
    leaves directly.
    """
    # twist sends sys.stderr to its log; the operator should see this too.
    print(problem.message, file=sys.__stderr__ or sys.stderr)
    if synchronous and not reactor.running:
        raise SystemExit(problem.exitCode)
    _exitNow(problem.exitCode)


def describeError(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    # CannotListenError reads "Couldn't listen on 127.0.0.1:8007: [Errno 98]
    # Address already in use."; keep it, but on one line.
    return " ".join(text.split())


def makeListeningService(
    serviceName: str, options: ServiceOptions, factory: IProtocolFactory
) -> ListeningService:
    """
    Build the service for a plugin's C{makeService}, reporting a bad
    C{--listen} on one line with a non-zero exit instead of a traceback.

    With C{--metrics}, the factory's metrics registry (a
    L{ConnectionObserver} has one) is served there too.
    """
    try:
        service = ListeningService(
            serviceName,
            options["listen"],
            factory,
            shutdownTimeout=options["shutdown-timeout"],
        )
        metrics = getattr(factory, "metrics", None)
        if options["metrics"] and metrics is not None:
            ListeningService(
                f"{serviceName} metrics", [options["metrics"]], metricsSite(metrics)
            ).setServiceParent(service)
    except CannotListen as e:
        print(f"{serviceName}: {e}", file=sys.stderr)
        raise SystemExit(e.exitCode) from None
    return service
