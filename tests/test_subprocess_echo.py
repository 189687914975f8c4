"""The shipped plugin and client, run as real commands, driven like the tutorials."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import (
    TWISTD,
    OutputLines,
    ServerProcess,
    recvExactly,
    runTcplab,
    tutorialClient,
)

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def echoServer() -> Iterator[ServerProcess]:
    server = ServerProcess("tcplab-echo")
    yield server
    server.stop()


def test_twistd_plugin_listed() -> None:
    """twistd --help lists tcplab-echo with its one-line description."""
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, check=True).stdout
    assert "tcplab-echo" in out and "RFC 862" in out


def test_twistd_echo_with_tutorial_client(echoServer: ServerProcess) -> None:
    """The real twistd -n tcplab-echo echoes binary data to a blocking socket client."""
    payload = os.urandom(3 * 1024 * 1024)
    assert tutorialClient(echoServer.port, payload) == payload


def test_twist_runner_finds_plugin() -> None:
    """The newer twist runner starts the same plugin."""
    with ServerProcess("tcplab-echo", runner="twist") as server:
        assert tutorialClient(server.port, b"via twist\n") == b"via twist\n"


def test_log_has_connection_summary(echoServer: ServerProcess) -> None:
    """Each connection's close is logged with its byte counts."""
    tutorialClient(echoServer.port, b"12345")
    match = echoServer.waitForLine(
        __import__("re").compile(r"disconnected after [\d.]+s, 5 bytes in, 5 bytes out")
    )
    assert match


