"""
The socket tutorials' programs (``/work/shared/seeds/``), rewritten for tests.

Each server here behaves on the wire exactly as its tutorial does -- one
``recv(1024)`` taken as one message, replies without line ends, a loop that
goes on answering ``recv() == b''`` after the client's EOF -- but listens on
127.0.0.1, port 0, in a daemon thread, records what it sees as events a test
can wait on, and is closed by the test.  The clients are the tutorials'
blocking clients as functions.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[[socket.socket, "TutorialServer"], None]

EVENT_TIMEOUT = 20.0


class TutorialServer:
    """
    A blocking tutorial server in a thread: accept, then run C{handler} for
    each client, one after another (as the tutorials do), or each in its
    own thread with C{threadPerClient} (as 002's thread server does).

    @ivar accepted: set once a client has connected.
    @ivar received: every chunk any handler read, in order.
    """

    def __init__(self, handler: Handler, threadPerClient: bool = False) -> None:
        self.handler = handler
        self.threadPerClient = threadPerClient
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.received: list[bytes] = []
        self._changed = threading.Condition()
        self.connections: list[socket.socket] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.accepted.set()
            if self.threadPerClient:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            else:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handler(conn, self)
        except OSError:
            pass  # the tutorials' servers die here; ours just drop the client
        finally:
            conn.close()

    def recv(self, conn: socket.socket, size: int = 1024) -> bytes:
        """C{conn.recv(size)}, recorded so a test can wait for it."""
        data = conn.recv(size)
        with self._changed:
            self.received.append(data)
            self._changed.notify_all()
        return data

    def waitForBytes(self, text: bytes, timeout: float = EVENT_TIMEOUT) -> None:
        """Block until the bytes received so far contain C{text}."""
        with self._changed:
            if not self._changed.wait_for(lambda: text in b"".join(self.received), timeout):
                raise AssertionError(f"never received {text!r}; got {self.received!r}")

    def waitForAccept(self, timeout: float = EVENT_TIMEOUT) -> None:
        """Block until a client has connected."""
        if not self.accepted.wait(timeout):
            raise AssertionError("no client connected")

    def close(self) -> None:
        """Stop accepting and drop every client."""
        self.stopped = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(EVENT_TIMEOUT)

    def __enter__(self) -> TutorialServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Servers: each function is the body of the tutorial's per-client loop.

LAUGH = "哈哈哈哈😆😆😆😆😆😆".encode()
RECEIVED = "服务器收到了".encode()
WELCOME = "连接成功!".encode()
PROCESSING = "ok, 问题正在处理中...".encode()


def oneShot(reply: bytes) -> Handler:
    """000's first server and 004's: one recv, one fixed reply, close."""

    def handler(conn: socket.socket, server: TutorialServer) -> None:
        server.recv(conn)
        conn.send(reply)

    return handler


def looping(conn: socket.socket, server: TutorialServer) -> None:
    """000's looping server: a laugh for every recv, until recv() == b''."""
    while True:
        if server.recv(conn):
            conn.send(LAUGH)
        else:
            break


def receivedForever(conn: socket.socket, server: TutorialServer) -> None:
    """001's server: "服务器收到了" for every recv, even b'' (it never checks)."""
    while True:
        server.recv(conn)
        conn.send(RECEIVED)


def numbered(conn: socket.socket, server: TutorialServer) -> None:
    """002's server: a welcome, "第N条信息:DATA" for every recv but b'exit'."""
    conn.send(WELCOME)
    count = 0
    while True:
        data = server.recv(conn)
        if data == b"exit":
            break
        count += 1
        conn.send(f"第{count}条信息:".encode() + data)


def ackThread(conn: socket.socket, server: TutorialServer) -> None:
    """002's thread-per-client server: "Hello World!", then "N:ACK!" per recv but 'exit'."""
    conn.send(b"Hello World!")
    count = 0
    while True:
        if server.recv(conn) == b"exit":
            break
        count += 1
        conn.send(f"{count}:ACK!".encode())


def helloBaby(conn: socket.socket, server: TutorialServer) -> None:
    """003's first server: 31 x b'hello baby~' without reading, then close."""
    for _ in range(31):
        conn.send(b"hello baby~")


def upper(conn: socket.socket, server: TutorialServer) -> None:
    """003's looping server: the data upper-cased, until recv() == b''."""
    while True:
        data = server.recv(conn)
        if len(data) == 0:
            break
        conn.send(data.upper())


# Clients


def connectTo(port: int) -> socket.socket:
    """The tutorials' C{socket.socket(); connect((ip, port))}, with a timeout."""
    return socket.create_connection(("127.0.0.1", port), timeout=EVENT_TIMEOUT)


def recvAtLeast(sock: socket.socket, size: int) -> bytes:
    """
    What a tutorial's one C{recv(1024)} hopes to get: here read until
    C{size} bytes, so the test does not race the network.
    """
    data = b""
    while len(data) < size:
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def oneMessageClient(port: int, message: bytes, replySize: int) -> bytes:
    """000's and 004's client: send one message (no line end), read the reply, close."""
    with connectTo(port) as sock:
        sock.send(message)
        return recvAtLeast(sock, replySize)


def replClient(port: int, messages: list[bytes], replySize: int) -> list[bytes]:
    """001's REPL client (``>>``/``<<``): send each input, read one reply each."""
    replies = []
    with connectTo(port) as sock:
        for message in messages:
            sock.send(message)
            replies.append(recvAtLeast(sock, replySize))
    return replies


def welcomeClient(port: int, messages: list[bytes], sizes: list[int]) -> list[bytes]:
    """
    002's client: read the welcome, then send each input (``exit`` ends it)
    and read its reply; C{sizes} are the expected sizes, welcome first.
    """
    replies = []
    with connectTo(port) as sock:
        replies.append(recvAtLeast(sock, sizes[0]))
        expected = iter(sizes[1:])
        for message in messages:
            sock.send(message)
            if message == b"exit":
                break
            replies.append(recvAtLeast(sock, next(expected)))
        rest = b""
        while chunk := sock.recv(1024):
            rest += chunk
        replies.append(rest)
    return replies


def udpClient(port: int, message: bytes) -> tuple[bytes, Any]:
    """001's UDP client: sendto, then recvfrom."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(EVENT_TIMEOUT)
        sock.sendto(message, ("127.0.0.1", port))
        return sock.recvfrom(65535)
