"""
The web listener under the service's limits, against the real twistd:
slow-drip headers cut, over-long headers and WebSocket messages refused,
connection limits answered in HTTP, and metrics labelled ``listener="web"``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from tests.support import METRICS_LISTENING, scrape
from tests.web.webtools import WebServer

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def chat() -> Iterator[WebServer]:
    """A chat service whose web listener cuts slow drips after 1 s and allows 2 x 6 per address."""
    web = WebServer(
        "tcplab-chat",
        ["--message-timeout", "1", "--max-per-ip", "2", "--metrics", "tcp:0:interface=127.0.0.1"],
    )
    yield web
    web.stop()


def closedWithin(sock: socket.socket, seconds: float, drip: bytes = b"") -> bool:
    """Whether the server closes C{sock} within C{seconds}, sending C{drip} a byte at a time."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.25)
    for byte in (drip[i : i + 1] for i in range(len(drip) or 10**6)):
        if time.monotonic() > deadline:
            return False
        try:
            if byte:
                sock.sendall(byte)
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_headersDribbledAByteAtATimeAreCut(chat: WebServer) -> None:
    """A request whose headers arrive a byte every 0.25 s is cut after --message-timeout."""
    with socket.create_connection(("127.0.0.1", chat.webPort)) as sock:
        started = time.monotonic()
        assert closedWithin(sock, 8.0, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200)
        assert time.monotonic() - started >= 1.0


def test_overlongHeadersAreRefused(chat: WebServer) -> None:
    """Headers past twisted.web's 16 KiB bound are answered 400 and the connection closed."""
    with socket.create_connection(("127.0.0.1", chat.webPort), timeout=10) as sock:
        headers = b"".join(b"X-Big-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert sock.recv(12) == b"HTTP/1.1 400"


def openChatSocket(port: int, origin: str) -> tuple[socket.socket, WSConnection, bytes]:
    """A raw WebSocket handshake with the chat; return the socket, wsproto and the reply."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(
        ws.send(
            Request(
                host=f"127.0.0.1:{port}",
                target="/ws",
                extra_headers=[(b"origin", origin.encode())],
            )
        )
    )
    reply = sock.recv(65536)
    ws.receive_data(reply)
    return sock, ws, reply


def test_foreignOriginHandshakeIsForbidden(chat: WebServer) -> None:
    """A WebSocket handshake from another origin is answered 403; from ours, 101."""
    sock, _, reply = openChatSocket(chat.webPort, "http://evil.example")
    sock.close()
    assert reply.startswith(b"HTTP/1.1 403")
    sock, _, reply = openChatSocket(chat.webPort, chat.origin)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 101")


def test_oversizedWebSocketMessageIsCut(chat: WebServer) -> None:
    """A WebSocket message over 64 KiB ends the connection instead of growing memory."""
    sock, ws, _ = openChatSocket(chat.webPort, chat.origin)
    assert any(isinstance(e, AcceptConnection) for e in ws.events())
    with sock:
        with contextlib.suppress(OSError):
            sock.sendall(ws.send(TextMessage("x" * 200_000)))
        assert closedWithin(sock, 10.0)


def test_connectionLimitIsAnsweredInHttp(chat: WebServer) -> None:
    """Past a browser's share (6 per --max-per-ip), a connection gets a 503 saying why."""
    held = [socket.create_connection(("127.0.0.1", chat.webPort), timeout=10) for _ in range(12)]
    try:
        with socket.create_connection(("127.0.0.1", chat.webPort), timeout=10) as extra:
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"too many connections" in answer
    finally:
        for sock in held:
            sock.close()


def test_webConnectionsAreInTheMetrics(chat: WebServer) -> None:
    """The service's metrics count the web listener's connections with listener="web"."""
    chat.client().request("GET", "/")
    port = int(chat.server.waitForLine(METRICS_LISTENING).group(1))
    text = scrape(port)
    assert re.search(
        r'tcplab_connections_total\{listener="web",service="tcplab-chat"\} [1-9]', text
    )


def test_webSocketMessageDribbledIsCut(chat: WebServer) -> None:
    """A WebSocket frame whose payload arrives a byte at a time is cut after --message-timeout."""
    sock, ws, _ = openChatSocket(chat.webPort, chat.origin)
    with sock:
        frame = ws.send(TextMessage("y" * 100))
        sock.sendall(frame[:20])
        assert closedWithin(sock, 8.0, frame[20:])


def test_webMemberThatStopsReadingIsCut(tmp_path: Any) -> None:
    """A browser member that stops reading is cut past --max-pending; a reader gets everything."""
    web = WebServer("tcplab-chat", ["--flood-rate", "0", "--max-pending", "65536"])
    try:
        sleeper = socket.socket()
        sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sleeper.connect(("127.0.0.1", web.webPort))
        sleeper.settimeout(10)
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=f"127.0.0.1:{web.webPort}",
            target="/ws",
            extra_headers=[(b"origin", web.origin.encode())],
        )
        sleeper.sendall(ws.send(request))
        ws.receive_data(sleeper.recv(65536))
        sleeper.sendall(ws.send(TextMessage("/nick sleeper")))
        reader = LineReader(web.port, "reader")
        talker = LineReader(web.port, "talker")
        reader.until(b"talker joined")
        line = b"y" * 500
        sent = 0
        while b"sleeper left" not in reader.buffer and sent < 80000:
            talker.sock.sendall(b"".join(b"%06d %s\r\n" % (sent + n, line) for n in range(100)))
            sent += 100
            reader.until(b"%06d %s\r\n" % (sent - 1, line))
        reader.until(b"*** sleeper left #lobby")
        assert reader.buffer.count(b"<talker> ") == sent
        sleeper.close()
        reader.sock.close()
        talker.sock.close()
    finally:
        web.stop()


class LineReader:
    """A line-protocol chat client over a blocking socket."""

    def __init__(self, port: int, nick: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(f"/nick {nick}\r\n".encode())
        self.buffer = b""

    def until(self, text: bytes) -> None:
        """Read until C{text} has arrived."""
        while text not in self.buffer[-200_000:]:
            chunk = self.sock.recv(1 << 20)
            assert chunk, f"closed before {text!r}"
            self.buffer += chunk
