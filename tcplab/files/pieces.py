"""
Decoding the frame stream without copying file data, sans I/O.

L{wire.FrameDecoder} hands out whole frame payloads: every byte of a data
frame is copied into its buffer, then out of it as the payload, then once
more without the marker byte -- three copies of each gigabyte moved, 0.15 to
0.2 s of CPU per GiB on the receiving side here.  L{PieceDecoder} hands a data
frame's file bytes on as they arrive instead: as C{memoryview} slices of the
very C{bytes} object the transport read, or of the buffer a client's
connection lends it (L{tcplab.lentreads.lendReads}; L{PieceDecoder.release}
gives it back), with no copy at all, in as many pieces as the reads cut the
frame into.  Control messages are still whole C{bytes}
payloads, and the limits are the same: a frame announcing more than
C{maxFrame} is refused as soon as its length is read.

Frame boundaries carry no meaning inside a transfer's data (a download or
upload is one byte stream, checked against its announced size and its
SHA-256), so consumers lose nothing by getting pieces.
"""

from __future__ import annotations

from tcplab.files.wire import DATA, MAX_FRAME, PREFIX, FrameTooLarge

__all__ = ["FrameItem", "PieceDecoder"]

FrameItem = bytes | memoryview
"""What L{PieceDecoder.next} gives: a control payload (C{bytes}) or file data (a C{memoryview})."""

_DATA_MARKER = DATA[0]
_HEADER = PREFIX.size + 1
"""A data frame's header: the length prefix and the marker byte."""


class PieceDecoder:
    """
    Turn a byte stream into control payloads and pieces of file data.

    Bytes go in with L{feed}; items come out one at a time with L{next}, so
    the caller decides when to take the next one.  A control message comes
    out whole, as C{bytes} (its first byte is never the data marker); the
    file bytes of a data frame come out as one or more C{memoryview}s (an
    empty data frame as one empty view).  A view is valid until the caller
    drops it: the decoder never writes into memory it has handed out (a
    buffer some view points into is replaced, never resized).

    @ivar framesDecoded: frames completed so far (the marker the slow-drip
        timeout watches: a frame started and never finished stops it).
    """

    def __init__(self, maxFrame: int = MAX_FRAME) -> None:
        self.maxFrame = maxFrame
        self.framesDecoded = 0
        self._buffer: bytes | bytearray | memoryview = b""
        self._offset = 0
        self._dataLeft = 0
        """File bytes of the current data frame not handed out yet."""
        self._exported = False
        """Whether a view into C{_buffer} (a bytearray) was handed out."""

    def feed(self, data: bytes | memoryview) -> None:
        """
        Add bytes received from the peer.  When everything before was taken
        (the usual case in a transfer) the object itself becomes the buffer,
        uncopied; a remainder (part of a frame header or of a control
        message) is joined in a bytearray that grows in place.

        A C{memoryview} is I{borrowed}: a read lent by the transport
        (L{tcplab.lentreads.lendReads}), valid only until L{release}, which
        the caller calls before the lender reuses the memory.
        """
        buffer, offset = self._buffer, self._offset
        if offset == len(buffer):
            # (Only bytes, immutable, or a borrowed view is kept as is: a
            # bytearray buffer is always our own.)
            kept = data if type(data) is bytes or type(data) is memoryview else bytes(data)
            self._buffer, self._offset, self._exported = kept, 0, False
        elif isinstance(buffer, bytearray) and not self._exported:
            if offset:
                del buffer[:offset]
                self._offset = 0
            buffer += data
        else:
            joined = bytearray(memoryview(buffer)[offset:])
            joined += data
            self._buffer, self._offset, self._exported = joined, 0, False

    def release(self) -> None:
        """
        Give back a borrowed view: what is left of it (part of a frame
        header or of a control message, never more than one frame) is
        copied into a buffer of the decoder's own.  Pieces handed out from
        it must no longer be used.
        """
        buffer = self._buffer
        if type(buffer) is memoryview:
            offset = self._offset
            self._buffer = bytearray(buffer[offset:]) if offset < len(buffer) else b""
            self._offset, self._exported = 0, False

    def next(self) -> FrameItem | None:
        """
        The next item: a control payload, a piece of file data, or L{None}
        until more bytes arrive.

        @raise FrameTooLarge: the next frame announces more than C{maxFrame}.
        """
        buffer, offset = self._buffer, self._offset
        available = len(buffer) - offset
        if self._dataLeft:
            if not available:
                return None
            return self._piece(buffer, offset, min(available, self._dataLeft))
        if available < PREFIX.size:
            return None
        (length,) = PREFIX.unpack_from(buffer, offset)
        if length > self.maxFrame:
            raise FrameTooLarge(length)
        if length and available > PREFIX.size and buffer[offset + PREFIX.size] == _DATA_MARKER:
            self._dataLeft = length - 1
            return self._piece(buffer, offset + _HEADER, min(available - _HEADER, length - 1))
        end = offset + PREFIX.size + length
        if end > len(buffer):
            return None
        payload = bytes(buffer[offset + PREFIX.size : end])
        self._offset = end
        self.framesDecoded += 1
        return payload

    def _piece(self, buffer: bytes | bytearray | memoryview, start: int, size: int) -> memoryview:
        """Hand out C{size} file bytes from C{start} (a frame's header before it is taken too)."""
        self._offset = start + size
        self._dataLeft -= size
        if not self._dataLeft:
            self.framesDecoded += 1
        if isinstance(buffer, bytearray):
            self._exported = True
        return memoryview(buffer)[start : start + size]

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken."""
        return len(self._buffer) - self._offset

    @property
    def inFrame(self) -> bool:
        """Whether the peer is in the middle of a frame (or bytes of the next are here)."""
        return bool(self._dataLeft) or self.buffered > 0
