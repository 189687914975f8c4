"""TLS end to end: the real plugins behind ssl: endpoints, the real client verifying them."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from pathlib import Path

import pytest

from tests.support import ServerProcess, makeCertificates, recvExactly, runTcplab, tlsListen

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return makeCertificates(tmp_path_factory.mktemp("tls"))


def test_echo_over_tls_with_cafile(certificates: dict[str, Path]) -> None:
    """tcplab-echo on an ssl: endpoint echoes to tcplab echo --cafile, binary and verified."""
    with ServerProcess("tcplab-echo", ["--listen", tlsListen(certificates)]) as server:
        result = runTcplab(
            "echo", f"localhost:{server.port}", "--cafile", str(certificates["ca"]), "secret"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"secret\n"
        payload = os.urandom(512 * 1024)
        piped = runTcplab(
            "echo", f"localhost:{server.port}", "--cafile", str(certificates["ca"]), input=payload
        )
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == payload


def test_tls_with_stdlib_ssl_client(certificates: dict[str, Path]) -> None:
    """A tutorial-style client using Python's ssl module talks to the TLS echo server."""
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    with (
        ServerProcess("tcplab-echo", ["--listen", tlsListen(certificates)]) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"over tls")
        assert recvExactly(sock, 8) == b"over tls"


def test_tls_verification_failure_is_clear(certificates: dict[str, Path]) -> None:
    """A server certificate from another CA is a one-line verification error, exit 3."""
    with ServerProcess("tcplab-echo", ["--listen", tlsListen(certificates)]) as server:
        result = runTcplab(
            "echo", f"localhost:{server.port}", "--cafile", str(certificates["other-ca"]), "x"
        )
    assert result.returncode == 3
    message = result.stderr.decode().strip()
    assert message.startswith(
        f"tcplab: cannot connect to localhost:{server.port}: TLS verification failed"
    )
    assert "\n" not in message


def test_tls_and_plain_side_by_side(certificates: dict[str, Path]) -> None:
    """One service can listen on plain TCP and TLS at once."""
    with ServerProcess(
        "tcplab-echo",
        ["--listen", "tcp:0:interface=127.0.0.1", "--listen", tlsListen(certificates)],
    ) as server:
        plain = runTcplab("echo", f"127.0.0.1:{server.port}", "plain")
        assert plain.stdout == b"plain\n"
        import re

        tlsPort = int(server.waitForLine(re.compile(r"listening on [\d.]+:(\d+) \(ssl:")).group(1))
        secure = runTcplab(
            "echo", f"localhost:{tlsPort}", "--cafile", str(certificates["ca"]), "tls"
        )
        assert secure.stdout == b"tls\n", secure.stderr


def tlsSocket(certificates: dict[str, Path], port: int) -> ssl.SSLSocket:
    """A stdlib TLS client socket to 127.0.0.1:port, verifying the server as localhost."""
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def readUntil(sock: ssl.SSLSocket, marker: bytes) -> bytes:
    """Read from C{sock} until C{marker} has arrived (or fail on close/timeout)."""
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before {marker!r}; got {data!r}"
        data += chunk
    return data


def test_chat_over_tls(certificates: dict[str, Path]) -> None:
    """tcplab-chat on ssl:: a piped tcplab chat --cafile and a stdlib TLS client talk."""
    with (
        ServerProcess("tcplab-chat", ["--listen", tlsListen(certificates)]) as server,
        tlsSocket(certificates, server.port) as listener,
    ):
        listener.sendall(b"/nick carol\r\n")
        readUntil(listener, b"is now known as carol")
        result = runTcplab(
            "chat",
            f"localhost:{server.port}",
            "--cafile",
            str(certificates["ca"]),
            "--nick",
            "bob",
            input=b"hello over tls\n/quit\n",
        )
        assert result.returncode == 0, result.stderr
        assert b"<bob> hello over tls" in readUntil(listener, b"<bob> hello over tls")
        listener.sendall(b"/quit\r\n")


def test_file_put_and_get_over_tls(certificates: dict[str, Path], tmp_path: Path) -> None:
    """tcplab-files on ssl:: put then get through tcplab --cafile, bytes and hash intact."""
    root = tmp_path / "root"
    root.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "upload.bin"
    local.write_bytes(payload)
    ca = str(certificates["ca"])
    with ServerProcess(
        "tcplab-files",
        ["--listen", tlsListen(certificates), "--root", str(root), "--writable"],
    ) as server:
        address = f"localhost:{server.port}"
        put = runTcplab("put", address, str(local), "--cafile", ca, "--quiet")
        assert put.returncode == 0, put.stderr
        assert (root / "upload.bin").read_bytes() == payload
        copy = tmp_path / "copy.bin"
        got = runTcplab("get", address, "upload.bin", "-o", str(copy), "--cafile", ca, "--quiet")
        assert got.returncode == 0, got.stderr
        assert copy.read_bytes() == payload


def test_client_offering_alpn_is_served(certificates: dict[str, Path]) -> None:
    """A client offering ALPN protocols the service does not name (as browsers and curl
    do) completes its handshake without one and is echoed (Twisted 26.10 alone refuses it)."""
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        ServerProcess("tcplab-echo", ["--listen", tlsListen(certificates)]) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        assert sock.selected_alpn_protocol() is None
        sock.sendall(b"alpn")
        assert recvExactly(sock, 4) == b"alpn"


def test_ssl_endpoint_keeps_its_context_where_tcplab_looks() -> None:
    """Canary: the ssl: endpoint's TLS options are where tcplab.alpn fixes them up."""
    from twisted.internet import endpoints
    from twisted.internet.testing import MemoryReactor

    paths = makeCertificates(Path(tempfile.mkdtemp()))
    endpoint = endpoints.serverFromString(MemoryReactor(), tlsListen(paths))
    assert hasattr(endpoint._sslContextFactory, "getContext")
