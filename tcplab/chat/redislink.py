"""
One connection to Redis that comes back by itself, over txredisapi 1.6.

txredisapi 1.6 starts (and re-starts) connections with
C{RedisFactory.startConnecting(endpoint)} -- a C{ClientService} per pool
slot -- instead of 1.5's C{ReconnectingClientFactory}.  L{RedisLink} uses
that, with an endpoint it builds itself (so C{rediss://} is
C{wrapClientTLS} around a C{HostnameEndpoint}, on the reactor it is
given), and tells its owner when the connection comes up and when it goes
away.  Commands go straight to the current connection (L{RedisLink.execute}),
never queued for a connection that may not come back: the owner decides
what to buffer.  A reply that takes longer than C{replyTimeout} aborts the
connection (txredisapi does that), which is how a Redis that stopped
answering (SIGSTOP, a dead host) is noticed.

The cluster does not use txredisapi's pub/sub subscriber, which does not
re-subscribe after a reconnect: it reads a Redis Stream from the last id it
has seen, on every connection it gets (L{tcplab.chat.cluster}).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

import txredisapi  # type: ignore[import-untyped]
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

from tcplab.reactors import defaultReactor
from tcplab.transports import ConnectionTransport

__all__ = ["RedisLink", "RedisTarget", "parseRedisURL"]

REPLY_TIMEOUT = 3.0
"""Seconds a reply may take before the connection is considered dead."""

RedisReply: TypeAlias = Any
"""
A Redis reply (RESP: C{str}, C{int}, a list of replies, or L{None}).  Any on
purpose: its shape depends on the command sent, which the caller knows and
txredisapi does not type.
"""


class RedisConnection(Protocol):
    """What the link uses of a txredisapi connection (the library is untyped)."""

    connected: int
    transport: ConnectionTransport

    def execute_command(
        self, *args: object, apply_timeout: bool = True
    ) -> defer.Deferred[RedisReply]:
        """Send one command; the Deferred fires with its reply."""

    def whenDisconnected(self) -> defer.Deferred[RedisConnection]:
        """Fires (with the connection) once it is lost."""


@dataclass(frozen=True)
class RedisTarget:
    """Where a Redis server is and how to log in to it (from a C{redis://} URL)."""

    host: str
    port: int = 6379
    db: int | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    cafile: str | None = None
    """With C{tls}: trust this PEM file's CA certificates instead of the system's."""

    def describe(self) -> str:
        """The URL without its password, for logs and errors."""
        scheme = "rediss" if self.tls else "redis"
        db = f"/{self.db}" if self.db is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{db}"


def parseRedisURL(url: str) -> RedisTarget:
    """
    C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]}, or C{rediss://} for TLS
    (the server's certificate checked against the system's CAs, or against
    C{?cafile=PATH}).

    @raise ValueError: not such a URL; the message says what is wrong.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url!r} is not a redis:// or rediss:// URL")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    query = parse_qs(parts.query)
    unknown = set(query) - {"cafile"}
    if unknown:
        raise ValueError(f"unknown parameter {', '.join(sorted(unknown))} in {url!r}")
    cafile = query.get("cafile", [None])[-1]
    if cafile is not None and parts.scheme != "rediss":
        raise ValueError(f"cafile goes with rediss:// in {url!r}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the database in {url!r} must be a number")
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(path) if path else None,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "rediss",
        cafile=cafile,
    )


class _LinkFactory(txredisapi.RedisFactory):  # type: ignore[misc,unused-ignore]
    """A one-connection txredisapi factory that reports each connection it gets."""

    initialDelay = 0.2
    maxDelay = 2.0

    def __init__(self, link: RedisLink) -> None:
        target = link.target
        super().__init__(
            target.describe(),
            target.db,
            1,
            isLazy=True,
            password=target.password,
            username=target.username,
            replyTimeout=link.replyTimeout,
            convertNumbers=False,
        )
        self.link = link
        # Refusals are reported through the link (connectionError), not here.
        self.deferred.addErrback(lambda _: None)

    def addConnection(self, conn: RedisConnection) -> None:
        """Hand a ready connection (logged in, database selected) to the link."""
        super().addConnection(conn)
        if conn in self.pool:
            self.link._connected(conn)

    def connectionError(self, why: str) -> None:
        """Authentication or database selection failed: that will not get better."""
        super().connectionError(why)
        self.link._refused(why)


class RedisLink:
    """
    One Redis connection, re-established after every loss (with
    txredisapi's back-off of at most two seconds).

    @ivar connection: the connection while it is up, else L{None}.
    @ivar refused: why Redis refused us (bad password, bad database), if it did.
    """

    log = Logger()

    def __init__(
        self,
        target: RedisTarget,
        onUp: Callable[[], object],
        onDown: Callable[[], object],
        # Any: handed to HostnameEndpoint, which needs time, TCP and name resolution.
        reactor: Any = None,
        replyTimeout: float = REPLY_TIMEOUT,
    ) -> None:
        self.target = target
        self.onUp = onUp
        self.onDown = onDown
        self.reactor = defaultReactor(reactor)
        self.replyTimeout = replyTimeout
        self.connection: RedisConnection | None = None
        self.refused: str | None = None
        self.factory: _LinkFactory | None = None

    def endpoint(self) -> IStreamClientEndpoint:
        """The client endpoint for the target (TLS for C{rediss://})."""
        target = self.target
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self.reactor, target.host, target.port, timeout=5
        )
        if target.tls:
            trust: Certificate | None = None
            if target.cafile:
                with open(target.cafile, "rb") as pem:
                    trust = Certificate.loadPEM(pem.read())
            options = optionsForClientTLS(target.host, trustRoot=trust)
            endpoint = wrapClientTLS(options, endpoint)
        return endpoint

    def start(self) -> None:
        """Start connecting (and reconnecting whenever the connection goes)."""
        self.factory = _LinkFactory(self)
        self.factory.startConnecting(self.endpoint())

    def stop(self) -> defer.Deferred[object]:
        """Close the connection and stop reconnecting."""
        factory, self.factory = self.factory, None
        if factory is None:
            return defer.succeed(None)
        return factory.disconnect()

    @property
    def up(self) -> bool:
        """Whether a connection is ready for commands."""
        return self.connection is not None

    def execute(self, *args: object, timeout: bool = True) -> defer.Deferred[RedisReply]:
        """
        Run one command on the current connection; fails at once with
        C{ConnectionError} when there is none.
        """
        connection = self.connection
        if connection is None:
            return defer.fail(txredisapi.ConnectionError("not connected"))
        d = defer.maybeDeferred(connection.execute_command, *args, apply_timeout=timeout)
        d.addErrback(self._timedOut, connection)
        return d

    def _timedOut(self, failure: Failure, connection: RedisConnection) -> Failure:
        # txredisapi aborts a connection whose reply is late, but the loss
        # arrives a reactor turn later: the link is down from now on.
        if failure.check(txredisapi.TimeoutError):
            self._lost(connection)
        return failure

    def _connected(self, conn: RedisConnection) -> None:
        # A stopped Redis (SIGSTOP) still accepts connections in its kernel
        # backlog: the link is up once Redis has answered, not before.
        conn.whenDisconnected().addCallback(self._lost)
        d = defer.maybeDeferred(conn.execute_command, "PING")
        d.addCallbacks(lambda _: self._answered(conn), lambda _: None)

    def _answered(self, conn: RedisConnection) -> None:
        if conn.connected and self.factory is not None:
            self.connection = conn
            self.onUp()

    def _lost(self, conn: RedisConnection) -> None:
        if self.connection is conn:
            self.connection = None
            self.onDown()

    def _refused(self, why: str) -> None:
        self.refused = why
        self.log.error(
            "Redis at {target} refused us: {why}", target=self.target.describe(), why=why
        )
