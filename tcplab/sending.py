"""
Send on the spot when nothing is queued: the write path of every tcplab server.

Twisted's TCP transport queues each C{write()} and sends it on a later
reactor iteration: it registers the socket for writability (one
C{epoll_ctl}), waits for the next poll, sends, and unregisters (another
C{epoll_ctl}).  For a server that answers each read with a write — echo, a
chat fan-out writing one line to a thousand peers — that detour costs more
than the work itself.  asyncio avoids it by trying C{send()} at once.

L{writeDirectly} does the same for a plain TCP (or UNIX) transport: when the
transport has nothing queued, the data goes straight to the socket, and
whatever the kernel does not take is handed to C{transport.write()}, so the
transport's own buffering, backpressure (C{pauseProducing} when full) and
error handling apply unchanged from there on.  Any other transport (TLS, the
in-memory transports of tests) simply gets C{transport.write}.

Sending at once suits a protocol that answers each read with one write.  A
fan-out — one chat line to a thousand clients, several lines per reactor
iteration — wants the opposite: gather each client's lines and send them
together, and send a line heard by many as one buffer shared by all:
L{WriteBatch}.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

TWISTED_INTERNALS = ("_tempDataBuffer", "dataBuffer", "offset", "_writeDisconnected", "socket")
"""
The private C{tcp.Connection} attributes the fast path reads (to know nothing
is queued, and to send).  setup.cfg pins Twisted below its next major
version while this depends on them; tests/test_sending.py has a canary test.
"""


def isTCPConnection(transport: Any) -> bool:
    """
    Whether C{transport} is Twisted's TCP connection.  Importing
    C{twisted.internet.tcp} here, when a connection exists, rather than at
    start-up leaves the service free to start without pyOpenSSL, which that
    module loads (see L{tcplab.tlsfree}).
    """
    from twisted.internet.tcp import Connection

    return isinstance(transport, Connection)


def canWriteDirectly(transport: Any) -> bool:
    """Whether L{writeDirectly} can take the fast path on C{transport}."""
    return isTCPConnection(transport) and all(
        hasattr(transport, name) for name in TWISTED_INTERNALS
    )


def writeDirectly(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport} (one that L{canWriteDirectly}): straight
    to the socket when its queue is empty, the rest through
    C{transport.write}.
    """
    if (
        transport._tempDataBuffer
        or transport.offset != len(transport.dataBuffer)
        or transport.disconnecting
        or transport._writeDisconnected
        or not transport.connected
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        # A reset or broken pipe: let the transport's own write path meet
        # the error and close the connection the usual way.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


BULK_READ_SIZE = 256 * 1024
"""The read size of the services that move bulk data (echo, files)."""


def setReadSize(transport: Any, size: int) -> None:
    """
    Make a TCP C{transport} read up to C{size} bytes per C{recv}.

    Twisted reads 64 KiB at a time (C{bufferSize}), the same figure at which
    the transport pauses its producer for a full write buffer.  A bulk echo
    reads, and so writes, in quarter-megabyte steps with a fraction of the
    reactor iterations (asyncio reads 256 KiB too); the backpressure bound
    per connection grows with it, still a constant.
    """
    if isTCPConnection(transport):
        transport.bufferSize = size


def setNoDelay(transport: Any) -> None:
    """
    Turn off Nagle's algorithm on C{transport} when it has one to turn off.

    The services answer as soon as they can; with Nagle on, a small reply
    following another unacknowledged one waits for the peer's delayed ACK.
    """
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setTcpNoDelay is None:
        return
    # UNIX sockets and TLS over something other than TCP have no Nagle.
    with contextlib.suppress(OSError, NotImplementedError, AttributeError):
        setTcpNoDelay(True)


class OutputSink(Protocol):
    """Where a L{WriteBatch} sends a connection's gathered output (the connection's protocol)."""

    def send(self, data: bytes) -> None:
        """Write C{data} out now."""


class BatchFlusher(Protocol):
    """Something that hands its gathered output to a L{WriteBatch} when it runs (a chat room)."""

    def flush(self) -> None:
        """Deliver everything gathered since the last flush (through L{WriteBatch.deliver})."""


class WriteBatch:
    """
    The output of many connections for one reactor iteration, sent after
    it as one write per connection.

    A connection's lines (L{deliver}) wait in the batch only while the
    connection has output pending, so an idle connection costs the batch
    nothing; a connection with one buffer pending (the common case: its
    room's share) keeps just that buffer, no list, so a round of a thousand
    members allocates no container per member (fewer garbage-collector
    passes, which show up in the tail latency).

    A chat room's broadcasts do not come through here line by line: the
    room records each line once and, when the batch runs, hands every
    member its share as one buffer (L{addFlusher}) -- one buffer shared by
    every member that heard the same lines.  After the flushers, each
    connection with output gets one C{send}.
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime) -> None:
        self.reactor = reactor
        self.pending: dict[OutputSink, bytes | list[bytes]] = {}
        """
        The connections with output to send after this iteration, and that
        output: one buffer, or a list of them once there are several.
        """
        self.flushers: list[BatchFlusher] = []
        """What hands over its output when the batch runs, before the sends."""
        self.call: IDelayedCall | None = None

    def deliver(self, sink: OutputSink, data: bytes) -> None:
        """Send C{data} to C{sink} after this reactor iteration, with the rest of its output."""
        pending = self.pending
        output = pending.get(sink)
        if output is None:
            pending[sink] = data
            if self.call is None:
                self.call = self.reactor.callLater(0, self.run)
        elif isinstance(output, list):
            output.append(data)
        else:
            pending[sink] = [output, data]

    def addFlusher(self, flusher: BatchFlusher) -> None:
        """Have C{flusher} hand over its output when the batch runs (once per call)."""
        self.flushers.append(flusher)
        if self.call is None:
            self.call = self.reactor.callLater(0, self.run)

    def run(self) -> None:
        """
        Let the flushers deliver, then send every connection its output.  All
        of it is taken first, so anything delivered while sending (a
        disconnect's notice, say) goes to the next batch.
        """
        flushers, self.flushers = self.flushers, []
        for flusher in flushers:
            try:
                flusher.flush()
            except Exception:
                self.log.failure("handing over batched output failed")
        self.call = None
        if self.flushers:  # one recorded more while flushing: it runs next time
            self.call = self.reactor.callLater(0, self.run)
        pending, self.pending = self.pending, {}
        for sink, output in pending.items():
            try:
                sink.send(b"".join(output) if isinstance(output, list) else output)
            except Exception:
                self.log.failure("sending batched output failed")

    def flushNow(self, sink: OutputSink) -> None:
        """Send C{sink}'s pending output at once (before closing, say)."""
        output = self.pending.pop(sink, None)
        if output:
            sink.send(b"".join(output) if isinstance(output, list) else output)

    def discard(self, sink: OutputSink) -> None:
        """Forget C{sink}'s pending output (the connection is gone)."""
        self.pending.pop(sink, None)
