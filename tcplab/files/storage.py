"""
Uploads on disk, crash-safe and never sharing a partial file, and the
hashing of a file's existing part.

An L{Upload} writes to a hidden partial file beside its target, named by a
hash of the target's name and the announced size
(``.<40 hex digits>.SIZE.tcplab-partial``, so any name the filesystem accepts
can be uploaded), and holds an exclusive C{flock} on it for as long as it
writes: a second upload of the same name -- from this process or another on
the same host -- gets L{Busy} instead of writing into the same file.  Only
when every announced byte is there and the SHA-256 matches is the partial
renamed atomically to the target.  A lost connection leaves the partial,
unlocked, for a resume (L{tcplab.files.partials} names, locks and cleans
them up).

L{hashDescriptorPrefix} and L{Upload.hashExisting} may take long on a big
file: they are plain blocking functions that the server runs off the reactor
thread (see L{tcplab.files.work}).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from twisted.python.filepath import FilePath

from tcplab.files.errors import (
    AlreadyExists,
    BadRequest,
    Busy,
    ChecksumMismatch,
    FileServiceError,
    NoSpace,
    NotAllowed,
    StorageFailure,
)
from tcplab.files.partials import (
    heldByAnother,
    lockPartial,
    partialName,
    removeDirectory,
    removeStalePartials,
    sameFile,
)
from tcplab.files.root import SafeRoot

__all__ = [
    "Cancellation",
    "Cancelled",
    "Upload",
    "hashDescriptorPrefix",
    "hashPrefix",
    "partialName",
]

READ_SIZE = 1024 * 1024
"""Bytes read at a time when hashing a file's existing part."""


@dataclass
class Cancellation:
    """A flag a blocking job running in a thread checks between steps."""

    cancelled: bool = False

    def cancel(self) -> None:
        """Ask the job to stop at its next step."""
        self.cancelled = True


class Hasher(Protocol):
    """A running digest (a C{hashlib} object): fed bytes, asked for its hex digest."""

    def update(self, data: bytes | memoryview, /) -> None:
        """Feed C{data}."""

    def hexdigest(self) -> str:
        """The digest of everything fed so far, in lower-case hex."""


class Cancelled(Exception):
    """A blocking job stopped because it was cancelled."""


def hashPrefix(file: BinaryIO, length: int) -> Hasher:
    """A SHA-256 object fed the first C{length} bytes of C{file} (any file object)."""
    digest = hashlib.sha256()
    file.seek(0)
    remaining = length
    while remaining:
        chunk = file.read(min(READ_SIZE, remaining))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    return digest


def hashDescriptorPrefix(
    fd: int, length: int, cancellation: Cancellation | None = None, digest: Hasher | None = None
) -> Hasher:
    """
    A SHA-256 object fed the first C{length} bytes of the open file C{fd}
    (blocking, for a worker thread; positionless reads, so the file's
    offset is untouched, and a check for cancellation every mebibyte).

    @raise Cancelled: when C{cancellation} is cancelled meanwhile.
    @raise StorageFailure: when the file is shorter than C{length}.
    """
    digest = digest if digest is not None else hashlib.sha256()
    position = 0
    while position < length:
        if cancellation is not None and cancellation.cancelled:
            raise Cancelled()
        chunk = os.pread(fd, min(READ_SIZE, length - position), position)
        if not chunk:
            raise StorageFailure("the file shrank while it was being read")
        digest.update(chunk)
        position += len(chunk)
    return digest


