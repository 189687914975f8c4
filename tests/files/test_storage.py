"""Tests for L{tcplab.files.storage.Upload}: partial files, atomic rename, disk errors."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from twisted.python.filepath import FilePath

from tcplab.files import wire
from tcplab.files.storage import Upload, listDirectory


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_partial_invisible_until_verified(tmp_path: Path) -> None:
    """Data goes to a hidden partial; the name appears only after the SHA-256 check."""
    target = FilePath(str(tmp_path / "out.bin"))
    upload = Upload(target, 6, overwrite=False, resume=True)
    upload.write(b"abc")
    assert not target.exists()
    assert [e["name"] for e in listDirectory(FilePath(str(tmp_path)))] == []
    upload.write(b"def")
    upload.finish(sha(b"abcdef"))
    assert target.getContent() == b"abcdef"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_checksum_mismatch_removes_partial(tmp_path: Path) -> None:
    """A wrong digest is an error and leaves neither the file nor the partial."""
    upload = Upload(FilePath(str(tmp_path / "x")), 3, overwrite=False, resume=True)
    upload.write(b"abc")
    with pytest.raises(wire.ProtocolError) as caught:
        upload.finish(sha(b"abd"))
    assert caught.value.code == wire.CHECKSUM_MISMATCH
    assert os.listdir(tmp_path) == []


def test_resume_keeps_partial_and_hashes_it(tmp_path: Path) -> None:
    """A second upload of the same name and size continues after the kept part."""
    target = FilePath(str(tmp_path / "x"))
    first = Upload(target, 6, overwrite=False, resume=True)
    first.write(b"abcd")
    first.abort(keep=True)
    second = Upload(target, 6, overwrite=False, resume=True)
    assert second.offset == 4
    second.write(b"ef")
    second.finish(sha(b"abcdef"))
    assert target.getContent() == b"abcdef"


def test_no_resume_starts_over(tmp_path: Path) -> None:
    """resume=False truncates an old partial."""
    target = FilePath(str(tmp_path / "x"))
    first = Upload(target, 4, overwrite=False, resume=True)
    first.write(b"zz")
    first.abort(keep=True)
    assert Upload(target, 4, overwrite=False, resume=False).offset == 0


def test_existing_needs_overwrite(tmp_path: Path) -> None:
    """An existing file is refused unless overwrite was asked for, and then replaced."""
    (tmp_path / "x").write_bytes(b"old")
    target = FilePath(str(tmp_path / "x"))
    with pytest.raises(wire.ProtocolError) as caught:
        Upload(target, 3, overwrite=False, resume=True)
    assert caught.value.code == wire.EXISTS
    upload = Upload(target, 3, overwrite=True, resume=True)
    upload.write(b"new")
    upload.finish(sha(b"new"))
    assert target.getContent() == b"new"


def test_name_appearing_meanwhile_not_replaced(tmp_path: Path) -> None:
    """If the name appears during a no-overwrite upload, it is left alone."""
    target = FilePath(str(tmp_path / "x"))
    upload = Upload(target, 3, overwrite=False, resume=True)
    upload.write(b"new")
    (tmp_path / "x").write_bytes(b"theirs")
    with pytest.raises(wire.ProtocolError) as caught:
        upload.finish(sha(b"new"))
    assert caught.value.code == wire.EXISTS
    assert target.getContent() == b"theirs"


def test_more_than_announced_refused(tmp_path: Path) -> None:
    """Bytes beyond the announced size are a bad request."""
    upload = Upload(FilePath(str(tmp_path / "x")), 2, overwrite=False, resume=True)
    with pytest.raises(wire.ProtocolError) as caught:
        upload.write(b"abc")
    assert caught.value.code == wire.BAD_REQUEST


def test_disk_full_reported_and_partial_removed(tmp_path: Path) -> None:
    """A full disk is a no_space error and the partial is removed."""
    upload = Upload(FilePath(str(tmp_path / "x")), 10, overwrite=False, resume=True)

    def full(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    upload.file.write = full  # type: ignore[method-assign,assignment]
    with pytest.raises(wire.ProtocolError) as caught:
        upload.write(b"abc")
    assert caught.value.code == wire.NO_SPACE
    assert os.listdir(tmp_path) == []


def test_completed_upload_removes_stale_partials(tmp_path: Path) -> None:
    """A complete upload of a name clears partials other uploads of it left behind."""
    target = FilePath(str(tmp_path / "x"))
    stale = Upload(target, 100, overwrite=False, resume=True)
    stale.write(b"abandoned")
    stale.abort(keep=True)
    upload = Upload(target, 2, overwrite=False, resume=True)
    upload.write(b"ok")
    upload.finish(sha(b"ok"))
    assert os.listdir(tmp_path) == ["x"]
