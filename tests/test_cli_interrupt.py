"""
Ctrl-C (SIGINT) in every ``tcplab`` subcommand: exit status 130, one line
``tcplab: interrupted``, never a traceback, and a partial kept for resume.

Each test runs the real ``tcplab`` command and interrupts it at a known point
-- a server has seen its request, or a relay has passed on part of a
transfer -- never after a sleep.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import TCPLAB, ServerProcess, makeCertificates, runTcplab
from tests.tutorial_programs import EVENT_TIMEOUT, TutorialServer

pytestmark = pytest.mark.subprocess

INTERRUPTED = b"tcplab: interrupted\n"


def startTcplab(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start the real ``tcplab`` command with its output captured."""
    return subprocess.Popen(
        [TCPLAB, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def interrupt(process: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    """Send SIGINT; return the exit status, stdout and stderr."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


def silent(conn: socket.socket, server: TutorialServer) -> None:
    """A server that reads everything and never answers."""
    while server.recv(conn):
        pass


@pytest.fixture
def silentServer() -> Iterator[TutorialServer]:
    """A server that reads everything and never answers, closed after the test."""
    server = TutorialServer(silent, threadPerClient=True)
    yield server
    server.close()


class Relay:
    """
    A TCP relay to 127.0.0.1:C{upstream} that passes on at most C{upLimit}
    bytes from the client and C{downLimit} from the server, then holds the
    rest, so a transfer stops at a known point.  It counts what it passed.
    """

    def __init__(
        self, upstream: int, upLimit: int | None = None, downLimit: int | None = None
    ) -> None:
        self.upstream = upstream
        self.limits = {"up": upLimit, "down": downLimit}
        self.passed = {"up": 0, "down": 0}
        self.limitReached = threading.Event()
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, server]
            for source, sink, direction in ((client, server, "up"), (server, client, "down")):
                thread = threading.Thread(
                    target=self._pipe, args=(source, sink, direction), daemon=True
                )
                thread.start()
                self.threads.append(thread)

    def _pipe(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        limit = self.limits[direction]
        try:
            while not self.stopping.is_set():
                if limit is not None and self.passed[direction] >= limit:
                    self.limitReached.set()
                    self.stopping.wait()
                    return
                ready, _, _ = select.select([source], [], [], 0.5)
                if not ready:
                    continue
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if limit is not None:
                    data = data[: limit - self.passed[direction]]
                sink.sendall(data)
                self.passed[direction] += len(data)
        except OSError:
            return

    def close(self) -> None:
        """Drop every connection and stop."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(EVENT_TIMEOUT)


def waitForFileWithData(directory: Path, exclude: str) -> Path:
    """
    The partial download: a file in C{directory} other than C{exclude}
    holding some bytes.  (A file's size offers no event to wait on; this
    polls, bounded.)
    """
    deadline = time.monotonic() + EVENT_TIMEOUT
    while time.monotonic() < deadline:
        for path in directory.iterdir():
            if path.name != exclude and path.is_file() and path.stat().st_size > 0:
                return path
        time.sleep(0.01)
    raise AssertionError(f"no partial file appeared in {directory}: {list(directory.iterdir())}")


def test_echo_messages_interrupted(silentServer: TutorialServer) -> None:
    """Ctrl-C while tcplab echo waits for a reply exits 130 with one line."""
    process = startTcplab("echo", f"127.0.0.1:{silentServer.port}", "hello")
    silentServer.waitForBytes(b"hello\n")
    status, out, err = interrupt(process)
    assert (status, out, err) == (130, b"", INTERRUPTED)


def test_echo_interactive_interrupted(silentServer: TutorialServer) -> None:
    """Ctrl-C in interactive tcplab echo (stdin still open) exits 130, no traceback."""
    process = startTcplab("echo", f"127.0.0.1:{silentServer.port}", stdin=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(b"typed\n")
    process.stdin.flush()
    silentServer.waitForBytes(b"typed\n")
    status, out, err = interrupt(process)
    assert (status, out, err) == (130, b"", INTERRUPTED)


def test_echo_interrupted_during_tls_handshake(
    silentServer: TutorialServer, tmp_path: Path
) -> None:
    """Ctrl-C while the TLS handshake is still under way exits 130 with one line."""
    paths = makeCertificates(tmp_path)
    process = startTcplab(
        "echo", f"127.0.0.1:{silentServer.port}", "--cafile", str(paths["ca"]), "hi"
    )
    silentServer.waitForBytes(b"\x16\x03")  # the ClientHello
    status, out, err = interrupt(process)
    assert (status, out, err) == (130, b"", INTERRUPTED)


def test_chat_interrupted(silentServer: TutorialServer) -> None:
    """Ctrl-C in tcplab chat exits 130 with one line, leaving with /quit as IRC clients do."""
    process = startTcplab(
        "chat", f"127.0.0.1:{silentServer.port}", "--nick", "carol", stdin=subprocess.PIPE
    )
    silentServer.waitForBytes(b"/nick carol\r\n")
    process.send_signal(signal.SIGINT)
    silentServer.waitForBytes(b"/nick carol\r\n/quit\r\n")  # stdin is still open
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (130, b"", INTERRUPTED)


@pytest.mark.parametrize("command", [["ls"], ["rm", "some-file"], ["get", "some-file"]])
def test_file_requests_interrupted(
    silentServer: TutorialServer, command: list[str], tmp_path: Path
) -> None:
    """Ctrl-C while ls, rm or get waits for the server's answer exits 130 with one line."""
    process = subprocess.Popen(
        [TCPLAB, command[0], f"127.0.0.1:{silentServer.port}", *command[1:]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    silentServer.waitForBytes(b"{")  # the request's JSON has arrived
    status, out, err = interrupt(process)
    assert (status, out, err) == (130, b"", INTERRUPTED)
    assert list(tmp_path.iterdir()) == []


def test_get_interrupted_keeps_partial_for_resume(tmp_path: Path) -> None:
    """Ctrl-C mid-download exits 130, keeps the partial file, and the next get resumes it."""
    share, downloads = tmp_path / "share", tmp_path / "downloads"
    share.mkdir()
    downloads.mkdir()
    payload = os.urandom(4 * 1024 * 1024)
    (share / "big.bin").write_bytes(payload)
    with ServerProcess("tcplab-files", ["--root", str(share)]) as server:
        relay = Relay(server.port, downLimit=1024 * 1024)
        try:
            process = startTcplab(
                "get", f"127.0.0.1:{relay.port}", "big.bin", "-o", str(downloads / "big.bin")
            )
            assert relay.limitReached.wait(EVENT_TIMEOUT)
            partial = waitForFileWithData(downloads, "big.bin")
            status, _out, err = interrupt(process)
        finally:
            relay.close()
        assert (status, err) == (130, INTERRUPTED)
        assert not (downloads / "big.bin").exists()
        kept = partial.read_bytes()
        assert 0 < len(kept) < len(payload) and payload.startswith(kept)

        counting = Relay(server.port)
        try:
            result = runTcplab(
                "get", f"127.0.0.1:{counting.port}", "big.bin", "-o", str(downloads / "big.bin")
            )
        finally:
            counting.close()
        assert result.returncode == 0, result.stderr
        assert (downloads / "big.bin").read_bytes() == payload
        assert counting.passed["down"] < len(payload) - len(kept) + 64 * 1024


def test_put_interrupted_resumes(tmp_path: Path) -> None:
    """Ctrl-C mid-upload exits 130; the server keeps the partial and the next put resumes it."""
    import re

    share = tmp_path / "share"
    share.mkdir()
    source = tmp_path / "big.bin"
    payload = os.urandom(4 * 1024 * 1024)
    source.write_bytes(payload)
    with ServerProcess("tcplab-files", ["--root", str(share), "--writable"]) as server:
        relay = Relay(server.port, upLimit=1024 * 1024)
        try:
            process = startTcplab("put", f"127.0.0.1:{relay.port}", str(source))
            assert relay.limitReached.wait(EVENT_TIMEOUT)
            status, _out, err = interrupt(process)
        finally:
            relay.close()
        assert (status, err) == (130, INTERRUPTED)
        server.waitForLine(re.compile(r"\bput\b.*big\.bin"))  # the server saw the upload end

        counting = Relay(server.port)
        try:
            result = runTcplab("put", f"127.0.0.1:{counting.port}", str(source))
        finally:
            counting.close()
        assert result.returncode == 0, result.stderr
        assert (share / "big.bin").read_bytes() == payload
        assert counting.passed["up"] < len(payload) - 512 * 1024


def reap(pid: int) -> int:
    """Wait for child C{pid} to exit, killing it if it has not within the event timeout."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("command", ["chat", "ls"])
def test_interrupted_at_password_prompt(command: str) -> None:
    """Ctrl-C at the terminal's password prompt (--user) exits 130 with one line."""
    import pty

    pid, terminal = pty.fork()
    if pid == 0:  # the child: tcplab on a terminal, no password in the environment
        env = {k: v for k, v in os.environ.items() if k != "TCPLAB_PASSWORD"}
        os.execve(TCPLAB, [TCPLAB, command, "127.0.0.1:9", "--user", "alice"], env)
    try:
        shown = b""
        while b"password for alice: " not in shown:
            ready, _, _ = select.select([terminal], [], [], EVENT_TIMEOUT)
            assert ready, f"no prompt; got {shown!r}"
            shown += os.read(terminal, 1024)
        os.kill(pid, signal.SIGINT)
        rest = b""
        while select.select([terminal], [], [], EVENT_TIMEOUT)[0]:
            try:
                chunk = os.read(terminal, 1024)
            except OSError:  # the child is gone and the terminal closed
                break
            if not chunk:
                break
            rest += chunk
    finally:
        status = reap(pid)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 130
    assert rest == b"tcplab: interrupted\r\n"
