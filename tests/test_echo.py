"""Tests for L{tcplab.echo}: protocols in memory and over real loopback sockets."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.test import iosim

from tcplab.echo import (
    AckProtocol,
    CountingLineProtocol,
    EchoDatagramProtocol,
    EchoFactory,
    EchoProtocol,
)
from tcplab.observe import ConnectionObserver
from tcplab.sending import BULK_READ_SIZE
from tests.support import Collector, Loopback, reactor, waitUntil


def connectInMemory(server: Protocol) -> tuple[Collector, iosim.IOPump]:
    client = Collector()
    _, _, pump = iosim.connectedServerAndClient(lambda: server, lambda: client)
    return client, pump


def test_echo_in_memory_is_identity() -> None:
    """Every byte, including NUL and high bytes, comes back unchanged."""
    client, pump = connectInMemory(EchoProtocol())
    payload = bytes(range(256)) * 4
    client.transport.write(payload)
    pump.flush()
    assert bytes(client.received) == payload


def test_upper_mode() -> None:
    """Upper mode changes ASCII letters only and leaves other bytes alone."""
    client, pump = connectInMemory(EchoFactory("upper").buildProtocol(None))
    client.transport.write(b"hello \xc3\xa9 world\x00")
    pump.flush()
    assert bytes(client.received) == b"HELLO \xc3\xa9 WORLD\x00"


def test_ack_mode_one_ack_per_read() -> None:
    """Ack mode answers each chunk read with the configured text and a line end."""
    protocol = AckProtocol(b"ok")
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"first")
    protocol.dataReceived(b"second")
    assert transport.value() == b"ok\r\nok\r\n"


def test_count_mode_banner_count_exit() -> None:
    """Count mode greets, numbers each line, and says bye and closes on exit."""
    protocol = CountingLineProtocol(banner=b"hi there")
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"hello\r\nworld\nexit\nignored\n")
    assert transport.value() == b"hi there\r\n1: hello\r\n2: world\r\nbye\r\n"
    assert transport.disconnecting


def test_count_mode_long_line_survives() -> None:
    """An over-long line gets an error line and the connection goes on."""
    protocol = CountingLineProtocol(banner=b"", maxLineLength=8)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"x" * 50 + b"\nshort\n")
    assert transport.value() == b"error: line too long (50 bytes, at most 8)\r\n1: short\r\n"
    assert not transport.disconnecting


def test_unknown_mode_rejected() -> None:
    """An unknown mode name is a ValueError, not a silent RFC 862 echo."""
    with pytest.raises(ValueError, match="unknown echo mode"):
        EchoFactory("shout")


def test_udp_reply_modes() -> None:
    """The UDP protocol answers each datagram according to its mode."""
    assert EchoDatagramProtocol().reply(b"abc") == b"abc"
    assert EchoDatagramProtocol("upper").reply(b"abc") == b"ABC"
    assert EchoDatagramProtocol("ack", b"got").reply(b"abc") == b"got"
    counting = EchoDatagramProtocol("count")
    assert [counting.reply(b"a"), counting.reply(b"b")] == [b"1: a", b"2: b"]


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


@pytest_twisted.ensureDeferred
async def test_half_close_gets_everything(loopback: Loopback) -> None:
    """A client that shuts down its sending side still receives all its echo, then EOF."""
    port = await loopback.listen(observed(EchoFactory()))
    client = await loopback.connect(port)
    payload = os.urandom(1024 * 1024)
    client.transport.write(payload)
    client.transport.loseWriteConnection()
    await client.closed
    assert bytes(client.received) == payload


@pytest_twisted.ensureDeferred
async def test_many_concurrent_clients(loopback: Loopback) -> None:
    """Fifty clients at once each get exactly their own bytes back."""
    port = await loopback.listen(observed(EchoFactory()))
    clients = [await loopback.connect(port) for _ in range(50)]
    payloads = [os.urandom(32 * 1024) for _ in clients]
    for client, payload in zip(clients, payloads):
        client.transport.write(payload)
    results = await defer.gatherResults([c.waitFor(len(p)) for c, p in zip(clients, payloads)])
    assert results == payloads


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


@pytest_twisted.ensureDeferred
async def test_count_mode_over_tcp(loopback: Loopback) -> None:
    """Count mode over a real socket: banner, numbered replies, exit closes."""
    port = await loopback.listen(observed(EchoFactory("count", banner=b"welcome")))
    client = await loopback.connect(port)
    client.transport.write(b"a\r\nb\nexit\n")
    await client.closed
    assert bytes(client.received) == b"welcome\r\n1: a\r\n2: b\r\nbye\r\n"


@pytest_twisted.ensureDeferred
async def test_connection_limits_refuse_with_reason(loopback: Loopback) -> None:
    """Past --max-per-ip a new peer is told why and closed; the others stay served."""
    factory = ConnectionObserver(EchoFactory(), "tcplab-echo", maxPerPeer=2)
    port = await loopback.listen(factory)
    first = await loopback.connect(port)
    second = await loopback.connect(port)
    third = await loopback.connect(port)
    await third.closed
    assert b"too many connections from 127.0.0.1" in bytes(third.received)
    first.transport.write(b"ok")
    assert await first.waitFor(2) == b"ok"
    second.transport.abortConnection()
    await second.closed
    await waitUntil(lambda: factory.perPeer["127.0.0.1"] == 1)
    fourth = await loopback.connect(port)
    fourth.transport.write(b"in")
    assert await fourth.waitFor(2) == b"in"


@pytest_twisted.ensureDeferred
async def test_udp_echo_over_loopback() -> None:
    """A UDP datagram sent to the server comes back to its sender."""
    port = reactor().listenUDP(0, EchoDatagramProtocol("upper"), interface="127.0.0.1")
    try:
        number = port.getHost().port
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.sendto(b"ping", ("127.0.0.1", number))
        replies: list[bytes] = []

        def readable() -> bool:
            try:
                replies.append(sock.recv(2048))
            except BlockingIOError:
                return False
            return True

        await waitUntil(readable)
        sock.close()
        assert replies == [b"PING"]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_trace_lines_for_each_chunk(loopback: Loopback) -> None:
    """--trace logs the connection, each chunk with size and direction, and the close."""
    lines: list[str] = []
    factory = ConnectionObserver(
        EchoFactory(), "tcplab-echo", traceSink=lines.append, hexdump=True
    )
    port = await loopback.listen(factory)
    client = await loopback.connect(port)
    client.transport.write(b"hello")
    await client.waitFor(5)
    client.transport.loseConnection()
    await client.closed
    await waitUntil(lambda: any("connection closed" in line for line in lines))
    text = "\n".join(lines)
    assert "connection opened" in text
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
