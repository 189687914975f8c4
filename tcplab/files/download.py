"""
The client's side of a download's data: written and hashed as it comes,
never past the size the server announced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from tcplab.files.replies import MalformedReply
from tcplab.files.storage import Hasher

Progress = Callable[[int], object]


class BoundedDownload:
    """
    The data of one download: written to the sink and hashed, never past
    the size the server announced.

    @ivar remaining: bytes still expected; L{None} until the header came.
    """

    def __init__(self, sink: BinaryIO, hasher: Hasher, progress: Progress | None) -> None:
        self.sink = sink
        self.hasher = hasher
        self.progress = progress
        self.remaining: int | None = None
        self.announced = 0

    def expect(self, size: int, count: int) -> None:
        """The header came: the file has C{size} bytes, C{count} of them are coming."""
        self.announced = size
        self.remaining = count

    def receive(self, chunk: bytes) -> None:
        """
        Keep one chunk, or as much of it as the announcement allows.

        @raise MalformedReply: data before the header, or past the
            announced size (what fits was kept; nothing beyond it is).
        @raise OSError: the sink cannot be written.
        """
        if self.remaining is None:
            raise MalformedReply("file data before the download's header")
        overrun = len(chunk) > self.remaining
        if overrun:
            chunk = chunk[: self.remaining]
        if chunk:
            self.sink.write(chunk)
            self.hasher.update(chunk)
            self.remaining -= len(chunk)
            if self.progress is not None:
                self.progress(len(chunk))
        if overrun:
            raise MalformedReply(
                f"the server sent more than the {self.announced} bytes it announced"
            )
