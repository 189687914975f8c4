"""
Tests for L{tcplab.observe} and the policies it composes: timeouts
(L{tcplab.timeouts}), draining (L{tcplab.drain}), settings, and the wire
trace format.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from zope.interface import implementer

from tcplab.drain import plural
from tcplab.echo import EchoFactory
from tcplab.interfaces import IGracefulStop
from tcplab.observe import ConnectionObserver, ObservedProtocol
from tcplab.settings import ServiceSettings
from tcplab.tap.listening import ListeningService
from tcplab.trace import WireTracer, hexdump
from tests.memory import connectInMemory
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


def test_silent_peer_is_idle_from_the_moment_it_connected() -> None:
    """A peer that never sends a byte is cut one idle timeout (plus a sweep) after connecting."""
    clock = Clock()
    factory = ConnectionObserver(EchoFactory(), "t", idleTimeout=8, reactor=clock)
    factory.doStart()
    _, transport = connect(factory)
    clock.pump([2] * 3)
    assert not transport.disconnecting
    clock.pump([2])
    assert transport.disconnecting
    assert b"error: idle for 8 seconds" in transport.value()
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


def test_drain_says_goodbye_through_the_hook() -> None:
    """A protocol declaring IGracefulStop winds down its own way when the service stops."""
    clock = MemoryReactorClock()
    factory = ConnectionObserver(EchoFactory("count", banner=b""), "tcplab-echo", reactor=clock)
    connection = connectInMemory(factory, clock=clock)
    connection.clientSends(b"one\n")
    drained = factory.drain(5)
    connection.flush()
    assert connection.received() == b"1: one\r\nserver shutting down, bye\r\n"
    assert connection.client.closed.called and drained.called
    assert factory.protocols == {}


def test_drain_closes_protocols_without_the_hook() -> None:
    """A protocol without IGracefulStop is closed once its output is sent."""
    clock = MemoryReactorClock()
    factory = ConnectionObserver(Factory.forProtocol(Protocol), "t", reactor=clock)
    connection = connectInMemory(factory, clock=clock)
    drained = factory.drain(5)
    connection.flush()
    assert connection.client.closed.called and drained.called


@implementer(IGracefulStop)
class Stubborn(Protocol):
    """Says it can stop gracefully, then never does."""

    def serverStopping(self) -> None:
        pass


def test_drain_cuts_off_after_the_timeout() -> None:
    """Whatever is still open after the shutdown timeout is aborted, and the drain ends."""
    clock = MemoryReactorClock()
    factory = ConnectionObserver(Factory.forProtocol(Stubborn), "t", reactor=clock)
    connection = connectInMemory(factory, clock=clock)
    drained = factory.drain(5)
    connection.advance(4.9)
    assert not connection.client.closed.called
    connection.advance(0.1)
    assert connection.serverTransport.disconnected
    assert drained.called


def test_drain_log_line_counts_in_words() -> None:
    """The drain log line says "1 connection", not "1 connections"."""
    clock = MemoryReactorClock()
    factory = ConnectionObserver(Factory.forProtocol(Protocol), "tcplab-echo", reactor=clock)
    connectInMemory(factory, clock=clock)
    with capturedLogs() as events:
        factory.drain(3)
    [line] = [formatEvent(e) for e in events if "closing" in formatEvent(e)]
    assert line == "tcplab-echo: closing 1 connection (at most 3s)"
    assert plural(2, "connection") == "2 connections"


class UndeclaredProgress(Protocol):
    """Has a messageInProgress method, but does not declare IMessageProgress."""

    def messageInProgress(self) -> object:
        return 1


def test_hooks_are_found_by_interface_not_by_name() -> None:
    """Only a declared IMessageProgress is asked; a method of the same name is not a hook."""
    clock = MemoryReactorClock()
    factory = ConnectionObserver(
        Factory.forProtocol(UndeclaredProgress), "t", messageTimeout=5, reactor=clock
    )
    connection = connectInMemory(factory, clock=clock)
    for _ in range(20):
        connection.clientSends(b"x")
        connection.advance(1)
    assert not connection.client.closed.called
    factory.doStop()


def test_settings_treat_zero_as_off_and_refuse_negatives() -> None:
    """0 and None both turn a limit or timeout off; a negative one is an error."""
    settings = ServiceSettings("t", maxConnections=0, idleTimeout=0.0, messageTimeout=None)
    assert (settings.maxConnections, settings.idleTimeout, settings.messageTimeout) == (
        None,
        None,
        None,
    )
    with pytest.raises(ValueError, match="maxPerPeer"):
        ServiceSettings("t", maxPerPeer=-1)


def test_observer_takes_settings_or_keywords() -> None:
    """The observer is built from a settings record, or from a name and its fields."""
    settings = ServiceSettings("t", maxPerPeer=4, hexdump=True)
    byRecord = ConnectionObserver(EchoFactory(), settings, reactor=Clock())
    byName = ConnectionObserver(EchoFactory(), "t", reactor=Clock(), maxPerPeer=4, hexdump=True)
    assert byRecord.settings == byName.settings == settings
    assert byRecord.traceSink is not None, "--hexdump implies --trace"
    assert byRecord.limits.maxPerPeer == 4


@pytest_twisted.ensureDeferred
async def test_stop_service_drains_connections() -> None:
    """Over real sockets: stopping the service says goodbye to clients and closes them."""
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
