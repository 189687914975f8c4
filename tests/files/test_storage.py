"""Tests for the storage, partials and listing modules: locks, atomic rename, cleanup."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.python.filepath import FilePath

from tcplab.files import errors
from tcplab.files.listing import describe, describeEach, readNames
from tcplab.files.partials import (
    lockPartial,
    partialName,
    removeDirectory,
    sweepAbandonedPartials,
)
from tcplab.files.root import SafeRoot
from tcplab.files.storage import Cancellation, Cancelled, Upload, hashDescriptorPrefix


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fp(path: Path) -> FilePath[str]:
    return FilePath(str(path))


def listing(directory: Path) -> list[str]:
    return readNames(fp(directory))


def test_partial_invisible_until_verified(tmp_path: Path) -> None:
    """Data goes to a hidden partial; the name appears only after the SHA-256 check."""
    target = fp(tmp_path / "out.bin")
    upload = Upload(target, 6, overwrite=False, resume=True)
    upload.write(b"abc")
    assert not target.exists()
    assert listing(tmp_path) == []
    upload.write(b"def")
    upload.finish(sha(b"abcdef"))
    assert target.getContent() == b"abcdef"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_checksum_mismatch_removes_partial(tmp_path: Path) -> None:
    """A wrong digest is an error and leaves neither the file nor the partial."""
    upload = Upload(fp(tmp_path / "x"), 3, overwrite=False, resume=True)
    upload.write(b"abc")
    with pytest.raises(errors.ChecksumMismatch):
        upload.finish(sha(b"abd"))
    assert os.listdir(tmp_path) == []


def test_resume_keeps_partial_and_hashes_it(tmp_path: Path) -> None:
    """A second upload of the same name and size continues after the kept part, once hashed."""
    target = fp(tmp_path / "x")
    first = Upload(target, 6, overwrite=False, resume=True)
    first.write(b"abcd")
    first.abort(keep=True)
    second = Upload(target, 6, overwrite=False, resume=True)
    assert second.offset == 4 and second.hasher is None
    second.hashExisting()
    second.write(b"ef")
    second.finish(sha(b"abcdef"))
    assert target.getContent() == b"abcdef"


def test_resumed_upload_refuses_data_before_its_kept_part_is_hashed(tmp_path: Path) -> None:
    """A resumed upload given data before hashExisting says so and keeps the partial as it was."""
    target = fp(tmp_path / "x")
    first = Upload(target, 6, overwrite=False, resume=True)
    first.write(b"abcd")
    first.abort(keep=True)
    second = Upload(target, 6, overwrite=False, resume=True)
    with pytest.raises(RuntimeError, match="hashExisting"):
        second.write(b"ef")
    second.abort(keep=True)
    assert second.partial.getContent() == b"abcd"


def test_no_resume_starts_over(tmp_path: Path) -> None:
    """resume=False truncates an old partial."""
    target = fp(tmp_path / "x")
    first = Upload(target, 4, overwrite=False, resume=True)
    first.write(b"zz")
    first.abort(keep=True)
    assert Upload(target, 4, overwrite=False, resume=False).offset == 0


def test_existing_needs_overwrite(tmp_path: Path) -> None:
    """An existing file is refused unless overwrite was asked for, and then replaced."""
    (tmp_path / "x").write_bytes(b"old")
    target = fp(tmp_path / "x")
    with pytest.raises(errors.AlreadyExists):
        Upload(target, 3, overwrite=False, resume=True)
    upload = Upload(target, 3, overwrite=True, resume=True)
    upload.write(b"new")
    upload.finish(sha(b"new"))
    assert target.getContent() == b"new"


def test_name_appearing_meanwhile_not_replaced(tmp_path: Path) -> None:
    """If the name appears during a no-overwrite upload, it is left alone."""
    target = fp(tmp_path / "x")
    upload = Upload(target, 3, overwrite=False, resume=True)
    upload.write(b"new")
    (tmp_path / "x").write_bytes(b"theirs")
    with pytest.raises(errors.AlreadyExists):
        upload.finish(sha(b"new"))
    assert target.getContent() == b"theirs"


def test_more_than_announced_refused(tmp_path: Path) -> None:
    """Bytes beyond the announced size are a bad request."""
    upload = Upload(fp(tmp_path / "x"), 2, overwrite=False, resume=True)
    with pytest.raises(errors.BadRequest):
        upload.write(b"abc")


def test_disk_full_reported_and_partial_removed(tmp_path: Path) -> None:
    """A full disk is a no_space error and the partial is removed."""
    upload = Upload(fp(tmp_path / "x"), 10, overwrite=False, resume=True)

    def full(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    upload.file.write = full  # type: ignore[method-assign,assignment]
    with pytest.raises(errors.NoSpace):
        upload.write(b"abc")
    assert os.listdir(tmp_path) == []


def test_completed_upload_removes_stale_partials(tmp_path: Path) -> None:
    """A complete upload of a name clears partials other uploads of it left behind."""
    target = fp(tmp_path / "x")
    stale = Upload(target, 100, overwrite=False, resume=True)
    stale.write(b"abandoned")
    stale.abort(keep=True)
    upload = Upload(target, 2, overwrite=False, resume=True)
    upload.write(b"ok")
    upload.finish(sha(b"ok"))
    upload.removeStalePartials()
    assert os.listdir(tmp_path) == ["x"]


def test_second_upload_of_a_name_is_busy(tmp_path: Path) -> None:
    """While one upload holds a name's partial, another of the same name and size is refused."""
    target = fp(tmp_path / "x")
    first = Upload(target, 6, overwrite=True, resume=True)
    first.write(b"abc")
    with pytest.raises(errors.Busy):
        Upload(target, 6, overwrite=True, resume=False)
    first.write(b"def")
    first.finish(sha(b"abcdef"))
    assert target.getContent() == b"abcdef"
    again = Upload(target, 6, overwrite=True, resume=True)
    assert again.offset == 0, "the finished upload's partial is gone, not resumed"
    again.abort(keep=False)


