"""
``tcplab`` reporting what went wrong in one line: a TLS client pointed at a
plain-TCP port, and the exit statuses ``--help`` promises.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tcplab.cli.tls import looksLikeTLSFromServer
from tcplab.errors import ExitCode
from tests.support import ServerProcess, makeCertificates, runTcplab
from tests.tutorial_programs import TutorialServer

pytestmark = pytest.mark.subprocess

NOT_TLS = "the server did not speak TLS (is it a plain TCP port?)"


@pytest.mark.parametrize("plugin", ["tcplab-echo", "tcplab-chat"])
def test_cafile_against_plain_port(plugin: str, tmp_path: Path) -> None:
    """--cafile against a plain-TCP echo (which echoes our hello) or chat port says so, exit 3."""
    paths = makeCertificates(tmp_path)
    with ServerProcess(plugin) as server:
        result = runTcplab("echo", "--cafile", str(paths["ca"]), f"127.0.0.1:{server.port}", "hi")
    assert result.returncode == 3
    assert (
        result.stderr.decode() == f"tcplab: cannot connect to 127.0.0.1:{server.port}: {NOT_TLS}\n"
    )


def test_tls_server_closing_during_handshake(tmp_path: Path) -> None:
    """A server that reads the hello and hangs up says it closed during the handshake."""
    paths = makeCertificates(tmp_path)

    def hangUp(conn: socket.socket, server: TutorialServer) -> None:
        server.recv(conn)

    with TutorialServer(hangUp) as server:
        result = runTcplab("echo", "--cafile", str(paths["ca"]), f"127.0.0.1:{server.port}", "hi")
    assert result.returncode == 3
    assert result.stderr.decode() == (
        f"tcplab: cannot connect to 127.0.0.1:{server.port}: "
        "the server closed the connection during the TLS handshake\n"
    )


def test_real_tls_failure_still_named(tmp_path: Path) -> None:
    """A real TLS server with an untrusted certificate still reports the verification failure."""
    from tests.support import tlsListen

    paths = makeCertificates(tmp_path)
    with ServerProcess("tcplab-echo", ["--listen", tlsListen(paths)]) as server:
        result = runTcplab(
            "echo", "--cafile", str(paths["other-ca"]), f"127.0.0.1:{server.port}", "hi"
        )
    assert result.returncode == 3
    assert b"TLS verification failed" in result.stderr
    assert NOT_TLS.encode() not in result.stderr


def test_tls_record_sniffing() -> None:
    """A server's first bytes are TLS unless they are text or our own ClientHello echoed."""
    serverHello = bytes([0x16, 0x03, 0x03, 0x00, 0x7A, 0x02])
    clientHello = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
    alert = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02])
    assert looksLikeTLSFromServer(serverHello)
    assert looksLikeTLSFromServer(alert)
    assert not looksLikeTLSFromServer(clientHello)
    assert not looksLikeTLSFromServer(b"*** We")
    assert not looksLikeTLSFromServer(b"")


def test_help_lists_every_exit_status() -> None:
    """tcplab --help names every exit status, 1, 10, 11, 12 and 130 included."""
    result = runTcplab("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.decode().split())
    for status, words in [
        (0, "ok"),
        (1, "internal error"),
        (2, "usage"),
        (3, "cannot connect"),
        (4, "not found"),
        (5, "not allowed"),
        (6, "checksum mismatch"),
        (7, "exists"),
        (8, "protocol error"),
        (9, "authentication failed"),
        (10, "(servers only) cannot listen"),
        (11, "local file error"),
        (12, "busy"),
        (130, "interrupted"),
    ]:
        assert f"{status} {words}" in text, status
    assert {int(code) for code in ExitCode} <= {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 130}
