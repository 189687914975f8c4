"""Streaming a file as data frames, with backpressure: shared by both ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.files import wire
from tcplab.files.storage import Hasher
from tcplab.transports import WritingTransport


@implementer(IPushProducer)
class FrameSender:
    """
    Stream a file (from its current position) as data frames, hashing it,
    as fast as the transport takes them: a push producer, paused by the
    transport whenever its buffer is full, so memory stays flat.

    @ivar limit: send at most this many bytes (L{None}: to the end).
    @ivar transform: turns a chunk into the bytes written (a data frame by
        default; the identity for a raw byte stream).
    @ivar progress: called with the size of each chunk sent.
    @ivar closeFile: close the file when done (the server owns its files;
        the client's caller owns theirs).
    """

    def __init__(
        self,
        file: BinaryIO,
        transport: WritingTransport,
        hasher: Hasher | None,
        finished: Callable[[Failure | None], None],
        limit: int | None = None,
        progress: Callable[[int], object] | None = None,
        closeFile: bool = True,
        transform: Callable[[bytes], bytes] = wire.dataFrame,
    ) -> None:
        self.file = file
        self.transport = transport
        self.hasher = hasher
        self.finished = finished
        self.limit = limit
        self.progress = progress
        self.closeFile = closeFile
        self.transform = transform
        self.paused = False
        self.done = False
        self.sent = 0

    def start(self) -> None:
        """Register with the transport and start sending."""
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        """Send chunks until the transport pauses us or the file ends."""
        self.paused = False
        read, write, transform = self.file.read, self.transport.write, self.transform
        update = self.hasher.update if self.hasher is not None else None
        while not self.paused and not self.done:
            size = wire.CHUNK_SIZE
            if self.limit is not None:
                size = min(size, self.limit - self.sent)
            try:
                chunk = read(size) if size else b""
            except OSError:
                self._finish(Failure())
                return
            if not chunk:
                self._finish(None)
                return
            if update is not None:
                update(chunk)
            write(transform(chunk))
            self.sent += len(chunk)
            if self.progress is not None:
                self.progress(len(chunk))

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self.paused = True

    def stopProducing(self) -> None:
        """The connection went away mid-transfer."""
        if not self.done:
            # The transport drops its producer itself when the connection goes.
            self._finish(
                Failure(ConnectionError("connection lost mid-transfer")), unregister=False
            )

    def abort(self, why: Exception) -> None:
        """Stop sending (the peer answered early, with an error)."""
        if not self.done:
            self._finish(Failure(why))

    def _finish(self, failure: Failure | None, unregister: bool = True) -> None:
        self.done = True
        if self.closeFile:
            self.file.close()
        if unregister:
            self.transport.unregisterProducer()
        self.finished(failure)
