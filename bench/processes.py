"""Starting, pinning, watching and stopping the processes a benchmark runs."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BUILD = BENCH / "build"
LOADGEN = BUILD / "loadgen"
BIN = Path(sys.executable).parent
"""Where the project's virtualenv keeps C{twistd} and C{tcplab}."""

SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("BENCH_CLIENT_CPU", "1")


class BenchError(Exception):
    """A benchmark could not run or produced wrong data."""


def buildLoadgen() -> Path:
    """Compile bench/loadgen.c into bench/build/ when it is missing or stale."""
    source = BENCH / "loadgen.c"
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= source.stat().st_mtime:
        return LOADGEN
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise BenchError("no C compiler (cc or gcc) to build bench/loadgen.c")
    BUILD.mkdir(exist_ok=True)
    subprocess.run([compiler, "-O2", "-o", str(LOADGEN), str(source)], check=True)
    return LOADGEN


def raiseFileLimit() -> int:
    """Raise the open-file limit to its hard maximum (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pinned(cpu: str, command: Sequence[str]) -> list[str]:
    """
    C{command} pinned to C{cpu} with C{taskset} (unpinned when there is none).

    @raise BenchError: the program is not installed (socat, say).
    """
    if shutil.which(command[0]) is None:
        raise BenchError(f"{command[0]} is not installed (Debian: apt-get install {command[0]})")
    taskset = shutil.which("taskset")
    return [taskset, "-c", cpu, *command] if taskset else list(command)


def freePort() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def isListening(port: int) -> bool:
    """Whether a socket listens on C{port}, read from /proc (no probe connection)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":
                return True
    return False


def rssKiB(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a running process, in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} for process {pid}")


class PeakWatcher:
    """
    Follow a process's peak RSS (C{VmHWM}, reset by C{exec}) until it exits.

    The rusage of a reaped child would include the Python image it was
    forked from; reading C{/proc} every few milliseconds does not.
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peakKiB = 0
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        while True:
            try:
                peak = rssKiB(self.pid, "VmHWM")
            except (OSError, BenchError):  # gone, or a zombie (no memory left)
                return
            # VmHWM only grows, but restarts at each exec (taskset, then the
            # program): the last reading belongs to the final program.
            self.peakKiB = peak
            time.sleep(self.interval)

    def result(self) -> int:
        """The peak in KiB, once the process has exited."""
        self.thread.join(timeout=5)
        return self.peakKiB


@dataclass
class Server:
    """A server under test, started pinned to the server CPU."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    watcher: PeakWatcher
    reaped: bool = False

    @classmethod
    def start(cls, name: str, command: Sequence[str], port: int, logDir: Path) -> Server:
        """Start C{command} and wait until it listens on C{port}."""
        log = logDir / f"{name}.log"
        with log.open("ab") as output:
            output.write(f"\n=== {' '.join(command)}\n".encode())
            output.flush()
            process = subprocess.Popen(
                pinned(SERVER_CPU, command),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = cls(name, process, port, log, PeakWatcher(process.pid))
        deadline = time.monotonic() + 30
        while not isListening(port):
            if process.poll() is not None:
                raise BenchError(f"{name} exited with {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                server.stop()
                raise BenchError(f"{name} did not listen on {port} within 30 s; see {log}")
            time.sleep(0.02)
        return server

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def wait(self, timeout: float) -> int:
        """Wait for the server to exit by itself; return its peak RSS in KiB."""
        deadline = time.monotonic() + timeout
        while not self._reaped():
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not finish within {timeout:g} s")
            time.sleep(0.005)
        return self.watcher.result()

    def stop(self) -> int:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); return its peak RSS in KiB."""
        if not self._reaped():
            # os.kill, not Popen.send_signal: that polls, and so reaps, first.
            os.kill(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not self._reaped():
                if time.monotonic() > deadline:
                    os.kill(self.process.pid, signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(0.02)
        return self.watcher.result()

    def _reaped(self) -> bool:
        if not self.reaped:
            pid, status, _ = os.wait4(self.process.pid, os.WNOHANG)
            if not pid:
                return False
            self.process.returncode = os.waitstatus_to_exitcode(status)
            self.reaped = True
        return True


def runClient(command: Sequence[str], timeout: float) -> tuple[float, int, str]:
    """
    Run a client pinned to the client CPU.

    @return: its wall time in seconds (start to exit), its peak RSS in KiB,
        and its stdout.
    @raise BenchError: it failed or took longer than C{timeout}.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(pinned(CLIENT_CPU, command), stdout=out, stderr=err)
        watcher = PeakWatcher(process.pid)
        watchdog = threading.Timer(timeout, os.kill, (process.pid, signal.SIGKILL))
        watchdog.start()
        _, status, _ = os.wait4(process.pid, 0)
        elapsed = time.monotonic() - started
        watchdog.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if process.returncode != 0:
        last = (stderr or stdout).strip().splitlines()[-1:] or ["?"]
        if elapsed >= timeout:
            last = [f"killed after {timeout:g} s"]
        raise BenchError(f"{Path(command[0]).name} exited {process.returncode}: {last[0]}")
    return elapsed, watcher.result(), stdout
