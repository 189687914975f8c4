"""
What every tcplab twistd plugin shares: its options, and its service tree.

L{ServiceOptions} gives each plugin a repeatable C{--listen ENDPOINT}, the
wire trace switches, the connection limits and timeouts, C{--metrics} and
C{--shutdown-timeout}; L{ServiceOptions.settings} turns them into the one
L{ServiceSettings} the rest of the plumbing reads.  L{makeListeningService}
builds a plugin's service tree from those settings: a L{PluginService} (a
L{ListeningService}) with one L{EndpointService} per C{--listen} around a
L{ConnectionObserver}, and one for the metrics.  This is the only layer that
ends the process: a busy port or a bad description is one line on stderr and
exit status L{ExitCode.CANNOT_LISTEN}, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.interfaces import IProtocolFactory, IReactorCore
from twisted.python import usage
from twisted.python.failure import Failure

from tcplab.errors import CannotListen
from tcplab.metrics import Metrics
from tcplab.observe import ConnectionObserver
from tcplab.reactors import defaultReactor
from tcplab.settings import ServiceSettings
from tcplab.tap.listening import EndpointService, ListeningService, parseEndpoint
from tcplab.tlsfree import leaveOutTLS, serviceCannotUseTLS
from tcplab.workers import OrphanWatch, WorkerSupervisor, metricsForWorker, reusePortEndpoint

if TYPE_CHECKING:
    from tcplab.auth import Authenticator


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
            "Also log a hex/ASCII dump of each chunk (implies --trace). Payloads are "
            "logged as they are, passwords included: for debugging only.",
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
        [
            "workers",
            None,
            1,
            "Run this many worker processes sharing each TCP address (SO_REUSEPORT); "
            "limits and --metrics are per worker (worker I serves metrics on port+I).",
            _positiveInt,
        ],
        [
            "worker-index",
            None,
            None,
            "(Internal) set by --workers in each worker process.",
            _positiveInt,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self.arguments: list[str] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Parse, remembering the arguments (C{--workers} gives them to each worker)."""
        self.arguments = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_listen(self, description: str) -> None:
        """Listen on this server endpoint (repeatable): tcp:8007, tcp6:8007, unix:/tmp/s.sock"""
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        """
        Fill in the default listening address; a service whose options
        cannot involve TLS then runs Twisted without pyOpenSSL
        (L{tcplab.tlsfree}: 13 MiB less for a plain service).
        """
        if not self["listen"]:
            self["listen"] = [self.defaultListen]
        if self["idle-timeout"] is None:
            self["idle-timeout"] = self.defaultIdleTimeout
        if self["hexdump"]:
            self["trace"] = True
        if self["workers"] < 1:
            raise usage.UsageError("--workers must be 1 or more")
        leaveOutTLS(serviceCannotUseTLS(self))

    def settings(
        self, serviceName: str, readSize: int | None = None, writeDirectly: bool = False
    ) -> ServiceSettings:
        """
        The service's settings from these options, plus its own I/O tuning
        (see L{ServiceSettings}).
        """
        return ServiceSettings.fromOptions(serviceName, self, readSize, writeDirectly)


class AuthServiceOptions(ServiceOptions, strcred.AuthOptionMixin):
    """
    Service options plus Twisted's C{--auth} (user name and password
    checkers), for the services that have accounts (chat, files).
    """

    supportedInterfaces = [IUsernamePassword]

    def authenticator(self) -> Authenticator:
        """An L{Authenticator} for the checkers given (none: logins disabled)."""
        from tcplab.auth import Authenticator  # only services that take --auth load it

        return Authenticator(list(self.get("credCheckers", [])))


def exitCannotListen(problem: CannotListen, reactor: IReactorCore) -> None:
    """
    Print C{problem} on one line and end the process with its exit status.

    Before the reactor runs (twistd starts services then), C{SystemExit}
    does it; inside the running reactor (the ``twist`` runner, or an endpoint
    that fails later) every exception is logged and swallowed, so the process
    leaves directly.
    """
    # twist sends sys.stderr to its log; the operator should see this too.
    print(problem.message, file=sys.__stderr__ or sys.stderr)
    if not reactor.running:
        raise SystemExit(problem.exitCode)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(problem.exitCode)


