"""
Tests for the download's gathered writes (L{tcplab.files.download.BoundedDownload}
into an unbuffered file, L{writeAll}) and its reserved space (L{reserveSpace}).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tcplab.files import download as downloadModule
from tcplab.files import wire
from tcplab.files.download import BoundedDownload, reserveSpace, writeAll
from tcplab.files.replies import MalformedReply
from tests.files.fake_server import connectFake, outcome


def test_pieces_into_a_raw_file_are_written_together_on_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Into an unbuffered file the pieces are hashed at once and written by
    one C{writev} on L{flush}, progress told of them then.
    """
    calls: list[int] = []
    realWritev = os.writev

    def countingWritev(fd: int, buffers: Any) -> int:
        calls.append(len(buffers))
        return realWritev(fd, buffers)

    monkeypatch.setattr(downloadModule.os, "writev", countingWritev)
    moved: list[int] = []
    with open(tmp_path / "f", "a+b", buffering=0) as sink:
        hasher = hashlib.sha256()
        received = BoundedDownload(sink, hasher, moved.append)
        received.expect(9, 9)
        for piece in (b"abc", memoryview(b"def"), b"ghi"):
            received.receive(piece)
        assert os.path.getsize(tmp_path / "f") == 0 and not moved
        assert hasher.digest() == hashlib.sha256(b"abcdefghi").digest()
        received.flush()
        received.flush()  # nothing left: nothing written
    assert (tmp_path / "f").read_bytes() == b"abcdefghi"
    assert calls == [3] and moved == [9]


def test_overrun_keeps_what_fits_for_the_flush(tmp_path: Path) -> None:
    """Past the announced size, what fits is still gathered and written; the rest is not."""
    with open(tmp_path / "f", "wb", buffering=0) as sink:
        received = BoundedDownload(sink, hashlib.sha256(), None)
        received.expect(4, 4)
        received.receive(b"ab")
        with pytest.raises(MalformedReply):
            received.receive(b"cdef")
        received.flush()
    assert (tmp_path / "f").read_bytes() == b"abcd"


def test_many_pieces_are_written_in_batches(tmp_path: Path) -> None:
    """No more than L{MAX_GATHERED} pieces wait (the kernel takes 1,024 per writev)."""
    with open(tmp_path / "f", "wb", buffering=0) as sink:
        received = BoundedDownload(sink, hashlib.sha256(), None)
        received.expect(3000, 3000)
        for _ in range(3000):
            received.receive(b"x")
            assert len(received.pending) < downloadModule.MAX_GATHERED
        received.flush()
    assert (tmp_path / "f").read_bytes() == b"x" * 3000


def test_write_all_goes_on_after_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writev that takes only part (mid-piece, or a piece and a half) is continued in order."""
    realWritev = os.writev

    def stingy(fd: int, buffers: Any) -> int:
        # At most 3 bytes a call: cut mid-piece, or a whole piece and part of the next.
        return realWritev(fd, [b"".join(bytes(b) for b in buffers)[:3]])

    monkeypatch.setattr(downloadModule.os, "writev", stingy)
    pieces: list[memoryview | bytes] = [b"hello", memoryview(b" "), b"wo", b"rld!"]
    with open(tmp_path / "f", "wb", buffering=0) as sink:
        assert writeAll(sink.fileno(), pieces) == 12
    assert (tmp_path / "f").read_bytes() == b"hello world!"


def test_write_all_refuses_to_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that takes nothing is an error, not an endless loop."""
    monkeypatch.setattr(downloadModule.os, "writev", lambda fd, buffers: 0)
    with pytest.raises(OSError):
        writeAll(99, [b"x"])


def test_a_raw_file_that_cannot_be_written_ends_the_download(tmp_path: Path) -> None:
    """A write error of the gathered pieces fails the get with that OSError and hangs up."""
    (tmp_path / "f").write_bytes(b"")
    files, connection = connectFake(lambda server, request: server.download(b"abc" * 50_000))
    with (
        open(tmp_path / "f", "rb", buffering=0) as readOnly,
        pytest.raises(OSError),
    ):
        outcome(connection, files.get("f", readOnly))
    assert files.disconnected


def test_data_is_written_before_the_reply_that_ends_it(tmp_path: Path) -> None:
    """
    Data and the closing reply delivered in one read: the file holds every
    byte by the time the get fires (the reply flushes what was gathered).
    """
    content = os.urandom(3 * wire.CHUNK_SIZE + 5)
    seen: list[bytes] = []
    with open(tmp_path / "f", "a+b", buffering=0) as sink:
        files, connection = connectFake(lambda server, request: server.download(content))
        done = files.get("f", sink)
        done.addCallback(lambda result: seen.append((tmp_path / "f").read_bytes()))
        outcome(connection, done)
    assert seen == [content]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fallocate is Linux's")
def test_reserved_space_leaves_the_size_alone(tmp_path: Path) -> None:
    """Blocks are reserved for the whole download; the size (where it resumes) does not move."""
    path = tmp_path / "partial"
    path.write_bytes(b"already")
    with open(path, "a+b", buffering=0) as file:
        if not reserveSpace(file.fileno(), 4 * 1024 * 1024):
            pytest.skip("this file system cannot reserve space")
        assert os.fstat(file.fileno()).st_size == 7
        assert os.fstat(file.fileno()).st_blocks * 512 >= 4 * 1024 * 1024
        file.write(b" here")
    assert path.read_bytes() == b"already here"
    assert not reserveSpace(-1, 10)
    assert not reserveSpace(0, 0)
