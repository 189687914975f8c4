"""
Test helpers: real loopback listeners and clients, and the real twistd.

Everything here listens on or connects to 127.0.0.1 only, on port 0, and
waits for events (a Deferred, a log line) rather than sleeping.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort, IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

VENV_BIN = Path(sys.executable).parent
TWISTD = str(VENV_BIN / "twistd")
TWIST = str(VENV_BIN / "twist")
TCPLAB = str(VENV_BIN / "tcplab")
STARTUP_TIMEOUT = 20.0


def reactor() -> Any:
    """The running reactor (imported late, after pytest-twisted installed it)."""
    from twisted.internet import reactor as installed

    return installed


@implementer(IHalfCloseableProtocol)
class Collector(Protocol):
    """
    A client protocol that records what it receives.

    L{waitFor} fires once a number of bytes has arrived; L{closed} fires
    when the connection is gone; L{eof} fires when the peer half-closes.
    """

    transport: Any

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None
        self.eof: defer.Deferred[None] = defer.Deferred()
        self._waiters: list[tuple[int, defer.Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        ready = [w for w in self._waiters if len(self.received) >= w[0]]
        self._waiters = [w for w in self._waiters if len(self.received) < w[0]]
        for _, d in ready:
            d.callback(bytes(self.received))

    def waitFor(self, size: int) -> defer.Deferred[bytes]:
        """Fire with everything received once at least C{size} bytes are in."""
        d: defer.Deferred[bytes] = defer.Deferred()
        if len(self.received) >= size:
            d.callback(bytes(self.received))
        elif self.closed.called:
            d.errback(AssertionError(f"closed after {len(self.received)} of {size} bytes"))
        else:
            self._waiters.append((size, d))
        return d

    async def waitForText(self, text: bytes, timeout: float = 10.0) -> bytes:
        """Wait until C{text} has been received (anywhere so far)."""
        deadline = reactor().seconds() + timeout
        while text not in self.received:
            if self.closed.called or reactor().seconds() > deadline:
                raise AssertionError(f"never received {text!r}; got {bytes(self.received)!r}")
            await self.waitFor(len(self.received) + 1)
        return bytes(self.received)

    def readConnectionLost(self) -> None:
        self.eof.callback(None)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        for _, d in self._waiters:
            d.errback(AssertionError(f"connection lost after {len(self.received)} bytes"))
        self._waiters = []
        self.reason = reason
        self.closed.callback(None)


class Loopback:
    """Open listeners and client connections on 127.0.0.1; close them all after."""

    def __init__(self) -> None:
        self.ports: list[IListeningPort] = []
        self.clients: list[Protocol] = []

    async def listen(self, factory: IProtocolFactory) -> int:
        """Listen on 127.0.0.1:0 and return the port number."""
        endpoint = endpoints.TCP4ServerEndpoint(reactor(), 0, interface="127.0.0.1")
        port = await endpoint.listen(factory)
        self.ports.append(port)
        return int(port.getHost().port)

    async def connect(self, port: int, protocol: Protocol | None = None) -> Any:
        """Connect a protocol (a L{Collector} by default) to 127.0.0.1:port."""
        client = protocol if protocol is not None else Collector()
        endpoint = endpoints.TCP4ClientEndpoint(reactor(), "127.0.0.1", port, timeout=10)
        await endpoints.connectProtocol(endpoint, client)
        self.clients.append(client)
        return client

    def closeAll(self) -> None:
        """Drop every client and stop every listener, waiting until done."""
        waits = []
        for client in self.clients:
            if client.transport is not None and client.connected:
                client.transport.abortConnection()  # type: ignore[attr-defined]
            closed = getattr(client, "closed", None)
            if isinstance(closed, defer.Deferred) and not closed.called:
                waits.append(closed)
        for port in self.ports:
            waits.append(defer.maybeDeferred(port.stopListening))
        if waits:
            pytest_twisted.blockon(defer.DeferredList(waits))


_LISTENING = re.compile(r"(?<!metrics )listening on (?:\[[^\]]+\]|[\d.]+):(\d+)")
METRICS_LISTENING = re.compile(r"metrics listening on [\d.]+:(\d+)")


def scrape(port: int) -> str:
    """Fetch the Prometheus text from a metrics endpoint on 127.0.0.1."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(response.read().decode())


def metricValue(text: str, name: str) -> float:
    """The value of the first sample of C{name} in scraped metrics text."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


class OutputLines:
    """
    The lines a child process writes to a pipe, read as they come.

    Every line read is kept in L{lines}, whichever line a caller waited for:
    one read often holds several lines (two "listening on" lines, say), and
    a later wait must find the ones after the match.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: list[str] = []
        self.partial = b""

    def waitForLine(
        self, pattern: re.Pattern[str], timeout: float = STARTUP_TIMEOUT, count: int = 1
    ) -> Any:
        """Return the first (or C{count}th) line matching C{pattern}, reading more as needed."""
        searched = 0
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while True:
                for line in self.lines[searched:]:
                    match = pattern.search(line)
                    if match:
                        count -= 1
                        if not count:
                            return match
                searched = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    break
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.partial += chunk
                *complete, self.partial = self.partial.split(b"\n")
                self.lines.extend(raw.decode("utf-8", "replace") + "\n" for raw in complete)
        raise AssertionError(
            f"{pattern.pattern!r} never appeared; output so far:\n" + "".join(self.lines)
        )


