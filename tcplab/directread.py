"""
Read events of tcplab's own TCP connections, dispatched without Twisted's
per-event log context: the read half of tcplab's fast path (the write half
is L{tcplab.sending.writeDirectly}).

Twisted's epoll reactor hands every event of every descriptor to
C{log.callWithLogger}: it asks the descriptor for its log prefix, copies the
legacy logging context, pushes the copy on the context stack, calls
C{_doReadOrWrite} (which checks the descriptor, calls C{doRead}, which calls
C{_dataReceived}), and pops the context again.  For a server that answers
each read of a few hundred bytes with one C{send} -- echo, a chat line --
that is about a dozen Python calls per read around the two system calls
that do the work, and the biggest share of the server's CPU time after them.

L{DirectReadDispatch} replaces the epoll reactor's C{doIteration} with the
same loop in which a plain read event (C{EPOLLIN} alone) of a
L{DirectReadServer} -- a connection served through tcplab's connection
wrapper with the fast paths on -- calls its C{doRead} directly, and a plain
write event (C{EPOLLOUT} alone: a full send buffer draining) its
C{doWrite}.  What it skips, and why that is safe:

  - The legacy log context (C{twisted.python.log}'s C{system} key) while
    the event is handled.  Only the legacy C{log.msg}/C{log.err} read it;
    tcplab logs through L{twisted.logger.Logger}, whose events never
    consult it.  Whenever anything goes wrong -- an exception from the
    protocol, a lost or closed connection -- the rest is handed to Twisted's
    own code under C{callWithLogger}, exactly as the reactor would: the
    failure is logged by C{log.err} with the connection's log prefix, and
    the connection is dropped by the reactor's C{_disconnectSelectable}.
  - C{_doReadOrWrite}'s checks: any other event bits (hang-up, error, read
    and write at once) send the event down Twisted's own path; so does a
    write event for a connection whose socket is gone (C{fileno()} -1),
    and L{DirectReadServer.doRead} drops such a connection as Twisted does.

A L{DirectReadServer} also reads into one buffer shared by the process
(L{SharedReadBuffer}) rather than having C{recv} allocate its read size
anew for every read, which above 128 KiB costs three extra system calls.

Every other descriptor (listening ports, the waker, TLS, other protocols)
and every other reactor (poll, select, asyncio, a subclass that overrides
C{doPoll}, a reactor whose C{doIteration} someone else already replaced)
keep Twisted's dispatch unchanged: L{adoptDirectReads} only has a listening
port make L{DirectReadServer}s once the dispatch is installed, and installs
it only where L{REACTOR_INTERNALS} are what this module expects.  The
services' listeners adopt it when their settings turn the fast paths on
(L{tcplab.tap.listening.EndpointService}).

A client's connection can lend its reads from the same buffer instead
(L{tcplab.lentreads}).

This module imports C{twisted.internet.tcp}, so it is imported when a port
is open, not at start-up (see L{tcplab.tlsfree}).
"""

from __future__ import annotations

import errno
import select
import sys
from collections.abc import Callable
from errno import EWOULDBLOCK
from typing import Any

from twisted.internet import main
from twisted.internet.error import ConnectionDone, ConnectionFdescWentAway, ConnectionLost
from twisted.internet.tcp import Port, Server
from twisted.python import log
from twisted.python.failure import Failure

EPOLLIN = getattr(select, "EPOLLIN", 1)
"""A plain read event (epoll exists on Linux only; elsewhere nothing is installed)."""
EPOLLOUT = getattr(select, "EPOLLOUT", 4)
"""A plain write event."""

NO_FILE_DESCRIPTOR = ConnectionFdescWentAway("File descriptor lost")
"""Why a connection without a socket is dropped (Twisted's own C{_NO_FILEDESC})."""

REACTOR_INTERNALS = ("_poller", "_selectables", "_doReadOrWrite", "_disconnectSelectable")
"""
The private C{EPollReactor} attributes the dispatch uses.  setup.cfg pins
Twisted below its next major version; tests/test_directread.py has a canary
test for these and for L{SERVER_INTERNALS}.
"""

SERVER_INTERNALS = (
    "logstr",
    "repstr",
    "fileno",
    "sessionno",
    "hostname",
    "server",
    "_getLogPrefix",
)
"""
The C{tcp.Server} attributes L{DirectReadServer} works out instead of
storing (C{logstr}, C{repstr}, C{fileno}) or derives them from (and the
port's C{_realPortNumber}), besides the C{tcp.Connection} ones of
L{tcplab.sending.TWISTED_INTERNALS}.
"""