@pytest.mark.parametrize("runner", ["twistd", "twist"])
def test_busy_port_one_line_error(echoServer: ServerProcess, runner: str) -> None:
    """A port already in use gives one line on stderr and exit status 10, no traceback."""
    command = (
        [TWISTD, "--pidfile=", "-n"] if runner == "twistd" else [TWISTD.replace("twistd", "twist")]
    )
    result = subprocess.run(
        [*command, "tcplab-echo", "--listen", f"tcp:{echoServer.port}:interface=127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 10
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert len(errors) == 1


def test_bad_endpoint_one_line_error() -> None:
    """A malformed endpoint description gives one line and exit status 10."""
    result = subprocess.run(
        [TWISTD, "--pidfile=", "-n", "tcplab-echo", "--listen", "nonsense:1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 10
    assert result.stderr.strip() == (
        "tcplab-echo: bad --listen 'nonsense:1': Unknown endpoint type: 'nonsense'"
    )


def test_tutorial_variants_by_option() -> None:
    """The ack, upper and count tutorial servers are each one option away."""
    with ServerProcess("tcplab-echo", ["--mode", "upper"]) as server:
        assert tutorialClient(server.port, b"shout\n") == b"SHOUT\n"
    with (
        ServerProcess("tcplab-echo", ["--mode", "ack", "--ack-text", "got it"]) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(b"hello")
        assert recvExactly(sock, 8) == b"got it\r\n"
    with ServerProcess("tcplab-echo", ["--mode", "count", "--banner", "hi"]) as server:
        reply = tutorialClient(server.port, b"a\nb\nexit\n")
        assert reply == b"hi\r\n1: a\r\n2: b\r\nbye\r\n"


def test_udp_alongside_tcp() -> None:
    """--udp echoes datagrams while TCP keeps working."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with ServerProcess("tcplab-echo", ["--udp", str(free)]) as server:
        # The TCP line comes first; a datagram sent before the UDP port is
        # bound would be lost.
        server.waitForLine(re.compile(r"listening on UDP"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(b"datagram", ("127.0.0.1", free))
            assert sock.recvfrom(2048)[0] == b"datagram"
        assert tutorialClient(server.port, b"tcp\n") == b"tcp\n"


def test_client_messages(echoServer: ServerProcess) -> None:
    """tcplab echo sends each message and prints each reply, exit 0."""
    result = runTcplab("echo", f"127.0.0.1:{echoServer.port}", "hello", "world", "--time")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello\nworld\n"
    assert result.stderr.count(b"round trip") == 2


def test_client_piped_stdin_binary(echoServer: ServerProcess) -> None:
    """Without messages, tcplab echo relays piped binary stdin and exits at EOF."""
    payload = os.urandom(2 * 1024 * 1024)
    result = runTcplab("echo", f"127.0.0.1:{echoServer.port}", input=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload


def test_client_chunk_and_trace(echoServer: ServerProcess) -> None:
    """--chunk splits a message into small writes that --trace shows one by one."""
    result = runTcplab(
        "echo",
        f"127.0.0.1:{echoServer.port}",
        "abcdefghij",
        "--chunk",
        "3",
        "--delay",
        "5",
        "--trace",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"abcdefghij\n"
    assert result.stderr.count(b"> wrote 3 bytes") == 3
    assert b"> wrote 2 bytes" in result.stderr


def test_client_connection_refused() -> None:
    """A refused connection is one line on stderr and exit status 3."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result = runTcplab("echo", f"127.0.0.1:{free}", "hi")
    assert result.returncode == 3
    assert (
        result.stderr.decode().strip()
        == f"tcplab: cannot connect to 127.0.0.1:{free}: connection refused"
    )


def test_client_bad_address() -> None:
    """An address that is neither HOST:PORT nor an endpoint is a usage error (2)."""
    result = runTcplab("echo", "justahost", "hi")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


def test_client_server_closes_early() -> None:
    """If the server closes before all messages are sent, exit 8 with one line."""
    with ServerProcess("tcplab-echo", ["--mode", "count", "--banner", ""]) as server:
        result = runTcplab("echo", f"127.0.0.1:{server.port}", "a", "exit", "b")
    assert result.returncode == 8
    assert result.stderr.decode().strip() == (
        "tcplab: the server closed the connection after 2 of 3 messages were answered"
    )


def test_python_dash_m() -> None:
    """python -m tcplab works like tcplab."""
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tcplab", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "echo" in result.stdout


def test_sigterm_graceful_shutdown() -> None:
    """SIGTERM tells a connected client goodbye, closes it, and exits promptly (twistd
    re-raises the signal once stopped, as Twisted does)."""
    import signal
    import time

    server = ServerProcess("tcplab-echo", ["--mode", "count", "--banner", ""])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"hi\n")
        assert recvExactly(sock, 7) == b"1: hi\r\n"
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        rest = b""
        while chunk := sock.recv(1024):
            rest += chunk
    assert rest == b"server shutting down, bye\r\n"
    assert server.stop() == -signal.SIGTERM
    assert time.monotonic() - started < 10
    assert "closing 1 connection (at most 10s)" in "".join(server.output)


def test_metrics_scrape() -> None:
    """--metrics serves Prometheus text whose connection and byte counters follow traffic."""
    from tests.support import METRICS_LISTENING, metricValue, scrape

    with ServerProcess("tcplab-echo", ["--metrics", "tcp:0:interface=127.0.0.1"]) as server:
        metricsPort = int(server.waitForLine(METRICS_LISTENING).group(1))
        before = scrape(metricsPort)
        assert metricValue(before, "tcplab_connections_total") == 0
        assert "# TYPE tcplab_bytes_received_total counter" in before
        tutorialClient(server.port, b"x" * 1000)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as held:
            held.sendall(b"abc")
            assert recvExactly(held, 3) == b"abc"
            after = scrape(metricsPort)
            assert metricValue(after, "tcplab_connections_open") == 1
            assert metricValue(after, "tcplab_connections_total") == 2
            assert metricValue(after, "tcplab_bytes_received_total") == 1003
            assert metricValue(after, "tcplab_bytes_sent_total") == 1003
            assert 'service="tcplab-echo"' in after


def freePrivilegedPort() -> int:
    """A port below 1024 that is free on 127.0.0.1 now, picked at random in 600-999."""
    import random

    for _ in range(50):
        candidate = random.randint(600, 999)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    pytest.skip("no free port in 600-999 on 127.0.0.1")


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a port below 1024 needs root")
def test_uid_switch_with_privileged_port() -> None:
    """
    twistd --uid nobody --gid nogroup binds a port below 1024 as root (in
    privilegedStartService), then serves as nobody.
    """
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    number = freePrivilegedPort()
    command = [TWISTD, "--pidfile=", "-n", "--uid", str(nobody), "--gid", str(nogroup)]
    process = subprocess.Popen(
        [*command, "tcplab-echo", "--listen", f"tcp:{number}:interface=127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd="/tmp",
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        output = OutputLines(process.stdout.fileno())
        output.waitForLine(re.compile(rf"listening on 127\.0\.0\.1:{number} "))
        output.waitForLine(re.compile(r"set uid/gid"))
        assert tutorialClient(number, b"as nobody\n") == b"as nobody\n"
        with open(f"/proc/{process.pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        assert fields["Uid"].split() == [str(nobody)] * 4
        assert fields["Gid"].split() == [str(nogroup)] * 4
    finally:
        process.terminate()
        process.wait(15)
        assert process.stdout is not None
        process.stdout.close()
