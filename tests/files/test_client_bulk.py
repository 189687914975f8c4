"""
The ``tcplab`` file commands' bulk I/O over loopback: how their connection
reads and sends, and a download written back to disk as it grows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import pytest_twisted

from tcplab.cli import buildParser
from tcplab.cli.files_session import Session
from tcplab.files import FileServerFactory, download
from tcplab.files.client import DOWNLOAD_READ_SIZE
from tcplab.lentreads import LentReadClient
from tcplab.observe import ObservedProtocol
from tests.support import Loopback, reactor


@pytest_twisted.ensureDeferred
async def test_the_commands_read_in_bulk_and_send_at_once(
    loopback: Loopback, tmp_path: Path
) -> None:
    """
    The connection of tcplab get/put reads 1 MiB at a time, into a lent
    buffer (L{lendReads}), and sends without queueing.
    """
    port = await loopback.listen(FileServerFactory(str(tmp_path)))
    _, commands = buildParser()
    args = commands["get"].parse_intermixed_args([f"127.0.0.1:{port}", "x"])
    session = Session(reactor(), args)
    try:
        client = await session.connected()
        wrapper = client.transport
        assert isinstance(wrapper, ObservedProtocol)
        assert wrapper.direct
        assert wrapper.transport is not None and wrapper.transport.bufferSize == DOWNLOAD_READ_SIZE
        assert type(wrapper.transport) is LentReadClient
    finally:
        session.close()
        await client.closed


@pytest_twisted.ensureDeferred
async def test_get_starts_writing_back_as_it_downloads(
    loopback: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tcplab get starts the write-back of each stretch written, then lands the file intact."""
    ranges: list[tuple[int, int]] = []
    monkeypatch.setattr(download, "FLUSH_EVERY", 100_000)
    monkeypatch.setattr(
        download, "_startWriteback", lambda: lambda fd, start, count: ranges.append((start, count))
    )
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(1_000_000)
    (root / "big.bin").write_bytes(data)
    port = await loopback.listen(FileServerFactory(str(root)))
    _, commands = buildParser()
    output = tmp_path / "copy.bin"
    args = commands["get"].parse_intermixed_args(
        [f"127.0.0.1:{port}", "big.bin", "-o", str(output), "--quiet"]
    )
    assert await args.main(reactor(), args) == 0
    assert hashlib.sha256(output.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert ranges, "no write-back was started"
    assert all(count >= 100_000 for _, count in ranges)
    assert all(a + n == b for (a, n), (b, _) in pairwise(ranges)), "gaps or overlaps"
    assert ranges[0][0] == 0 and ranges[-1][0] + ranges[-1][1] <= len(data)


def test_quiet_commands_load_neither_tqdm_nor_the_server() -> None:
    """tcplab get/put without a progress bar import neither tqdm nor the file server's modules."""
    program = (
        "import argparse, sys\n"
        "import tcplab.cli.files_get, tcplab.cli.files_put\n"
        "from tcplab.cli.files_session import progressBar\n"
        "bar = progressBar(argparse.Namespace(quiet=True), 'x', 10, 0)\n"
        "bar.update(5)\n"
        "bar.close()\n"
        "print(sorted(m for m in ('tqdm', 'tcplab.files.server') if m in sys.modules))\n"
        "from tcplab.files import FileServerFactory\n"
        "print(FileServerFactory.__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.split("\n")[:2] == ["[]", "tcplab.files.server"]
