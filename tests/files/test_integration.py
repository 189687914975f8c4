"""
The file service over real loopback sockets, with the FileClient API: one
smoke test of every operation, cuts at random points on real sockets, and
concurrent clients.  Protocol-level tests run in memory in
test_client_against_server.py and test_client_protocol.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from tcplab.files import FileClient, FileServerFactory, RemoteError, wire
from tcplab.files.client import ConnectionLostError
from tcplab.observe import ConnectionObserver
from tests.support import Loopback, reactor


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
    observer = ConnectionObserver(FileServerFactory(str(root), writable=True), "tcplab-files")
    port = await loopback.listen(observer)
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
    # The server hears of the cut in its own time: until it has, the name is
    # still being uploaded ("busy"), as a real client retrying would see.
    await defer.gatherResults([served.closed for served in observer.openConnections()])
    assert not (root / "f").exists(), "an interrupted upload never shows under its name"
    second = await client(loopback, port)
    resumedFrom: list[int] = []
    await second.put("f", io.BytesIO(payload), len(payload), progress=resumedFrom.append)
    assert resumedFrom[0] > 0, "the kept part was not sent again"
    assert (root / "f").read_bytes() == payload
    assert os.listdir(root) == ["f"]


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
