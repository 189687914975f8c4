"""The file service over real loopback sockets, with the FileClient API."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.cred import strcred
from twisted.internet import defer

from tcplab.auth import Authenticator
from tcplab.files import FileClient, FileServerFactory, RemoteError, storage, wire
from tcplab.files.client import ConnectionLostError
from tcplab.observe import ConnectionObserver
from tests.support import Collector, Loopback, reactor


async def serve(loopback: Loopback, root: Path, **kwargs: Any) -> int:
    return await loopback.listen(
        ConnectionObserver(FileServerFactory(str(root), **kwargs), "tcplab-files")
    )


async def client(loopback: Loopback, port: int) -> FileClient:
    return await loopback.connect(port, FileClient())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "root"
    directory.mkdir()
    return directory


@pytest_twisted.ensureDeferred
async def test_operations_in_sequence_on_one_connection(loopback: Loopback, root: Path) -> None:
    """list, put, stat, get and delete follow each other on one connection."""
    port = await serve(loopback, root, writable=True)
    files = await client(loopback, port)
    assert await files.list("") == []
    payload = os.urandom(3 * 1024 * 1024 + 17)
    reply = await files.put("dir/data.bin", io.BytesIO(payload), len(payload))
    assert reply.sha256 == hashlib.sha256(payload).hexdigest()
    info = await files.stat("dir/data.bin")
    assert (info.kind, info.size) == ("file", len(payload))
    [entry] = await files.list("dir")
    assert entry.name == "data.bin" and entry.isFile
    sink = io.BytesIO()
    await files.get("dir/data.bin", sink)
    assert sink.getvalue() == payload
    await files.delete("dir/data.bin")
    with pytest.raises(RemoteError) as caught:
        await files.stat("dir/data.bin")
    assert caught.value.code == "not_found"


@pytest_twisted.ensureDeferred
async def test_empty_file(loopback: Loopback, root: Path) -> None:
    """A 0-byte file goes up and comes back, verified."""
    port = await serve(loopback, root, writable=True)
    files = await client(loopback, port)
    await files.put("empty", io.BytesIO(b""), 0)
    sink = io.BytesIO()
    header = await files.get("empty", sink)
    assert sink.getvalue() == b"" and header.size == 0
    assert (root / "empty").read_bytes() == b""


@pytest_twisted.ensureDeferred
async def test_get_resumes_after_cut_at_random_point(loopback: Loopback, root: Path) -> None:
    """A download cut at a random byte resumes from there and the whole file verifies."""
    payload = os.urandom(4 * 1024 * 1024)
    (root / "f").write_bytes(payload)
    port = await serve(loopback, root)
    cut = random.randrange(1, len(payload) - 1)
    first = await client(loopback, port)
    partial = io.BytesIO()
    seen = 0

    def cutter(count: int) -> None:
        nonlocal seen
        seen += count
        if seen >= cut:
            first.transport.abortConnection()

    with pytest.raises(ConnectionLostError):
        await first.get("f", partial, progress=cutter)
    kept = len(partial.getvalue())
    assert 0 < kept < len(payload)
    second = await client(loopback, port)
    await second.get("f", partial, offset=kept, prefix=partial)
    assert partial.getvalue() == payload


@pytest_twisted.ensureDeferred
async def test_put_resumes_after_cut_at_random_point(loopback: Loopback, root: Path) -> None:
    """An upload cut at a random byte keeps its partial; the next put sends only the rest."""
    payload = os.urandom(4 * 1024 * 1024)
    port = await serve(loopback, root, writable=True)
    cut = random.randrange(wire.CHUNK_SIZE, len(payload) - wire.CHUNK_SIZE)
    first = await client(loopback, port)
    sent = 0

    def cutter(count: int) -> None:
        nonlocal sent
        sent += count
        if sent >= cut and first.transport.connected:
            first.transport.abortConnection()

    with pytest.raises(ConnectionLostError):
        await first.put("f", io.BytesIO(payload), len(payload), progress=cutter)
    await first.closed
    assert not (root / "f").exists(), "an interrupted upload never shows under its name"
    second = await client(loopback, port)
    resumedFrom: list[int] = []
    await second.put("f", io.BytesIO(payload), len(payload), progress=resumedFrom.append)
    assert resumedFrom[0] > 0, "the kept part was not sent again"
    assert (root / "f").read_bytes() == payload
    assert os.listdir(root) == ["f"]


@pytest_twisted.ensureDeferred
async def test_corrupted_partial_caught_by_checksum(loopback: Loopback, root: Path) -> None:
    """A partial whose bytes were changed meanwhile fails the SHA-256 check, never lands."""
    payload = os.urandom(200_000)
    port = await serve(loopback, root, writable=True)
    bogus = b"X" * 100_000
    (root / f".f.{len(payload)}.tcplab-partial").write_bytes(bogus)
    files = await client(loopback, port)
    with pytest.raises(RemoteError) as caught:
        await files.put("f", io.BytesIO(payload), len(payload))
    assert caught.value.code == "checksum_mismatch"
    assert os.listdir(root) == []
    again = await client(loopback, port)
    await again.put("f", io.BytesIO(payload), len(payload))
    assert (root / "f").read_bytes() == payload


@pytest_twisted.ensureDeferred
async def test_wrong_digest_from_client(loopback: Loopback, root: Path) -> None:
    """An upload whose announced SHA-256 differs from the data is refused and discarded."""
    port = await serve(loopback, root, writable=True)
    raw: Collector = await loopback.connect(port)
    raw.transport.write(wire.frame(wire.encode({"op": "put", "path": "x", "size": 3})))
    raw.transport.write(wire.dataFrame(b"abc"))
    raw.transport.write(wire.frame(wire.encode({"sha256": "0" * 64})))
    await raw.waitForText(b"checksum_mismatch")
    assert os.listdir(root) == []


@pytest_twisted.ensureDeferred
async def test_read_only_and_max_size(loopback: Loopback, root: Path) -> None:
    """A read-only server refuses writes; --max-size refuses before any byte is stored."""
    (root / "keep").write_bytes(b"k")
    readOnly = await client(loopback, await serve(loopback, root))
    with pytest.raises(RemoteError) as caught:
        await readOnly.put("x", io.BytesIO(b"1"), 1)
    assert caught.value.code == "not_allowed"
    with pytest.raises(RemoteError) as caught:
        await readOnly.delete("keep")
    assert caught.value.code == "not_allowed"
    limited = await client(loopback, await serve(loopback, root, writable=True, maxSize=10))
    with pytest.raises(RemoteError) as caught:
        await limited.put("big", io.BytesIO(b"x" * 11), 11)
    assert caught.value.code == "too_large"
    assert sorted(os.listdir(root)) == ["keep"]


@pytest_twisted.ensureDeferred
async def test_overwrite_only_when_asked(loopback: Loopback, root: Path) -> None:
    """An existing file is replaced only with overwrite."""
    (root / "x").write_bytes(b"old")
    files = await client(loopback, await serve(loopback, root, writable=True))
    with pytest.raises(RemoteError) as caught:
        await files.put("x", io.BytesIO(b"new"), 3)
    assert caught.value.code == "exists"
    await files.put("x", io.BytesIO(b"new"), 3, overwrite=True)
    assert (root / "x").read_bytes() == b"new"


@pytest_twisted.ensureDeferred
async def test_path_escapes_refused_over_the_wire(loopback: Loopback, root: Path) -> None:
    """Escaping paths get not_allowed over the wire and the connection keeps serving."""
    files = await client(loopback, await serve(loopback, root, writable=True))
    for path in ["../x", "/etc/passwd", "a\\..\\b", "a\x00b"]:
        with pytest.raises(RemoteError) as caught:
            await files.stat(path)
        assert caught.value.code == "not_allowed", path
    assert await files.list("") == []


@pytest_twisted.ensureDeferred
async def test_bad_frames(loopback: Loopback, root: Path) -> None:
    """Malformed JSON is an error on a live connection; an oversized frame ends it."""
    port = await serve(loopback, root)
    lenient: Collector = await loopback.connect(port)
    lenient.transport.write(wire.frame(b'{"op": "list", "op": "get"}'))
    await lenient.waitForText(b"bad_request")
    lenient.transport.write(wire.frame(wire.encode({"op": "list", "path": ""})))
    await lenient.waitForText(b'"entries":[]')
    raw: Collector = await loopback.connect(port)
    raw.transport.write(wire.PREFIX.pack(2**31 - 1) + b"{")
    await raw.closed
    reply = wire.decode(bytes(raw.received)[4:])
    assert reply["error"] == "too_large"


@pytest_twisted.ensureDeferred
async def test_disk_full_reported_server_keeps_serving(
    loopback: Loopback, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk mid-upload is a no_space error, the partial goes, others are served."""
    original = storage.Upload.write

    def writeUntilFull(self: storage.Upload, chunk: bytes) -> None:
        if self.received > 100_000:
            self.file.write = _full  # type: ignore[method-assign,assignment]
        original(self, chunk)

    monkeypatch.setattr(storage.Upload, "write", writeUntilFull)
    (root / "other").write_bytes(b"still here")
    port = await serve(loopback, root, writable=True)
    files = await client(loopback, port)
    with pytest.raises((RemoteError, ConnectionLostError)) as caught:
        await files.put("x", io.BytesIO(os.urandom(1_000_000)), 1_000_000)
    if isinstance(caught.value, RemoteError):
        assert caught.value.code == "no_space"
    assert sorted(os.listdir(root)) == ["other"]
    reader = await client(loopback, port)
    sink = io.BytesIO()
    await reader.get("other", sink)
    assert sink.getvalue() == b"still here"


