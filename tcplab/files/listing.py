"""
Directory listings as the file service shows them: entries described
without revealing anything outside the root, names read off the reactor
thread, and pages sent one per reactor turn while the client reads.
"""

from __future__ import annotations

import os
import stat as statModule
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.filepath import FilePath

from tcplab.files.root import SafeRoot, isPartialName
from tcplab.files.wire import JSONObject, ListingPage


def describe(path: FilePath[str], root: SafeRoot) -> JSONObject:
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


def _entry(name: str, kind: str, size: int, mtime: float, symlink: bool) -> JSONObject:
    entry: JSONObject = {
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
) -> Iterator[JSONObject]:
    """The entries of C{names} in C{directory}, skipping any that vanished meanwhile."""
    for name in names:
        try:
            yield describe(directory.child(name), root)
        except OSError:
            continue


class PageSink(Protocol):
    """Where a listing's pages go: a connection that says when its buffer is full."""

    def sendMessage(self, message: Mapping[str, object]) -> None:
        """Send one control message."""

    def canSend(self) -> bool:
        """Whether the transport's buffer has room."""


class PagedListing:
    """
    Send a listing's pages (L{tcplab.files.wire.listingPages}), one per
    reactor turn so other connections are served in between, and none while
    the sink's buffer is full (L{resume} carries on once it drains).
    """

    def __init__(
        self,
        pages: Iterator[ListingPage],
        sink: PageSink,
        reactor: IReactorTime,
        done: Callable[[], None],
    ) -> None:
        self.pages = pages
        self.sink = sink
        self.reactor = reactor
        self.done = done
        self.finished = False
        self._next: IDelayedCall | None = None

    def sendNext(self) -> None:
        """Send one page, and schedule the next for the next reactor turn."""
        self._next = None
        if self.finished or not self.sink.canSend():
            return
        page = next(self.pages)
        self.sink.sendMessage(page)
        if page["more"]:
            self._next = self.reactor.callLater(0, self.sendNext)
        else:
            self.finished = True
            self.done()

    def resume(self) -> None:
        """The sink drained: carry on if the listing waited for it."""
        if not self.finished and self._next is None:
            self.sendNext()

    def stop(self) -> None:
        """The connection went: send nothing more."""
        self.finished = True
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
