"""
Files on disk, as the file service sees them: listings, crash-safe uploads
that never share a partial file, and the cleanup of abandoned partials.

An L{Upload} writes to a hidden partial file beside its target, named by a
hash of the target's name and the announced size
(``.<40 hex digits>.SIZE.tcplab-partial``, so any name the filesystem accepts
can be uploaded), and holds an exclusive C{flock} on it for as long as it
writes: a second upload of the same name -- from this process or another on
the same host -- gets L{Busy} instead of writing into the same file.  Only
when every announced byte is there and the SHA-256 matches is the partial
renamed atomically to the target.  A lost connection leaves the partial,
unlocked, for a resume; L{sweepAbandonedPartials} removes those left alone
for too long.

The functions that may take long on a big file or directory (L{hashDescriptorPrefix},
L{readNames}, L{sweepAbandonedPartials}) are plain blocking functions: the
server runs them off the reactor thread (see L{tcplab.files.work}).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import stat as statModule
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

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
from tcplab.files.root import PARTIAL_SUFFIX, SafeRoot, isPartialName

READ_SIZE = 1024 * 1024
"""Bytes read at a time when hashing a file's existing part."""

_PARTIAL_PATTERN = re.compile(r"^\.([0-9a-f]{40})\.[0-9]+" + re.escape(PARTIAL_SUFFIX) + "$")


@dataclass
class Cancellation:
    """A flag a blocking job running in a thread checks between steps."""

    cancelled: bool = False

    def cancel(self) -> None:
        """Ask the job to stop at its next step."""
        self.cancelled = True


class Cancelled(Exception):
    """A blocking job stopped because it was cancelled."""


def describe(path: FilePath[str], root: SafeRoot) -> dict[str, Any]:
    """
    A listing entry: name, type (file, dir or other), size and mtime, and
    C{"symlink": True} for a symbolic link that stays inside C{root} (its
    type, size and mtime are its target's).  A link leading outside the root
    or nowhere is ``other``, described by the link itself: nothing about
    what lies outside is revealed.
    """
    info = os.lstat(path.path)
    symlink = statModule.S_ISLNK(info.st_mode)
    if symlink:
        if not root.contains(os.path.realpath(path.path)):
            return _entry(path.basename(), "other", 0, info.st_mtime, False)
        try:
            info = os.stat(path.path)
        except OSError:
            return _entry(path.basename(), "other", 0, info.st_mtime, False)
    if statModule.S_ISDIR(info.st_mode):
        kind = "dir"
    elif statModule.S_ISREG(info.st_mode):
        kind = "file"
    else:
        kind = "other"
    return _entry(path.basename(), kind, info.st_size, info.st_mtime, symlink)


def _entry(name: str, kind: str, size: int, mtime: float, symlink: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "type": kind,
        "size": size if kind == "file" else 0,
        "mtime": int(mtime),
    }
    if symlink:
        entry["symlink"] = True
    return entry


def readNames(path: FilePath[str]) -> list[str]:
    """A directory's entry names, sorted, partial uploads left out (blocking)."""
    with os.scandir(path.path) as entries:
        names = [entry.name for entry in entries if not isPartialName(entry.name)]
    names.sort()
    return names


def describeEach(
    directory: FilePath[str], names: list[str], root: SafeRoot
) -> Iterator[dict[str, Any]]:
    """The entries of C{names} in C{directory}, skipping any that vanished meanwhile."""
    for name in names:
        try:
            yield describe(directory.child(name), root)
        except OSError:
            continue


def hashPrefix(file: BinaryIO, length: int) -> Any:
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
    fd: int, length: int, cancellation: Cancellation | None = None, digest: Any = None
) -> Any:
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


def partialKey(targetName: str) -> str:
    """The hash naming the partials of one target name (40 hex digits)."""
    return hashlib.sha256(os.fsencode(targetName)).hexdigest()[:40]


def partialName(targetName: str, size: int) -> str:
    """The partial file's name for an upload of C{size} bytes to C{targetName}."""
    return f".{partialKey(targetName)}.{size}{PARTIAL_SUFFIX}"


