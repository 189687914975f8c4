"""
Line framing that survives hostile input.

L{LineSplitter} is a pure parser: bytes in, complete lines out.  It accepts
``\\n``, ``\\r\\n`` and a bare ``\\r`` as line ends (telnet, nc and old Mac
clients all work), never buffers more than its limit, and reports an
over-long line once instead of dropping the connection -- Twisted's
C{LineReceiver} does the latter by default, and also throws away every line
that followed in the same chunk.

L{LineProtocol} is the thin Twisted adapter over it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from twisted.internet.protocol import Protocol
from zope.interface import implementer

from tcplab.interfaces import IMessageProgress

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Line:
    """A complete line, without its line end."""

    data: bytes


@dataclass(frozen=True)
class LineTooLong:
    """A line longer than the limit was skipped; C{size} bytes of it were seen."""

    size: int


class LineSplitter:
    """
    Split a byte stream into lines of at most C{maxLength} bytes.

    An over-long line is reported once as L{LineTooLong} and skipped up to
    its line end; lines after it are unaffected.  At most C{maxLength} bytes
    (plus one chunk in flight) are ever buffered.
    """

    def __init__(self, maxLength: int = 16384) -> None:
        self.maxLength = maxLength
        self._buffer = b""
        self._skipping = 0
        """Bytes of an over-long line dropped so far (0: not skipping)."""
        self._afterCR = False
        """The last line ended in a bare CR: a LF that follows belongs to it."""
        self.completed = 0
        """Lines (and skipped over-long lines) completed so far."""
        self._ready: deque[Line | LineTooLong] = deque()
        """Events completed but not yet taken by a caller of L{feed}."""

    def feed(self, data: bytes) -> Iterator[Line | LineTooLong]:
        """
        Take the next chunk and yield every event not yet taken: those it
        completes, after any that an earlier caller stopped before taking.

        The chunk is parsed when C{feed} is called, not when the iterator is
        first advanced, and each event leaves the queue only as it is taken:
        a consumer that stops early (or never starts) loses nothing, the
        events it left come first from the next call.
        """
        self._parse(data)
        return self._drain()

    def _drain(self) -> Iterator[Line | LineTooLong]:
        """Hand out the queued events, each removed as it is taken."""
        ready = self._ready
        while ready:
            yield ready.popleft()

    def _parse(self, data: bytes) -> None:
        """Split C{data} onto the buffer, queueing each completed event."""
        if self._afterCR and data:
            self._afterCR = False
            if data[:1] == b"\n":
                data = data[1:]
        pieces = _LINE_END.split(self._buffer + data) if self._buffer else _LINE_END.split(data)
        rest = pieces.pop()
        self.completed += len(pieces)
        ready = self._ready
        for piece in pieces:
            if self._skipping:
                ready.append(LineTooLong(self._skipping + len(piece)))
                self._skipping = 0
            elif len(piece) > self.maxLength:
                ready.append(LineTooLong(len(piece)))
            else:
                ready.append(Line(piece))
        if pieces and data.endswith(b"\r"):
            self._afterCR = True
        if self._skipping:
            self._skipping += len(rest)
            rest = b""
        elif len(rest) > self.maxLength:
            self._skipping = len(rest)
            rest = b""
        self._buffer = rest

    @property
    def inLine(self) -> bool:
        """Part of a line (kept or being skipped) has arrived without its end."""
        return bool(self._buffer or self._skipping)

    @property
    def pending(self) -> bytes:
        """The start of a line not yet ended (empty while skipping)."""
        return self._buffer


@implementer(IMessageProgress)
class LineProtocol(Protocol):
    """
    A protocol that receives lines; override L{lineReceived}.

    @cvar maxLineLength: the longest line accepted, in bytes.
    @cvar delimiter: what L{sendLine} ends lines with.
    """

    maxLineLength = 16384
    delimiter = b"\r\n"
    splitter: LineSplitter | None = None

    def dataReceived(self, data: bytes) -> None:
        """Split the stream and dispatch each line (stops once disconnecting)."""
        if self.splitter is None:
            self.splitter = LineSplitter(self.maxLineLength)
        for event in self.splitter.feed(data):
            if self.transport is None or getattr(self.transport, "disconnecting", False):
                return
            if isinstance(event, Line):
                self.lineReceived(event.data)
            else:
                self.lineTooLong(event.size)

    def lineReceived(self, line: bytes) -> None:
        """Handle one line (without its line end)."""
        raise NotImplementedError

    def lineTooLong(self, size: int) -> None:
        """An over-long line was skipped.  The default ignores it quietly."""

    def messageInProgress(self) -> int | None:
        """
        For the slow-drip timeout: L{None} unless a line has started and not
        ended, else the number of lines completed so far.
        """
        splitter = self.splitter
        return splitter.completed if splitter is not None and splitter.inLine else None

    def sendLine(self, line: bytes) -> None:
        """Send C{line} followed by L{delimiter}."""
        assert self.transport is not None
        self.transport.write(line + self.delimiter)
