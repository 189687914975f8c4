"""Tests for L{tcplab.sending}: the direct write path over real sockets."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest_twisted
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from tcplab.observe import ConnectionObserver
from tcplab.sending import canWriteDirectly
from tests.support import Loopback, waitUntil


class Writer(Protocol):
    """A server protocol the test drives by hand."""

    transport: Any
    instances: list[Writer] = []

    def connectionMade(self) -> None:
        Writer.instances.append(self)


def queued(transport: Any) -> int:
    """Bytes the Twisted transport holds, not yet handed to the kernel."""
    return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)


@pytest_twisted.ensureDeferred
async def test_small_write_goes_straight_to_the_kernel(loopback: Loopback) -> None:
    """On an idle connection nothing is left queued in the transport."""
    Writer.instances = []
    port = await loopback.listen(
        ConnectionObserver(Factory.forProtocol(Writer), "test", writeDirectly=True)
    )
    client = await loopback.connect(port)
    await waitUntil(lambda: Writer.instances)
    server = Writer.instances[0]
    server.transport.write(b"hello")
    assert queued(server.transport.transport) == 0
    assert await client.waitFor(5) == b"hello"


@pytest_twisted.ensureDeferred
async def test_order_kept_when_the_kernel_is_full(loopback: Loopback) -> None:
    """
    Once the socket buffer is full the rest is queued, and later writes
    queue behind it instead of overtaking it.
    """
    Writer.instances = []
    port = await loopback.listen(
        ConnectionObserver(Factory.forProtocol(Writer), "test", writeDirectly=True)
    )
    client = await loopback.connect(port)
    await waitUntil(lambda: Writer.instances)
    server = Writer.instances[0]
    client.transport.pauseProducing()
    big = os.urandom(8 * 1024 * 1024)
    server.transport.write(big)
    assert queued(server.transport.transport) > 0
    tail = [b"%06d" % i for i in range(1000)]
    for piece in tail:
        server.transport.write(piece)
    client.transport.resumeProducing()
    expected = big + b"".join(tail)
    assert await client.waitFor(len(expected)) == expected


@pytest_twisted.ensureDeferred
async def test_write_to_a_reset_peer_closes_quietly(loopback: Loopback) -> None:
    """A write after the peer reset the connection ends it, without an exception."""
    Writer.instances = []
    port = await loopback.listen(
        ConnectionObserver(Factory.forProtocol(Writer), "test", writeDirectly=True)
    )
    raw = socket.create_connection(("127.0.0.1", port))
    await waitUntil(lambda: Writer.instances)
    server = Writer.instances[0]
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()  # an RST: the server's socket is reset before the reactor knows
    for _ in range(3):
        server.transport.write(b"x" * 1000)
    await server.transport.closed


def test_other_transports_use_their_own_write() -> None:
    """Anything but a TCP connection (here an in-memory one) is written to as usual."""
    assert not canWriteDirectly(StringTransport())
