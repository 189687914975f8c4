"""
README's *Coming from the tutorials*, run as written.

Every ``<!-- tutorial: NAME -->`` block of README.md is read here and its
commands are run -- only the ports change: servers listen on port 0, clients
are pointed at the port the test's server got -- against the tutorials'
programs rewritten with the same wire behaviour (``tests/tutorial_programs``),
so the README cannot drift from what works.  The file service's tutorial
listener (``--tutorial-listen``) runs here too, with the tutorial programs of
tests/files/test_tutorial.py.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support import TCPLAB, TWISTD, ServerProcess
from tests.tutorial_programs import (
    LAUGH,
    PROCESSING,
    RECEIVED,
    WELCOME,
    TutorialServer,
    ackThread,
    helloBaby,
    looping,
    numbered,
    oneMessageClient,
    oneShot,
    receivedForever,
    replClient,
    udpClient,
    upper,
    welcomeClient,
)

pytestmark = pytest.mark.subprocess

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- tutorial: ([\w-]+) -->\s*```sh\n(.*?)```", re.DOTALL)
_ADDRESS = re.compile(r"127\.0\.0\.1:\d+")

TUTORIAL_PROGRAMS = {
    "client",
    "one-shot-server",
    "looping-server",
    "received-server",
    "repl-client",
    "numbered-server",
    "thread-server",
    "upper-server",
    "hello-baby-server",
    "downloader",
    "uploader",
    "udp",
}
"""Every tutorial program the README section must cover."""


@cache
def readmeBlocks() -> dict[str, list[list[str]]]:
    """Each tutorial block of README.md: its commands, split as the shell would."""
    blocks = {}
    for name, body in _BLOCK.findall(README.read_text(encoding="utf-8")):
        commands = [shlex.split(line) for line in body.splitlines() if line.strip()]
        blocks[name] = commands
    return blocks


def command(name: str, program: str) -> list[str]:
    """The one command of block C{name} that runs C{program} (twistd or tcplab)."""
    found = [argv for argv in readmeBlocks()[name] if argv[0] == program]
    assert len(found) == 1, f"block {name}: expected one {program} command, got {found}"
    return found[0]


def startServer(name: str, extra: dict[str, str] | None = None) -> ServerProcess:
    """Start block C{name}'s twistd command (on port 0; C{extra} replaces words)."""
    argv = [(extra or {}).get(word, word) for word in command(name, "twistd")]
    assert argv[:2] == ["twistd", "-n"], argv
    return ServerProcess(argv[2], argv[3:])


def runClient(name: str, port: int, cwd: Path, input: bytes | None = None) -> Any:
    """
    Run block C{name}'s tcplab command against 127.0.0.1:C{port}, honouring
    C{> FILE} and C{< FILE} as the shell would.
    """
    argv = [_ADDRESS.sub(f"127.0.0.1:{port}", word) for word in command(name, "tcplab")]
    target = None
    if ">" in argv:
        argv, target = argv[: argv.index(">")], argv[argv.index(">") + 1]
    if "<" in argv:
        argv, source = argv[: argv.index("<")], argv[argv.index("<") + 1]
        input = Path(source).read_bytes()
    result = subprocess.run(
        [TCPLAB, *argv[1:]],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        cwd=cwd,
    )
    if target is not None:
        (cwd / target).write_bytes(result.stdout)
    return result


