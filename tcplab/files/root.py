"""
Confinement: every path a client names is resolved inside one directory.

L{SafeRoot.resolve} refuses, with L{NotAllowed}: NUL bytes, backslashes,
absolute paths, C{..} components, the names of partial uploads, and any path
whose real location -- after following every symlink, component by
component, as C{os.path.realpath} does -- is not inside the root.  A path
that cannot be a file name at all (a lone surrogate such as C{"\\ud800"}) is
a L{BadRequest}.
(C{FilePath.preauthChild} only compares string prefixes and follows no
symlinks, so it is not enough.)
"""

from __future__ import annotations

import os

from twisted.python.filepath import FilePath

from tcplab.files.errors import BadRequest, NotAllowed, NotFound

PARTIAL_SUFFIX = ".tcplab-partial"
"""Partial uploads are hidden files ``.KEY.tcplab-partial`` beside their target."""


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

        @raise NotAllowed: when C{name} escapes the root.
        @raise BadRequest: when C{name} cannot be a path on this system.
        """
        try:
            os.fsencode(name)
        except UnicodeEncodeError:
            raise BadRequest(f"not a valid path (bad Unicode): {name!r}") from None
        if "\x00" in name or "\\" in name:
            raise NotAllowed(f"not allowed: {name!r}")
        if name.startswith("/"):
            raise NotAllowed(f"not allowed: absolute path {name!r}")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        for part in parts:
            if part == ".." or isPartialName(part):
                raise NotAllowed(f"not allowed: {name!r}")
        candidate = os.path.join(self._real, *parts)
        if not self.contains(os.path.realpath(candidate)):
            raise NotAllowed(f"not allowed: {name!r} leads outside the root")
        return FilePath(candidate)

    def contains(self, realPath: str) -> bool:
        """Whether a resolved (symlink-free) path is the root or inside it."""
        return realPath == self._real or os.path.commonpath([self._real, realPath]) == self._real

    def existing(self, name: str) -> FilePath[str]:
        """
        Like L{resolve}, for something that must exist.

        @raise NotFound: if it does not.
        """
        path = self.resolve(name)
        if not path.exists():
            raise NotFound(f"no such file or directory: {name!r}")
        return path

    def relative(self, path: FilePath[str]) -> str:
        """C{path} relative to the root, for logs and replies."""
        relative = os.path.relpath(path.path, self._real)
        return "" if relative == "." else relative
