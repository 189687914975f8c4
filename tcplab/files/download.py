"""
The client's side of a download's data: written and hashed as it comes,
never past the size the server announced, and flushed to disk behind the
writes (L{WriteBehind}).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import BinaryIO

from twisted.internet.defer import Deferred

from tcplab.files.errors import Busy
from tcplab.files.replies import MalformedReply
from tcplab.files.storage import Hasher
from tcplab.files.work import IBlockingWork

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

    def receive(self, chunk: bytes | memoryview) -> None:
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


FLUSH_EVERY = 32 * 1024 * 1024
"""Bytes written between two background flushes of a download (L{WriteBehind})."""

SYNC_FILE_RANGE_WRITE = 2
"""Linux's C{sync_file_range} flag: start writing back the range's dirty pages."""


def _startWriteback() -> Callable[[int, int, int], object] | None:
    """
    Linux's C{sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)}
    (not in L{os}), through C{ctypes}; L{None} where there is none.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return lambda fd, offset, count: call(fd, offset, count, SYNC_FILE_RANGE_WRITE)


class WriteBehind:
    """
    Start writing a file being downloaded back to disk as it grows, so that
    the C{fsync} that makes it durable before it is renamed into place has
    only the last few mebibytes left to wait for.

    A download of 1 GiB flushed only at the end waits about half a second
    in that C{fsync} with nothing else to do (the page cache holds the whole
    gigabyte: the kernel starts writing back on its own only at 10 % of
    memory).  Every L{FLUSH_EVERY} bytes, L{wrote} has C{work} (a thread:
    the call may block on a busy disk) start the write-back of the range
    written since the last one, with C{sync_file_range}, which neither waits
    for the disk nor chases the writer as an C{fdatasync} running beside the
    writes does (one took 2.7 s here).  At most one runs at a time.  This
    changes nothing about what is durable when: the final C{fsync} still
    runs and waits for every byte, and L{drain} waits for the call in
    flight, so the descriptor is never closed under it.  Without
    C{sync_file_range} (not Linux) nothing is started early.

    @ivar running: the call in flight, if any.
    """

    def __init__(
        self,
        fd: int,
        work: IBlockingWork,
        every: int | None = None,
        startWriteback: Callable[[int, int, int], object] | None = None,
    ) -> None:
        self.fd = fd
        self.work = work
        self.every = every or FLUSH_EVERY
        self.startWriteback = startWriteback or _startWriteback()
        # Where the writes start (a resume appends); a range that is off
        # after a restart from zero only starts a harmless write-back.
        self.flushedTo = self.written = os.lseek(fd, 0, os.SEEK_CUR)
        self.running: Deferred[object] | None = None

    def wrote(self, count: int) -> None:
        """C{count} more bytes were written: start a write-back if one is due and none runs."""
        self.written += count
        if (
            self.startWriteback is None
            or self.running is not None
            or self.written - self.flushedTo < self.every
        ):
            return
        fd, start, end, call = self.fd, self.flushedTo, self.written, self.startWriteback
        self.flushedTo = end
        try:
            running = self.running = self.work.run(lambda: call(fd, start, end - start))
        except Busy:
            self.running = None
            return

        def done(result: object) -> None:
            self.running = None

        running.addBoth(done)

    async def drain(self) -> None:
        """Wait for the call in flight (errors are the final C{fsync}'s to report)."""
        running = self.running
        if running is not None:
            done: Deferred[None] = Deferred()
            running.addBoth(lambda _: done.callback(None))
            await done
