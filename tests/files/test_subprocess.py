"""The real ``twistd -n tcplab-files``, driven by the tutorial socket client and ``tcplab``."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.files import socket_client
from tests.support import (
    METRICS_LISTENING,
    TCPLAB,
    ServerProcess,
    metricValue,
    runTcplab,
    scrape,
)

pytestmark = pytest.mark.subprocess


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_text("alpha\n")
    (root / "docs" / "b.txt").write_text("beta\n")
    server = ServerProcess("tcplab-files", ["--root", str(root), "--writable"])
    yield server, root
    server.stop()


def test_socket_client_downloads_and_uploads(served: tuple[ServerProcess, Path]) -> None:
    """The ~40-line socket/struct/json/hashlib client gets and puts against the real server."""
    server, root = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        out = io.BytesIO()
        assert socket_client.download(sock, "data.bin", out) == (root / "data.bin").stat().st_size
        assert out.getvalue() == (root / "data.bin").read_bytes()
        payload = os.urandom(200_000)
        reply = socket_client.upload(sock, "from-socket.bin", payload)
        assert reply == {
            "ok": True,
            "done": True,
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        with pytest.raises(OSError, match="not_found"):
            socket_client.request(sock, {"op": "stat", "path": "missing"})
    assert (root / "from-socket.bin").read_bytes() == payload


def test_tcplab_commands(served: tuple[ServerProcess, Path], tmp_path: Path) -> None:
    """tcplab ls, get (-o, -r, -o -), put (--to, -r) and rm against the real server."""
    server, root = served
    address = f"127.0.0.1:{server.port}"
    listing = runTcplab("ls", address)
    assert listing.returncode == 0
    assert b"data.bin" in listing.stdout and b"docs/" in listing.stdout
    out = tmp_path / "out"
    out.mkdir()
    got = runTcplab("get", address, "data.bin", "docs", "-r", "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert (out / "data.bin").read_bytes() == (root / "data.bin").read_bytes()
    assert (out / "docs" / "b.txt").read_text() == "beta\n"
    assert runTcplab("get", address, "docs/a.txt", "-o", "-").stdout == b"alpha\n"
    put = runTcplab("put", address, str(out / "docs"), str(out / "data.bin"), "-r", "--to", "up")
    assert put.returncode == 0, put.stderr
    assert (root / "up" / "docs" / "a.txt").read_text() == "alpha\n"
    assert (root / "up" / "data.bin").read_bytes() == (root / "data.bin").read_bytes()
    assert runTcplab("rm", address, "up/data.bin").returncode == 0
    assert not (root / "up" / "data.bin").exists()


def test_exit_codes(served: tuple[ServerProcess, Path], tmp_path: Path) -> None:
    """Not found, not allowed, exists and connection failure: one line, distinct statuses."""
    server, root = served
    address = f"127.0.0.1:{server.port}"
    cases = [
        (("get", address, "missing", "-o", str(tmp_path / "m")), 4),
        (("get", address, "../etc/passwd", "-o", str(tmp_path / "p")), 5),
        (("put", address, str(root / "data.bin")), 7),
        (("ls", "127.0.0.1:1"), 3),
    ]
    for args, status in cases:
        result = runTcplab(*args)
        assert result.returncode == status, (args, result.stderr)
        assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr


def test_get_resumes_partial_and_rejects_bad_one(
    served: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    """tcplab get continues an interrupted download; a corrupted partial is fetched again."""
    server, root = served
    data = (root / "data.bin").read_bytes()
    partial = tmp_path / ".data.bin.tcplab-partial"
    partial.write_bytes(data[:1_000_000])
    result = runTcplab("get", f"127.0.0.1:{server.port}", "data.bin", "-o", str(tmp_path), "-v")
    assert result.returncode == 0, result.stderr
    assert b"tcplab: data.bin: resuming at 1000000 bytes\n" in result.stderr
    assert (tmp_path / "data.bin").read_bytes() == data and not partial.exists()
    corrupt = tmp_path / "again"
    corrupt.mkdir()
    (corrupt / ".data.bin.tcplab-partial").write_bytes(b"\x00" * 1_000_000)
    result = runTcplab("get", f"127.0.0.1:{server.port}", "data.bin", "-o", str(corrupt))
    assert result.returncode == 0, result.stderr
    assert b"did not match; downloading it again" in result.stderr
    assert (corrupt / "data.bin").read_bytes() == data


def test_read_only_by_default(tmp_path: Path) -> None:
    """Without --writable, tcplab put is refused with exit 5."""
    (tmp_path / "f").write_bytes(b"x")
    with ServerProcess("tcplab-files", ["--root", str(tmp_path)]) as server:
        result = runTcplab("put", f"127.0.0.1:{server.port}", str(tmp_path / "f"), "--to", "new")
    assert result.returncode == 5
    assert b"read-only" in result.stderr


def test_local_file_errors_are_one_line(
    served: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    """A download into a directory that does not exist: one line, exit 11, no traceback."""
    server, _ = served
    missing = tmp_path / "no-such-dir" / "copy.bin"
    result = runTcplab("get", f"127.0.0.1:{server.port}", "data.bin", "-o", str(missing))
    assert result.returncode == 11
    assert result.stderr.decode().splitlines() == [
        f"tcplab: get data.bin: {missing.parent / '.copy.bin.tcplab-partial'}: "
        "No such file or directory"
    ]


def test_put_as_another_name(tmp_path: Path) -> None:
    """--as uploads one file under another name (inside --to); with several it is refused."""
    root = tmp_path / "root"
    root.mkdir()
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(100_000))
    with ServerProcess("tcplab-files", ["--root", str(root), "--writable"]) as server:
        address = f"127.0.0.1:{server.port}"
        result = runTcplab("put", address, str(local), "--to", "dir", "--as", "renamed.bin")
        assert result.returncode == 0, result.stderr
        several = runTcplab("put", address, str(local), str(local), "--as", "x")
    assert (root / "dir" / "renamed.bin").read_bytes() == local.read_bytes()
    assert several.returncode == 2
    assert several.stderr == b"tcplab: --as names one upload; give exactly one LOCAL\n"


def test_put_from_stdin(served: tuple[ServerProcess, Path], tmp_path: Path) -> None:
    """put ADDRESS - --as NAME uploads a pipe and a redirected file; without --as it is refused."""
    server, root = served
    address = f"127.0.0.1:{server.port}"
    piped = os.urandom(300_000)
    result = runTcplab("put", address, "-", "--as", "in/piped.bin", input=piped)
    assert result.returncode == 0, result.stderr
    assert (root / "in" / "piped.bin").read_bytes() == piped
    local = tmp_path / "redirected.bin"
    local.write_bytes(os.urandom(100_000))
    with open(local, "rb") as stdin:
        redirected = subprocess.run(
            [TCPLAB, "put", address, "-", "--as", "in/redirected.bin"],
            stdin=stdin,
            capture_output=True,
            timeout=60,
        )
    assert redirected.returncode == 0, redirected.stderr
    assert (root / "in" / "redirected.bin").read_bytes() == local.read_bytes()
    nameless = runTcplab("put", address, "-", input=b"x")
    assert nameless.returncode == 2
    assert nameless.stderr == b"tcplab: uploading standard input (-) needs --as NAME\n"


def test_sigterm_lets_transfer_finish_or_keeps_partial(served: tuple[ServerProcess, Path]) -> None:
    """On SIGTERM an idle client is closed at once and the server exits by the signal."""
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        socket_client.request(sock, {"op": "list", "path": ""})
        server.process.send_signal(signal.SIGTERM)
        assert sock.recv(10) == b""
    assert server.stop() == -signal.SIGTERM


def test_get_into_a_fifo_writes_through(
    served: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    """-o onto a special file (a FIFO here, /dev/null in the benchmark) writes into it
    and never replaces it with a regular file."""
    import stat
    import threading

    server, root = served
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = bytearray()

    def drain() -> None:
        with open(fifo, "rb") as reader:
            while chunk := reader.read(65536):
                received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    result = runTcplab("get", f"127.0.0.1:{server.port}", "data.bin", "-o", str(fifo))
    reader.join(30)
    assert result.returncode == 0, result.stderr
    assert bytes(received) == (root / "data.bin").read_bytes()
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe", "root"], "no partial file left beside it"


def test_metrics_count_transfers(tmp_path: Path) -> None:
    """--metrics: a get and a refused put show up as transfers by outcome, with their bytes."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.bin").write_bytes(os.urandom(200_000))
    local = tmp_path / "up.bin"
    local.write_bytes(b"x" * 10)
    with ServerProcess(
        "tcplab-files", ["--root", str(root), "--metrics", "tcp:0:interface=127.0.0.1"]
    ) as server:
        metricsPort = int(server.waitForLine(METRICS_LISTENING).group(1))
        address = f"127.0.0.1:{server.port}"
        got = runTcplab("get", address, "data.bin", "-o", str(tmp_path / "copy"), "--quiet")
        assert got.returncode == 0, got.stderr
        refused = runTcplab("put", address, str(local), "--quiet")
        assert refused.returncode == 5, refused.stderr  # read-only: not allowed
        text = scrape(metricsPort)
    service = 'service="tcplab-files"'
    transfers = "tcplab_file_transfers_total"
    assert metricValue(text, f'{transfers}{{op="get",outcome="ok",{service}}}') == 1
    assert metricValue(text, f'{transfers}{{op="put",outcome="refused",{service}}}') == 1
    assert metricValue(text, f'tcplab_file_transfer_bytes_total{{op="get",{service}}}') == 200_000
    assert metricValue(text, "tcplab_connections_total") == 2
