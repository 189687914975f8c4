"""
``--workers N``: several processes accepting on the same address.

With C{--workers N} (N > 1) the process twistd starts becomes a small
supervisor (L{WorkerSupervisor}): it runs no protocol itself, but starts N
worker processes -- the same plugin, the same arguments, run by Twisted's
``twist`` runner with C{--worker-index I} -- and each worker listens on
every C{--listen} address with its own C{SO_REUSEPORT} socket
(L{ReusePortEndpoint}), so the kernel spreads new connections over them.

The supervisor forwards SIGTERM/SIGINT (twistd turns them into stopping the
service; stopping it signals every worker, which drains its connections as
one process would), restarts a worker that dies with an exponential
back-off (logged), and exits once every worker is gone.  A worker that
cannot start (a busy port, a bad option: exit status 2 or 10 before it ever
listened) is not restarted: the supervisor stops the others and exits with
that status.  A worker notices that its supervisor vanished (SIGKILL) and
stops by itself.

Per-worker, by design: C{--max-connections}, C{--max-per-ip} and the
per-connection policies hold in each worker (a limit of 100 with 4 workers
admits up to 400 at once); C{--metrics tcp:P} is served by worker I on port
P + I.  Requires Twisted 26.10 (C{listenTCP} with a binding object that sets
C{SO_REUSEPORT}).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessTransport,
    IProtocolFactory,
    IReactorCore,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.errors import CannotListen, ExitCode
from tcplab.reactors import defaultReactor

__all__ = [
    "ReusePortEndpoint",
    "WorkerSupervisor",
    "metricsForWorker",
    "reusePortEndpoint",
    "workerArguments",
]

FATAL_STATUSES = frozenset({ExitCode.USAGE, ExitCode.CANNOT_LISTEN})
"""Exit statuses of a worker that will not do better when restarted."""

RESTART_DELAY = 0.5
"""Seconds before restarting a worker that died for the first time in a while."""

MAX_RESTART_DELAY = 30.0
"""The longest back-off between restarts of one worker."""

STABLE_AFTER = 60.0
"""A worker that ran this long before dying starts its back-off afresh."""

KILL_GRACE = 5.0
"""Seconds past the shutdown timeout before a worker that will not stop is killed."""


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    A TCP server endpoint whose socket sets C{SO_REUSEPORT} (and
    C{SO_REUSEADDR}), so several processes can each listen on the address.
    """

    # Any: listenTCP is called with a binding, which IReactorTCP (port: int)
    # does not describe yet.
    def __init__(self, reactor: Any, port: int, backlog: int, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        """Listen with a binding object (Twisted 26.10's C{listenTCP} takes one)."""
        from twisted.internet.tcp import makeBinding

        binding = makeBinding(self.interface, self.port, reuseAddress=True, reusePort=True)
        return defer.maybeDeferred(
            self.reactor.listenTCP, binding, factory, self.backlog, self.interface
        )


def reusePortEndpoint(endpoint: IStreamServerEndpoint, description: str) -> ReusePortEndpoint:
    """
    The C{SO_REUSEPORT} twin of a parsed C{tcp:}/C{tcp6:} endpoint.

    @raise CannotListen: the endpoint is of another kind (UNIX sockets, TLS)
        or on port 0 (every worker would get a port of its own).
    """
    # Imported here: endpoints loads pyOpenSSL unless tcplab.tlsfree has
    # left it out, which happens only once the options are known.
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

    try:
        from twisted.internet.tcp import makeBinding  # noqa: F401
    except ImportError:
        raise CannotListen("--workers needs Twisted 26.10 or newer (SO_REUSEPORT)") from None
    if not isinstance(endpoint, TCP4ServerEndpoint | TCP6ServerEndpoint):
        raise CannotListen(f"--listen {description!r}: --workers needs tcp: or tcp6: addresses")
    port = endpoint._port
    if port == 0:
        raise CannotListen(f"--listen {description!r}: --workers needs a fixed port, not 0")
    return ReusePortEndpoint(endpoint._reactor, port, endpoint._backlog, endpoint._interface)


def metricsForWorker(description: str | None, index: int | None) -> str | None:
    """
    The C{--metrics} endpoint worker C{index} serves: the given port plus the
    index (each worker has its own figures and its own port).
    """
    if description is None or index is None:
        return description
    kind, _, rest = description.partition(":")
    port, sep, tail = rest.partition(":")
    if kind.lower() not in ("tcp", "tcp6") or not port.isdigit() or int(port) == 0:
        raise CannotListen(
            f"--metrics {description!r}: --workers needs tcp:PORT with a fixed port"
        )
    return f"{kind}:{int(port) + index}{sep}{tail}"


def workerArguments(arguments: Sequence[str]) -> list[str]:
    """A plugin's arguments without its C{--workers} option (in any spelling)."""
    result: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument == "--workers":
            skip = True
            continue
        if argument.startswith("--workers="):
            continue
        result.append(argument)
    return result


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ")
"""The timestamp a worker's text log line starts with (the supervisor adds its own)."""

MAX_LOG_LINE = 64 * 1024
"""A worker's log line longer than this is passed on in pieces."""


class _WorkerProtocol(ProcessProtocol):
    """
    Passes a worker's output on and tells the supervisor when it ends.

    The worker's log (its stdout) goes through the supervisor's own logger,
    so it ends up wherever twistd logs (a --logfile, syslog, stdout with
    -n); what it writes to stderr (a one-line start-up error) is also
    written to the supervisor's stderr, as a single process would.
    """

    log = Logger()

    def __init__(self, index: int, ended: Callable[[int | None, int | None], None]) -> None:
        self.index = index
        self.ended = ended
        self.partial = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Split the output into lines and pass each on."""
        buffered = self.partial.get(childFD, b"") + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > MAX_LOG_LINE:
            lines.append(rest)
            rest = b""
        self.partial[childFD] = rest
        for line in lines:
            self.passOn(childFD, line.decode("utf-8", "replace"))

    def passOn(self, childFD: int, line: str) -> None:
        """Log one line of the worker's output (and echo its stderr)."""
        if not line.strip():
            return
        if childFD == 2:
            print(line, file=sys.__stderr__ or sys.stderr, flush=True)
        text = _TIMESTAMP.sub("", line)
        self.log.info("worker {index}: {text}", index=self.index, text=text)

    def processEnded(self, reason: Failure) -> None:
        """Report the exit status (or the signal) to the supervisor."""
        for childFD, rest in self.partial.items():
            if rest:
                self.passOn(childFD, rest.decode("utf-8", "replace"))
        value = reason.value
        self.ended(getattr(value, "exitCode", None), getattr(value, "signal", None))


class _Worker:
    """The supervisor's record of one worker slot."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: IProcessTransport | None = None
        self.startedAt = 0.0
        self.restarts = 0
        self.everUp = False
        self.restartCall: IDelayedCall | None = None


class WorkerSupervisor(Service):
    """
    Run C{count} worker processes of one plugin and keep them running.

    @ivar exitStatus: the status the supervisor should exit with (a worker's
        fatal start-up status), or L{None}.
    """

    log = Logger()

    def __init__(
        self,
        serviceName: str,
        plugin: str,
        arguments: Sequence[str],
        count: int,
        # Any: the reactor in several roles (see tcplab.reactors.defaultReactor).
        reactor: Any = None,
        shutdownTimeout: float = 10.0,
        executable: str = sys.executable,
    ) -> None:
        self.serviceName = serviceName
        self.plugin = plugin
        self.arguments = workerArguments(arguments)
        self.workers = [_Worker(i) for i in range(count)]
        self.reactor = defaultReactor(reactor)
        self.shutdownTimeout = shutdownTimeout
        self.executable = executable
        self.stopping = False
        self.exitStatus: int | None = None
        self._allGone: defer.Deferred[None] | None = None
        self._watchdog: IDelayedCall | None = None

    def command(self, index: int) -> list[str]:
        """The command line of worker C{index}: the plugin under ``twist``."""
        return [
            self.executable,
            "-m",
            "twisted",
            "--log-format=text",
            self.plugin,
            *self.arguments,
            "--worker-index",
            str(index),
        ]

    def startService(self) -> None:
        """Start every worker."""
        super().startService()
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        worker.restartCall = None
        if self.stopping:
            return
        protocol = _WorkerProtocol(worker.index, lambda code, sig: self._ended(worker, code, sig))
        worker.process = self.reactor.spawnProcess(
            protocol,
            self.executable,
            self.command(worker.index),
            env=dict(os.environ),
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        worker.startedAt = self.reactor.seconds()
        self.log.info(
            "{service} worker {index} started (pid {pid})",
            service=self.serviceName,
            index=worker.index,
            pid=worker.process.pid,
        )

    def _ended(self, worker: _Worker, code: int | None, sig: int | None) -> None:
        worker.process = None
        how = f"signal {sig}" if sig is not None else f"status {code}"
        if self.stopping:
            self.log.info(
                "{service} worker {index} stopped ({how})",
                service=self.serviceName,
                index=worker.index,
                how=how,
            )
            self._checkAllGone()
            return
        ranFor = self.reactor.seconds() - worker.startedAt
        if code in FATAL_STATUSES and worker.restarts == 0:
            self.log.error(
                "{service} worker {index} could not start ({how}); stopping",
                service=self.serviceName,
                index=worker.index,
                how=how,
            )
            self.exitStatus = code
            self._giveUp()
            return
        if ranFor >= STABLE_AFTER:
            worker.restarts = 0
        delay = min(RESTART_DELAY * 2**worker.restarts, MAX_RESTART_DELAY)
        worker.restarts += 1
        self.log.warn(
            "{service} worker {index} died ({how}); restarting in {delay:.1f}s",
            service=self.serviceName,
            index=worker.index,
            how=how,
            delay=delay,
        )
        worker.restartCall = self.reactor.callLater(delay, self._spawn, worker)

    def _giveUp(self) -> None:
        if self.reactor.running:
            self.reactor.stop()

    def runningWorkers(self) -> list[_Worker]:
        """The workers whose process is alive."""
        return [w for w in self.workers if w.process is not None]

    def _checkAllGone(self) -> None:
        if self._allGone is not None and not self.runningWorkers():
            done, self._allGone = self._allGone, None
            if self._watchdog is not None and self._watchdog.active():
                self._watchdog.cancel()
            done.callback(None)

    def stopService(self) -> defer.Deferred[None]:
        """Forward SIGTERM to every worker and wait until all have drained and exited."""
        super().stopService()
        self.stopping = True
        for worker in self.workers:
            if worker.restartCall is not None and worker.restartCall.active():
                worker.restartCall.cancel()
            if worker.process is not None:
                worker.process.signalProcess("TERM")
        self._allGone = defer.Deferred()
        self._watchdog = self.reactor.callLater(
            self.shutdownTimeout + KILL_GRACE, self._killStragglers
        )
        done = self._allGone
        self._checkAllGone()
        if self.exitStatus is not None:
            status = self.exitStatus
            done.addCallback(lambda _: _exitLater(self.reactor, status))
        return done

    def _killStragglers(self) -> None:
        for worker in self.runningWorkers():
            if worker.process is None:
                continue  # (runningWorkers has none: for the type checker)
            self.log.warn(
                "{service} worker {index} did not stop in time; killing it",
                service=self.serviceName,
                index=worker.index,
            )
            worker.process.signalProcess("KILL")


def _exitLater(reactor: IReactorCore, status: int) -> None:
    """Leave with a worker's fatal status once the reactor has stopped."""
    reactor.addSystemEventTrigger("after", "shutdown", os._exit, status)


class OrphanWatch(Service):
    """
    In a worker: stop when the supervisor is gone (killed with SIGKILL, it
    could not forward anything), so no worker outlives it.
    """

    def __init__(self, reactor: IReactorTime | None = None, interval: float = 1.0) -> None:
        self.reactor = defaultReactor(reactor)
        self.parentPid = os.getppid()
        self.loop = LoopingCall(self.check)
        self.loop.clock = self.reactor
        self.interval = interval

    def check(self) -> None:
        """Stop the reactor if our parent process changed."""
        if os.getppid() != self.parentPid:
            self.loop.stop()
            os.kill(os.getpid(), signal.SIGTERM)

    def privilegedStartService(self) -> None:
        """
        Leave the supervisor's process group: a Ctrl-C in its terminal
        reaches the supervisor alone, which forwards one SIGTERM.
        """
        super().privilegedStartService()
        os.setpgid(0, 0)

    def startService(self) -> None:
        """Watch the parent."""
        super().startService()
        self.loop.start(self.interval, now=False)

    def stopService(self) -> None:
        """Stop watching."""
        super().stopService()
        if self.loop.running:
            self.loop.stop()
