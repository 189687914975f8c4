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
L{WriteBatch} and L{BatchedWriter}.
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
    """Where a L{BatchedWriter} sends its gathered output (the connection's protocol)."""

    def send(self, data: bytes) -> None:
        """Write C{data} out now."""


class WriteBatch:
    """
    The output of many connections for one reactor iteration, sent after
    it as one write per connection (see L{BatchedWriter}).

    A chat room's broadcast hands the same line to every member.  Keeping a
    list per member would cost memory in proportion to members times lines
    while the iteration runs, and joining each member's lines a copy per
    member.  Instead every line delivered during the iteration is appended
    once to L{lines}, and a member whose pending output is a contiguous run
    of it records just where the run starts and ends.  Members with the
    same run -- everyone who heard the same broadcasts -- share one joined
    buffer.  A member whose output is not such a run (it was left out of a
    broadcast, or heard something only it was sent) keeps its own list.
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime) -> None:
        self.reactor = reactor
        self.lines: list[bytes] = []
        """Everything delivered during this iteration, each line once."""
        self.due: list[BatchedWriter] = []
        """The writers with output to send after this iteration."""
        self.call: IDelayedCall | None = None

    def add(self, data: bytes) -> int:
        """Record C{data} (once, if delivered to several in a row); its index."""
        lines = self.lines
        if not lines or lines[-1] is not data:
            lines.append(data)
        return len(lines) - 1

    def schedule(self, writer: BatchedWriter) -> None:
        """Have C{writer} send its output after this iteration."""
        self.due.append(writer)
        if self.call is None:
            self.call = self.reactor.callLater(0, self.run)

    def run(self) -> None:
        """
        Send every due writer its output.  All of it is taken first, so
        anything delivered while sending (a disconnect's notice, say) goes
        to the next batch, not into this one's bookkeeping.
        """
        self.call = None
        due, self.due = self.due, []
        lines, self.lines = self.lines, []
        shared: dict[tuple[int, int], bytes] = {}
        outgoing = [(writer.sink, writer.takeOutput(lines, shared)) for writer in due]
        for sink, data in outgoing:
            if data:
                try:
                    sink.send(data)
                except Exception:
                    self.log.failure("sending batched output failed")


class BatchedWriter:
    """
    The output of one connection that is delivered many small writes per
    reactor iteration (a chat fan-out): L{deliver} gathers them in a shared
    L{WriteBatch}, and after the iteration the connection's C{send} gets
    them as one buffer -- one system call instead of one per line.

    The protocol owns one (made when it connects) and is its sink: it says
    how to send.  (A sink object, not a bound method: that would cost every
    idle connection another object.)
    """

    __slots__ = ("_ownOutput", "_runEnd", "_runStart", "batch", "sink")  # one per connection

    def __init__(self, batch: WriteBatch, sink: OutputSink) -> None:
        self.batch = batch
        self.sink = sink
        self._runStart = -1
        """Where this writer's pending run starts in the batch's lines (or -1)."""
        self._runEnd = -1
        """Where it ends (exclusive)."""
        self._ownOutput: list[bytes] | None = None
        """Pending output that is not a single run of the batch's lines."""

    def deliver(self, data: bytes) -> None:
        """Send C{data} after this reactor iteration, with everything else due then."""
        own = self._ownOutput
        if own is not None:
            own.append(data)
            return
        # WriteBatch.add inlined: this runs once per member per line, and a
        # call is a good part of its cost.
        batch = self.batch
        lines = batch.lines
        if not lines or lines[-1] is not data:
            lines.append(data)
        index = len(lines) - 1
        start = self._runStart
        if start < 0:
            self._runStart, self._runEnd = index, index + 1
            batch.schedule(self)
        elif self._runEnd == index:
            self._runEnd = index + 1
        else:
            self._ownOutput = [*lines[start : self._runEnd], data]
            self._runStart = self._runEnd = -1

    def takeOutput(self, lines: list[bytes], shared: dict[tuple[int, int], bytes]) -> bytes:
        """
        Take this writer's pending output as one buffer (b"" if none);
        C{shared} holds the runs already joined for other writers.
        """
        own = self._ownOutput
        if own is not None:
            self._ownOutput = None
            return b"".join(own)
        start = self._runStart
        if start < 0:
            return b""
        end = self._runEnd
        self._runStart = self._runEnd = -1
        if end - start == 1:
            return lines[start]
        run = (start, end)
        data = shared.get(run)
        if data is None:
            data = shared[run] = b"".join(lines[start:end])
        return data

    def flushNow(self) -> None:
        """Send the pending output at once (before closing, say)."""
        data = self.takeOutput(self.batch.lines, {})
        if data:
            self.sink.send(data)

    def discard(self) -> None:
        """Forget the pending output (the connection is gone)."""
        self._ownOutput = None
        self._runStart = self._runEnd = -1
