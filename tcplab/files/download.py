"""
The client's side of a download's data: written and hashed as it comes,
never past the size the server announced, gathered into large writes,
into space reserved up front (L{reserveSpace}), and flushed to disk behind
the writes (L{WriteBehind}).
"""

from __future__ import annotations

import errno
import functools
import io
import os
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred

from tcplab.files.errors import Busy
from tcplab.files.replies import MalformedReply
from tcplab.files.storage import Hasher
from tcplab.files.work import IBlockingWork

Progress = Callable[[int], object]


MAX_GATHERED = 512
"""Pieces gathered for one C{writev} at most (Linux takes up to 1,024)."""


class BoundedDownload:
    """
    The data of one download: written to the sink and hashed, never past
    the size the server announced.

    Into an unbuffered file (C{io.FileIO}: no buffer or position of its
    own that could go stale) the pieces of a read are not written one by
    one but gathered, and L{flush} writes them with one C{writev}, which
    the receiving protocol calls before it lets go of what it read and
    before it acts on any reply.  Page-cache writes cost far more per call
    and per small write than per byte (ext4 here: 1 GiB in 52 KB C{write}s
    and its C{fsync}, 0.48 s of CPU; in C{writev}s of 256 KiB, 0.33 s; of
    1 MiB, 0.28 s).  Any other sink gets each piece as it comes.

    @ivar remaining: bytes still expected; L{None} until the header came.
    @ivar pending: pieces received and hashed, not yet written.
    """

    def __init__(self, sink: BinaryIO, hasher: Hasher, progress: Progress | None) -> None:
        self.sink = sink
        self.hasher = hasher
        self.progress = progress
        self.remaining: int | None = None
        self.announced = 0
        self.fd = sink.fileno() if type(sink) is io.FileIO else None
        self.pending: list[memoryview | bytes] = []

    def expect(self, size: int, count: int) -> None:
        """The header came: the file has C{size} bytes, C{count} of them are coming."""
        self.announced = size
        self.remaining = count

    def receive(self, chunk: bytes | memoryview) -> None:
        """
        Keep one chunk, or as much of it as the announcement allows: hashed
        now, written now or by the next L{flush}.

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
            self.hasher.update(chunk)
            self.remaining -= len(chunk)
            if self.fd is not None:
                self.pending.append(chunk)
                if len(self.pending) >= MAX_GATHERED:
                    self.flush()
            else:
                self.sink.write(chunk)
                if self.progress is not None:
                    self.progress(len(chunk))
        if overrun:
            raise MalformedReply(
                f"the server sent more than the {self.announced} bytes it announced"
            )

    def flush(self) -> None:
        """
        Write the gathered pieces (the caller's views of them may go after
        this).

        @raise OSError: the sink cannot be written.
        """
        pieces, self.pending = self.pending, []
        if pieces and self.fd is not None:
            count = writeAll(self.fd, pieces)
            if self.progress is not None:
                self.progress(count)


def writeAll(fd: int, pieces: list[memoryview | bytes]) -> int:
    """
    Write C{pieces} to C{fd}, in order, with as few C{writev} calls as the
    kernel allows (a short write -- a signal, a nearly full disk -- goes on
    from where it stopped); how many bytes that was.

    @raise OSError: a write failed (a full disk raises C{ENOSPC}).
    """
    total = 0
    first = 0
    while first < len(pieces):
        written = os.writev(fd, pieces[first:] if first else pieces)
        if not written:
            raise OSError(errno.EIO, "the file took no bytes")
        total += written
        while first < len(pieces) and written >= len(pieces[first]):
            written -= len(pieces[first])
            first += 1
        if written:
            pieces[first] = memoryview(pieces[first])[written:]
    return total


FLUSH_EVERY = 32 * 1024 * 1024
"""Bytes written between two background flushes of a download (L{WriteBehind})."""

SYNC_FILE_RANGE_WRITE = 2
"""Linux's C{sync_file_range} flag: start writing back the range's dirty pages."""


@functools.cache
def _libc() -> Any:
    """The C library through C{ctypes} (Linux only; loaded once), or L{None}."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        # (Not ctypes.util.find_library, which runs ldconfig: ~10 ms.)
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def _startWriteback() -> Callable[[int, int, int], object] | None:
    """
    Linux's C{sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)}
    (not in L{os}), through C{ctypes}; L{None} where there is none.
    """
    libc = _libc()
    call = getattr(libc, "sync_file_range", None)
    if call is None:
        return None
    import ctypes

    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return lambda fd, offset, count: call(fd, offset, count, SYNC_FILE_RANGE_WRITE)


FALLOC_FL_KEEP_SIZE = 1
"""Linux's C{fallocate} flag: reserve blocks without changing the file's size."""


def reserveSpace(fd: int, size: int) -> bool:
    """
    Reserve the blocks of a file being downloaded up to C{size} bytes,
    leaving its size alone (the size is how far a download got: resuming
    reads it); whether that was done.

    On ext4, blocks written without a reservation are reserved one by one
    as each page is written and allocated when it is written back: 1 GiB
    written into reserved space (in C{writev}s of 256 KiB) and its C{fsync}
    took 0.26-0.31 s of CPU instead of 0.33 s here.  It changes nothing
    else: a failure (no such call, a file system without it, no room) is
    left to the writes to meet as before, and a download cut short keeps
    the reservation only until it resumes or the partial file is removed.
    (C{os.posix_fallocate} would change the size; Linux's C{fallocate}
    with C{FALLOC_FL_KEEP_SIZE}, through C{ctypes}, does not.)
    """
    libc = _libc()
    call = getattr(libc, "fallocate", None)
    if call is None or size <= 0:
        return False
    import ctypes

    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return int(call(fd, FALLOC_FL_KEEP_SIZE, 0, size)) == 0


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
