"""
Tests for L{tcplab.limits}: total and per-host limits, with IPv4-mapped IPv6
folded into IPv4 and UNIX sockets exempt from the per-host limit.
"""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.internet.testing import MemoryReactorClock

from tcplab.addresses import canonicalHost, peerHost
from tcplab.echo import EchoFactory
from tcplab.limits import ConnectionLimits
from tcplab.observe import ConnectionObserver
from tcplab.tap.listening import ListeningService
from tests.memory import MemoryConnection, connectInMemory
from tests.support import Collector, Loopback, reactor


def connectFrom(factory: ConnectionObserver, peer: IAddress) -> MemoryConnection:
    """An in-memory connection to C{factory} from C{peer}."""
    return connectInMemory(factory, clock=factory.reactor, peer=peer)


def test_mapped_ipv6_counts_as_its_ipv4_host() -> None:
    """::ffff:127.0.0.1 (a tcp6 listener's view of an IPv4 client) shares 127.0.0.1's count."""
    factory = ConnectionObserver(EchoFactory(), "t", maxPerPeer=2, reactor=MemoryReactorClock())
    connectFrom(factory, IPv4Address("TCP", "127.0.0.1", 1))
    connectFrom(factory, IPv6Address("TCP", "::ffff:127.0.0.1", 2))
    third = connectFrom(factory, IPv4Address("TCP", "127.0.0.1", 3))
    assert third.received() == b"error: too many connections from 127.0.0.1 (at most 2)\r\n"
    assert factory.perPeer == {"127.0.0.1": 2}
    other = connectFrom(factory, IPv6Address("TCP", "::1", 4))
    assert other.received() == b""


def test_unix_peers_are_not_limited_per_host_but_count_in_total() -> None:
    """Local clients on a UNIX socket all look alike: only the total limit applies."""
    factory = ConnectionObserver(
        EchoFactory(), "t", maxPerPeer=1, maxConnections=3, reactor=MemoryReactorClock()
    )
    served = [connectFrom(factory, UNIXAddress(None)) for _ in range(3)]
    assert [c.received() for c in served] == [b"", b"", b""]
    assert factory.perPeer == {}
    fourth = connectFrom(factory, UNIXAddress(None))
    assert fourth.received() == b"error: server full (3 connections), try again later\r\n"


def test_closing_frees_the_place() -> None:
    """A closed connection gives its place back, and the table forgets the host."""
    factory = ConnectionObserver(EchoFactory(), "t", maxPerPeer=1, reactor=MemoryReactorClock())
    first = connectFrom(factory, IPv4Address("TCP", "10.0.0.1", 1))
    first.clientTransport.loseConnection()
    first.flush()
    assert factory.perPeer == {}
    second = connectFrom(factory, IPv4Address("TCP", "10.0.0.1", 2))
    assert second.received() == b""
    assert factory.limits.open == 1


def test_no_limits_admit_everyone() -> None:
    """Without limits the table never refuses (and zero means no limit)."""
    limits = ConnectionLimits(maxConnections=0, maxPerPeer=None)
    address = IPv4Address("TCP", "10.0.0.1", 1)
    for _ in range(100):
        assert limits.refusal(address) is None
        limits.opened(address)


@pytest.mark.parametrize(
    ("address", "host"),
    [
        (IPv4Address("TCP", "10.1.2.3", 5), "10.1.2.3"),
        (IPv6Address("TCP", "::FFFF:10.1.2.3", 5), "10.1.2.3"),
        (IPv6Address("TCP", "2001:DB8:0::1", 5), "2001:db8::1"),
        (UNIXAddress(b"/tmp/s"), None),
        ("[::ffff:10.1.2.3]:5", "10.1.2.3"),
        ("10.1.2.3:5", "10.1.2.3"),
        ("unix:(anonymous)", None),
    ],
)
def test_peer_host(address: object, host: str | None) -> None:
    """Addresses and their rendered forms map to one canonical host (None for UNIX)."""
    assert peerHost(address) == host


def test_canonical_host_leaves_names_alone() -> None:
    """A host that is not an IP address is returned as it is."""
    assert canonicalHost("example.lan") == "example.lan"


def ipv6Loopback() -> bool:
    """Whether this machine can bind ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6Loopback(), reason="no IPv6 loopback (::1) on this machine")
@pytest_twisted.ensureDeferred
async def test_tcp_and_tcp6_listeners_share_the_per_ip_limit(loopback: Loopback) -> None:
    """
    Over real sockets, an IPv4 client reaching a tcp6 listener (as
    ::ffff:127.0.0.1) counts against the same per-IP limit as on the tcp one.
    """
    factory = ConnectionObserver(EchoFactory(), "tcplab-echo", maxPerPeer=1)
    service = ListeningService(
        "tcplab-echo",
        ["tcp:0:interface=127.0.0.1", "tcp6:0:interface=\\:\\:ffff\\:127.0.0.1"],
        factory,
        reactor(),
    )
    service.startService()
    try:
        v4, v6 = [port.getHost().port for port in await service.listening]  # type: ignore[attr-defined]
        first: Collector = await loopback.connect(v4)
        first.transport.write(b"ping")
        assert await first.waitFor(4) == b"ping"
        second: Collector = await loopback.connect(v6)
        await second.closed.addTimeout(10, reactor())
        refusal = b"error: too many connections from 127.0.0.1 (at most 1)\r\n"
        assert bytes(second.received) == refusal
        assert factory.perPeer == {"127.0.0.1": 1}
    finally:
        await service.stopService()
