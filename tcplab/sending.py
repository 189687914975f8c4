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
together.  L{FlushQueue} runs such flushes once, right after the reactor
iteration that queued them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.logger import Logger

_QUEUE_STATE = ("_tempDataBuffer", "dataBuffer", "offset", "_writeDisconnected")
"""The transport attributes the fast path reads to know nothing is queued."""


def canWriteDirectly(transport: Any) -> bool:
    """Whether L{writeDirectly} can take the fast path on C{transport}."""
    return isinstance(transport, tcp.Connection) and all(
        hasattr(transport, name) for name in _QUEUE_STATE
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
    if isinstance(transport, tcp.Connection):
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


class FlushQueue:
    """
    Run flush functions once each, right after the current reactor
    iteration (one C{callLater(0)} for all of them), in the order they were
    scheduled.

    A protocol that receives many small writes during one iteration buffers
    them, schedules its flush with the first, and sends them all as one
    write: one system call instead of one per message, and no C{epoll_ctl}
    when the socket takes it all.
    """

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.due: list[Callable[[], None]] = []
        self.call: Any = None

    def schedule(self, flush: Callable[[], None]) -> None:
        """Call C{flush} after this iteration (schedule it once per batch)."""
        self.due.append(flush)
        if self.call is None:
            self.call = self.reactor.callLater(0, self.run)

    def run(self) -> None:
        """Call everything due; one failing flush does not stop the others."""
        self.call = None
        due, self.due = self.due, []
        for flush in due:
            try:
                flush()
            except Exception:
                self.log.failure("flushing output failed")