def diskError(e: OSError, doing: str = "write") -> FileServiceError:
    """The domain error for an operating-system error met while storing."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace("no space left on the server's disk")
    if e.errno == errno.ENAMETOOLONG:
        return BadRequest("file name too long for the server's file system")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NotAllowed(f"server could not {doing}: {e.strerror}")
    return StorageFailure(f"server could not {doing}: {e.strerror}")


def _nameMax(directory: str) -> int:
    """The longest file name (in bytes) the file system of C{directory} takes."""
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _makeParents(directory: str) -> list[str]:
    """Create C{directory} and missing parents; return those created, deepest first."""
    missing = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created: list[str] = []
    try:
        for folder in reversed(missing):
            os.mkdir(folder)
            created.insert(0, folder)
    except FileExistsError:
        pass
    except OSError:
        _removeCreated(created)
        raise
    return created


def _removeCreated(created: list[str]) -> None:
    for folder in created:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


class Upload:
    """
    One file being received: a locked partial file, its hash, and the final
    rename.

    @ivar offset: how many bytes of the partial were kept from an earlier,
        interrupted upload of the same name and size (the client sends the
        rest).  They must be hashed (L{hashExisting}) before more arrive.
    @ivar received: bytes in the partial so far.
    @ivar replace: replace an existing target (else L{AlreadyExists}).
    """

    def __init__(self, target: FilePath[str], size: int, overwrite: bool, resume: bool) -> None:
        if target.isdir():
            raise NotAllowed(f"{target.basename()!r} is a directory")
        if target.exists() and not overwrite:
            raise AlreadyExists(f"{target.basename()!r} exists (use --overwrite)")
        self.target = target
        self.size = size
        self.replace = overwrite
        self.partial = target.sibling(partialName(target.basename(), size))
        if len(os.fsencode(target.basename())) > _nameMax(target.dirname()):
            raise BadRequest("file name too long for the server's file system")
        try:
            created = _makeParents(target.dirname())
        except OSError as e:
            raise diskError(e, "create the directory") from None
        try:
            fd = lockPartial(self.partial.path)
        except OSError as e:
            _removeCreated(created)
            raise diskError(e) from None
        if fd is None or heldByAnother(
            target.dirname(), target.basename(), self.partial.basename()
        ):
            if fd is not None:
                if os.fstat(fd).st_size == 0:  # made by us just now: leave nothing behind
                    os.unlink(self.partial.path)
                os.close(fd)
            raise Busy(f"{target.basename()!r} is being uploaded by someone else; try again later")
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        existing = os.fstat(fd).st_size
        if existing > size or not resume:
            self.file.truncate(0)
            existing = 0
        self.file.seek(existing)
        self.offset = self.received = existing
        self.hasher: Hasher | None = hashlib.sha256() if existing == 0 else None

    @property
    def fileno(self) -> int:
        """The partial's descriptor (for hashing its kept part in a thread)."""
        return self.file.fileno()

    def hashExisting(self, cancellation: Cancellation | None = None) -> None:
        """Hash the part kept from an earlier upload (blocking; see L{hashPrefix})."""
        self.hasher = hashDescriptorPrefix(self.fileno, self.offset, cancellation)

    def runningDigest(self) -> Hasher:
        """
        The digest of the bytes so far.

        @raise RuntimeError: a resumed upload's kept part is not hashed yet
            (L{hashExisting} comes first).
        """
        if self.hasher is None:
            raise RuntimeError("hashExisting must run before a resumed upload takes data")
        return self.hasher

    @property
    def complete(self) -> bool:
        """Whether every announced byte has arrived."""
        return self.received == self.size

    def write(self, chunk: bytes | memoryview) -> None:
        """
        Append a chunk.

        @raise BadRequest: more bytes than announced.
        @raise NoSpace: the disk is full (the partial is then removed).
        """
        if self.received + len(chunk) > self.size:
            raise BadRequest(f"more data than the {self.size} bytes announced")
        digest = self.runningDigest()
        try:
            self.file.write(chunk)
        except OSError as e:
            self.abort(keep=False)
            raise diskError(e) from None
        digest.update(chunk)
        self.received += len(chunk)

    def finish(self, digest: str | None) -> str:
        """
        Check the SHA-256 (the client's C{digest}; L{None} when the protocol
        has none) and move the file into place; return the SHA-256 of what
        was stored.  The lock is held until the partial's name is gone.

        @raise ChecksumMismatch: the partial is removed.
        @raise AlreadyExists: the name appeared meanwhile and overwrite was
            not asked for.
        @raise StorageFailure: the partial vanished from under us.
        """
        try:
            self.file.flush()
        except OSError as e:
            self.abort(keep=False)
            raise diskError(e) from None
        actual = self.runningDigest().hexdigest()
        if digest is not None and actual != digest:
            self.abort(keep=False)
            raise ChecksumMismatch(f"SHA-256 mismatch: received {actual}, expected {digest}")
        if not sameFile(self.partial.path, self.fileno):
            self.abort(keep=True)
            raise StorageFailure("the partial upload was removed before it was complete")
        try:
            if self.replace:
                os.replace(self.partial.path, self.target.path)
            else:
                # link + unlink: atomic, and never replaces a file that
                # appeared while we were receiving.
                os.link(self.partial.path, self.target.path)
                os.unlink(self.partial.path)
        except FileExistsError:
            self.abort(keep=False)
            raise AlreadyExists(f"{self.target.basename()!r} exists") from None
        except OSError as e:
            self.abort(keep=True)
            raise diskError(e, "store the file") from None
        finally:
            if not self.file.closed:
                self.file.close()
        return actual

    def removeStalePartials(self) -> None:
        """
        After L{finish}: remove the other partials of exactly this name that
        no upload holds (blocking: it lists the directory, which may be huge).
        """
        removeStalePartials(self.target.dirname(), self.target.basename())

    def abort(self, keep: bool) -> None:
        """Stop: keep the partial for a resume, or remove it (before unlocking)."""
        if self.file.closed:
            return
        if not keep:
            with contextlib.suppress(OSError):
                if sameFile(self.partial.path, self.fileno):
                    os.unlink(self.partial.path)
        with contextlib.suppress(OSError):
            self.file.close()


def deletePath(root: SafeRoot, path: str) -> None:
    """
    Remove the file, link or directory at C{path} under C{root}, as every
    front door's delete does: a directory only when empty but for abandoned
    partials, never the root itself.

    @raise FileServiceError: C{not_found}, C{not_allowed} (the root, not
        empty, an upload into it running, no permission).
    """
    target = root.existing(path)
    if target == root.path:
        raise NotAllowed("the root cannot be deleted")
    if target.isdir() and not target.islink():
        removeDirectory(target.path)
        return
    try:
        os.unlink(target.path)
    except OSError as e:
        raise NotAllowed(f"cannot delete: {e.strerror}") from None
