"""Tests for L{tcplab.directread}: reads dispatched without the log context, real sockets."""

from __future__ import annotations

from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.tcp import Port, Server
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from tcplab.directread import (
    REACTOR_INTERNALS,
    READ_BUFFER,
    SERVER_INTERNALS,
    DirectReadDispatch,
    DirectReadServer,
    adoptDirectReads,
    installDirectRead,
)
from tcplab.echo import EchoFactory
from tcplab.observe import ConnectionObserver
from tcplab.tap.listening import EndpointService, parseEndpoint
from tests.support import Loopback, reactor, waitUntil


def epollOnly() -> None:
    """Skip unless the tests run on Twisted's epoll reactor (the default on Linux)."""
    if type(reactor()) is not EPollReactor:
        pytest.skip("the direct read dispatch is for the epoll reactor")


async def listenDirectly(loopback: Loopback, factory: Any) -> int:
    """Listen on loopback with direct reads (skipped unless on epoll); the port number."""
    epollOnly()
    number = await loopback.listen(factory)
    assert adoptDirectReads(loopback.ports[-1])
    return number


class Exploding(Protocol):
    """A server protocol with a bug: every read raises."""

    instances: list[Exploding] = []

    def connectionMade(self) -> None:
        Exploding.instances.append(self)
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        raise ZeroDivisionError("bug in the protocol")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


def test_reactor_internals_canary() -> None:
    """The epoll reactor still has every private attribute the dispatch relies on."""
    epollOnly()
    missing = [name for name in REACTOR_INTERNALS if not hasattr(reactor(), name)]
    assert not missing, f"Twisted changed EPollReactor: {missing} gone; see tcplab/directread.py"
    assert isinstance(reactor()._selectables, dict)
    assert installDirectRead(reactor())
    assert isinstance(reactor().doIteration.__self__, DirectReadDispatch)


async def serve(observer: ConnectionObserver) -> EndpointService:
    """An endpoint service of C{observer} on a free loopback port, listening."""
    description = "tcp:0:interface=127.0.0.1"
    service = EndpointService("test", description, parseEndpoint(reactor(), description), observer)
    service.startService()
    await service.listening
    return service


@pytest_twisted.ensureDeferred
async def test_fast_path_services_read_directly(loopback: Loopback) -> None:
    """A service with the fast paths on accepts L{DirectReadServer}s, which echo as before."""
    epollOnly()
    observer = ConnectionObserver(EchoFactory(), "test", writeDirectly=True)
    service = await serve(observer)
    try:
        assert service.port is not None
        client = await loopback.connect(service.port.getHost().port)  # type: ignore[attr-defined]
        client.transport.write(b"x" * 100_000)
        assert await client.waitFor(100_000) == b"x" * 100_000
        (connection,) = observer.openConnections()
        assert type(connection.transport) is DirectReadServer
        client.transport.loseConnection()
        await client.closed
        await waitUntil(lambda: not observer.openConnections())
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_other_services_keep_twisted_dispatch(loopback: Loopback) -> None:
    """Without the fast paths (writeDirectly off) connections stay Twisted's own."""
    observer = ConnectionObserver(EchoFactory(), "test")
    service = await serve(observer)
    try:
        assert service.port is not None
        client = await loopback.connect(service.port.getHost().port)  # type: ignore[attr-defined]
        client.transport.write(b"hello")
        assert await client.waitFor(5) == b"hello"
        (connection,) = observer.openConnections()
        assert type(connection.transport) is Server
    finally:
        client.transport.abortConnection()
        await client.closed
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_server_internals_canary_and_derived_strings(loopback: Loopback) -> None:
    """
    Twisted's tcp.Server still has the attributes L{DirectReadServer}
    derives instead of storing, and the derived log prefix, C{repr} and
    C{fileno} are what Twisted's own connection has.
    """
    epollOnly()
    Exploding.instances = []
    plainPort = await loopback.listen(Factory.forProtocol(Exploding))
    directPort = await listenDirectly(loopback, Factory.forProtocol(Exploding))
    await loopback.connect(plainPort)
    await loopback.connect(directPort)
    await waitUntil(lambda: len(Exploding.instances) == 2)
    plain, direct = (p.transport for p in Exploding.instances)
    assert type(plain) is Server and type(direct) is DirectReadServer
    missing = [name for name in SERVER_INTERNALS if not hasattr(plain, name)]
    missing += [name for name in ("_realPortNumber",) if not hasattr(plain.server, name)]
    assert not missing, f"Twisted changed tcp.Server: {missing} gone; see tcplab/directread.py"
    assert "logstr" not in vars(direct) and "repstr" not in vars(direct)
    assert "fileno" not in vars(direct)
    assert plain.logPrefix() == f"Exploding,{plain.sessionno},127.0.0.1"
    assert direct.logPrefix() == f"Exploding,{direct.sessionno},127.0.0.1"
    assert repr(plain) == f"<Exploding #{plain.sessionno} on {plainPort}>"
    assert repr(direct) == f"<Exploding #{direct.sessionno} on {directPort}>"
    assert direct.fileno() == direct.socket.fileno() > 0
    direct.loseConnection()
    await waitUntil(lambda: Exploding.instances[1].lost is not None)
    assert direct.fileno() == -1
    assert repr(direct).startswith("<? #")


