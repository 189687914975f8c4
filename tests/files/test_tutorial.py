"""
The tutorials' own downloader (seed 000) and uploader (seed 003), written in
their style with blocking sockets, against ``--tutorial-listen``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from tcplab.files import FileServerFactory
from tcplab.files.storage import Upload
from tcplab.files.tutorial import TutorialFactory
from tcplab.observe import ConnectionObserver
from tests.support import METRICS_LISTENING, Loopback, ServerProcess, metricValue, scrape

TUTORIAL_LISTENING = re.compile(r"tutorial listening on [\d.]+:(\d+)")


def tutorialDownload(port: int, file_name: str, workdir: Path) -> bytes | None:
    """Seed 000's client: send the bare name, read until the close, save as [new]NAME."""
    tcp_client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp_client_socket.settimeout(20)
    tcp_client_socket.connect(("127.0.0.1", port))
    tcp_client_socket.send(file_name.encode("utf-8"))
    received = b""
    while True:
        receive_data = tcp_client_socket.recv(1024)
        if not receive_data:
            break
        received += receive_data
    if received:
        with open(workdir / ("[new]" + file_name.replace("/", "_")), "wb") as file:
            file.write(received)
    tcp_client_socket.close()
    return received or None


def tutorialUpload(port: int, files: list[tuple[str, bytes]]) -> str:
    """
    Seed 003's client: for each file, struct.pack('i', len(header)), the JSON
    header, then the bytes line by line; several files on one connection.
    Returns "sent", or how the server's close showed.
    """
    client = socket.socket()
    client.settimeout(20)
    client.connect(("127.0.0.1", port))
    try:
        for name, data in files:
            res_d = {"file_name": name, "file_size": len(data), "msg": "注意身体,多喝营养快线"}
            json_bytes = json.dumps(res_d).encode("utf-8")
            client.send(struct.pack("i", len(json_bytes)))
            client.send(json_bytes)
            for line in data.splitlines(keepends=True):
                client.sendall(line)
        client.shutdown(socket.SHUT_WR)
        return "sent" if client.recv(1) == b"" else "answered"
    except OSError as e:
        return type(e).__name__
    finally:
        client.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "root"
    directory.mkdir()
    return directory


async def serveTutorial(
    loopback: Loopback, root: Path, **kwargs: Any
) -> tuple[int, ConnectionObserver, FileServerFactory]:
    files = FileServerFactory(str(root), **kwargs)
    observer = ConnectionObserver(TutorialFactory(files), "tcplab-files")
    return await loopback.listen(observer), observer, files


async def allClosed(observer: ConnectionObserver) -> None:
    """Wait until the server has seen every tutorial connection end."""
    await defer.gatherResults([p.closed for p in list(observer.protocols)])


@pytest_twisted.ensureDeferred
async def test_downloader_gets_files(loopback: Loopback, root: Path, tmp_path: Path) -> None:
    """The tutorial downloader gets whole files (a big one, a one-letter name, a nested one)."""
    big = os.urandom(3 * 1024 * 1024 + 7)
    (root / "movie.mp4").write_bytes(big)
    (root / "a").write_bytes(b"tiny")
    (root / "sub").mkdir()
    (root / "sub" / "n.txt").write_text("nested\n")
    port, _, files = await serveTutorial(loopback, root)
    for name, content in [("movie.mp4", big), ("a", b"tiny"), ("sub/n.txt", b"nested\n")]:
        assert await threads.deferToThread(tutorialDownload, port, name, tmp_path) == content
    assert (tmp_path / "[new]movie.mp4").read_bytes() == big
    assert files.metrics.value("tcplab_file_transfers_total", op="get", outcome="ok") == 3


@pytest_twisted.ensureDeferred
async def test_downloader_refused_saves_nothing(
    loopback: Loopback, root: Path, tmp_path: Path
) -> None:
    """A missing file, a directory or a path out of the root: the close alone, nothing saved."""
    (root / "dir").mkdir()
    (tmp_path / "secret").write_text("secret")
    port, _, files = await serveTutorial(loopback, root)
    for name in ["missing.txt", "dir", "../secret", "/etc/passwd"]:
        assert await threads.deferToThread(tutorialDownload, port, name, tmp_path) is None
    assert not list(tmp_path.glob("[[]new]*"))
    assert files.metrics.value("tcplab_file_transfers_total", op="get", outcome="refused") == 4


