"""Tests for L{tcplab.lentreads.lendReads}: a client connection lending its reads."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import endpoints
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.tcp import Client, Connection, Server
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tcplab.directread import READ_BUFFER, SharedBufferReads
from tcplab.lentreads import CLIENT_INTERNALS, LentReadClient, lendReads
from tcplab.observe import ConnectionObserver, ObservedProtocol
from tests.support import Collector, Loopback, reactor, waitUntil


class Borrower(Protocol):
    """A client that asks for lent reads and records each read as it was handed over."""

    def __init__(self) -> None:
        self.lent: bool | None = None
        self.kinds: list[type] = []
        self.owners: list[Any] = []
        self.received = bytearray()
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.lent = lendReads(self.transport)

    def dataReceived(self, data: Any) -> None:
        self.kinds.append(type(data))
        if isinstance(data, memoryview):
            self.owners.append(data.obj)
        self.received += data  # used (copied) during the call, as the contract asks

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class Sender(Protocol):
    """A server that sends what its factory says, then closes."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.write(self.factory.payload)
        transport.loseConnection()


PAYLOAD = bytes(range(256)) * 8192  # 2 MiB: several reads


def senderFactory() -> Any:
    """A factory of L{Sender}s sending L{PAYLOAD}."""
    factory = Factory.forProtocol(Sender)
    factory.payload = PAYLOAD  # type: ignore[attr-defined]
    return factory


def test_client_reads_canary() -> None:
    """
    Twisted's TCP client still reads with C{Connection.doRead}, what
    L{LentReadClient} replaces (the attributes it uses: see
    L{test_other_transports_keep_their_reads}).
    """
    assert Client.doRead is Connection.doRead
    assert LentReadClient.__mro__[1:3] == (SharedBufferReads, Client)


@pytest_twisted.ensureDeferred
async def test_lent_reads_are_views_of_the_shared_buffer(loopback: Loopback) -> None:
    """
    A client that asks gets every read as a view of the shared read buffer,
    all bytes in order, and the end of the stream as a clean close.
    """
    port = await loopback.listen(senderFactory())
    client = await loopback.connect(port, Borrower())
    assert client.lent is True
    assert type(client.transport) is LentReadClient
    assert isinstance(client.transport, Client)
    await waitUntil(lambda: client.lost is not None, timeout=30)
    assert bytes(client.received) == PAYLOAD
    assert set(client.kinds) == {memoryview}
    assert all(owner is READ_BUFFER.view.obj for owner in client.owners)
    assert client.lost is not None and client.lost.check(ConnectionDone)


@pytest_twisted.ensureDeferred
async def test_lent_through_the_observer_unless_tracing(loopback: Loopback) -> None:
    """
    Through tcplab's connection observer the TCP connection under it
    lends its reads; with a trace on, it keeps Twisted's C{bytes} reads.
    """
    port = await loopback.listen(senderFactory())
    endpoint = endpoints.TCP4ClientEndpoint(reactor(), "127.0.0.1", port, timeout=10)
    results = []
    for traceSink in (None, lambda line: None):
        borrower = Borrower()
        observer = ConnectionObserver(
            Factory.forProtocol(lambda b=borrower: b),  # type: ignore[misc]
            "test",
            traceSink=traceSink,
        )
        wrapper = await endpoint.connect(observer)
        assert isinstance(wrapper, ObservedProtocol)
        loopback.clients.append(wrapper)
        await waitUntil(lambda b=borrower: b.lost is not None, timeout=30)
        assert bytes(borrower.received) == PAYLOAD
        results.append((borrower.lent, set(borrower.kinds)))
    assert results == [(True, {memoryview}), (False, {bytes})]


@pytest_twisted.ensureDeferred
async def test_other_transports_keep_their_reads(loopback: Loopback) -> None:
    """
    A plain client has the attributes a lent read uses (canary); a server's
    connection and a test's transport are never made to lend reads.
    """
    servers: list[Any] = []

    class Recording(Protocol):
        def connectionMade(self) -> None:
            servers.append(self.transport)

    port = await loopback.listen(Factory.forProtocol(Recording))
    plain = await loopback.connect(port, Collector())
    missing = [name for name in CLIENT_INTERNALS if not hasattr(plain.transport, name)]
    assert not missing, f"Twisted changed tcp.Client: {missing} gone; see tcplab/directread.py"
    assert type(plain.transport) is Client
    await waitUntil(lambda: bool(servers))
    assert type(servers[0]) is Server
    assert not lendReads(servers[0])
    assert type(servers[0]) is Server
    assert not lendReads(StringTransport())
