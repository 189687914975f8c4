"""
UDP echo: the reply policy in memory with forged source addresses (a spoofed
source cannot be sent without raw sockets), sizes over real UDP sockets on
127.0.0.1.
"""

from __future__ import annotations

import os
import socket
from typing import Any, cast

import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.logger import ILogObserver, Logger

from tcplab.echo import MAX_DATAGRAM, DatagramPolicy, EchoDatagramProtocol
from tests.support import reactor, waitUntil


class FakeDatagramTransport:
    """Records what a datagram protocol sends, listening on C{host}:C{port}."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7007) -> None:
        self.address = IPv4Address("UDP", host, port)
        self.sent: list[tuple[bytes, Any]] = []

    def getHost(self) -> IPv4Address:
        """Where we listen."""
        return self.address

    def write(self, data: bytes, addr: Any) -> None:
        """Record a datagram sent."""
        self.sent.append((data, addr))


def started(protocol: EchoDatagramProtocol, host: str = "127.0.0.1") -> FakeDatagramTransport:
    """Start C{protocol} on a fake transport listening on C{host}:7007."""
    transport = FakeDatagramTransport(host)
    protocol.makeConnection(transport)  # type: ignore[arg-type]
    return transport


def test_never_answers_its_own_port_or_privileged_ports() -> None:
    """A datagram from our own address or port, or from a port below 1024, goes unanswered."""
    protocol = EchoDatagramProtocol("count")
    transport = started(protocol)
    for forged in [("127.0.0.1", 7007), ("192.0.2.1", 7007), ("192.0.2.1", 7), ("10.0.0.1", 19)]:
        protocol.datagramReceived(b"loop", forged)
    assert transport.sent == []
    assert protocol.policy.refused == 4
    protocol.datagramReceived(b"hi", ("127.0.0.1", 40000))
    assert transport.sent == [(b"1: hi", ("127.0.0.1", 40000))]


def test_replies_rate_limited_per_source_host() -> None:
    """One host gets a burst, then rate-many replies a second; another host is unaffected."""
    now = [0.0]
    policy = DatagramPolicy(rate=10, burst=20, clock=lambda: now[0])
    protocol = EchoDatagramProtocol("echo", policy=policy)
    transport = started(protocol)
    for port in range(40000, 40100):
        protocol.datagramReceived(b"x", ("192.0.2.1", port))
    assert len(transport.sent) == 20
    protocol.datagramReceived(b"y", ("192.0.2.2", 40000))
    assert transport.sent[-1] == (b"y", ("192.0.2.2", 40000))
    now[0] += 1
    for _ in range(50):
        protocol.datagramReceived(b"x", ("192.0.2.1", 40000))
    assert len(transport.sent) == 21 + 10


def test_rate_table_bounded_and_fails_closed() -> None:
    """Spraying sources fills a bounded table; new hosts get nothing until an old one is idle."""
    now = [0.0]
    policy = DatagramPolicy(rate=1, burst=2, maxSources=100, clock=lambda: now[0])
    for n in range(1000):
        policy.allows(f"10.0.{n // 256}.{n % 256}", 40000)
    assert len(policy.sources) == 100
    assert not policy.allows("192.0.2.9", 40000), "no host idle long enough to forget"
    now[0] += 2
    assert policy.allows("192.0.2.9", 40000)
    assert len(policy.sources) == 100


def test_warns_once_when_listening_beyond_loopback() -> None:
    """Start-up logs one warning for a non-loopback UDP address, none for 127.0.0.1."""
    for host, expected in [("0.0.0.0", 1), ("192.0.2.1", 1), ("127.0.0.1", 0)]:
        events: list[Any] = []
        protocol = EchoDatagramProtocol()
        protocol.log = Logger(observer=cast(ILogObserver, events.append))
        started(protocol, host)
        warnings = [e for e in events if e["log_level"].name == "warn"]
        assert len(warnings) == expected, host


async def udpRoundTrip(protocol: EchoDatagramProtocol, payload: bytes) -> bytes:
    """Send C{payload} to C{protocol} listening on 127.0.0.1 and return the reply."""
    port = reactor().listenUDP(0, protocol, interface="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.sendto(payload, ("127.0.0.1", port.getHost().port))
        replies: list[bytes] = []

        def readable() -> bool:
            try:
                replies.append(sock.recv(70000))
            except BlockingIOError:
                return False
            return True

        await waitUntil(readable)
        return replies[0]
    finally:
        sock.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_largest_datagram_echoed_intact() -> None:
    """A 65,507-byte datagram (the IPv4 maximum) comes back whole over real UDP."""
    payload = os.urandom(MAX_DATAGRAM)
    assert await udpRoundTrip(EchoDatagramProtocol(), payload) == payload


@pytest_twisted.ensureDeferred
async def test_udp_modes_over_loopback() -> None:
    """Over a real socket, upper mode upper-cases and count mode numbers a 9000-byte datagram."""
    assert await udpRoundTrip(EchoDatagramProtocol("upper"), b"ping") == b"PING"
    reply = await udpRoundTrip(EchoDatagramProtocol("count"), b"z" * 9000)
    assert reply == b"1: " + b"z" * 9000