class SharedReadBuffer:
    """
    The one buffer every L{DirectReadServer} of the process reads into.

    C{socket.recv(n)} allocates C{n} bytes and shrinks them to what was
    read.  Above glibc's mmap threshold (128 KiB, and tcplab's bulk services
    read 256 KiB at a time: L{tcplab.sending.BULK_READ_SIZE}) that is an
    C{mmap}, an C{mremap} and later a C{munmap} for every read, however
    small: three system calls and a page fault next to the one C{recv}
    (seen with C{strace -c} on a loaded echo server).  Reading into one
    warm buffer and copying out what arrived costs a C{memcpy} of the bytes
    read instead.  Reads are never nested (the bytes are copied out before
    any protocol runs), so one buffer serves every connection.
    """

    def __init__(self) -> None:
        self.view = memoryview(bytearray(0))
        """The buffer (grown to the largest read size asked for)."""

    def grow(self, size: int) -> memoryview:
        """Make the buffer at least C{size} bytes; the new view."""
        if len(self.view) < size:
            self.view = memoryview(bytearray(size))
        return self.view


READ_BUFFER = SharedReadBuffer()


class _Derived:
    """
    A per-connection string of C{tcp.Server} worked out when asked for:
    C{Server.__init__} assigns it (the assignment is dropped), the
    connection's log prefix or C{repr} reads it.
    """

    def __init__(self, derive: Callable[[Any], str]) -> None:
        self.derive = derive

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else self.derive(instance)

    def __set__(self, instance: Any, value: object) -> None:
        """Keep nothing: the value is derived again when needed."""


class _SocketFileno:
    """
    C{tcp.Connection.fileno}, which Twisted sets to the socket's bound
    C{fileno} method (an object per connection) and deletes when the socket
    goes: here the socket's descriptor, or -1 once there is no socket.
    """

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        socket = getattr(instance, "socket", None)
        return socket.fileno if socket is not None else _noFileno

    def __set__(self, instance: Any, value: object) -> None:
        """Keep nothing: the descriptor comes from the socket."""

    def __delete__(self, instance: Any) -> None:
        """Nothing kept, nothing to delete."""


def _noFileno() -> int:
    return -1


def _logPrefix(server: Any) -> str:
    """What C{tcp.Server.__init__} would have stored as C{logstr}."""
    protocol = getattr(server, "protocol", None)
    prefix = server._getLogPrefix(protocol) if protocol is not None else "?"
    return f"{prefix},{server.sessionno},{server.hostname}"


def _description(server: Any) -> str:
    """What C{tcp.Server.__init__} would have stored as C{repstr}."""
    protocol = getattr(server, "protocol", None)
    name = protocol.__class__.__name__ if protocol is not None else "?"
    return f"<{name} #{server.sessionno} on {server.server._realPortNumber}>"


class SharedBufferReads:
    """
    C{tcp.Connection.doRead} reading into the L{SharedReadBuffer}, with its
    C{_dataReceived} call inlined: mixed into a C{tcp.Server} or
    C{tcp.Client} subclass, ahead of it.  The protocol gets C{bytes}, or,
    if the class L{lendsViews}, a C{memoryview} of the buffer valid only
    until its C{dataReceived} returns (L{tcplab.lentreads}).
    """

    lendsViews = False
    """Whether the protocol is handed views of the buffer instead of C{bytes}."""

    socket: Any
    bufferSize: int
    protocol: Any

    def doRead(self) -> ConnectionLost | ConnectionDone | None:
        """Read what there is into the shared buffer and hand it to the protocol."""
        socket = getattr(self, "socket", None)
        if socket is None:
            # What the reactor's own check (fileno() == -1) answers.
            return NO_FILE_DESCRIPTOR
        size = self.bufferSize
        view = READ_BUFFER.view
        if len(view) < size:
            view = READ_BUFFER.grow(size)
        try:
            count = socket.recv_into(view, size)
        except OSError as se:
            if se.args[0] == EWOULDBLOCK:
                return None
            return main.CONNECTION_LOST
        if not count:
            return main.CONNECTION_DONE
        chunk = view[:count]
        self.protocol.dataReceived(chunk if self.lendsViews else chunk.tobytes())
        return None


