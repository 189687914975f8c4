"""
``tcplab echo`` against the tutorials' servers (``tests/tutorial_programs.py``:
same wire behaviour as the seeds, blocking sockets in a thread): replies
without line ends, servers that never close, servers that answer every
``recv() == b''`` forever.  The real ``tcplab`` command runs in a subprocess.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support import ServerProcess, makeCertificates, runTcplab, tlsListen
from tests.tutorial_programs import (
    LAUGH,
    PROCESSING,
    RECEIVED,
    WELCOME,
    Handler,
    TutorialServer,
    ackThread,
    helloBaby,
    looping,
    numbered,
    oneShot,
    receivedForever,
    upper,
)

pytestmark = pytest.mark.subprocess

CUT_OFF_NOTE = (
    b"tcplab: the server kept sending after the end of input; "
    b"stopped reading %d bytes past what it owed (--eof-limit)\n"
)


def serve(handler: Handler) -> TutorialServer:
    """A tutorial server, a thread per client so a test's clients never queue."""
    return TutorialServer(handler, threadPerClient=True)


def test_one_shot_reply_without_newline_is_an_answer() -> None:
    """004's one-shot server (one fixed reply, no line end, then close): exit 0, reply shown."""
    with serve(oneShot(PROCESSING)) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "你好服务端")
    assert (result.returncode, result.stdout, result.stderr) == (0, PROCESSING, b"")


def test_hello_baby_server_whole_stream_shown() -> None:
    """003's server (31 x 'hello baby~', no line end, never reads, then close) is shown whole
    with empty stdin (sending it anything would make its close a reset)."""
    with serve(helloBaby) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", input=b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello baby~" * 31, b"")


def test_partial_reply_then_close_answers_last_message() -> None:
    """A reply without a line end followed by a clean close answers the message: exit 0."""

    def replyThenClose(conn: socket.socket, server: TutorialServer) -> None:
        server.recv(conn)
        conn.sendall(b"no line end")

    with serve(replyThenClose) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"no line end", b"")


def test_raw_mode_with_looping_server() -> None:
    """--raw sends each message as is and takes one read as its reply: 000's looping server."""
    with serve(looping) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "--raw", "one", "two", "three")
        assert (result.returncode, result.stdout, result.stderr) == (0, LAUGH * 3, b"")
        assert server.received[:3] == [b"one", b"two", b"three"]


def test_reply_timeout_with_looping_server() -> None:
    """-w lets line mode go on after a reply without a line end (a started reply counts)."""
    with serve(looping) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "-w", "1", "one", "two")
        assert (result.returncode, result.stdout, result.stderr) == (0, LAUGH * 2, b"")
        assert b"".join(server.received) == b"one\ntwo\n"


def test_reply_timeout_without_reply() -> None:
    """-w with no reply at all is exit 8 with one line saying which message."""

    def silent(conn: socket.socket, server: TutorialServer) -> None:
        while server.recv(conn):
            pass

    with serve(silent) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "-w", "0.2", "hello", "again")
    assert result.returncode == 8
    assert result.stderr == b"tcplab: no reply to message 1 of 2 within 0.2s\n"


def test_raw_greeting_numbered_server_with_exit() -> None:
    """002's server: --greeting reads the welcome first; 'exit' answered by a close is exit 0."""
    with serve(numbered) as server:
        result = runTcplab(
            "echo", f"127.0.0.1:{server.port}", "--raw", "--greeting", "hello", "world", "exit"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == WELCOME + "第1条信息:hello第2条信息:world".encode()
        assert server.received == [b"hello", b"world", b"exit"]


def test_raw_greeting_thread_ack_server() -> None:
    """002's thread-per-client server: the welcome, then one numbered ACK per message."""
    with serve(ackThread) as server:
        result = runTcplab(
            "echo", f"127.0.0.1:{server.port}", "--raw", "--greeting", "one", "two", "exit"
        )
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout == b"Hello World!1:ACK!2:ACK!"
        assert server.received == [b"one", b"two", b"exit"]


def test_raw_mode_closes_instead_of_half_closing() -> None:
    """--raw ends with a close: 001's server, which answers b'' forever, sends nothing more."""
    with serve(receivedForever) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "--raw", "-w", "0.2", "a", "b")
    assert (result.returncode, result.stdout, result.stderr) == (0, RECEIVED * 2, b"")