def test_lock_holds_across_processes(tmp_path: Path) -> None:
    """The partial's lock is an OS lock: another process holding it makes the upload busy."""
    path = tmp_path / partialName("x", 3)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(errors.Busy):
            Upload(fp(tmp_path / "x"), 3, overwrite=False, resume=True)
    finally:
        holder.communicate(b"")
    Upload(fp(tmp_path / "x"), 3, overwrite=False, resume=True).abort(keep=False)


def test_stale_cleanup_matches_only_that_name_and_spares_held_partials(tmp_path: Path) -> None:
    """Finishing 'report' keeps 'report.pdf's partial, and never removes a partial in use."""
    other = Upload(fp(tmp_path / "report.pdf"), 10, overwrite=False, resume=True)
    other.write(b"half")
    other.abort(keep=True)
    upload = Upload(fp(tmp_path / "report"), 2, overwrite=False, resume=True)
    upload.write(b"ok")
    # Another process starts an upload of the name (another size) meanwhile.
    heldPath = str(tmp_path / partialName("report", 50))
    held = lockPartial(heldPath)
    assert held is not None
    try:
        upload.finish(sha(b"ok"))
        upload.removeStalePartials()
        assert sorted(os.listdir(tmp_path)) == sorted(
            ["report", partialName("report.pdf", 10), partialName("report", 50)]
        )
    finally:
        os.close(held)
    assert Upload(fp(tmp_path / "report.pdf"), 10, overwrite=False, resume=True).offset == 4


def test_upload_of_a_name_held_at_another_size_is_busy(tmp_path: Path) -> None:
    """Two uploads of one name never run at once, whatever sizes they announce."""
    first = Upload(fp(tmp_path / "report"), 50, overwrite=True, resume=True)
    first.write(b"still going")
    with pytest.raises(errors.Busy):
        Upload(fp(tmp_path / "report"), 2, overwrite=True, resume=True)
    assert sorted(os.listdir(tmp_path)) == [partialName("report", 50)]
    first.write(b"x" * 39)
    first.finish(sha(b"still going" + b"x" * 39))
    second = Upload(fp(tmp_path / "report"), 2, overwrite=True, resume=True)
    second.write(b"ok")
    second.finish(sha(b"ok"))
    assert (tmp_path / "report").read_bytes() == b"ok"


def test_vanished_partial_is_an_error(tmp_path: Path) -> None:
    """A partial removed from under a running upload fails it cleanly; nothing lands."""
    upload = Upload(fp(tmp_path / "x"), 2, overwrite=False, resume=True)
    upload.write(b"ok")
    os.unlink(upload.partial.path)
    with pytest.raises(errors.StorageFailure):
        upload.finish(sha(b"ok"))
    assert os.listdir(tmp_path) == []


def test_replaced_partial_is_not_taken_for_ours(tmp_path: Path) -> None:
    """If our partial was removed and a new upload made its own, finishing never lands theirs."""
    upload = Upload(fp(tmp_path / "x"), 2, overwrite=False, resume=True)
    upload.write(b"ok")
    os.unlink(upload.partial.path)
    theirs = Upload(fp(tmp_path / "x"), 2, overwrite=False, resume=True)
    theirs.write(b"no")
    theirs.file.flush()
    with pytest.raises(errors.StorageFailure):
        upload.finish(sha(b"ok"))
    assert not (tmp_path / "x").exists()
    theirs.finish(sha(b"no"))
    assert (tmp_path / "x").read_bytes() == b"no"