class DirectReadServer(SharedBufferReads, Server):  # type: ignore[misc]  # doRead: see the mixin
    """
    A TCP server connection whose plain read events the
    L{DirectReadDispatch} hands straight to L{doRead}, which reads into the
    L{SharedReadBuffer}.

    It is also lighter: C{tcp.Server} keeps its log prefix and C{repr} as
    strings and the socket's bound C{fileno} method, about 250 bytes per
    connection that an idle service holds thousands of times; here they are
    worked out from the connection's own fields when used (the log prefix
    only when something is logged through Twisted's legacy log, which the
    dispatch no longer does for every read).
    """

    logstr = _Derived(_logPrefix)
    repstr = _Derived(_description)
    fileno = _SocketFileno()


class DirectReadDispatch:
    """
    The epoll reactor's C{doIteration} with the read events of
    L{DirectReadServer}s dispatched directly (see the module docstring).

    @ivar reactor: the reactor this dispatch polls for.
    @ivar original: the reactor's own C{doIteration}, which this replaces.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.original = reactor.doIteration

    def doIteration(self, timeout: float | None) -> None:
        """
        Poll once and handle every event (Twisted's C{EPollReactor.doPoll});
        the reactor's C{doIteration} is this bound method (a bound method is
        cheaper to call than an object's C{__call__}).
        """
        reactor = self.reactor
        if timeout is None:
            timeout = -1
        selectables = reactor._selectables
        try:
            events = reactor._poller.poll(timeout, len(selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        doReadOrWrite = reactor._doReadOrWrite
        callWithLogger = log.callWithLogger
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if type(selectable) is not DirectReadServer:
                callWithLogger(selectable, doReadOrWrite, selectable, fd, event)
                continue
            if event == EPOLLIN:
                handle, inRead = selectable.doRead, True
            elif event == EPOLLOUT and getattr(selectable, "socket", None) is not None:
                handle, inRead = selectable.doWrite, False
            else:
                callWithLogger(selectable, doReadOrWrite, selectable, fd, event)
                continue
            why: BaseException | None
            try:
                why = handle()
            except BaseException:
                why = sys.exc_info()[1]
                # As in _doReadOrWrite: a handler that raised was not "in read".
                inRead = False
                callWithLogger(selectable, log.err, Failure())
            if why:
                callWithLogger(selectable, reactor._disconnectSelectable, selectable, why, inRead)


def installDirectRead(reactor: Any) -> bool:
    """
    Give C{reactor} the L{DirectReadDispatch}, once; whether it has it.

    Only Twisted's own C{EPollReactor} (not a subclass that changes its
    polling) with the internals this module expects gets it, and only if
    nobody else replaced its C{doIteration} already.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:
        return False
    # Not reactor.__dict__: on CPython 3.11 that turns the reactor's inline
    # attribute values into a dict, and every reactor attribute lookup (a
    # dozen per iteration) gets slower: ~200 ns per iteration, measured.
    current = getattr(reactor, "doIteration", None)
    dispatch = getattr(current, "__self__", None)
    if isinstance(dispatch, DirectReadDispatch):
        return dispatch.reactor is reactor
    cls = type(reactor)
    if not (
        isinstance(reactor, EPollReactor)
        and getattr(current, "__func__", None) is EPollReactor.doPoll
        and cls.doIteration is EPollReactor.doPoll
        and cls.doPoll is EPollReactor.doPoll
        and cls._doReadOrWrite is EPollReactor._doReadOrWrite
        and all(hasattr(reactor, name) for name in REACTOR_INTERNALS)
        and isinstance(reactor._selectables, dict)
    ):
        return False
    reactor.doIteration = DirectReadDispatch(reactor).doIteration  # type: ignore[method-assign]
    return True


def adoptDirectReads(port: Any) -> bool:
    """
    Have the connections C{port} accepts from now on be L{DirectReadServer}s,
    if it can: C{port} is Twisted's TCP port making plain C{tcp.Server}s
    (not TLS, not UNIX, not a subclass with a transport of its own) and its
    reactor accepts the L{DirectReadDispatch}.  Whether it now does.
    """
    if not isinstance(port, Port) or port.transport is not Server:
        return False
    if not installDirectRead(port.reactor):
        return False
    port.transport = DirectReadServer
    return True
