"""
Tests for L{tcplab.echo}'s TCP side: the protocols over the in-memory pair,
and a loopback smoke test plus the backpressure test over real sockets
(backpressure is the real transport's buffer filling up).  UDP is in
tests/test_echo_udp.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol

from tcplab.echo import (
    MODES,
    CountingLineProtocol,
    EchoDatagramProtocol,
    EchoFactory,
    replyFor,
)
from tcplab.observe import ConnectionObserver
from tcplab.sending import BULK_READ_SIZE
from tests.memory import MemoryConnection, connectInMemory
from tests.support import Collector, Loopback, reactor, waitUntil


def served(factory: Any) -> MemoryConnection:
    """An in-memory client connected to C{factory}'s protocol."""
    return connectInMemory(factory)


def test_echo_in_memory_is_identity() -> None:
    """Every byte, including NUL and high bytes, comes back unchanged."""
    connection = served(EchoFactory())
    payload = bytes(range(256)) * 4
    connection.clientSends(payload)
    assert connection.received() == payload


def test_upper_mode() -> None:
    """Upper mode changes ASCII letters only and leaves other bytes alone."""
    connection = served(EchoFactory("upper"))
    connection.clientSends(b"hello \xc3\xa9 world\x00")
    assert connection.received() == b"HELLO \xc3\xa9 WORLD\x00"


def test_ack_mode_one_ack_per_read() -> None:
    """Ack mode answers each chunk read with the configured text and a line end."""
    connection = served(EchoFactory("ack", ack=b"ok"))
    connection.clientSends(b"first")
    connection.clientSends(b"second")
    assert connection.received() == b"ok\r\nok\r\n"


def test_count_mode_banner_count_exit() -> None:
    """Count mode greets, numbers each line, and says bye and closes on exit."""
    connection = served(EchoFactory("count", banner=b"hi there"))
    connection.clientSends(b"hello\r\nworld\nexit\nignored\n")
    assert connection.received() == b"hi there\r\n1: hello\r\n2: world\r\nbye\r\n"
    assert connection.client.closed.called


def test_count_mode_waits_for_the_line_end() -> None:
    """By default count mode answers lines: 'hello' without a newline waits for the rest."""
    connection = served(EchoFactory("count", banner=b""))
    connection.clientSends(b"hel")
    connection.clientSends(b"lo")
    assert connection.received() == b""
    connection.clientSends(b"\n")
    assert connection.received() == b"1: hello\r\n"


def test_count_mode_per_read_answers_every_read() -> None:
    """With perRead, each read is numbered at once, line end or not; 'exit' closes."""
    connection = served(EchoFactory("count", banner=b"hi", perRead=True))
    connection.clientSends(b"hello")
    assert connection.received() == b"hi\r\n1: hello\r\n"
    connection.clientSends(b"again\n")
    connection.clientSends(b"exit")
    assert connection.received() == b"hi\r\n1: hello\r\n2: again\r\nbye\r\n"
    assert connection.client.closed.called


def test_count_mode_long_line_survives() -> None:
    """An over-long line gets an error line and the connection goes on."""
    protocol = CountingLineProtocol(banner=b"", maxLineLength=8)
    factory = Factory.forProtocol(lambda: protocol)
    connection = served(factory)
    connection.clientSends(b"x" * 50 + b"\nshort\n")
    assert connection.received() == b"error: line too long (50 bytes, at most 8)\r\n1: short\r\n"
    assert not connection.client.closed.called


def test_unknown_mode_rejected() -> None:
    """An unknown mode name is a ValueError, not a silent RFC 862 echo."""
    with pytest.raises(ValueError, match="unknown echo mode"):
        EchoFactory("shout")
    with pytest.raises(ValueError, match="unknown echo mode"):
        EchoDatagramProtocol("shout")


def test_one_definition_of_each_mode_for_tcp_and_udp() -> None:
    """The TCP protocols and the UDP protocol answer a message with the same replyFor."""
    assert replyFor("echo")(b"abc") == b"abc"
    assert replyFor("upper")(b"abc") == b"ABC"
    assert replyFor("ack", b"got")(b"abc") == b"got"
    counting = replyFor("count")
    assert [counting(b"a"), counting(b"b")] == [b"1: a", b"2: b"]
    for mode in MODES:
        tcp = served(EchoFactory(mode, ack=b"got", banner=b"", perRead=True))
        tcp.clientSends(b"abc")
        assert tcp.received().rstrip(b"\r\n") == replyFor(mode, b"got")(b"abc"), mode
        assert EchoDatagramProtocol(mode, b"got").reply(b"abc") == replyFor(mode, b"got")(b"abc")


def test_half_close_in_memory_gets_everything() -> None:
    """A client that half-closes gets its echo, then the server closes (every stream mode)."""
    for mode in ("echo", "upper", "ack"):
        protocol = EchoFactory(mode).buildProtocol(None)
        assert IHalfCloseableProtocol.providedBy(protocol), mode
    connection = served(EchoFactory())
    connection.clientTransport.write(b"last words")
    connection.clientTransport.loseWriteConnection()
    connection.flush()
    assert connection.received() == b"last words"
    assert connection.client.closed.called