class PluginService(ListeningService):
    """
    The service a tcplab plugin gives twistd: a L{ListeningService} that
    ends the process with one line and exit status 10 when it cannot listen.

    @ivar metricsEndpoint: the service serving C{--metrics}, if asked for.
    """

    metricsEndpoint: EndpointService | None = None

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
        super().__init__(serviceName, descriptions, factory, reactor, shutdownTimeout, reusePort)
        self.listening.addErrback(self._failedWhileRunning)

    def _failedWhileRunning(self, failure: Failure) -> None:
        # Before the reactor runs, the failure is also raised by bindAll and
        # handled below; once it runs, nobody else would hear of it.
        if self.reactor.running and isinstance(failure.value, CannotListen):
            exitCannotListen(failure.value, self.reactor)

    def bindAll(self) -> None:
        """Bind every address, or end the process with one line."""
        try:
            super().bindAll()
        except CannotListen as problem:
            exitCannotListen(problem, self.reactor)


def superviseWorkers(
    options: ServiceOptions,
    serviceName: str,
    # Any: the reactor in several roles (see tcplab.reactors.defaultReactor).
    reactor: Any = None,
) -> WorkerSupervisor | None:
    """
    With C{--workers N} (N > 1, and not in a worker), the supervisor that
    runs N workers of C{serviceName} instead of serving here (see
    L{tcplab.workers}); L{None} otherwise, and the plugin serves as usual.
    A C{--listen} or C{--metrics} that workers cannot share is one line on
    stderr and exit status 10.
    """
    if options["workers"] <= 1 or options["worker-index"] is not None:
        return None
    try:
        for description in options["listen"]:
            endpoint = parseEndpoint(defaultReactor(reactor), description)
            reusePortEndpoint(endpoint, description)
        metricsForWorker(options["metrics"], 0)
    except CannotListen as e:
        print(f"{serviceName}: {e}", file=sys.__stderr__ or sys.stderr)
        raise SystemExit(e.exitCode) from None
    return WorkerSupervisor(
        serviceName,
        serviceName,
        options.arguments,
        options["workers"],
        reactor=reactor,
        shutdownTimeout=options["shutdown-timeout"],
    )


def makeListeningService(
    settings: ServiceSettings,
    factory: IProtocolFactory,
    metrics: Metrics | None = None,
    # Any: the reactor in several roles (see tcplab.reactors.defaultReactor).
    reactor: Any = None,
) -> PluginService:
    """
    Build a plugin's service tree for its C{makeService}: C{factory} wrapped
    in a L{ConnectionObserver} with C{settings}, listening on every
    C{--listen}, and with C{--metrics}, the metrics endpoint (serving
    C{metrics}, the factory's own registry when it has one, with the
    connection figures added).  A bad description is one line on stderr and
    exit status 10, not a traceback.
    """
    observer = ConnectionObserver(factory, settings, reactor=reactor, metrics=metrics)
    worker = settings.workerIndex is not None
    try:
        service = PluginService(
            settings.serviceName,
            settings.listen,
            observer,
            reactor=reactor,
            shutdownTimeout=settings.shutdownTimeout,
            reusePort=worker,
        )
        metricsAt = metricsForWorker(settings.metrics, settings.workerIndex)
        if metricsAt:
            label = f"{settings.serviceName} metrics"
            endpoint = parseEndpoint(service.reactor, metricsAt, "--metrics")
            from tcplab.metricshttp import metricsFactory  # only with --metrics

            web = metricsFactory(observer.metrics, reactor=service.reactor)
            service.metricsEndpoint = EndpointService(label, metricsAt, endpoint, web)
            service.metricsEndpoint.setServiceParent(service)
        if worker:
            OrphanWatch(service.reactor).setServiceParent(service)
    except CannotListen as e:
        print(f"{settings.serviceName}: {e}", file=sys.stderr)
        raise SystemExit(e.exitCode) from None
    return service