@pytest_twisted.ensureDeferred
async def test_protocol_error_is_logged_with_the_connection_and_drops_it(
    loopback: Loopback,
) -> None:
    """
    An exception in C{dataReceived} is logged with the connection's log
    prefix as its system, and the connection is dropped, as Twisted does.
    """
    Exploding.instances = []
    events: list[LogEvent] = []
    observer = ConnectionObserver(Factory.forProtocol(Exploding), "test", writeDirectly=True)
    client = await loopback.connect(await listenDirectly(loopback, observer))
    await waitUntil(lambda: Exploding.instances)
    (connection,) = observer.openConnections()
    assert type(connection.transport) is DirectReadServer
    prefix = connection.transport.logPrefix()
    record = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(record)
    try:
        client.transport.write(b"boom")
        await client.closed
    finally:
        globalLogPublisher.removeObserver(record)
    # Logged by twisted.python.log.err, as Twisted's own dispatch does.
    failures = [e for e in events if e.get("isError")]
    assert len(failures) == 1
    assert failures[0]["failure"].check(ZeroDivisionError)
    assert failures[0]["log_system"] == prefix
    assert "Exploding" in prefix
    lost = Exploding.instances[0].lost
    assert lost is not None and lost.check(ZeroDivisionError)
    await waitUntil(lambda: not observer.openConnections())


@pytest_twisted.ensureDeferred
async def test_half_close_goes_through_twisted(loopback: Loopback) -> None:
    """A peer's EOF reaches the half-close handling: everything is echoed, then closed."""
    observer = ConnectionObserver(EchoFactory(), "test", writeDirectly=True)
    client = await loopback.connect(await listenDirectly(loopback, observer))
    client.transport.write(b"last words")
    client.transport.loseWriteConnection()
    await client.closed
    assert bytes(client.received) == b"last words"


def test_only_twisted_epoll_reactor_gets_the_dispatch() -> None:
    """A clock, a reactor subclass that polls its own way, or one already patched: no dispatch."""
    assert not installDirectRead(Clock())

    class OwnPolling(EPollReactor):
        def doPoll(self, timeout: Any) -> None:
            pass

        doIteration = doPoll

    own = OwnPolling()
    patched = EPollReactor()
    plain = EPollReactor()
    try:
        assert not installDirectRead(own)
        patched.doIteration = lambda timeout: None  # type: ignore[method-assign]
        assert not installDirectRead(patched)
        assert installDirectRead(plain)
        dispatch = plain.doIteration
        assert installDirectRead(plain)
        assert plain.doIteration is dispatch
    finally:
        for r in (own, patched, plain):
            r._poller.close()
            r.waker.connectionLost(None)


def test_only_plain_tcp_ports_are_adopted() -> None:
    """Anything but Twisted's own TCP port making plain servers is left alone."""
    from twisted.internet.testing import MemoryReactor

    assert not adoptDirectReads(MemoryReactor().listenTCP(0, Factory()))

    class OwnServer(Server):
        pass

    class OwnPort(Port):
        transport = OwnServer

    assert not adoptDirectReads(OwnPort(0, Factory(), reactor=reactor()))


class Chunks(Protocol):
    """A server protocol that records every chunk it is handed."""

    instances: list[Chunks] = []

    def connectionMade(self) -> None:
        Chunks.instances.append(self)
        self.chunks: list[Any] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)


@pytest_twisted.ensureDeferred
async def test_reads_are_bytes_of_at_most_the_read_size(loopback: Loopback) -> None:
    """
    Reads through the shared buffer hand the protocol C{bytes} (not a view
    of the buffer, which the next read overwrites), at most the
    connection's read size at a time, and the buffer grows for a bigger one.
    """
    Chunks.instances = []
    small = ConnectionObserver(Factory.forProtocol(Chunks), "test", writeDirectly=True, readSize=7)
    big = ConnectionObserver(
        Factory.forProtocol(Chunks), "test", writeDirectly=True, readSize=READ_BUFFER_TEST_SIZE
    )
    first = await loopback.connect(await listenDirectly(loopback, small))
    second = await loopback.connect(await listenDirectly(loopback, big))
    await waitUntil(lambda: len(Chunks.instances) == 2)
    first.transport.write(b"0123456789" * 10)
    second.transport.write(b"x" * READ_BUFFER_TEST_SIZE * 2)
    await waitUntil(lambda: sum(map(len, Chunks.instances[0].chunks)) == 100)
    await waitUntil(lambda: sum(map(len, Chunks.instances[1].chunks)) == READ_BUFFER_TEST_SIZE * 2)
    smallChunks, bigChunks = Chunks.instances[0].chunks, Chunks.instances[1].chunks
    assert all(type(c) is bytes for c in smallChunks + bigChunks)
    assert max(map(len, smallChunks)) <= 7
    assert b"".join(smallChunks) == b"0123456789" * 10
    assert b"".join(bigChunks) == b"x" * READ_BUFFER_TEST_SIZE * 2
    assert len(READ_BUFFER.view) >= READ_BUFFER_TEST_SIZE


READ_BUFFER_TEST_SIZE = 1024 * 1024
"""Bigger than any read size the services use, so the shared buffer must grow."""


@pytest_twisted.ensureDeferred
async def test_queued_output_drains_through_write_events(loopback: Loopback) -> None:
    """
    Output queued while the peer does not read is sent on the write events
    the dispatch hands to C{doWrite}: everything arrives, in order.
    """
    observer = ConnectionObserver(EchoFactory(), "test", writeDirectly=True)
    client = await loopback.connect(await listenDirectly(loopback, observer))
    client.transport.pauseProducing()
    data = bytes(range(256)) * 131072  # 32 MiB, far more than the socket buffers hold
    client.transport.write(data)
    (connection,) = observer.openConnections()
    await waitUntil(
        lambda: connection.transport.dataBuffer or connection.transport._tempDataBuffer
    )
    client.transport.resumeProducing()
    await waitUntil(lambda: len(client.received) >= len(data), timeout=30)
    assert bytes(client.received) == data
