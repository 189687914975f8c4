"""
Files on disk, as the file service sees them: listings, and crash-safe
uploads.

An L{Upload} writes to a hidden partial file beside its target
(``.NAME.SIZE.tcplab-partial``) and hashes as it goes; only when every
announced byte is there and the SHA-256 matches is the partial renamed
atomically to NAME.  A lost connection leaves the partial for a resume.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat as statModule
from typing import Any, BinaryIO

from twisted.python.filepath import FilePath

from tcplab.files.root import PARTIAL_SUFFIX, isPartialName
from tcplab.files.wire import (
    BAD_REQUEST,
    CHECKSUM_MISMATCH,
    EXISTS,
    NO_SPACE,
    NOT_ALLOWED,
    SERVER_ERROR,
    ProtocolError,
)

READ_SIZE = 1024 * 1024
"""Bytes read at a time when hashing a file's existing part."""


def describe(path: FilePath[str]) -> dict[str, Any]:
    """A listing entry: name, type (file, dir or other), size and mtime."""
    info = os.stat(path.path)
    if statModule.S_ISDIR(info.st_mode):
        kind = "dir"
    elif statModule.S_ISREG(info.st_mode):
        kind = "file"
    else:
        kind = "other"
    return {
        "name": path.basename(),
        "type": kind,
        "size": info.st_size if kind == "file" else 0,
        "mtime": int(info.st_mtime),
    }


def listDirectory(path: FilePath[str]) -> list[dict[str, Any]]:
    """The entries of a directory, sorted by name, partial uploads hidden."""
    entries = []
    for name in sorted(os.listdir(path.path)):
        if isPartialName(name):
            continue
        try:
            entries.append(describe(path.child(name)))
        except OSError:
            continue  # vanished meanwhile, or a dangling symlink
    return entries


def hashPrefix(file: BinaryIO, length: int) -> Any:
    """A SHA-256 object fed the first C{length} bytes of C{file}."""
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


def _diskError(e: OSError) -> ProtocolError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ProtocolError(NO_SPACE, "no space left on the server's disk")
    return ProtocolError(SERVER_ERROR, f"server could not write: {e.strerror}")


class Upload:
    """
    One file being received: a partial file, its hash, and the final rename.

    @ivar offset: how many bytes of the partial were kept from an earlier,
        interrupted upload of the same name and size (the client sends the
        rest).
    @ivar received: bytes in the partial so far.
    """

    def __init__(self, target: FilePath[str], size: int, overwrite: bool, resume: bool) -> None:
        if target.isdir():
            raise ProtocolError(NOT_ALLOWED, f"{target.basename()!r} is a directory")
        if target.exists() and not overwrite:
            raise ProtocolError(EXISTS, f"{target.basename()!r} exists (ask to overwrite)")
        self.target = target
        self.size = size
        self.overwrite = overwrite
        self.partial = target.sibling(f".{target.basename()}.{size}{PARTIAL_SUFFIX}")
        try:
            target.parent().makedirs(ignoreExistingDirectory=True)
            self.file: BinaryIO = open(self.partial.path, "r+b" if resume else "w+b")  # noqa: SIM115
        except FileNotFoundError:
            self.file = open(self.partial.path, "w+b")  # noqa: SIM115
        except OSError as e:
            raise _diskError(e) from None
        existing = os.fstat(self.file.fileno()).st_size
        if existing > size:
            self.file.truncate(0)
            existing = 0
        self.hasher = hashPrefix(self.file, existing)
        self.file.seek(existing)
        self.offset = self.received = existing

    @property
    def complete(self) -> bool:
        """Whether every announced byte has arrived."""
        return self.received == self.size

    def write(self, chunk: bytes) -> None:
        """
        Append a chunk.

        @raise ProtocolError: more bytes than announced, or the disk failed
            (the partial is then removed).
        """
        if self.received + len(chunk) > self.size:
            raise ProtocolError(BAD_REQUEST, f"more data than the {self.size} bytes announced")
        try:
            self.file.write(chunk)
        except OSError as e:
            self.abort(keep=False)
            raise _diskError(e) from None
        self.hasher.update(chunk)
        self.received += len(chunk)

    def finish(self, digest: str) -> str:
        """
        Check the client's SHA-256 and move the file into place; return the
        digest.

        @raise ProtocolError: L{CHECKSUM_MISMATCH} (the partial is removed),
            L{EXISTS} if the name appeared meanwhile and overwrite was not
            asked for.
        """
        try:
            self.file.close()
        except OSError as e:
            self.abort(keep=False)
            raise _diskError(e) from None
        actual = self.hasher.hexdigest()
        if actual != digest:
            self.abort(keep=False)
            raise ProtocolError(
                CHECKSUM_MISMATCH, f"SHA-256 mismatch: received {actual}, expected {digest}"
            )
        if self.overwrite:
            os.replace(self.partial.path, self.target.path)
        else:
            try:
                # link + unlink: atomic, and never replaces a file that
                # appeared while we were receiving.
                os.link(self.partial.path, self.target.path)
            except FileExistsError:
                self.abort(keep=False)
                raise ProtocolError(EXISTS, f"{self.target.basename()!r} exists") from None
            os.unlink(self.partial.path)
        self._removeStalePartials()
        return actual

    def _removeStalePartials(self) -> None:
        prefix = f".{self.target.basename()}."
        for name in os.listdir(self.target.dirname()):
            if name.startswith(prefix) and isPartialName(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.target.dirname(), name))

    def abort(self, keep: bool) -> None:
        """Stop: keep the partial for a resume, or remove it."""
        if not self.file.closed:
            try:
                self.file.close()
            except OSError:
                keep = False
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(self.partial.path)