@pytest.mark.parametrize("limit", [None, 100])
def test_bounded_read_after_eof_messages(limit: int | None) -> None:
    """
    After the half-close, 001's server answers every recv() == b'' forever: the
    client reads --eof-limit bytes more (default 4096), says so, and exits 0.
    """
    options = [] if limit is None else ["--eof-limit", str(limit)]
    with serve(receivedForever) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "-w", "1", "one", *options)
    allowed = 4096 if limit is None else limit
    assert result.returncode == 0
    assert result.stdout.startswith(RECEIVED)
    assert len(result.stdout) == len(RECEIVED) + allowed
    assert result.stderr == CUT_OFF_NOTE % allowed


def test_bounded_read_after_eof_piped_stdin() -> None:
    """Piped stdin's EOF against 001's server: output bounded by what was owed plus the limit."""
    with serve(receivedForever) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", input=b"hello")
    assert result.returncode == 0
    assert len(result.stdout) <= len(b"hello") + 4096 + len(RECEIVED)
    assert result.stdout.startswith(RECEIVED[:1])
    assert result.stderr == CUT_OFF_NOTE % 4096


def test_upper_server_line_mode() -> None:
    """003's upper-case server: line mode works as is (its replies keep our line ends)."""
    with serve(upper) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "one", "two")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"ONE\nTWO\n", b"")


def test_wait_bounds_a_server_that_never_closes() -> None:
    """-w also bounds the wait for the close after the last reply (000's looping server in
    raw mode never closes on its own until it sees our close)."""
    with serve(looping) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "--raw", "-w", "0.2", "one")
        assert (result.returncode, result.stdout) == (0, LAUGH)


def test_piped_stdin_over_tls_comes_back_whole(tmp_path: Path) -> None:
    """
    TLS has no half-close: at the end of piped stdin the client waits for
    what the echo owes before closing, so nothing is cut off (several runs:
    the old TCP FIN under TLS lost the tail about half the time).
    """
    paths = makeCertificates(tmp_path)
    with ServerProcess("tcplab-echo", ["--listen", tlsListen(paths)]) as server:
        for _ in range(4):
            payload = os.urandom(512 * 1024)
            result = runTcplab(
                "echo", "--cafile", str(paths["ca"]), f"localhost:{server.port}", input=payload
            )
            assert (result.returncode, result.stderr) == (0, b"")
            assert result.stdout == payload


@pytest.mark.parametrize("interactive", [False, True], ids=["messages", "stdin"])
def test_stdout_reader_leaving_ends_quietly(interactive: bool) -> None:
    """When stdout's reader goes away (``| head``) the client hangs up and exits 0, no
    traceback, whether it sends messages or relays stdin."""
    import subprocess
    import threading

    from tests.support import TCPLAB

    with ServerProcess("tcplab-echo") as server:
        messages = [] if interactive else ["x" * 1000] * 60
        process = subprocess.Popen(
            [TCPLAB, "echo", f"127.0.0.1:{server.port}", *messages],
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None

        def feed() -> None:
            assert process.stdin is not None
            try:
                process.stdin.write(b"\0" * 3_000_000)
                process.stdin.close()
            except OSError:
                pass  # tcplab left first, as it should

        if interactive:
            threading.Thread(target=feed, daemon=True).start()
        assert len(process.stdout.read(10)) == 10
        process.stdout.close()
        try:
            status = process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
        assert (status, process.stderr.read()) == (0, b"")


def test_every_reply_reaches_a_pipe_before_the_quick_exit() -> None:
    """``tcplab echo`` ends without the interpreter's clean-up (L{tcplab.cli.console}), yet
    every reply it printed into a pipe arrives, and every ``--time`` note on stderr."""
    messages = [f"{number:04d}" + "x" * 995 for number in range(300)]
    with ServerProcess("tcplab-echo") as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "--time", *messages)
    assert result.returncode == 0
    assert result.stdout == "".join(f"{message}\n" for message in messages).encode()
    notes = result.stderr.decode().splitlines()
    assert [note.split(":")[0] for note in notes] == [f"[message {n + 1}" for n in range(300)]


def test_fractional_timeout_with_host_port() -> None:
    """``--timeout 0.5`` with a HOST:PORT address is a half-second bound, not a bad address
    (Twisted's tcp: description parser takes whole seconds only)."""
    with ServerProcess("tcplab-echo") as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "--timeout", "0.5", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hi\n", b"")
