"""The in-memory connection helper (tests/memory.py) behaves like a socket pair."""

from __future__ import annotations

from tcplab.echo import EchoFactory
from tcplab.observe import ConnectionObserver
from tests.memory import connectInMemory


def test_bytes_flow_both_ways_and_half_close_is_delivered() -> None:
    """The echo server answers through the pair and closes after the client's EOF."""
    connection = connectInMemory(EchoFactory())
    connection.clientSends(b"hello")
    assert connection.received() == b"hello"
    connection.clientTransport.loseWriteConnection()
    connection.flush()
    assert connection.client.closed.called


def test_paused_reader_holds_back_input() -> None:
    """Bytes sent to a server that paused reading wait until it resumes."""
    connection = connectInMemory(EchoFactory())
    connection.serverTransport.pauseProducing()
    connection.clientSends(b"held")
    assert connection.received() == b""
    connection.serverTransport.resumeProducing()
    connection.flush()
    assert connection.received() == b"held"


def test_clock_drives_the_wrapped_factory_timers() -> None:
    """A wrapping factory built on the pair's clock times out an idle peer."""
    from twisted.internet.testing import MemoryReactorClock

    clock = MemoryReactorClock()
    factory = ConnectionObserver(EchoFactory(), "t", idleTimeout=10, reactor=clock)
    connection = connectInMemory(factory, clock=clock)
    connection.advance(5)
    assert not connection.client.closed.called
    for _ in range(4):
        connection.advance(2.5)
    assert b"idle for 10 seconds" in connection.received()
    connection.advance(1)
    assert connection.client.closed.called
    factory.doStop()
