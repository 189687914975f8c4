"""
Partial uploads on disk: their names, their locks, and their cleanup.

A partial is named by a hash of its target's name and the announced size
(L{partialName}), so names of any length the file system accepts can be
uploaded and the partials of one name are found exactly.  An upload holds an
exclusive C{flock} on its partial (L{lockPartial}); cleanup removes only
partials nobody holds (L{removeUnlockedPartial}).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re

from tcplab.files.errors import NotAllowed, StorageFailure
from tcplab.files.root import PARTIAL_SUFFIX, isPartialName

_PARTIAL_PATTERN = re.compile(r"^\.([0-9a-f]{40})\.[0-9]+" + re.escape(PARTIAL_SUFFIX) + "$")


def partialKey(targetName: str) -> str:
    """The hash naming the partials of one target name (40 hex digits)."""
    return hashlib.sha256(os.fsencode(targetName)).hexdigest()[:40]


def partialName(targetName: str, size: int) -> str:
    """The partial file's name for an upload of C{size} bytes to C{targetName}."""
    return f".{partialKey(targetName)}.{size}{PARTIAL_SUFFIX}"


def sameFile(path: str, fd: int) -> bool:
    """Whether C{path} names the open file C{fd} (not a file put in its place)."""
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
        if sameFile(path, fd):
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


def partialsOf(directory: str, targetName: str) -> list[str]:
    """The names of the partials of exactly C{targetName} in C{directory}, any size."""
    key = partialKey(targetName)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [n for n in names if (m := _PARTIAL_PATTERN.match(n)) and m.group(1) == key]


def heldByAnother(directory: str, targetName: str, mine: str) -> bool:
    """
    Whether an upload of C{targetName} other than ours (whose partial is
    C{mine}), of any size, holds its partial's lock right now.

    Called with our own lock taken: of two uploads that start together, at
    least one sees the other, so two uploads of one name never both run.
    """
    for name in partialsOf(directory, targetName):
        if name == mine:
            continue
        try:
            fd = lockPartial(os.path.join(directory, name), create=False)
        except (OSError, StorageFailure):
            continue
        if fd is None:
            return True
        os.close(fd)
    return False


def removeStalePartials(directory: str, targetName: str, keep: str = "") -> None:
    """Remove the unlocked partials of exactly C{targetName} in C{directory}, but C{keep}."""
    for name in partialsOf(directory, targetName):
        if name != keep:
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
