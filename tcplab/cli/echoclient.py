"""
The protocol behind ``tcplab echo``: print everything the server sends,
count replies (by line ends, or by reads for servers without framing), and
bound what is read once our own input has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTime,
    ISSLTransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.cli.stdio import RelayedClient, shutdownSending

TLS_QUIET = 1.0
"""Over TLS (no half-close), seconds of silence after our input ended before we close."""


class ConnectionClosed(Exception):
    """The server closed the connection while we were waiting for a reply."""


@dataclass
class ReplyWait:
    """
    One wait for a reply: until C{lines} line ends (or C{chunks} reads) have
    arrived in all, counting from the start of the connection.

    @ivar chunksAtStart: the reads seen when the wait began; any read after
        it is the start of a reply.
    """

    lines: int | None
    chunks: int | None
    chunksAtStart: int
    deferred: defer.Deferred[None] = field(init=False)


@implementer(IHalfCloseableProtocol)
class EchoClientProtocol(RelayedClient):
    """
    Show everything the server sends and let the command wait for replies.

    Replies are counted by line ends (or by reads, for raw servers);
    L{waitForReply} fires when one has arrived, L{replyStarted} tells
    whether anything arrived since a wait began, and L{closed} fires when
    the connection is gone.  After L{finishSending}, at most a bounded
    number of bytes more is read (see L{drainBudget}).

    @ivar drainBudget: bytes still allowed after our EOF (L{None}: before it).
    @ivar cutOff: the server went past the budget and was hung up on.
    """

    def __init__(self, output: Callable[[bytes], None], clock: IReactorTime) -> None:
        self.output = output
        self.clock = clock
        self.linesSeen = 0
        self.chunksSeen = 0
        self.bytesReceived = 0
        self.drainBudget: int | None = None
        self.cutOff = False
        self.idleTimeout: float | None = None
        self._idleCall: IDelayedCall | None = None
        self.lost = False
        """The connection is gone (set first thing in L{connectionLost})."""
        self.closeOnceReceived: int | None = None
        """Over TLS, after our input ended: close once this many bytes came back."""
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waits: list[ReplyWait] = []

    def dataReceived(self, data: bytes) -> None:
        """Print the chunk (within the budget after our EOF); count it."""
        if self.cutOff:
            return
        if self.drainBudget is not None:
            if len(data) > self.drainBudget:
                data = data[: self.drainBudget]
                self.cutOff = True
            self.drainBudget -= len(data)
        if data:
            self.output(data)
        self.chunksSeen += 1
        self.linesSeen += data.count(b"\n")
        self.bytesReceived += len(data)
        self._wake()
        answered = self.closeOnceReceived is not None and (
            self.bytesReceived >= self.closeOnceReceived
        )
        if answered or self.cutOff:
            self.hangUp()
        elif self._idleCall is not None and self._idleCall.active() and self.idleTimeout:
            self._idleCall.reset(self.idleTimeout)

    def _wake(self) -> None:
        """Fire every wait whose reply is complete."""
        due = [w for w in self._waits if self._complete(w)]
        self._waits = [w for w in self._waits if not self._complete(w)]
        for wait in due:
            wait.deferred.callback(None)

    def _complete(self, wait: ReplyWait) -> bool:
        if wait.lines is not None:
            return self.linesSeen >= wait.lines
        return wait.chunks is not None and self.chunksSeen >= wait.chunks

    def waitForReply(self, raw: bool, first: bool = False) -> defer.Deferred[None]:
        """
        Fire when the next reply has arrived: one more line end, or with
        C{raw} one more read.  With C{first}, the first one of the
        connection (a greeting may already be here).

        If the connection closes first, the wait still succeeds when part
        of a reply had arrived; otherwise it fails with L{ConnectionClosed}.
        """
        start = 0 if first else (self.chunksSeen if raw else self.linesSeen)
        wait = ReplyWait(
            lines=None if raw else start + 1,
            chunks=start + 1 if raw else None,
            chunksAtStart=0 if first else self.chunksSeen,
        )

        def cancel(d: defer.Deferred[None]) -> None:
            if wait in self._waits:
                self._waits.remove(wait)

        wait.deferred = defer.Deferred(cancel)
        if self._complete(wait):
            wait.deferred.callback(None)
        elif self.lost:
            self._endWait(wait)
        else:
            self._waits.append(wait)
        return wait.deferred

    def replyStarted(self, since: int) -> bool:
        """Whether anything arrived after C{since} reads."""
        return self.chunksSeen > since

    def _endWait(self, wait: ReplyWait) -> None:
        """The connection is gone: a reply that had started counts."""
        if self.replyStarted(wait.chunksAtStart):
            wait.deferred.callback(None)
        else:
            wait.deferred.errback(ConnectionClosed())

    def finishSending(
        self, sent: int, limit: int, idleTimeout: float | None, halfClose: bool = True
    ) -> None:
        """
        Our input is over: read at most what the server still owes (C{sent}
        minus what came back) plus C{limit} bytes; with C{idleTimeout}, hang
        up once the server is quiet that long.  With C{halfClose}, shut down
        our sending side first (the server sees EOF); without, the server
        sees nothing until we close, as with the tutorials' clients.

        TLS has no half-close (a TCP FIN under it ends the whole session,
        dropping what the server had still to send), so over TLS the client
        closes once the server has sent back as much as it was sent, or has
        been quiet for C{idleTimeout} (default L{TLS_QUIET}) seconds.
        """
        self.drainBudget = max(0, sent - self.bytesReceived) + limit
        if self.lost:
            return
        if halfClose and ISSLTransport.providedBy(self.transport):
            self.closeOnceReceived = sent
            if idleTimeout is None:
                idleTimeout = TLS_QUIET
            if self.bytesReceived >= sent:
                self.hangUp()
        elif halfClose:
            shutdownSending(self.transport)
        if idleTimeout is not None:
            self.idleTimeout = idleTimeout
            self._idleCall = self.clock.callLater(idleTimeout, self.hangUp)

    def hangUp(self) -> None:
        """
        Close the connection.  Stdin stops being its producer first: over
        TLS, Twisted holds the close (close_notify) back while one is
        registered.
        """
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """The server sent EOF: nothing more will come, so close."""
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our half-close went through; keep reading."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Wake everything that waits."""
        self.lost = True
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.cancel()
        waits, self._waits = self._waits, []
        for wait in waits:
            self._endWait(wait)
        self.closed.callback(None)