@pytest_twisted.ensureDeferred
async def test_uploader_stores_several_files_per_connection(
    loopback: Loopback, root: Path
) -> None:
    """Several files on one connection land whole, an existing one replaced, no partial left."""
    (root / "old.txt").write_text("old")
    batch = [
        ("性感荷官在线发牌.mp4", os.urandom(1024 * 1024)),
        ("old.txt", b"new content\nwith lines\n"),
        ("empty", b""),
        ("deep/er/file.bin", os.urandom(70_000)),
    ]
    port, observer, files = await serveTutorial(loopback, root, writable=True)
    assert await threads.deferToThread(tutorialUpload, port, batch) == "sent"
    await allClosed(observer)
    for name, data in batch:
        assert (root / name).read_bytes() == data
    assert sorted(os.listdir(root)) == sorted(["性感荷官在线发牌.mp4", "old.txt", "empty", "deep"])
    assert files.metrics.value("tcplab_file_transfers_total", op="put", outcome="ok") == 4
    assert files.uploadsInProgress == 0


@pytest.mark.parametrize(
    "kwargs, name, size",
    [
        ({"writable": False}, "x.bin", 10),
        ({"writable": True, "maxSize": 1000}, "x.bin", 1001),
        ({"writable": True}, "../escape.bin", 10),
        ({"writable": True}, "/tmp/abs.bin", 10),
    ],
)
@pytest_twisted.ensureDeferred
async def test_uploader_refusals_store_nothing(
    loopback: Loopback, root: Path, kwargs: dict[str, Any], name: str, size: int
) -> None:
    """Read-only, over --max-size (from the header) or a name out of the root: nothing stored."""
    port, observer, files = await serveTutorial(loopback, root, **kwargs)
    result = await threads.deferToThread(tutorialUpload, port, [(name, b"z" * size)])
    await allClosed(observer)
    assert result != "answered"
    assert os.listdir(root) == []
    assert not (root.parent / "escape.bin").exists()
    assert files.metrics.value("tcplab_file_transfers_total", op="put", outcome="refused") == 1


@pytest_twisted.ensureDeferred
async def test_uploader_respects_a_running_upload(loopback: Loopback, root: Path) -> None:
    """A tutorial upload of a name another upload holds is refused; that upload is untouched."""
    port, observer, _ = await serveTutorial(loopback, root, writable=True)
    holder = Upload(FileServerFactory(str(root)).root.resolve("f"), 4, overwrite=True, resume=True)
    holder.write(b"ab")
    await threads.deferToThread(tutorialUpload, port, [("f", b"XXXX")])
    await allClosed(observer)
    holder.write(b"cd")
    holder.finish(hashlib.sha256(b"abcd").hexdigest())
    assert (root / "f").read_bytes() == b"abcd"


@pytest.mark.subprocess
def test_tutorial_programs_against_real_twistd(tmp_path: Path) -> None:
    """Through the real twistd: the uploader stores two files, the downloader gets one back."""
    root = tmp_path / "root"
    root.mkdir()
    payload = os.urandom(500_000)
    server = ServerProcess(
        "tcplab-files",
        [
            "--root",
            str(root),
            "--writable",
            "--tutorial-listen",
            "tcp:0:interface=127.0.0.1",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        ],
    )
    try:
        port = int(server.waitForLine(TUTORIAL_LISTENING).group(1))
        assert port != server.port
        assert tutorialUpload(port, [("one.bin", payload), ("two.txt", b"2\n")]) == "sent"
        server.waitForLine(re.compile(r"put 'two.txt': ok"))
        assert tutorialDownload(port, "one.bin", tmp_path) == payload
        assert (root / "two.txt").read_bytes() == b"2\n"
        server.waitForLine(re.compile(r"get 'one.bin': ok"))
        text = scrape(int(server.waitForLine(METRICS_LISTENING).group(1)))
        assert 'listener="tutorial"' in text
        transfers = "tcplab_file_transfers_total"
        assert (
            metricValue(text, f'{transfers}{{op="put",outcome="ok",service="tcplab-files"}}') == 2
        )
    finally:
        server.stop()