def diskError(e: OSError, doing: str = "write") -> FileServiceError:
    """The domain error for an operating-system error met while storing."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace("no space left on the server's disk")
    if e.errno == errno.ENAMETOOLONG:
        return BadRequest("file name too long for the server's file system")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NotAllowed(f"server could not {doing}: {e.strerror}")
    return StorageFailure(f"server could not {doing}: {e.strerror}")


def _sameFile(path: str, fd: int) -> bool:
    try:
        onDisk = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (onDisk.st_dev, onDisk.st_ino) == (mine.st_dev, mine.st_ino)


def lockPartial(path: str, create: bool = True) -> int | None:
    """
    Open C{path} and take its exclusive lock without waiting; return the
    descriptor, or L{None} when another upload holds the lock.

    The lock is on the open file, so after taking it the path is checked to
    still name that file: a partial renamed into place or removed by its
    holder meanwhile is not ours to write (the open is then retried).
    """
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    for _ in range(10):
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _sameFile(path, fd):
            return fd
        os.close(fd)
        if not create:
            return None
    raise StorageFailure("could not take the lock of the partial upload")


def removeUnlockedPartial(path: str) -> bool:
    """Remove a partial nobody holds; say whether it was removed."""
    try:
        fd = lockPartial(path, create=False)
    except (OSError, StorageFailure):
        return False
    if fd is None:
        return False
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def removeStalePartials(directory: str, targetName: str, keep: str = "") -> None:
    """Remove the unlocked partials of exactly C{targetName} in C{directory}, but C{keep}."""
    key = partialKey(targetName)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _PARTIAL_PATTERN.match(name)
        if match and match.group(1) == key and name != keep:
            removeUnlockedPartial(os.path.join(directory, name))


def sweepAbandonedPartials(root: str, maxAge: float, now: float) -> int:
    """
    Remove every partial under C{root} unchanged for C{maxAge} seconds and
    held by no upload (blocking); return how many went.
    """
    removed = 0
    for directory, _, names in os.walk(root):
        for name in names:
            if not isPartialName(name):
                continue
            path = os.path.join(directory, name)
            try:
                if now - os.lstat(path).st_mtime < maxAge:
                    continue
            except OSError:
                continue
            removed += removeUnlockedPartial(path)
    return removed


def removeDirectory(path: str) -> None:
    """
    Remove an empty directory; one that holds nothing but partial uploads no
    connection is writing (interrupted, abandoned) counts as empty.

    @raise NotAllowed: not empty, an upload into it is running, or no permission.
    """
    try:
        os.rmdir(path)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise NotAllowed(f"cannot delete: {e.strerror}") from None
    names = os.listdir(path)
    if not all(isPartialName(name) for name in names):
        raise NotAllowed("cannot delete: Directory not empty")
    for name in names:
        if not removeUnlockedPartial(os.path.join(path, name)):
            raise NotAllowed("cannot delete: an upload into it is in progress")
    try:
        os.rmdir(path)
    except OSError as e:
        raise NotAllowed(f"cannot delete: {e.strerror}") from None


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
        if fd is None:
            raise Busy(f"{target.basename()!r} is being uploaded by someone else; try again later")
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        existing = os.fstat(fd).st_size
        if existing > size or not resume:
            self.file.truncate(0)
            existing = 0
        self.file.seek(existing)
        self.offset = self.received = existing
        self.hasher: Any = hashlib.sha256() if existing == 0 else None

    @property
    def fileno(self) -> int:
        """The partial's descriptor (for hashing its kept part in a thread)."""
        return self.file.fileno()

    def hashExisting(self, cancellation: Cancellation | None = None) -> None:
        """Hash the part kept from an earlier upload (blocking; see L{hashPrefix})."""
        self.hasher = hashDescriptorPrefix(self.fileno, self.offset, cancellation)

    @property
    def complete(self) -> bool:
        """Whether every announced byte has arrived."""
        return self.received == self.size

    def write(self, chunk: bytes) -> None:
        """
        Append a chunk.

        @raise BadRequest: more bytes than announced.
        @raise NoSpace: the disk is full (the partial is then removed).
        """
        if self.received + len(chunk) > self.size:
            raise BadRequest(f"more data than the {self.size} bytes announced")
        try:
            self.file.write(chunk)
        except OSError as e:
            self.abort(keep=False)
            raise diskError(e) from None
        self.hasher.update(chunk)
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
        actual: str = self.hasher.hexdigest()
        if digest is not None and actual != digest:
            self.abort(keep=False)
            raise ChecksumMismatch(f"SHA-256 mismatch: received {actual}, expected {digest}")
        if not _sameFile(self.partial.path, self.fileno):
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
        removeStalePartials(self.target.dirname(), self.target.basename())
        return actual

    def abort(self, keep: bool) -> None:
        """Stop: keep the partial for a resume, or remove it (before unlocking)."""
        if self.file.closed:
            return
        if not keep:
            with contextlib.suppress(OSError):
                if _sameFile(self.partial.path, self.fileno):
                    os.unlink(self.partial.path)
        with contextlib.suppress(OSError):
            self.file.close()
