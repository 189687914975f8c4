"""``--workers N``: the supervisor's policy in memory, and the real thing in subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from tcplab.errors import CannotListen
from tcplab.files.partials import lockPartial
from tcplab.workers import WorkerSupervisor, metricsForWorker, workerArguments
from tests.cluster.redis import freePort, freePorts
from tests.support import ServerProcess, heldPort, recvExactly, runTwistd, scrape


class FakeProcess:
    """A spawned worker as the supervisor sees it: a pid and the signals sent to it."""

    def __init__(self, pid: int, protocol: Any) -> None:
        self.pid = pid
        self.protocol = protocol
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        """Record the signal."""
        self.signals.append(name)

    def end(self, code: int | None, sig: int | None = None) -> None:
        """The process exits."""
        self.protocol.ended(code, sig)


class FakeReactor(Clock):
    """A clock that spawns L{FakeProcess}es and can be stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[FakeProcess] = []
        self.running = True
        self.triggers: list[Any] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kw: Any) -> Any:
        """Record the command; return a fake process."""
        process = FakeProcess(1000 + len(self.spawned), protocol)
        process.args = args  # type: ignore[attr-defined]
        self.spawned.append(process)
        return process

    def stop(self) -> None:
        """The reactor stops."""
        self.running = False

    def addSystemEventTrigger(self, *args: Any) -> None:
        """Record a shutdown trigger."""
        self.triggers.append(args)


def supervisor(count: int = 2) -> tuple[WorkerSupervisor, FakeReactor]:
    """A started supervisor of C{count} workers on a fake reactor."""
    reactor = FakeReactor()
    service = WorkerSupervisor(
        "tcplab-echo", "tcplab-echo", ["--workers", "2", "-l", "tcp:9"], count, reactor=reactor
    )
    service.startService()
    return service, reactor


def test_workers_run_the_plugin_under_twist_with_their_index() -> None:
    """Each worker is the same plugin with the same arguments, minus --workers, plus its index."""
    _, reactor = supervisor()
    commands = [p.args for p in reactor.spawned]  # type: ignore[attr-defined]
    assert [c[2:] for c in commands] == [
        ["twisted", "--log-format=text", "tcplab-echo", "-l", "tcp:9", "--worker-index", str(i)]
        for i in range(2)
    ]


def test_dead_worker_restarts_with_growing_backoff() -> None:
    """A worker that keeps dying is restarted after 0.5, 1, 2 ... seconds, capped at 30."""
    service, reactor = supervisor(1)
    delays = []
    for _ in range(8):
        reactor.spawned[-1].end(None, signal.SIGKILL)
        before = len(reactor.spawned)
        delay = reactor.getDelayedCalls()[0].getTime() - reactor.seconds()
        delays.append(delay)
        reactor.advance(delay)
        assert len(reactor.spawned) == before + 1
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # One that ran for a minute starts its back-off afresh.
    reactor.advance(60)
    reactor.spawned[-1].end(1)
    assert reactor.getDelayedCalls()[0].getTime() - reactor.seconds() == 0.5
    assert service.exitStatus is None


def test_worker_that_cannot_listen_stops_everything_with_its_status() -> None:
    """A worker exiting 10 at its first start is not restarted: the supervisor stops, status 10."""
    service, reactor = supervisor()
    reactor.spawned[0].end(10)
    assert not reactor.running and service.exitStatus == 10
    assert reactor.getDelayedCalls() == []


def test_stop_forwards_sigterm_and_waits_for_every_worker() -> None:
    """Stopping signals each worker once and finishes when the last has exited."""
    service, reactor = supervisor()
    stopped = service.stopService()
    assert [p.signals for p in reactor.spawned] == [["TERM"], ["TERM"]]
    reactor.spawned[0].end(None, signal.SIGTERM)
    assert not stopped.called
    reactor.spawned[1].end(None, signal.SIGTERM)
    assert stopped.called and len(reactor.spawned) == 2


def test_worker_that_will_not_stop_is_killed() -> None:
    """A worker still running past the shutdown timeout (plus grace) gets SIGKILL."""
    service, reactor = supervisor(1)
    service.stopService()
    reactor.advance(service.shutdownTimeout + 5)
    assert reactor.spawned[0].signals == ["TERM", "KILL"]


def test_worker_arguments_and_metrics_ports() -> None:
    """--workers is removed in both spellings; worker I serves metrics on the port plus I."""
    assert workerArguments(["--workers", "3", "-l", "tcp:1", "--workers=2", "--x"]) == [
        "-l",
        "tcp:1",
        "--x",
    ]
    assert metricsForWorker("tcp:9100:interface=127.0.0.1", 2) == "tcp:9102:interface=127.0.0.1"
    assert metricsForWorker("tcp:9100", None) == "tcp:9100"
    with pytest.raises(CannotListen):
        metricsForWorker("unix:/tmp/m.sock", 0)


