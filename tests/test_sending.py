"""Tests for L{tcplab.sending}: the direct write path over real sockets, and batching."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tcplab.observe import ConnectionObserver
from tcplab.sending import TWISTED_INTERNALS, WriteBatch, canWriteDirectly
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


async def directConnection(loopback: Loopback) -> tuple[Writer, Any]:
    """A served L{Writer} behind a direct-writing observer, and its loopback client."""
    Writer.instances = []
    port = await loopback.listen(
        ConnectionObserver(Factory.forProtocol(Writer), "test", writeDirectly=True)
    )
    client = await loopback.connect(port)
    await waitUntil(lambda: Writer.instances)
    return Writer.instances[0], client


@pytest_twisted.ensureDeferred
async def test_small_write_goes_straight_to_the_kernel(loopback: Loopback) -> None:
    """On an idle connection nothing is left queued in the transport."""
    server, client = await directConnection(loopback)
    server.transport.write(b"hello")
    assert queued(server.transport.transport) == 0
    assert await client.waitFor(5) == b"hello"


@pytest_twisted.ensureDeferred
async def test_order_kept_when_the_kernel_is_full(loopback: Loopback) -> None:
    """
    Once the socket buffer is full the rest is queued, and later writes
    queue behind it instead of overtaking it.
    """
    server, client = await directConnection(loopback)
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


@pytest_twisted.ensureDeferred
async def test_canary_twisted_internals_of_the_fast_path(loopback: Loopback) -> None:
    """
    Canary: a real TCP transport still has every private attribute the direct
    write path reads; when a Twisted release renames one, this fails loudly
    instead of every server silently losing the fast path.
    """
    server, _ = await directConnection(loopback)
    transport = server.transport.transport
    missing = [name for name in TWISTED_INTERNALS if not hasattr(transport, name)]
    assert not missing, f"Twisted changed tcp.Connection: {missing} gone; see tcplab/sending.py"
    assert canWriteDirectly(transport)
    assert isinstance(transport._tempDataBuffer, list) and transport.dataBuffer == b""


def test_other_transports_use_their_own_write() -> None:
    """Anything but a TCP connection (here an in-memory one) is written to as usual."""
    assert not canWriteDirectly(StringTransport())


class RecordingWriter:
    """A connection whose batched sends are recorded."""

    def __init__(self, batch: WriteBatch) -> None:
        self.sends: list[bytes] = []
        self.delivered: list[bytes] = []
        self.batch = batch

    def send(self, data: bytes) -> None:
        """Record one send."""
        self.sends.append(data)

    def deliver(self, data: bytes) -> None:
        self.batch.deliver(self, data)

    def flushNow(self) -> None:
        self.batch.flushNow(self)

    def deliverRecorded(self, data: bytes) -> None:
        self.delivered.append(data)
        self.deliver(data)


def test_batch_one_send_per_writer_per_iteration() -> None:
    """A writer's lines of one iteration go out as one send, after the iteration."""
    clock = Clock()
    batch = WriteBatch(clock)
    writers = [RecordingWriter(batch) for _ in range(3)]
    for line in (b"a\r\n", b"b\r\n"):
        for writer in writers:
            writer.deliver(line)
    assert all(writer.sends == [] for writer in writers)
    clock.advance(0)
    assert [writer.sends for writer in writers] == [[b"a\r\nb\r\n"]] * 3
    assert batch.pending == {}


class SharingFlusher:
    """A flusher that hands one buffer to every writer, after what they already have."""

    def __init__(self, batch: WriteBatch, writers: list[RecordingWriter]) -> None:
        self.batch = batch
        self.writers = writers
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        shared = b"room\r\n"
        for writer in self.writers:
            self.batch.deliver(writer, shared)


def test_batch_flushers_run_once_before_the_sends() -> None:
    """
    A flusher hands over its output once when the batch runs, after each
    writer's earlier lines; a buffer it shares is sent as is.
    """
    clock = Clock()
    batch = WriteBatch(clock)
    writers = [RecordingWriter(batch) for _ in range(3)]
    flusher = SharingFlusher(batch, writers)
    batch.addFlusher(flusher)
    writers[0].deliver(b"own\r\n")
    clock.advance(0)
    assert flusher.flushes == 1
    assert [writer.sends for writer in writers] == [[b"own\r\nroom\r\n"]] + [[b"room\r\n"]] * 2
    assert writers[1].sends[0] is writers[2].sends[0]
    clock.advance(0)
    assert flusher.flushes == 1 and batch.flushers == [] and batch.call is None


# One step: ("broadcast", excluded writer or -1) or ("direct", writer) or
# ("flush", writer) or ("iteration", 0).
steps = st.lists(
    st.tuples(st.sampled_from(["broadcast", "direct", "flush", "iteration"]), st.integers(-1, 3)),
    max_size=40,
)


@given(steps)
def test_batch_delivers_everything_in_order(plan: list[tuple[str, int]]) -> None:
    """
    Whatever the mix of broadcasts (some leaving one writer out), lines
    for one writer only, early flushes and iteration ends, each writer is
    sent exactly what it was delivered, in order.
    """
    clock = Clock()
    batch = WriteBatch(clock)
    writers = [RecordingWriter(batch) for _ in range(4)]
    for number, (action, who) in enumerate(plan):
        line = b"%d\n" % number
        if action == "broadcast":
            for index, writer in enumerate(writers):
                if index != who:
                    writer.deliverRecorded(line)
        elif action == "direct":
            writers[who].deliverRecorded(line)
        elif action == "flush":
            writers[who].flushNow()
        else:
            clock.advance(0)
    clock.advance(0)
    for writer in writers:
        assert b"".join(writer.sends) == b"".join(writer.delivered)
        assert b"" not in writer.sends
