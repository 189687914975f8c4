"""
The settings of one tcplab service, built once from its plugin's options.

L{ServiceSettings} is a frozen record: the tap layer builds it from the
command line (L{tcplab.tap.common.ServiceOptions.settings}), and everything
downstream -- the connection wrapper of L{tcplab.observe}, the limits of
L{tcplab.limits}, the timeout sweeper of L{tcplab.timeouts}, the listening
services of L{tcplab.tap.listening} -- reads what it needs from it, instead of
each taking a long list of keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServiceSettings:
    """
    How one service listens, limits, times out, traces and shuts down.

    Zero and L{None} both mean "off" for the limits and timeouts; they are
    stored as L{None}.

    @ivar serviceName: names the service in log lines and metrics.
    @ivar listen: the server endpoint descriptions to listen on.
    @ivar trace: log every chunk read or written.
    @ivar hexdump: with C{trace}, add a hex dump of each chunk.
    @ivar maxConnections: refuse connections beyond this many at once.
    @ivar maxPerPeer: refuse a peer host holding this many connections
        already (never applied to UNIX sockets, see L{tcplab.limits}).
    @ivar idleTimeout: seconds without a byte either way before a peer is
        disconnected.
    @ivar messageTimeout: seconds a peer may take to finish a message (line,
        frame) it has started (the slow-drip defence).
    @ivar shutdownTimeout: seconds open connections get to wind down when the
        service stops.
    @ivar metrics: the endpoint description serving Prometheus metrics.
    @ivar readSize: read up to this many bytes at a time instead of
        Twisted's 64 KiB (see L{tcplab.sending.setReadSize}).
    @ivar writeDirectly: send each write at once when nothing is queued
        (see L{tcplab.sending.writeDirectly}), and on the epoll reactor have
        TCP reads dispatched directly (see L{tcplab.directread}).
    @ivar workers: how many worker processes serve the address (C{--workers},
        see L{tcplab.workers}); 1 is a single process.
    @ivar workerIndex: in a worker process, its index (then every socket
        listens with C{SO_REUSEPORT}); L{None} otherwise.
    """

    serviceName: str
    listen: tuple[str, ...] = field(default=())
    trace: bool = False
    hexdump: bool = False
    maxConnections: int | None = None
    maxPerPeer: int | None = None
    idleTimeout: float | None = None
    messageTimeout: float | None = None
    shutdownTimeout: float = 10.0
    metrics: str | None = None
    readSize: int | None = None
    writeDirectly: bool = False
    workers: int = 1
    workerIndex: int | None = None

    def __post_init__(self) -> None:
        for name in ("maxConnections", "maxPerPeer", "idleTimeout", "messageTimeout", "readSize"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be 0 or more, not {value}")
            if not value:
                object.__setattr__(self, name, None)
        if self.shutdownTimeout < 0:
            raise ValueError(f"shutdownTimeout must be 0 or more, not {self.shutdownTimeout}")
        object.__setattr__(self, "listen", tuple(self.listen))

    @property
    def tracing(self) -> bool:
        """Whether chunks are traced (C{--hexdump} implies C{--trace})."""
        return self.trace or self.hexdump

    @classmethod
    def fromOptions(
        cls,
        serviceName: str,
        # Any: twisted.python.usage.Options values, each of its option's coerced type.
        options: Mapping[str, Any],
        readSize: int | None = None,
        writeDirectly: bool = False,
    ) -> ServiceSettings:
        """
        The settings a plugin's parsed options ask for, plus the service's
        own I/O tuning (C{readSize}, C{writeDirectly}), which is not an option.
        """
        return cls(
            serviceName=serviceName,
            listen=tuple(options["listen"]),
            trace=bool(options["trace"]),
            hexdump=bool(options["hexdump"]),
            maxConnections=options["max-connections"],
            maxPerPeer=options["max-per-ip"],
            idleTimeout=options["idle-timeout"],
            messageTimeout=options["message-timeout"],
            shutdownTimeout=options["shutdown-timeout"],
            metrics=options["metrics"],
            readSize=readSize,
            writeDirectly=writeDirectly,
            workers=options.get("workers", 1) or 1,
            workerIndex=options.get("worker-index"),
        )
