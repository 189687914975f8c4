"""
Connection limits: in total, and per peer host.

L{ConnectionLimits} is the admission table a server's connection wrapper
(L{tcplab.observe.ConnectionObserver}) consults before it builds a protocol:
it says why a newcomer is refused, or admits it and counts it until it
closes.  Refused peers get a one-line reason from a L{RefusingProtocol} and
are closed; everyone else is unaffected.

Per-host counting keys on the peer's IP address with IPv4-mapped IPv6
(C{::ffff:a.b.c.d}, as a C{tcp6} listener sees IPv4 clients) folded into
IPv4, so one client cannot double its share through a second listener.  The
per-host limit does not apply to UNIX sockets: their peers have no address
(every local client would share one key), and whoever can reach the socket
is already on the machine; the total limit still applies to them.

The table only holds hosts that have a connection open, so it is bounded by
the number of open connections.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol

from tcplab.addresses import peerHost


class ConnectionLimits:
    """
    Count open connections in total and per peer host, and refuse beyond
    the limits.

    @ivar maxConnections: refuse connections beyond this many at once
        (L{None}: no limit).
    @ivar maxPerPeer: refuse a host that already holds this many
        (L{None}: no limit; never applied to UNIX sockets).
    @ivar open: connections admitted and not yet closed.
    @ivar perHost: open connections by peer host (only hosts with one).
    """

    def __init__(self, maxConnections: int | None = None, maxPerPeer: int | None = None) -> None:
        self.maxConnections = maxConnections or None
        self.maxPerPeer = maxPerPeer or None
        self.open = 0
        self.perHost: Counter[str] = Counter()

    def refusal(self, address: IAddress) -> str | None:
        """Why a connection from C{address} is refused now, or L{None} to admit it."""
        if self.maxConnections is not None and self.open >= self.maxConnections:
            return f"server full ({self.maxConnections} connections), try again later"
        host = peerHost(address)
        if self.maxPerPeer is None or host is None or self.perHost[host] < self.maxPerPeer:
            return None
        return f"too many connections from {host} (at most {self.maxPerPeer})"

    def opened(self, address: IAddress) -> None:
        """Count a connection that was admitted."""
        self.open += 1
        host = peerHost(address)
        if host is not None:
            self.perHost[host] += 1

    def closed(self, address: IAddress) -> None:
        """Release a closed connection's place."""
        self.open -= 1
        host = peerHost(address)
        if host is not None:
            self.perHost[host] -= 1
            if self.perHost[host] <= 0:
                del self.perHost[host]


class RefusingProtocol(Protocol):
    """Tell a peer why it is refused, then hang up."""

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        """Send the reason and close once it is written."""
        assert self.transport is not None
        self.transport.write(self.message)
        self.transport.loseConnection()


def plainRefusal(reason: str) -> bytes:
    """The refusal line of a service without its own format (L{IRefusalFormat})."""
    return f"error: {reason}\r\n".encode()
