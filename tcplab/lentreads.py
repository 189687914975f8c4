"""
A client connection that lends its protocol each read from the process's
shared read buffer (L{tcplab.directread.READ_BUFFER}), for bulk downloads:
each byte moves from the socket into the buffer and from there straight to
the file and the hash, with no C{bytes} object allocated per read.

This module imports C{twisted.internet.tcp}, so it is imported once a
connection is made, not at start-up (see L{tcplab.tlsfree}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Client

from tcplab.directread import SharedBufferReads

CLIENT_INTERNALS = ("socket", "bufferSize", "protocol", "doRead")
"""
The C{tcp.Client} attributes L{LentReadClient} relies on: it replaces
C{doRead} (Twisted's reads C{socket.recv(bufferSize)} and calls
C{_dataReceived}) and reads the others.  tests/test_lentreads.py has a
canary test for them.
"""


class LentReadClient(SharedBufferReads, Client):  # type: ignore[misc]  # doRead: see the mixin
    """
    A TCP client connection that lends its protocol each read: a
    C{memoryview} of the L{tcplab.directread.SharedReadBuffer}, valid only
    until the protocol's C{dataReceived} returns (L{lendReads} makes one).

    C{tcp.Client.doRead} calls C{socket.recv(bufferSize)}, which allocates
    a fresh C{bytes} of the read size for every read.  At the 256 KiB a
    bulk download reads (L{tcplab.sending.BULK_READ_SIZE}), above glibc's
    mmap threshold, that is a new mapping per read: C{mmap}, later
    C{munmap}, and up to 64 page faults with the kernel zeroing every page
    (C{strace -c} of C{tcplab get} of 256 MiB: 634 C{mmap}, 447 C{munmap}
    for 1,027 reads).  Here the kernel copies into one warm buffer and
    nothing is allocated; nothing else changes: the same read size, the
    same end-of-file and error results as Twisted's C{doRead}, and the
    reactor's own dispatch (this connection is not a L{DirectReadServer}).
    """

    lendsViews = True


def lendReads(transport: Any) -> bool:
    """
    Have the TCP connection under C{transport} lend its reads (a
    L{LentReadClient}): from now on its protocol gets C{memoryview}s valid
    only during C{dataReceived}.  Whether it does.

    Only the protocol that asks may call this, and only if it uses each
    read before C{dataReceived} returns and keeps a copy of anything it
    needs later (as C{io} sinks and C{hashlib} do with what they are given).
    C{transport} is Twisted's plain C{tcp.Client} (a server connection, TLS
    or a test's transport is left alone), or tcplab's
    L{tcplab.observe.ObservedProtocol} wrapping one, which passes reads on
    untouched -- unless it traces them (C{--trace}), which then keeps
    Twisted's reads.
    """
    from tcplab.observe import ObservedProtocol

    if type(transport) is ObservedProtocol:
        if transport.tracer is not None:
            return False
        transport = transport.transport
    if type(transport) is LentReadClient:
        return True
    if type(transport) is not Client or not all(
        hasattr(transport, name) for name in CLIENT_INTERNALS
    ):
        return False
    # The class changes, nothing else: a subclass that only overrides doRead.
    transport.__class__ = LentReadClient
    return True
