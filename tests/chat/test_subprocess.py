"""The real ``twistd -n tcplab-chat`` driven by plain blocking sockets and by ``tcplab chat``."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import pytest

from tests.support import METRICS_LISTENING, ServerProcess, metricValue, runTcplab, scrape

pytestmark = pytest.mark.subprocess


class LineClient:
    """A tutorial-style blocking socket client reading CRLF lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def readUntil(self, text: str) -> list[str]:
        """Read lines until one contains C{text}; return them all."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise AssertionError(f"closed before {text!r}; got {lines}")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(raw.decode())
            if text in lines[-1]:
                return lines

    def close(self) -> None:
        self.sock.close()


def test_chat_with_plain_sockets(tmp_path: Path) -> None:
    """Two socket clients chat through the real plugin, and the chat log records it."""
    log = tmp_path / "chat.log"
    with ServerProcess("tcplab-chat", ["--chat-log", str(log)]) as server:
        alice, bob = LineClient(server.port), LineClient(server.port)
        alice.send("/nick alice")
        alice.readUntil("end of history")
        bob.send("/nick bob")
        bob.readUntil("end of history")
        alice.send("hi bob")
        assert bob.readUntil("<alice>")[-1] == "<alice> hi bob"
        bob.send("/me waves")
        assert alice.readUntil("waves")[-1] == "* bob waves"
        newcomer = LineClient(server.port)
        history = newcomer.readUntil("end of history")
        assert history[-3].endswith("<alice> hi bob") and history[-2].endswith("* bob waves")
        for client in (alice, bob, newcomer):
            client.close()
    entries = log.read_text().splitlines()
    assert [e.split(" ", 1)[1] for e in entries] == ["#lobby <alice> hi bob", "#lobby * bob waves"]


def test_tcplab_chat_piped_stdin() -> None:
    """printf '/nick bob\\nhello\\n' | tcplab chat HOST:PORT delivers and exits 0."""
    with ServerProcess("tcplab-chat") as server:
        watcher = LineClient(server.port)
        watcher.readUntil("end of history")
        result = runTcplab("chat", f"127.0.0.1:{server.port}", input=b"/nick bob\nhello\n")
        assert result.returncode == 0, result.stderr
        assert b"*** guest2 is now known as bob" in result.stdout
        assert watcher.readUntil("<bob>")[-1] == "<bob> hello"
        assert watcher.readUntil("left")[-1] == "*** bob left #lobby (quit)"
        watcher.close()


def test_tcplab_chat_nick_option_and_refused() -> None:
    """--nick picks the nickname; a refused connection is exit 3 with one line."""
    with ServerProcess("tcplab-chat") as server:
        result = runTcplab("chat", f"127.0.0.1:{server.port}", "--nick", "carol", input=b"")
        assert result.returncode == 0
        assert b"now known as carol" in result.stdout
        port = server.port
    refused = runTcplab("chat", f"127.0.0.1:{port}", input=b"")
    assert refused.returncode == 3
    assert refused.stderr.count(b"\n") == 1


def test_sigterm_tells_users() -> None:
    """SIGTERM tells connected users the server is going down and closes them."""
    server = ServerProcess("tcplab-chat")
    client = LineClient(server.port)
    client.readUntil("end of history")
    server.process.send_signal(signal.SIGTERM)
    assert client.readUntil("shutting down")[-1] == "*** server shutting down, bye"
    assert server.stop() == -signal.SIGTERM
    client.close()


def test_default_per_address_limit() -> None:
    """By default a sixth connection from one address is refused with a notice."""
    with ServerProcess("tcplab-chat") as server:
        clients = [LineClient(server.port) for _ in range(5)]
        for client in clients:
            client.readUntil("Welcome")
        sixth = LineClient(server.port)
        assert sixth.readUntil("error")[-1] == (
            "*** error: too many connections from 127.0.0.1 (at most 5)"
        )
        for client in [*clients, sixth]:
            client.close()


def test_metrics_and_announce_limit() -> None:
    """--announce-limit quiets arrivals in a full room; --metrics counts the messages."""
    with ServerProcess(
        "tcplab-chat", ["--announce-limit", "2", "--metrics", "tcp:0:interface=127.0.0.1"]
    ) as server:
        metricsPort = int(server.waitForLine(METRICS_LISTENING).group(1))
        alice = LineClient(server.port)
        alice.readUntil("end of history")
        bob = LineClient(server.port)
        bob.readUntil("end of history")
        assert alice.readUntil("joined")[-1].endswith("joined #lobby")
        carol = LineClient(server.port)
        carol.readUntil("end of history")
        carol.send("hello")
        heard = alice.readUntil("> hello")
        assert len(heard) == 1, "the third arrival was not announced"
        bob.send("/me waves")
        alice.readUntil("waves")
        text = scrape(metricsPort)
        for client in (alice, bob, carol):
            client.close()
    service = 'service="tcplab-chat"'
    messages = "tcplab_chat_messages_total"
    assert metricValue(text, f'{messages}{{kind="message",{service}}}') == 1
    assert metricValue(text, f'{messages}{{kind="action",{service}}}') == 1
    assert metricValue(text, f"tcplab_connections_open{{{service}}}") == 3


def test_unwritable_chat_log_is_one_line_exit_2(tmp_path: Path) -> None:
    """A --chat-log in a missing directory stops start-up with one line and exit 2."""
    import subprocess

    from tests.support import TWISTD

    log = str(tmp_path / "missing" / "chat.log")
    listen = "tcp:0:interface=127.0.0.1"
    result = subprocess.run(
        [TWISTD, "--pidfile=", "-n", "tcplab-chat", "--listen", listen, "--chat-log", log],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        f"tcplab-chat: cannot open --chat-log {tmp_path}/missing/chat.log: "
        "No such file or directory"
    ]
    assert b"Traceback" not in result.stdout + result.stderr


def test_chat_log_on_a_full_disk() -> None:
    """On a --chat-log of /dev/full the chat goes on; the operator gets one warning line."""
    metrics = ["--metrics", "tcp:0:interface=127.0.0.1"]
    with ServerProcess("tcplab-chat", ["--chat-log", "/dev/full", *metrics]) as server:
        metricsPort = int(server.waitForLine(METRICS_LISTENING).group(1))
        alice, bob = LineClient(server.port), LineClient(server.port)
        alice.send("/nick alice")
        alice.readUntil("end of history")
        bob.send("/nick bob")
        bob.readUntil("end of history")
        for n in range(3):
            alice.send(f"hello {n}")
            assert bob.readUntil("<alice>")[-1] == f"<alice> hello {n}"
        alice.send("/who")
        assert alice.readUntil("in #lobby")[-1] == "*** in #lobby: alice, bob"
        server.waitForLine(re.compile("cannot write the chat log"))
        lost = metricValue(scrape(metricsPort), "tcplab_chat_log_errors_total")
        for client in (alice, bob):
            client.close()
    assert lost == 3
    output = "".join(server.output)
    assert output.count("cannot write the chat log /dev/full: No space left on device") == 1
    assert "Traceback" not in output and "Unhandled" not in output