def test_longest_names_upload(tmp_path: Path) -> None:
    """A 255-byte name (the file system's limit) uploads: the partial's name is short."""
    name = "é" * 127 + "x"
    assert len(name.encode()) == 255
    upload = Upload(fp(tmp_path / name), 2, overwrite=False, resume=True)
    upload.write(b"ok")
    upload.finish(sha(b"ok"))
    assert (tmp_path / name).read_bytes() == b"ok"


def test_too_long_path_leaves_no_directories(tmp_path: Path) -> None:
    """A put refused for a too-long name creates no directories on its way."""
    with pytest.raises(errors.BadRequest):
        Upload(fp(tmp_path / "a" / "b" / ("x" * 256)), 1, overwrite=False, resume=True)
    with pytest.raises(errors.BadRequest):
        Upload(fp(tmp_path / "a" / ("y" * 300) / "f"), 1, overwrite=False, resume=True)
    assert os.listdir(tmp_path) == []


def test_sweep_removes_only_old_abandoned_partials(tmp_path: Path) -> None:
    """Expired partials nobody holds go; fresh ones and held ones stay."""
    (tmp_path / "sub").mkdir()
    old = Upload(fp(tmp_path / "sub" / "old"), 10, overwrite=False, resume=True)
    old.write(b"1")
    old.abort(keep=True)
    fresh = Upload(fp(tmp_path / "fresh"), 10, overwrite=False, resume=True)
    fresh.write(b"1")
    fresh.abort(keep=True)
    held = Upload(fp(tmp_path / "held"), 10, overwrite=False, resume=True)
    held.write(b"1")
    held.file.flush()
    longAgo = time.time() - 7200
    os.utime(old.partial.path, (longAgo, longAgo))
    os.utime(held.partial.path, (longAgo, longAgo))
    assert sweepAbandonedPartials(str(tmp_path), 3600, time.time()) == 1
    assert not old.partial.exists() and fresh.partial.exists() and held.partial.exists()
    held.abort(keep=False)


def test_remove_directory_with_only_abandoned_partials(tmp_path: Path) -> None:
    """A directory holding only interrupted partials can be removed; one in use cannot."""
    (tmp_path / "d").mkdir()
    gone = Upload(fp(tmp_path / "d" / "f"), 10, overwrite=False, resume=True)
    gone.abort(keep=True)
    held = Upload(fp(tmp_path / "d" / "g"), 10, overwrite=False, resume=True)
    with pytest.raises(errors.NotAllowed, match="in progress"):
        removeDirectory(str(tmp_path / "d"))
    held.abort(keep=True)
    removeDirectory(str(tmp_path / "d"))
    assert os.listdir(tmp_path) == []
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "real").write_text("x")
    with pytest.raises(errors.NotAllowed, match="not empty"):
        removeDirectory(str(tmp_path / "e"))


def test_hashing_a_prefix_can_be_cancelled(tmp_path: Path) -> None:
    """The blocking prefix hash gives the right digest, and stops when cancelled."""
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "f").write_bytes(data)
    with open(tmp_path / "f", "rb") as f:
        assert hashDescriptorPrefix(f.fileno(), 2_000_000).hexdigest() == sha(data[:2_000_000])
        cancellation = Cancellation()
        cancellation.cancel()
        with pytest.raises(Cancelled):
            hashDescriptorPrefix(f.fileno(), 2_000_000, cancellation)


def test_listing_marks_symlinks_inside_and_hides_outside(tmp_path: Path) -> None:
    """A link inside the root is its target's type with symlink: true; one outside is 'other'."""
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "file").write_bytes(b"12345")
    (tmp_path / "secret").write_bytes(b"x" * 99)
    os.symlink("file", root / "to-file")
    os.symlink("dir", root / "to-dir")
    os.symlink(tmp_path / "secret", root / "to-secret")
    os.symlink("nowhere", root / "dangling")
    safe = SafeRoot(root)
    entries = {e["name"]: e for e in describeEach(fp(root), listing(root), safe)}
    assert entries["to-file"]["type"] == "file" and entries["to-file"]["size"] == 5
    assert entries["to-file"]["symlink"] is True
    assert entries["to-dir"]["type"] == "dir" and entries["to-dir"]["symlink"] is True
    assert entries["to-secret"]["type"] == "other" and entries["to-secret"]["size"] == 0
    assert "symlink" not in entries["to-secret"] and "symlink" not in entries["file"]
    assert entries["dangling"]["type"] == "other"
    assert describe(fp(root / "dir"), safe)["type"] == "dir"
