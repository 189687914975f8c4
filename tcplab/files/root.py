"""
Confinement: every path a client names is resolved inside one directory.

L{SafeRoot.resolve} refuses, with L{NOT_ALLOWED}: NUL bytes, backslashes,
absolute paths, C{..} components, the names of partial uploads, and any path
whose real location -- after following every symlink, component by
component, as C{os.path.realpath} does -- is not inside the root.
(C{FilePath.preauthChild} only compares string prefixes and follows no
symlinks, so it is not enough.)
"""

from __future__ import annotations

import os

from twisted.python.filepath import FilePath

from tcplab.files.wire import NOT_ALLOWED, NOT_FOUND, ProtocolError

PARTIAL_SUFFIX = ".tcplab-partial"
"""Partial uploads are hidden files ``.NAME.KEY.tcplab-partial`` beside NAME."""


def isPartialName(name: str) -> bool:
    """Whether a directory entry is one of our partial uploads."""
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


class SafeRoot:
    """
    The directory tree a file server serves, and nothing outside it.

    @ivar path: the root, as a L{FilePath} of its real (symlink-free) path.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        real = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real):
            raise ValueError(f"{os.fspath(root)!r} is not a directory")
        self.path = FilePath(real)
        self._real = real

    def resolve(self, name: str) -> FilePath[str]:
        """
        The L{FilePath} for C{name} (``a/b.txt``; ``""`` or ``"."`` is the
        root itself), which may not exist yet.

        @raise ProtocolError: L{NOT_ALLOWED} when C{name} escapes the root.
        """
        if "\x00" in name or "\\" in name:
            raise ProtocolError(NOT_ALLOWED, f"not allowed: {name!r}")
        if name.startswith("/"):
            raise ProtocolError(NOT_ALLOWED, f"not allowed: absolute path {name!r}")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        for part in parts:
            if part == ".." or isPartialName(part):
                raise ProtocolError(NOT_ALLOWED, f"not allowed: {name!r}")
        candidate = os.path.join(self._real, *parts)
        real = os.path.realpath(candidate)
        if real != self._real and os.path.commonpath([self._real, real]) != self._real:
            raise ProtocolError(NOT_ALLOWED, f"not allowed: {name!r} leads outside the root")
        return FilePath(candidate)

    def existing(self, name: str) -> FilePath[str]:
        """
        Like L{resolve}, for something that must exist.

        @raise ProtocolError: L{NOT_FOUND} if it does not.
        """
        path = self.resolve(name)
        if not path.exists():
            raise ProtocolError(NOT_FOUND, f"no such file or directory: {name!r}")
        return path

    def relative(self, path: FilePath[str]) -> str:
        """C{path} relative to the root, for logs and replies."""
        relative = os.path.relpath(path.path, self._real)
        return "" if relative == "." else relative
