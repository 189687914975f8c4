"""
Make the wire visible: one line per chunk read or written.

The socket tutorials assume that one ``recv(1024)`` is one message.  A
L{WireTracer} prints what really crosses the connection -- every chunk with
its direction, its size and the time since the connection opened, and with
C{hexdump} a hex/ASCII dump of its bytes -- so that two sends arriving as one
chunk, or one send arriving as many, can be seen.

This module only formats; where the lines go (the twistd log, the client's
stderr) is the caller's choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

RECEIVED = "<"
"""Direction marker for bytes read from the peer."""

SENT = ">"
"""Direction marker for bytes written to the peer."""

_PRINTABLE = bytes(range(0x20, 0x7F))
_ASCII_VIEW = bytes(b if b in _PRINTABLE else ord(".") for b in range(256))


def hexdump(data: bytes, marker: str = "", width: int = 16) -> Iterator[str]:
    """
    Yield the lines of a classic hex/ASCII dump of C{data}.

    Each line is C{marker}, the offset, C{width} bytes in hex and the same
    bytes as ASCII with non-printable ones shown as C{.}.
    """
    prefix = f"{marker} " if marker else ""
    for offset in range(0, len(data), width):
        row = data[offset : offset + width]
        hexPart = " ".join(f"{b:02x}" for b in row)
        yield (
            f"{prefix}{offset:08x}  {hexPart:<{width * 3 - 1}}  "
            f"|{row.translate(_ASCII_VIEW).decode('ascii')}|"
        )


class WireTracer:
    """
    Format the events of one connection as trace lines and hand them to a sink.

    @ivar label: names the connection in every line (usually the peer).
    @ivar withHexdump: add a hex dump of each chunk.
    """

    def __init__(
        self,
        label: str,
        emit: Callable[[str], None],
        withHexdump: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.withHexdump = withHexdump
        self._emit = emit
        self._clock = clock
        self._start = clock()

    def _line(self, text: str) -> None:
        self._emit(f"[{self._clock() - self._start:10.6f}] {self.label} {text}")

    def event(self, what: str) -> None:
        """Trace a connection event (opened, half-closed, closed)."""
        self._line(what)

    def chunk(self, direction: str, data: bytes) -> None:
        """Trace one chunk read (L{RECEIVED}) or written (L{SENT})."""
        verb = "read" if direction == RECEIVED else "wrote"
        self._line(f"{direction} {verb} {len(data)} bytes")
        if self.withHexdump:
            for line in hexdump(data, direction):
                self._emit(line)
