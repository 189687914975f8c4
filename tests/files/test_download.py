"""Tests for L{tcplab.files.download.WriteBehind}: a download written back to disk as it grows."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from twisted.internet import defer
from zope.interface import implementer

from tcplab.files.download import WriteBehind, _startWriteback
from tcplab.files.errors import Busy
from tcplab.files.work import IBlockingWork, InlineWork

T = TypeVar("T")


@implementer(IBlockingWork)
class HeldWork:
    """Blocking work that runs each job only when the test says so."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], object], defer.Deferred[object]]] = []

    def run(self, job: Callable[[], T]) -> defer.Deferred[T]:
        """Keep the job; its Deferred fires on L{finish}."""
        d: defer.Deferred[T] = defer.Deferred()
        self.jobs.append((job, d))  # type: ignore[arg-type]
        return d

    def finish(self) -> None:
        """Run the oldest job and fire its Deferred."""
        job, d = self.jobs.pop(0)
        d.callback(job())


def openAt(path: Path, offset: int) -> int:
    """A descriptor of a file already holding C{offset} bytes, positioned at its end."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"x" * offset)
    return fd


def test_write_back_covers_each_range_written(tmp_path: Path) -> None:
    """Every C{every} bytes the range written since the last call starts, from the resume point."""
    calls: list[tuple[int, int, int]] = []
    fd = openAt(tmp_path / "partial", 100)
    behind = WriteBehind(fd, InlineWork(), every=10, startWriteback=lambda *a: calls.append(a))
    for count in (4, 8, 5):
        behind.wrote(count)
    assert calls == [(fd, 100, 12)]
    behind.wrote(5)
    assert calls == [(fd, 100, 12), (fd, 112, 10)]
    os.close(fd)


def test_one_call_at_a_time_and_drain_waits(tmp_path: Path) -> None:
    """A write-back still running is not doubled; L{drain} waits for it, so the file may close."""
    calls: list[tuple[int, int, int]] = []
    work = HeldWork()
    fd = openAt(tmp_path / "partial", 0)
    behind = WriteBehind(fd, work, every=10, startWriteback=lambda *a: calls.append(a))
    behind.wrote(10)
    behind.wrote(30)
    assert len(work.jobs) == 1
    drained = defer.ensureDeferred(behind.drain())
    assert not drained.called
    work.finish()
    assert drained.called and calls == [(fd, 0, 10)]
    behind.wrote(1)  # the next one covers everything since the last
    work.finish()
    assert calls == [(fd, 0, 10), (fd, 10, 31)]
    os.close(fd)


def test_busy_work_skips_a_write_back(tmp_path: Path) -> None:
    """When the work queue is full, nothing is started and the final fsync does it all."""

    @implementer(IBlockingWork)
    class BusyWork:
        def run(self, job: Callable[[], T]) -> defer.Deferred[T]:
            raise Busy("full")

    fd = openAt(tmp_path / "partial", 0)
    behind = WriteBehind(fd, BusyWork(), every=1, startWriteback=lambda *a: None)
    behind.wrote(5)
    assert behind.running is None
    defer.ensureDeferred(behind.drain())
    os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_sync_file_range_is_found_and_works(tmp_path: Path) -> None:
    """On Linux the real C{sync_file_range} is used, and it accepts a written range."""
    start = _startWriteback()
    assert start is not None
    fd = openAt(tmp_path / "partial", 4096)
    assert start(fd, 0, 4096) == 0
    os.close(fd)