def test_many_clients_each_get_their_own_bytes() -> None:
    """Fifty clients of one factory each get exactly their own bytes back."""
    factory = EchoFactory()
    connections = [served(factory) for _ in range(50)]
    payloads = [os.urandom(4096) for _ in connections]
    for connection, payload in zip(connections, payloads):
        connection.clientSends(payload)
    assert [c.received() for c in connections] == payloads


def observed(factory: Any) -> ConnectionObserver:
    """Wrap C{factory} as the plugin does: bulk reads, direct writes."""
    return ConnectionObserver(factory, "tcplab-echo", readSize=BULK_READ_SIZE, writeDirectly=True)


@pytest_twisted.ensureDeferred
async def test_large_binary_stream(loopback: Loopback) -> None:
    """Several MiB of random binary data are echoed byte for byte over TCP."""
    port = await loopback.listen(observed(EchoFactory()))
    client = await loopback.connect(port)
    payload = os.urandom(6 * 1024 * 1024)
    client.transport.write(payload)
    received = await client.waitFor(len(payload))
    assert received == payload


class Flooder(Protocol):
    """Writes as fast as its transport accepts and never reads."""

    transport: Any
    chunk = os.urandom(256 * 1024)

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.paused = False
        self.received = bytearray()
        self.done: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # never read
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.sent < self.limit:
            self.transport.write(self.chunk)
            self.sent += len(self.chunk)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.sent and self.sent >= self.limit:
            self.done.callback(None)


@pytest_twisted.ensureDeferred
async def test_backpressure_on_client_that_never_reads(loopback: Loopback) -> None:
    """The server stops reading from a peer that never reads, keeps its buffer bounded,
    serves others meanwhile, and delivers everything once the peer reads again."""
    servers: list[Any] = []
    factory = observed(EchoFactory())
    build = factory.buildProtocol

    def recording(addr: Any) -> Any:
        protocol = build(addr)
        servers.append(protocol)
        return protocol

    factory.buildProtocol = recording  # type: ignore[method-assign]
    port = await loopback.listen(factory)
    flooder = Flooder(limit=64 * 1024 * 1024)
    await loopback.connect(port, flooder)
    serverTransport = servers[0].transport
    await waitUntil(lambda: serverTransport.producerPaused)

    buffered = len(serverTransport.dataBuffer) + serverTransport._tempDataLen
    assert buffered <= 2 * serverTransport.bufferSize + 256 * 1024
    assert flooder.paused, "the client should be blocked, the server stopped reading"
    assert flooder.sent < flooder.limit

    other = await loopback.connect(port)
    other.transport.write(b"still here")
    assert await other.waitFor(10) == b"still here"

    flooder.transport.resumeProducing()
    await flooder.done
    assert len(flooder.received) == flooder.sent
    assert bytes(flooder.received[: len(Flooder.chunk)]) == Flooder.chunk


def test_connection_limits_refuse_with_reason() -> None:
    """Past --max-per-ip a new peer is told why and closed; the others stay served."""
    factory = ConnectionObserver(EchoFactory(), "tcplab-echo", maxPerPeer=2)
    first, second, third = (
        connectInMemory(factory, peer=IPv4Address("TCP", "127.0.0.1", port))
        for port in (40001, 40002, 40003)
    )
    assert b"too many connections from 127.0.0.1" in third.received()
    assert third.client.closed.called
    first.clientSends(b"ok")
    assert first.received() == b"ok"
    second.clientTransport.loseConnection()
    second.flush()
    assert factory.perPeer["127.0.0.1"] == 1
    fourth = connectInMemory(factory, peer=IPv4Address("TCP", "127.0.0.1", 40004))
    fourth.clientSends(b"in")
    assert fourth.received() == b"in"


def test_trace_lines_for_each_chunk() -> None:
    """--trace logs the connection, each chunk with size and direction, and the close."""
    lines: list[str] = []
    factory = ConnectionObserver(
        EchoFactory(), "tcplab-echo", traceSink=lines.append, hexdump=True
    )
    connection = connectInMemory(factory)
    connection.clientSends(b"hello")
    connection.clientTransport.loseConnection()
    connection.flush()
    text = "\n".join(lines)
    assert "connection opened" in text and "connection closed" in text
    assert "< read 5 bytes" in text
    assert "> wrote 5 bytes" in text
    assert "68 65 6c 6c 6f" in text and "|hello|" in text


@pytest_twisted.ensureDeferred
async def test_embedding_example_from_readme() -> None:
    """The README's embedding line really listens and echoes."""
    port = await endpoints.serverFromString(reactor(), "tcp:0:interface=127.0.0.1").listen(
        EchoFactory()
    )
    try:
        client = Collector()
        endpoint = endpoints.TCP4ClientEndpoint(reactor(), "127.0.0.1", port.getHost().port)
        await endpoints.connectProtocol(endpoint, client)
        client.transport.write(b"embedded")
        assert await client.waitFor(8) == b"embedded"
        client.transport.loseConnection()
        await client.closed
    finally:
        await port.stopListening()