class ServerProcess:
    """
    A real ``twistd -n`` (or ``twist``) tcplab service in a subprocess.

    The port is read from the service's own "listening on" log line, so no
    polling or sleeping is needed.
    """

    def __init__(
        self,
        plugin: str,
        args: Sequence[str] = (),
        runner: str = "twistd",
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if runner == "twistd":
            command = [TWISTD, "--pidfile=", "-n", plugin]
        else:
            command = [TWIST, "--log-format=text", plugin]
        if not any(a.startswith("--listen") for a in args):
            command += ["--listen", "tcp:0:interface=127.0.0.1"]
        self.command = command + list(args)
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self.reader = OutputLines(self.process.stdout.fileno())
        self.output = self.reader.lines
        self.port = int(self.waitForLine(_LISTENING).group(1))

    def waitForLine(
        self, pattern: re.Pattern[str], timeout: float = STARTUP_TIMEOUT, count: int = 1
    ) -> Any:
        """Return the first (or C{count}th) output line matching C{pattern}."""
        return self.reader.waitForLine(pattern, timeout, count)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the server and wait for it to exit; return its status."""
        assert self.process.stdout is not None
        if self.process.stdout.closed:
            return int(self.process.returncode)
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            status = self.process.wait()
        assert self.process.stdout is not None
        rest = self.reader.partial + self.process.stdout.read()
        self.output.append(rest.decode("utf-8", "replace"))
        self.process.stdout.close()
        return status

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tutorialClient(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """
    The tutorials' blocking client: connect, sendall, shut down writing, and
    recv until the server closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def recvExactly(sock: Any, size: int) -> bytes:
    """
    Read exactly C{size} bytes from a blocking socket: one C{recv} may return
    any part of what was sent, so a test that compares one C{recv} with a
    reply races the network.
    """
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes: {data!r}"
        data += chunk
    return data


def runTwistd(*args: str, timeout: float = 60.0, cwd: Path | None = None) -> Any:
    """
    Run the real ``twistd -n`` (no pidfile) with C{args} until it exits by
    itself (a start-up that fails); return the completed process (bytes).
    """
    return subprocess.run(
        [TWISTD, "--pidfile=", "-n", *args], capture_output=True, timeout=timeout, cwd=cwd
    )


@contextmanager
def heldPort() -> Iterator[int]:
    """
    A TCP port on 127.0.0.1 that a plain listening socket (no
    C{SO_REUSEPORT}) holds meanwhile, so a server asked for it finds it busy.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield int(busy.getsockname()[1])


def runTcplab(*args: str, input: bytes | None = None, timeout: float = 60.0) -> Any:
    """Run the real ``tcplab`` command; return the completed process."""
    return subprocess.run(
        [TCPLAB, *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


async def waitUntil(predicate: Any, timeout: float = 10.0, interval: float = 0.005) -> None:
    """
    Poll C{predicate} on the reactor until it is true.

    Only for state that offers no event to wait on (a transport pausing its
    reading); bounded by C{timeout}.
    """
    from twisted.internet.task import deferLater

    deadline = reactor().seconds() + timeout
    while not predicate():
        if reactor().seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await deferLater(reactor(), interval, lambda: None)


def makeCertificates(directory: Path) -> dict[str, Path]:
    """
    Write a throw-away CA, a server key and certificate for localhost and
    127.0.0.1 signed by it, and an unrelated CA; return their paths.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    def pem(cert: Any) -> bytes:
        return bytes(cert.public_bytes(serialization.Encoding.PEM))

    caKey = ec.generate_private_key(ec.SECP256R1())
    otherKey = ec.generate_private_key(ec.SECP256R1())
    serverKey = ec.generate_private_key(ec.SECP256R1())
    paths = {
        "ca": directory / "ca.pem",
        "other-ca": directory / "other-ca.pem",
        "key": directory / "server.key",
        "cert": directory / "server.pem",
    }
    paths["ca"].write_bytes(
        pem(certificate("tcplab test CA", caKey, "tcplab test CA", caKey, True))
    )
    paths["other-ca"].write_bytes(
        pem(certificate("someone else", otherKey, "someone else", otherKey, True))
    )
    paths["cert"].write_bytes(
        pem(certificate("localhost", serverKey, "tcplab test CA", caKey, False))
    )
    paths["key"].write_bytes(
        serverKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def tlsListen(paths: dict[str, Path]) -> str:
    """The ``ssl:`` server endpoint description for L{makeCertificates} output."""
    return f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}"