def _full(data: bytes) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest_twisted.ensureDeferred
async def test_concurrent_transfers(loopback: Loopback, root: Path) -> None:
    """Several clients get and put at once, each verified."""
    payloads = {f"f{n}": os.urandom(1024 * 1024 + n) for n in range(4)}
    for name, data in payloads.items():
        (root / name).write_bytes(data)
    port = await serve(loopback, root, writable=True)
    sinks = {name: io.BytesIO() for name in payloads}
    clients = [await client(loopback, port) for _ in range(8)]
    work: list[defer.Deferred[Any]] = [
        c.get(name, sinks[name]) for c, name in zip(clients[:4], payloads)
    ]
    work += [
        c.put(f"up{n}", io.BytesIO(payloads[f"f{n}"]), len(payloads[f"f{n}"]))
        for n, c in enumerate(clients[4:])
    ]
    await defer.gatherResults(work)
    for name, data in payloads.items():
        assert sinks[name].getvalue() == data
        assert (root / f"up{name[1:]}").read_bytes() == data


@pytest_twisted.ensureDeferred
async def test_logins(loopback: Loopback, root: Path) -> None:
    """With --auth anonymous users may read but not write; a wrong password fails slowly."""
    (root / "public").write_bytes(b"p")
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], reactor())
    port = await serve(loopback, root, writable=True, authenticator=auth)
    files = await client(loopback, port)
    assert [e.name for e in await files.list("")] == ["public"]
    with pytest.raises(RemoteError) as caught:
        await files.put("x", io.BytesIO(b"1"), 1)
    assert caught.value.code == "auth_required"
    intruder = await client(loopback, port)
    with pytest.raises(RemoteError) as caught:
        await intruder.login("alice", "wrong")
    assert caught.value.code == "auth_failed"
    await files.login("alice", "secret")
    await files.put("x", io.BytesIO(b"1"), 1)
    closed = await client(
        loopback, await serve(loopback, root, authenticator=auth, anonymousReads=False)
    )
    with pytest.raises(RemoteError) as caught:
        await closed.list("")
    assert caught.value.code == "auth_required"


@pytest_twisted.ensureDeferred
async def test_readme_embedding_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's FileServerFactory + FileClient example runs as written."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [block.split("```")[0] for block in readme.split("```python")[1:]]
    example = next(block for block in blocks if "async def mirror" in block)
    namespace: dict[str, Any] = {}
    exec(example, namespace)
    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.chdir(tmp_path)
    notes = os.urandom(300_000)
    (tmp_path / "notes.txt").write_bytes(notes)
    listing = await namespace["mirror"](reactor(), str(share))
    assert (share / "notes.txt").read_bytes() == notes
    assert (tmp_path / "notes-copy.txt").read_bytes() == notes
    assert [entry.name for entry in listing] == ["notes.txt"]