@cache
def echoOptions() -> str:
    """``twistd -n tcplab-echo --help``, to see which options this checkout has."""
    return subprocess.run(
        [TWISTD, "--pidfile=", "-n", "tcplab-echo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def needsPerRead() -> None:
    """Skip unless count mode can answer per read (another branch adds --per-read)."""
    if "--per-read" not in echoOptions():
        pytest.skip("twistd -n tcplab-echo has no --per-read in this checkout")


@pytest.fixture
def tutorial() -> Iterator[list[TutorialServer]]:
    """Tutorial servers a test starts, all closed after it."""
    servers: list[TutorialServer] = []
    yield servers
    for server in servers:
        server.close()


def serve(servers: list[TutorialServer], handler: Any, perClient: bool = True) -> TutorialServer:
    """Start a tutorial server that the C{tutorial} fixture closes after the test."""
    server = TutorialServer(handler, threadPerClient=perClient)
    servers.append(server)
    return server


def test_every_tutorial_program_has_a_block() -> None:
    """README's section covers every tutorial program, each with its commands."""
    assert set(readmeBlocks()) == TUTORIAL_PROGRAMS
    assert all(readmeBlocks().values())


def test_client_against_echo(tmp_path: Path) -> None:
    """000's and 004's client (one message without a line end) gets it back from the echo,
    and so does tcplab echo, which replaces it."""
    message = "你好服务端,我是客户端小明!".encode()
    with startServer("client") as server:
        assert oneMessageClient(server.port, message, len(message)) == message
        result = runClient("client", server.port, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello\n", b"")


def test_table_commands_are_the_tested_ones() -> None:
    """Every complete echo command in the section's table is one a tutorial block runs."""
    section = README.read_text(encoding="utf-8").split("## Coming from the tutorials")[1]
    table = "\n".join(line for line in section.split("\n## ")[0].splitlines() if line[:1] == "|")
    tested = {shlex.join(argv) for commands in readmeBlocks().values() for argv in commands}
    shown = re.findall(r"`((?:tcplab echo|twistd -n tcplab-echo)[^`]*)`", table)
    complete = [c for c in shown if not re.search(r"\b(TEXT|NAME|DIR|FILE)\b", c)]
    assert len(complete) >= 10
    for text in complete:
        assert shlex.join(shlex.split(text)) in tested, text


def test_one_shot_server(tutorial: list[TutorialServer], tmp_path: Path) -> None:
    """tcplab echo against 000's/004's one-shot server prints its one reply and exits 0."""
    server = serve(tutorial, oneShot(PROCESSING))
    result = runClient("one-shot-server", server.port, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, PROCESSING, b"")


@pytest.mark.parametrize(
    ("name", "handler", "reply"),
    [("looping-server", looping, LAUGH), ("received-server", receivedForever, RECEIVED)],
    ids=["looping-server", "received-server"],
)
def test_ack_replacements(
    name: str, handler: Any, reply: bytes, tutorial: list[TutorialServer], tmp_path: Path
) -> None:
    """
    The ack server answers 001's REPL client as the tutorial server did
    (its text per read), and tcplab echo --raw talks to the tutorial server.
    """
    with startServer(name) as server:
        replies = replClient(server.port, [b"one", b"two"], len(reply) + 2)
    assert replies == [reply + b"\r\n"] * 2
    tutorialServer = serve(tutorial, handler)
    result = runClient(name, tutorialServer.port, tmp_path)
    count = len(command(name, "tcplab")) - 4  # tcplab echo ADDRESS --raw MESSAGE...
    assert (result.returncode, result.stdout, result.stderr) == (0, reply * count, b"")


def test_repl_client_replaced(tmp_path: Path) -> None:
    """Interactive tcplab echo, fed by a pipe, gets the ack server's reply and exits 0."""
    with startServer("repl-client") as server:
        result = runClient("repl-client", server.port, tmp_path, input=b"hello\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, RECEIVED + b"\r\n", b"")


@pytest.mark.parametrize("name", ["numbered-server", "thread-server"])
def test_count_per_read_replacements(name: str) -> None:
    """002's client (a welcome first, messages without line ends, 'exit') against count
    mode per read, three clients at once as the thread server served them."""
    needsPerRead()
    banner = command(name, "twistd")[-1].encode()
    results: list[list[bytes]] = []
    with startServer(name) as server:
        threads = [
            threading.Thread(
                target=lambda: results.append(
                    welcomeClient(
                        server.port,
                        [b"hello", b"world", b"exit"],
                        [len(banner) + 2, len(b"1: hello\r\n"), len(b"2: world\r\n")],
                    )
                )
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(results) == 3
    for replies in results:
        assert replies[0] == banner + b"\r\n"
        assert replies[1] == b"1: hello\r\n" and replies[2] == b"2: world\r\n"


def test_numbered_server_tutorial(tutorial: list[TutorialServer], tmp_path: Path) -> None:
    """tcplab echo --raw --greeting against 002's server: welcome, two replies, exit 0."""
    server = serve(tutorial, numbered)
    result = runClient("numbered-server", server.port, tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == WELCOME + "第1条信息:hello第2条信息:world".encode()
    assert server.received == [b"hello", b"world", b"exit"]


def test_thread_server_tutorial(tutorial: list[TutorialServer], tmp_path: Path) -> None:
    """tcplab echo --raw --greeting against 002's thread-per-client server."""
    server = serve(tutorial, ackThread)
    result = runClient("thread-server", server.port, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        b"Hello World!1:ACK!2:ACK!",
        b"",
    )


def test_upper_server(tutorial: list[TutorialServer], tmp_path: Path) -> None:
    """Upper mode answers 003's client; tcplab echo talks to 003's upper-case server."""
    with startServer("upper-server") as server:
        assert replClient(server.port, [b"hello"], 5) == [b"HELLO"]
    tutorialServer = serve(tutorial, upper)
    result = runClient("upper-server", tutorialServer.port, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"HELLO\nWORLD\n", b"")


def test_hello_baby_server(tutorial: list[TutorialServer], tmp_path: Path) -> None:
    """tcplab echo against 003's server shows all 31 'hello baby~' and exits 0."""
    server = serve(tutorial, helloBaby)
    result = runClient("hello-baby-server", server.port, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello baby~" * 31, b"")


def test_download_from_tutorial_server(tutorial: list[TutorialServer], tmp_path: Path) -> None:
    """tcplab echo --raw NAME > '[new]NAME' downloads from 000's download server."""
    share = tmp_path / "share"
    share.mkdir()
    content = bytes(range(256)) * 40
    (share / "report.pdf").write_bytes(content)

    def downloadServer(conn: socket.socket, server: TutorialServer) -> None:
        name = server.recv(conn).decode("utf-8")
        conn.sendall((share / name).read_bytes())

    server = serve(tutorial, downloadServer, perClient=False)
    result = runClient("downloader", server.port, tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert (tmp_path / "[new]report.pdf").read_bytes() == content
    assert server.received[0] == b"report.pdf"


def test_udp_echo_with_tutorial_client() -> None:
    """001's UDP client (sendto, recvfrom) gets its datagram back from --udp."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with startServer("udp", {"127.0.0.1:8888": f"127.0.0.1:{free}"}) as server:
        server.waitForLine(re.compile(r"listening on UDP"))
        data, sender = udpClient(free, "你好".encode())
    assert data == "你好".encode() and sender == ("127.0.0.1", free)


def test_file_tutorial_blocks_with_the_tutorial_programs(tmp_path: Path) -> None:
    """The README's uploader and downloader blocks, run as written (a temporary root for
    ~/share, port 0 for 8010): 003's uploader stores a file, 000's downloader gets it back."""
    from tests.files.test_tutorial import TUTORIAL_LISTENING, tutorialDownload, tutorialUpload

    share = tmp_path / "share"
    share.mkdir()
    payload = bytes(range(256)) * 400
    words = {"~/share": str(share), "tcp:8010": "tcp:0:interface=127.0.0.1"}
    with startServer("uploader", words) as server:
        port = int(server.waitForLine(TUTORIAL_LISTENING).group(1))
        assert tutorialUpload(port, [("report.pdf", payload)]) == "sent"
        server.waitForLine(re.compile(r"put 'report.pdf': ok"))
    assert "--writable" not in command("downloader", "twistd"), "downloads need no writes"
    with startServer("downloader", words) as server:
        port = int(server.waitForLine(TUTORIAL_LISTENING).group(1))
        assert tutorialDownload(port, "report.pdf", tmp_path) == payload
    assert (tmp_path / "[new]report.pdf").read_bytes() == payload
