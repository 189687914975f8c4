"""
``tcplab chat`` distrusting its server: a last line without a line end, a
server that ignores ``/quit``, a line over 64 KiB, and a refused login
(against the real ``twistd -n tcplab-chat --auth``).  The real ``tcplab``
command runs in a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import pytest

from tcplab.cli.chat import TruncatingLineSplitter, renamedTo, showLine
from tests.chat.test_subprocess import LineClient
from tests.support import TCPLAB, ServerProcess, runTcplab
from tests.tutorial_programs import TutorialServer

pytestmark = pytest.mark.subprocess


def runChat(*args: str, input: bytes, password: str | None = None) -> Any:
    """Run ``tcplab chat`` with C{input} on stdin and C{$TCPLAB_PASSWORD} set if given."""
    env = dict(os.environ)
    env.pop("TCPLAB_PASSWORD", None)
    if password is not None:
        env["TCPLAB_PASSWORD"] = password
    return subprocess.run(
        [TCPLAB, "chat", *args], input=input, capture_output=True, timeout=60, env=env
    )


def test_last_line_without_newline_is_shown() -> None:
    """A server whose last line has no line end before it closes: the line is still shown."""

    def server(conn: socket.socket, tutorial: TutorialServer) -> None:
        conn.sendall(b"*** welcome\r\nlast words")

    with TutorialServer(server) as tutorial:
        result = runTcplab("chat", f"127.0.0.1:{tutorial.port}", input=b"")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"*** welcome\nlast words\n"


def test_server_ignoring_quit_is_left_after_quit_wait() -> None:
    """At the end of stdin, /quit is sent; a server that ignores it is left after --quit-wait."""

    def server(conn: socket.socket, tutorial: TutorialServer) -> None:
        conn.sendall(b"hi there\n")
        while tutorial.recv(conn):
            pass

    with TutorialServer(server) as tutorial:
        result = runTcplab(
            "chat", f"127.0.0.1:{tutorial.port}", "--quit-wait", "0.2", input=b"hello\n"
        )
        tutorial.waitForBytes(b"hello\n/quit\r\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hi there\n", b"")


def test_over_long_line_cut_short_with_marker() -> None:
    """A 100 KiB line is shown as its first 64 KiB and a marker; the next line is intact."""
    long = b"x" * (100 * 1024)

    def server(conn: socket.socket, tutorial: TutorialServer) -> None:
        conn.sendall(long + b"\r\nafter\r\n")

    with TutorialServer(server) as tutorial:
        result = runTcplab("chat", f"127.0.0.1:{tutorial.port}", input=b"")
    assert result.returncode == 0, result.stderr
    first, second, rest = result.stdout.split(b"\n")
    assert first == b"x" * 65536 + b" [... line cut short: 36864 more bytes not shown]"
    assert (second, rest) == (b"after", b"")


def test_truncating_splitter_every_split() -> None:
    """The splitter gives the same lines however the stream is cut, CRLF split included."""
    stream = b"one\r\n" + b"y" * 20 + b"\rtwo\nthree\r\n"
    expected = [(b"one", 0), (b"y" * 8, 12), (b"two", 0), (b"three", 0)]
    for cut in range(len(stream) + 1):
        splitter = TruncatingLineSplitter(maxLength=8)
        lines = list(splitter.feed(stream[:cut])) + list(splitter.feed(stream[cut:]))
        assert lines == expected, cut
        assert splitter.flush() is None


def test_show_line_escapes_and_marks() -> None:
    """A shown line has control characters escaped and says how much was cut."""
    assert showLine(b"a\x1b[2Jb", 0) == "a\\x1b[2Jb"
    assert showLine(b"abc", 5) == "abc [... line cut short: 5 more bytes not shown]"


@pytest.fixture(scope="module")
def authChat() -> Any:
    """The real chat server with one account, alice:s3cret."""
    server = ServerProcess("tcplab-chat", ["--auth", "memory:alice:s3cret"])
    yield server
    server.stop()


def test_wrong_password_exit_9(authChat: ServerProcess) -> None:
    """--user with a wrong password says why and exits 9; nothing from stdin is sent."""
    watcher = LineClient(authChat.port)
    watcher.readUntil("end of history")
    result = runChat(
        f"127.0.0.1:{authChat.port}", "--user", "alice", input=b"sneaky\n", password="wrong"
    )
    assert result.returncode == 9
    assert result.stderr == b"tcplab: login as alice failed: wrong password for alice\n"
    assert b"*** error: wrong password for alice\n" in result.stdout
    watcher.send("/who")
    heard = watcher.readUntil("in #lobby:")
    assert not any("sneaky" in line for line in heard), heard
    watcher.close()


def test_right_password_logs_in(authChat: ServerProcess) -> None:
    """--user with the right password logs in first, then stdin is relayed under that name."""
    watcher = LineClient(authChat.port)
    watcher.readUntil("end of history")
    result = runChat(
        f"127.0.0.1:{authChat.port}", "--user", "alice", input=b"hello\n", password="s3cret"
    )
    assert (result.returncode, result.stderr) == (0, b"")
    assert b" is now known as alice\n" in result.stdout
    assert watcher.readUntil("<alice>")[-1] == "<alice> hello"
    watcher.close()


def test_renamed_to_recognises_both_notices() -> None:
    """The login is confirmed by either rename notice, in any case, and by nothing else."""
    assert renamedTo("*** you are now known as alice", "alice")
    assert renamedTo("*** guest4 is now known as Alice", "alice")
    assert not renamedTo("<bob> *** x is now known as alice", "alice")
    assert not renamedTo("*** guest4 is now known as alicex", "alice")
