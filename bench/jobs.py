"""
The benchmark jobs: what runs against which server, and what is measured.

Each measurement starts a fresh server (tcplab through its real twistd
plugin, or a peer) pinned to one CPU, drives it from the other CPU with
C{bench/build/loadgen} (or a file-transfer client), and returns one row.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import (
    BENCH,
    BIN,
    CLIENT_CPU,
    LOADGEN,
    BenchError,
    Server,
    freePort,
    pinned,
    rssKiB,
    runClient,
)

Row = dict[str, Any]
PEERS = BENCH / "peers"
LISTEN = "tcp:{port}:interface=127.0.0.1"
CHAT_LIMITS = ["--max-clients", "6000", "--max-per-ip", "0"]
"""tcplab-chat's connection limits, raised for thousands of loopback clients."""
CHAT_FLOOD = ["--flood-rate", "100000", "--flood-burst", "1000"]
"""Flood control stays on, with limits a benchmark sender stays under."""


def twistd(plugin: str, *options: str) -> list[str]:
    """The real plugin, as a user starts it."""
    return [str(BIN / "twistd"), "--pidfile=", "-n", plugin, "--listen", LISTEN, *options]


def peer(script: str) -> list[str]:
    """A peer server from bench/peers/."""
    return [sys.executable, str(PEERS / script), "--port", "{port}"]


def fill(command: list[str], **values: object) -> list[str]:
    """Fill C{{port}} and friends into a command."""
    return [part.format(**values) for part in command]


@dataclass
class Job:
    """
    One kind of measurement.

    @ivar figure: the row key of the figure of merit (medians are compared).
    @ivar higherIsBetter: whether a bigger figure is better.
    @ivar columns: further (key, heading) columns shown in the table.
    """

    name: str
    configs: dict[str, Any]
    servers: dict[str, Any]
    figure: str
    unit: str
    higherIsBetter: bool
    measure: Callable[[str, Any, str, Any, Path], Row]
    columns: list[tuple[str, str]] = field(default_factory=list)


