"""
FileClient against the real file server, in memory (tests/memory.py): the
protocol's answers without sockets or a real clock.  The loopback smoke
tests and the cut-and-resume tests stay in test_integration.py.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.cred import strcred
from twisted.internet.testing import MemoryReactorClock

from tcplab.auth import Authenticator
from tcplab.files import FileClient, FileServerFactory, RemoteError, storage, wire
from tcplab.files.client import ConnectionLostError
from tcplab.files.work import InlineWork
from tests.files.fake_server import outcome, serveInMemory
from tests.memory import MemoryConnection, connectInMemory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "root"
    directory.mkdir()
    return directory


def connectClient(root: Path, **kwargs: Any) -> tuple[FileClient, MemoryConnection]:
    """A FileClient connected in memory to a real file server on C{root}."""
    connection = serveInMemory(str(root), FileClient(), **kwargs)
    return connection.client, connection


def refusal(connection: MemoryConnection, operation: Any) -> str:
    """The error code C{operation} fails with."""
    with pytest.raises(RemoteError) as caught:
        outcome(connection, operation)
    return caught.value.code


def test_empty_file(root: Path) -> None:
    """A 0-byte file goes up and comes back, verified."""
    files, connection = connectClient(root, writable=True)
    outcome(connection, files.put("empty", io.BytesIO(b""), 0))
    sink = io.BytesIO()
    assert outcome(connection, files.get("empty", sink)).size == 0
    assert sink.getvalue() == b"" and (root / "empty").read_bytes() == b""


def test_corrupted_partial_caught_by_checksum(root: Path) -> None:
    """A partial whose bytes were changed meanwhile fails the SHA-256 check, never lands."""
    payload = os.urandom(200_000)
    (root / storage.partialName("f", len(payload))).write_bytes(b"X" * 100_000)
    files, connection = connectClient(root, writable=True)
    assert refusal(connection, files.put("f", io.BytesIO(payload))) == "checksum_mismatch"
    assert os.listdir(root) == []
    again, connection = connectClient(root, writable=True)
    outcome(connection, again.put("f", io.BytesIO(payload)))
    assert (root / "f").read_bytes() == payload


def test_wrong_digest_from_client(root: Path) -> None:
    """An upload whose announced SHA-256 differs from the data is refused and discarded."""
    connection = serveInMemory(str(root), writable=True)
    connection.clientSends(wire.frame(wire.encode({"op": "put", "path": "x", "size": 3})))
    connection.clientSends(wire.dataFrame(b"abc"))
    connection.clientSends(wire.frame(wire.encode({"sha256": "0" * 64})))
    assert b"checksum_mismatch" in connection.received()
    assert os.listdir(root) == []


def test_read_only_and_max_size(root: Path) -> None:
    """A read-only server refuses writes; --max-size refuses before any byte is stored."""
    (root / "keep").write_bytes(b"k")
    readOnly, connection = connectClient(root)
    assert refusal(connection, readOnly.put("x", io.BytesIO(b"1"))) == "not_allowed"
    assert refusal(connection, readOnly.delete("keep")) == "not_allowed"
    limited, connection = connectClient(root, writable=True, maxSize=10)
    assert refusal(connection, limited.put("big", io.BytesIO(b"x" * 11))) == "too_large"
    assert sorted(os.listdir(root)) == ["keep"]


def test_overwrite_only_when_asked(root: Path) -> None:
    """An existing file is replaced only with overwrite."""
    (root / "x").write_bytes(b"old")
    files, connection = connectClient(root, writable=True)
    assert refusal(connection, files.put("x", io.BytesIO(b"new"))) == "exists"
    outcome(connection, files.put("x", io.BytesIO(b"new"), overwrite=True))
    assert (root / "x").read_bytes() == b"new"


def test_path_escapes_refused(root: Path) -> None:
    """Escaping paths get not_allowed and the connection keeps serving."""
    files, connection = connectClient(root, writable=True)
    for path in ["../x", "/etc/passwd", "a\\..\\b", "a\x00b"]:
        assert refusal(connection, files.stat(path)) == "not_allowed", path
    assert outcome(connection, files.list("")) == []


def test_bad_frames(root: Path) -> None:
    """Malformed JSON is an error on a live connection; an oversized frame ends it."""
    connection = serveInMemory(str(root))
    connection.clientSends(wire.frame(b'{"op": "list", "op": "get"}'))
    assert b"bad_request" in connection.received()
    connection.clientSends(wire.frame(wire.encode({"op": "list", "path": ""})))
    assert connection.received().endswith(b'"entries":[],"more":false}')
    raw = serveInMemory(str(root))
    raw.clientSends(wire.PREFIX.pack(2**31 - 1) + b"{")
    assert raw.client.closed.called
    assert wire.decode(raw.received()[4:])["error"] == "too_large"


def test_disk_full_reported_server_keeps_serving(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk mid-upload is a no_space error, the partial goes, others are served."""
    original = storage.Upload.write

    def writeUntilFull(self: storage.Upload, chunk: bytes) -> None:
        if self.received > 100_000:
            self.file.write = _full  # type: ignore[method-assign,assignment]
        original(self, chunk)

    monkeypatch.setattr(storage.Upload, "write", writeUntilFull)
    (root / "other").write_bytes(b"still here")
    files, connection = connectClient(root, writable=True)
    with pytest.raises((RemoteError, ConnectionLostError)) as caught:
        outcome(connection, files.put("x", io.BytesIO(os.urandom(1_000_000))))
    if isinstance(caught.value, RemoteError):
        assert caught.value.code == "no_space"
    assert sorted(os.listdir(root)) == ["other"]
    reader, connection = connectClient(root)
    sink = io.BytesIO()
    outcome(connection, reader.get("other", sink))
    assert sink.getvalue() == b"still here"


def _full(data: bytes) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_logins(root: Path) -> None:
    """With --auth anonymous users may read but not write; a wrong password fails slowly."""
    (root / "public").write_bytes(b"p")
    clock = MemoryReactorClock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock)
    factory = FileServerFactory(
        str(root), writable=True, authenticator=auth, reactor=clock, work=InlineWork()
    )
    files = connectInMemory(factory, FileClient(), clock=clock)
    client: FileClient = files.client
    assert [e.name for e in outcome(files, client.list(""))] == ["public"]
    assert refusal(files, client.put("x", io.BytesIO(b"1"))) == "auth_required"
    intruder = connectInMemory(factory, FileClient(), clock=clock)
    attempt = intruder.client.login("alice", "wrong")
    intruder.flush()
    assert not attempt.called, "a wrong password is answered only after a delay"
    intruder.advance(1)
    assert refusal(intruder, attempt) == "auth_failed"
    outcome(files, client.login("alice", "secret"))
    outcome(files, client.put("x", io.BytesIO(b"1")))
    closed = serveInMemory(
        str(root), FileClient(), authenticator=auth, anonymousReads=False, clock=clock
    )
    assert refusal(closed, closed.client.list("")) == "auth_required"