def test_partial_lock_holds_across_processes(tmp_path: Path) -> None:
    """The upload lock on a partial is held against another process (another worker)."""
    path = str(tmp_path / ".partial")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tcplab.files.partials import lockPartial; "
            f"fd = lockPartial({path!r}); print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert lockPartial(path) is None
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    fd = lockPartial(path)
    assert fd is not None
    os.close(fd)


def echoOnce(port: int) -> bytes:
    """One line echoed by the service on C{port}."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ping\n")
        return recvExactly(s, 5)


@pytest.mark.subprocess
def test_echo_workers_share_a_port_restart_and_stop() -> None:
    """Two echo workers share a port, each with metrics; one killed restarts; SIGTERM ends it."""
    port, metrics = freePort(), freePorts(2)
    server = ServerProcess(
        "tcplab-echo",
        [
            "--workers",
            "2",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--metrics",
            f"tcp:{metrics}:interface=127.0.0.1",
        ],
    )
    try:
        server.waitForLine(re.compile("tcplab-echo listening on"), count=2)
        server.waitForLine(re.compile("metrics listening on"), count=2)
        assert all(echoOnce(port) == b"ping\n" for _ in range(10))
        scraped = [scrape(metrics), scrape(metrics + 1)]
        assert all("tcplab_" in text for text in scraped)
        pid = int(server.waitForLine(re.compile(r"worker 0 started \(pid (\d+)\)")).group(1))
        os.kill(pid, signal.SIGKILL)
        server.waitForLine(re.compile("worker 0 died \\(signal 9\\); restarting in 0.5s"))
        server.waitForLine(re.compile("tcplab-echo listening on"), count=3)
        assert echoOnce(port) == b"ping\n"
    finally:
        assert server.stop() == -signal.SIGTERM
    output = "".join(server.output)
    assert "worker 0 stopped" in output and "worker 1 stopped" in output


@pytest.mark.subprocess
def test_workers_on_a_busy_port_exit_10() -> None:
    """Workers that cannot listen (the port is held without SO_REUSEPORT): exit status 10."""
    with heldPort() as port:
        result = runTwistd(
            "tcplab-echo", "--workers", "2", "--listen", f"tcp:{port}:interface=127.0.0.1"
        )
    assert result.returncode == 10
    assert b"Address already in use" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.subprocess
def test_same_upload_name_on_two_processes_sharing_a_root(tmp_path: Path) -> None:
    """Two file servers on one root (as workers are): a second upload of one name is busy."""
    from tests.files.socket_client import recv_frame, request, send

    root = tmp_path / "root"
    root.mkdir()
    args = ["--root", str(root), "--writable"]
    with (
        ServerProcess("tcplab-files", args) as one,
        ServerProcess("tcplab-files", args) as two,
        socket.create_connection(("127.0.0.1", one.port), timeout=10) as first,
        socket.create_connection(("127.0.0.1", two.port), timeout=10) as second,
    ):
        data = b"x" * 100_000
        request(first, {"op": "put", "path": "same.bin", "size": len(data)})
        send(first, b"\x00" + data[:1000])
        with pytest.raises(OSError, match=r"^busy:"):
            request(second, {"op": "put", "path": "same.bin", "size": len(data)})
        for i in range(1000, len(data), 65535):
            send(first, b"\x00" + data[i : i + 65535])
        send(first, json.dumps({"sha256": hashlib.sha256(data).hexdigest()}).encode())
        assert json.loads(recv_frame(first))["ok"]
    assert (root / "same.bin").read_bytes() == data


@pytest.mark.subprocess
def test_connection_limit_holds_per_worker() -> None:
    """--max-connections is per worker: with 1 each, two workers hold two connections at once."""
    port = freePort()
    listen = f"tcp:{port}:interface=127.0.0.1"
    args = ["--workers", "2", "--listen", listen, "--max-connections", "1"]
    server = ServerProcess("tcplab-echo", args)
    held: list[socket.socket] = []
    try:
        server.waitForLine(re.compile("tcplab-echo listening on"), count=2)
        # The kernel picks a worker per connection: 16 tries reach both but
        # for a chance of 2 in 65536.
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"ping\n")
            if s.recv(100) == b"ping\n":
                held.append(s)
            else:
                s.close()
        assert len(held) == 2
    finally:
        for s in held:
            s.close()
        server.stop()