def loadgen(*args: object, timeout: float = 180) -> dict[str, Any]:
    """Run the load generator pinned to the client CPU; its JSON line."""
    _, _, out = runClient([str(LOADGEN), *map(str, args)], timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def measureEcho(
    serverName: str, command: list[str], configName: str, config: Any, logDir: Path
) -> Row:
    """Echo throughput and round-trip latency at one load."""
    conns, depth, size = config
    port = freePort()
    server = Server.start(serverName, fill(command, port=port), port, logDir)
    try:
        result = loadgen("echo", "127.0.0.1", port, conns, depth, size, 1, 3, server.pid)
    finally:
        server.stop()
    return result


def measureChat(
    serverName: str, command: list[str], configName: str, config: Any, logDir: Path
) -> Row:
    """Chat fan-out: delivered lines per second and delivery latency."""
    clients, senders, lines, window = config
    port = freePort()
    server = Server.start(serverName, fill(command, port=port), port, logDir)
    try:
        result = loadgen(
            "chat", "127.0.0.1", port, clients, senders, lines, window, server.pid, timeout=300
        )
    finally:
        server.stop()
    return result


def measureIdle(serverName: str, spec: Any, configName: str, config: Any, logDir: Path) -> Row:
    """Server memory per idle connection: RSS growth over C{config} connections."""
    command, echoes = spec
    conns = config
    port = freePort()
    server = Server.start(serverName, fill(command, port=port), port, logDir)
    try:
        loadgen("idle", "127.0.0.1", port, 1, echoes, 0)  # warm up the code paths
        time.sleep(0.5)
        base = rssKiB(server.pid)
        holder = subprocess.Popen(
            pinned(
                CLIENT_CPU,
                [str(LOADGEN), "idle", "127.0.0.1", str(port), str(conns), str(echoes), "30"],
            ),
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            ready = json.loads(holder.stdout.readline() or b'{"ok": false}')
            if not ready.get("ok"):
                raise BenchError(f"idle connections failed: {ready}")
            time.sleep(1)
            loaded = rssKiB(server.pid)
        finally:
            holder.kill()
            holder.wait()
    finally:
        server.stop()
    return {
        "ok": True,
        "bytes_per_conn": (loaded - base) * 1024 / conns,
        "base_mib": base / 1024,
        "loaded_mib": loaded / 1024,
    }


# Files


def scratchDir() -> Path:
    """Where the 1 GiB source and the outputs live (C{BENCH_TMP})."""
    path = Path(os.environ.get("BENCH_TMP", "/tmp/tcplab-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sourceFile(sizeMiB: int) -> tuple[Path, str]:
    """A random file of C{sizeMiB} MiB and its SHA-256 (made once, then reused)."""
    root = scratchDir() / "root"
    root.mkdir(exist_ok=True)
    source = root / f"random-{sizeMiB}m.bin"
    digestFile = source.with_suffix(".sha256")
    if not (source.exists() and digestFile.exists()):
        digest = hashlib.sha256()
        with source.open("wb") as output:
            for _ in range(sizeMiB):
                chunk = os.urandom(1 << 20)
                digest.update(chunk)
                output.write(chunk)
        digestFile.write_text(digest.hexdigest())
    return source, digestFile.read_text().strip()


def sha256Of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB steps."""
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def refaultMemory(size: int) -> None:
    """
    Write and delete a scratch file as large as the transfer.

    On a VM that hands freed memory back to its host, the first write of a
    gigabyte into the page cache is several times slower than the next;
    doing it here keeps that cost out of every measured case alike.
    """
    scratch = scratchDir() / "refault.tmp"
    block = bytes(1 << 20)
    with scratch.open("wb") as output:
        for _ in range(size >> 20):
            output.write(block)
    scratch.unlink()


def cpuSeconds(pid: int) -> float:
    """User plus system CPU seconds a running process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def childrenCpu() -> float:
    """User plus system CPU seconds of the children reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measureFiles(serverName: str, spec: Any, configName: str, config: Any, logDir: Path) -> Row:
    """
    One 1 GiB transfer (C{config} MiB) through a real client to a file,
    verified by size and SHA-256 outside the timing; with the CPU seconds
    each side spent on it (the client's start-up included; the server's
    from just before the client starts), to tell which side bounds it.
    """
    serverCommand, clientCommand, waitForServer = spec
    source, digest = sourceFile(config)
    upload = scratchDir() / "upload"
    upload.mkdir(exist_ok=True)
    output = upload / source.name if configName == "put" else scratchDir() / "out.bin"
    output.unlink(missing_ok=True)
    values = {
        "root": source.parent,
        "src": source,
        "name": source.name,
        "out": output,
        "upload": upload,
        "tcplab": BIN / "tcplab",
    }
    refaultMemory(source.stat().st_size)
    port = freePort()
    server = Server.start(serverName, fill(serverCommand, port=port, **values), port, logDir)
    try:
        serverBefore, childrenBefore = cpuSeconds(server.pid), childrenCpu()
        started = time.monotonic()
        _, clientRss, _ = runClient(fill(clientCommand, port=port, **values), timeout=600)
        clientCpu = childrenCpu() - childrenBefore
        if waitForServer:  # a raw receiver is done when it exits, not when the sender does
            beforeWait = childrenCpu()
            server.wait(timeout=600)
            elapsed = time.monotonic() - started
            # Reaped: its whole life's CPU, less what it had used before.
            serverCpu = childrenCpu() - beforeWait - serverBefore
        else:
            elapsed = time.monotonic() - started
            serverCpu = cpuSeconds(server.pid) - serverBefore
    finally:
        serverRss = server.stop()
    size = source.stat().st_size
    if not output.exists() or output.stat().st_size != size or sha256Of(output) != digest:
        raise BenchError(f"{serverName}: the copy at {output} is not the source")
    output.unlink()
    return {
        "ok": True,
        "mb_per_s": size / elapsed / 1e6,
        "seconds": elapsed,
        "server_rss_mib": serverRss / 1024,
        "client_rss_mib": clientRss / 1024,
        "server_cpu_s": serverCpu,
        "client_cpu_s": clientCpu,
    }


SOCAT_GET = (
    ["socat", "-u", "FILE:{src}", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"],
    ["socat", "-u", "TCP:127.0.0.1:{port}", "CREATE:{out}"],
    False,
)
SOCAT_PUT = (
    ["socat", "-u", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "CREATE:{upload}/{name}"],
    ["socat", "-u", "FILE:{src}", "TCP:127.0.0.1:{port}"],
    True,
)
TCPLAB_GET = (
    twistd("tcplab-files", "--root", "{root}"),
    ["{tcplab}", "get", "127.0.0.1:{port}", "{name}", "-o", "{out}", "--quiet"],
    False,
)
TCPLAB_PUT = (
    twistd("tcplab-files", "--writable", "--root", "{upload}"),
    ["{tcplab}", "put", "127.0.0.1:{port}", "{src}", "--quiet"],
    False,
)


# Start-up and idle footprint

STARTUP_RUNS = 5
"""Runs of a command per measurement; the row holds their median."""

MINIMAL_ECHO_CLIENT = (
    "import socket, sys; s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); "
    "s.sendall(b'hello\\n'); d = b''\n"
    "while not d.endswith(b'\\n'): d += s.recv(64)\n"
    "sys.stdout.write(d.decode())"
)
"""The floor for a whole echo round trip: a bare Python socket client."""


TWISTED_IMPORT = (
    "import gc, os, sys; gc.disable(); "
    "sys.modules.update(dict.fromkeys(['OpenSSL', '_ssl', '_hashlib'])); "
    "import twisted.internet.reactor, twisted.internet.endpoints; os._exit(0)"
)
"""
The floor under tcplab's plain-TCP client: importing the reactor and
endpoints as ``tcplab echo HOST:PORT`` does (without pyOpenSSL, the
standard library's C{_ssl} or OpenSSL's digests, L{tcplab.tlsfree}; with the
garbage collector paused, L{tcplab.cli.collectorPaused}; ending with
C{os._exit}, L{tcplab.cli.console}), and nothing else: no tcplab module, no
parsing, no connection.
"""


def compileTcplab() -> None:
    """
    Byte-compile tcplab's modules into their C{__pycache__}, as installing
    the wheel does (pip compiles every module it installs).  An editable
    install run with C{PYTHONDONTWRITEBYTECODE=1} (as on our VMs) otherwise
    recompiles tcplab's ~20 modules from source in every C{tcplab echo}:
    15 ms of a ~150 ms command that no installed copy pays.  A server that
    compiles at start-up also starts with freed compiler memory that its
    first connections reuse, which made the idle-connection figures ~90 B
    lower than an installed server's.  Twisted and the standard library are
    compiled already.
    """
    spec = importlib.util.find_spec("tcplab")
    assert spec is not None and spec.submodule_search_locations is not None
    for location in spec.submodule_search_locations:
        compileall.compile_dir(location, quiet=1)


def measureStartup(
    serverName: str, command: list[str], configName: str, needsServer: Any, logDir: Path
) -> Row:
    """
    Wall time and peak RSS of one short command, the median of
    L{STARTUP_RUNS} runs; against a running tcplab-echo when it needs one.
    tcplab runs from byte-compiled modules, as installed (L{compileTcplab},
    which C{python -m bench} runs before any job).
    """
    port = freePort()
    server = None
    if needsServer:
        server = Server.start("tcplab-echo", fill(twistd("tcplab-echo"), port=port), port, logDir)
    try:
        values = {"tcplab": BIN / "tcplab", "python": sys.executable, "port": port}
        runs = [runClient(fill(command, **values), timeout=60) for _ in range(STARTUP_RUNS)]
    finally:
        if server is not None:
            server.stop()
    seconds = sorted(elapsed for elapsed, _, _ in runs)
    peaks = sorted(peak for _, peak, _ in runs)
    middle = len(runs) // 2
    return {"ok": True, "ms": 1000 * seconds[middle], "peak_mib": peaks[middle] / 1024}


def measureIdleService(
    serverName: str, command: list[str], configName: str, config: Any, logDir: Path
) -> Row:
    """Resident memory of a freshly started server with no connection."""
    port = freePort()
    server = Server.start(serverName, fill(command, port=port), port, logDir)
    try:
        time.sleep(1)  # let start-up garbage settle; nothing to wait on
        rss = rssKiB(server.pid)
    finally:
        server.stop()
    return {"ok": True, "rss_mib": rss / 1024}


def jobs(sizeMiB: int, idleConns: int) -> dict[str, Job]:
    """Every job, by name."""
    echoServers = {
        "tcplab-echo": twistd("tcplab-echo"),
        "c-epoll": [str(LOADGEN), "serve", "127.0.0.1", "{port}"],
        "asyncio": peer("asyncio_echo.py"),
        "threaded": peer("threaded_echo.py"),
    }
    chatServers = {
        "tcplab-chat": twistd("tcplab-chat", *CHAT_LIMITS, *CHAT_FLOOD),
        "c-epoll": [str(LOADGEN), "chatserve", "127.0.0.1", "{port}"],
        "asyncio": peer("asyncio_chat.py"),
    }
    from bench.cluster import clusterJob  # it builds on this module

    return {
        "cluster": clusterJob(),
        "echo": Job(
            "echo",
            {
                "latency 1x1x64B": (1, 1, 64),
                "small 50x16x64B": (50, 16, 64),
                "bulk 10x4x64KiB": (10, 4, 65536),
            },
            echoServers,
            "msgs_per_s",
            "msgs/s",
            True,
            measureEcho,
            [
                ("mb_per_s", "MB/s"),
                ("p50_us", "p50 µs"),
                ("p99_us", "p99 µs"),
                ("server_cpu_pct", "srv CPU%"),
                ("load_cpu_pct", "load CPU%"),
            ],
        ),
        "chat": Job(
            "chat",
            {
                "100 clients, 10 senders x 500": (100, 10, 500, 4),
                "1000 clients, 10 senders x 100": (1000, 10, 100, 4),
            },
            chatServers,
            "lines_per_s",
            "lines/s",
            True,
            measureChat,
            [
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("server_cpu_pct", "srv CPU%"),
                ("load_cpu_pct", "load CPU%"),
            ],
        ),
        "idle-echo": Job(
            "idle-echo",
            {f"{idleConns} idle connections": idleConns},
            {"tcplab-echo": (twistd("tcplab-echo"), 1), "asyncio": (peer("asyncio_echo.py"), 1)},
            "bytes_per_conn",
            "bytes/conn",
            False,
            measureIdle,
            [("base_mib", "base MiB"), ("loaded_mib", "loaded MiB")],
        ),
        "idle-chat": Job(
            "idle-chat",
            {f"{idleConns} idle connections": idleConns},
            {
                "tcplab-chat": (twistd("tcplab-chat", *CHAT_LIMITS), 0),
                "asyncio": (peer("asyncio_chat.py"), 0),
            },
            "bytes_per_conn",
            "bytes/conn",
            False,
            measureIdle,
            [("base_mib", "base MiB"), ("loaded_mib", "loaded MiB")],
        ),
        "startup": Job(
            "startup",
            {
                "tcplab --version": (
                    ["{tcplab}", "--version"],
                    ["{python}", "-c", "pass"],
                    False,
                    ["{python}", "-c", TWISTED_IMPORT],
                ),
                "tcplab echo --help": (
                    ["{tcplab}", "echo", "--help"],
                    ["{python}", "-c", "pass"],
                    False,
                    ["{python}", "-c", TWISTED_IMPORT],
                ),
                "tcplab echo HOST:PORT hello": (
                    ["{tcplab}", "echo", "127.0.0.1:{port}", "hello"],
                    ["{python}", "-c", MINIMAL_ECHO_CLIENT, "{port}"],
                    True,
                    ["{python}", "-c", TWISTED_IMPORT],
                ),
            },
            {"tcplab": 0, "bare python": 1, "Twisted import only": 3},
            "ms",
            "ms wall",
            False,
            lambda name, which, configName, config, logDir: measureStartup(
                name, config[which], configName, config[2], logDir
            ),
            [("peak_mib", "peak RSS MiB")],
        ),
        "idle-service": Job(
            "idle-service",
            {"fresh server, no connections": None},
            {
                "tcplab-echo": twistd("tcplab-echo"),
                "asyncio": peer("asyncio_echo.py"),
            },
            "rss_mib",
            "MiB RSS",
            False,
            measureIdleService,
        ),
        "files": Job(
            "files",
            {"get": sizeMiB, "put": sizeMiB},
            {
                "socat": {"get": SOCAT_GET, "put": SOCAT_PUT},
                "tcplab": {"get": TCPLAB_GET, "put": TCPLAB_PUT},
            },
            "mb_per_s",
            "MB/s",
            True,
            lambda name, spec, configName, config, logDir: measureFiles(
                name, spec[configName], configName, config, logDir
            ),
            [
                ("server_rss_mib", "server peak RSS MiB"),
                ("client_rss_mib", "client peak RSS MiB"),
                ("server_cpu_s", "server CPU s"),
                ("client_cpu_s", "client CPU s"),
            ],
        ),
    }
