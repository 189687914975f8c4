"""Tests for L{tcplab.observe}: timeouts, draining, and the wire trace format."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tcplab.echo import EchoFactory
from tcplab.observe import ConnectionObserver, ObservedProtocol
from tcplab.tap.listening import ListeningService
from tcplab.trace import WireTracer, hexdump
from tests.support import Collector, reactor


def connect(factory: ConnectionObserver) -> tuple[ObservedProtocol, StringTransport]:
    address = IPv4Address("TCP", "127.0.0.1", 4242)
    protocol = factory.buildProtocol(address)
    assert isinstance(protocol, ObservedProtocol)
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport


def test_idle_peer_disconnected_after_timeout() -> None:
    """A peer silent for the idle timeout is told why and disconnected; traffic resets it."""
    clock = Clock()
    factory = ConnectionObserver(EchoFactory(), "t", idleTimeout=10, reactor=clock)
    factory.doStart()
    protocol, transport = connect(factory)
    clock.advance(6)
    protocol.dataReceived(b"x")
    clock.pump([1] * 9)
    assert not transport.disconnecting, "activity at t=6 must restart the idle clock"
    # Sweeps run every timeout/4, so the cut comes within 10 + 2.5 s of the activity.
    clock.pump([1] * 4)
    assert transport.disconnecting
    assert b"error: idle for 10 seconds" in transport.value()
    factory.doStop()


def test_slow_drip_line_disconnected() -> None:
    """A peer dripping one byte at a time into a line that never ends is cut off."""
    clock = Clock()
    factory = ConnectionObserver(
        EchoFactory("count", banner=b""), "t", idleTimeout=10, messageTimeout=30, reactor=clock
    )
    factory.doStart()
    protocol, transport = connect(factory)
    for _ in range(9):
        protocol.dataReceived(b"a")
        clock.pump([1, 1, 1])
    assert not transport.disconnecting
    for _ in range(3):
        protocol.dataReceived(b"a")
        clock.pump([1, 1, 1])
    assert transport.disconnecting
    assert b"message not completed within 30 seconds" in transport.value()
    factory.doStop()


def test_complete_lines_are_not_a_drip() -> None:
    """Slow but complete lines are ordinary traffic, not a slow-drip attack."""
    clock = Clock()
    factory = ConnectionObserver(
        EchoFactory("count", banner=b""), "t", idleTimeout=100, messageTimeout=5, reactor=clock
    )
    factory.doStart()
    protocol, transport = connect(factory)
    for _ in range(20):
        protocol.dataReceived(b"hi\n")
        clock.pump([1, 1, 1])
    assert not transport.disconnecting
    factory.doStop()


def test_no_timeouts_no_sweeper() -> None:
    """Without timeouts no periodic call is scheduled at all."""
    clock = Clock()
    factory = ConnectionObserver(EchoFactory(), "t", reactor=clock)
    factory.doStart()
    assert clock.getDelayedCalls() == []
    factory.doStop()


def test_hexdump_format() -> None:
    """The hex dump shows offset, hex bytes and printable ASCII with a marker."""
    lines = list(hexdump(b"hello\x00world!1234567", "<"))
    assert (
        lines[0]
        == "< 00000000  68 65 6c 6c 6f 00 77 6f 72 6c 64 21 31 32 33 34  |hello.world!1234|"
    )
    assert lines[1].startswith("< 00000010  35 36 37")
    assert lines[1].endswith("|567|")


def test_tracer_relative_time() -> None:
    """Trace lines carry the time since the connection opened and the label."""
    times = iter([100.0, 100.25])
    lines: list[str] = []
    tracer = WireTracer("peer", lines.append, clock=lambda: next(times))
    tracer.chunk(">", b"abc")
    assert lines == ["[  0.250000] peer > wrote 3 bytes"]


@pytest_twisted.ensureDeferred
async def test_stop_service_drains_connections() -> None:
    """Stopping the service says goodbye to connected clients and closes them."""
    factory = ConnectionObserver(EchoFactory("count", banner=b""), "tcplab-echo")
    service = ListeningService("tcplab-echo", ["tcp:0:interface=127.0.0.1"], factory, reactor())
    service.startService()
    [port] = await service.listening
    from twisted.internet import endpoints

    client = Collector()
    endpoint = endpoints.TCP4ClientEndpoint(reactor(), "127.0.0.1", port.getHost().port)  # type: ignore[attr-defined]
    await endpoints.connectProtocol(endpoint, client)
    client.transport.write(b"one\n")
    await client.waitForText(b"1: one")
    await service.stopService()
    await client.closed
    assert bytes(client.received).endswith(b"server shutting down, bye\r\n")
    assert factory.protocols == {}
