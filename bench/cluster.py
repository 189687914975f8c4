"""
The cluster case: the 1000-client chat fan-out against ``--workers 2
--cluster`` on one port (Redis on the same box), beside one process.

The load generator verifies every line once and in order per sender, as in
the chat job.  Server-side CPU is the workers' plus Redis's (the
supervisor does nothing), read from /proc over the load generator's run;
the workers and Redis are pinned to the server CPU like every server here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.jobs import CHAT_FLOOD, CHAT_LIMITS, Job, Row, fill, loadgen, twistd
from bench.processes import SERVER_CPU, BenchError, Server, freePort, isListening, pinned

WORKERS = 2


def cpuSeconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def childrenOf(pid: int) -> list[int]:
    """The direct children of a process (the supervisor's workers)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def startRedis() -> tuple[subprocess.Popen[bytes], int]:
    """A throw-away redis-server on a free port, pinned to the server CPU."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("the cluster case needs redis-server on PATH")
    port = freePort()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(
        pinned(SERVER_CPU, [*command, "--appendonly", "no"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not isListening(port):
        if time.monotonic() > deadline or process.poll() is not None:
            raise BenchError("redis-server did not start")
        time.sleep(0.02)
    return process, port


def waitForLog(log: Path, offset: int, text: str, count: int, timeout: float = 30) -> None:
    """Wait until C{text} appears C{count} times in C{log} past C{offset}."""
    deadline = time.monotonic() + timeout
    while log.read_bytes()[offset:].decode("utf-8", "replace").count(text) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{text!r} did not appear {count} times in {log}")
        time.sleep(0.05)


def measureCluster(
    serverName: str, command: list[str], configName: str, config: Any, logDir: Path
) -> Row:
    """The chat fan-out against one server command, with Redis when it asks for one."""
    clients, senders, lines, window = config
    port = freePort()
    clustered = "{redis}" in command
    redis, redisPort = startRedis() if clustered else (None, 0)
    log = logDir / f"{serverName}.log"
    offset = log.stat().st_size if log.exists() else 0
    try:
        filled = fill(command, port=port, redis=f"redis://127.0.0.1:{redisPort}")
        server = Server.start(serverName, filled, port, logDir)
        try:
            if clustered:
                waitForLog(log, offset, "joined through", WORKERS)
            pids = childrenOf(server.pid) if clustered else [server.pid]
            before = [cpuSeconds(p) for p in pids]
            redisBefore = cpuSeconds(redis.pid) if redis else 0.0
            start = time.monotonic()
            result = loadgen(
                "chat", "127.0.0.1", port, clients, senders, lines, window, 0, timeout=300
            )
            elapsed = time.monotonic() - start
            used = sum(cpuSeconds(p) for p in pids) - sum(before)
            result["server_cpu_pct"] = round(100 * used / elapsed, 1)
            redisUsed = cpuSeconds(redis.pid) - redisBefore if redis is not None else 0.0
            result["redis_cpu_pct"] = round(100 * redisUsed / elapsed, 1)
        finally:
            server.stop()
    finally:
        if redis is not None:
            redis.send_signal(signal.SIGTERM)
            redis.wait(10)
    return result


def clusterJob() -> Job:
    """The cluster job: one process against two workers sharing one port through Redis."""
    chat = ["tcplab-chat", *CHAT_LIMITS, *CHAT_FLOOD]
    return Job(
        "cluster",
        {"1000 clients, 10 senders x 100": (1000, 10, 100, 4)},
        {
            "tcplab-chat": twistd(*chat),
            "tcplab-chat --workers 2 --cluster": twistd(
                *chat, "--workers", str(WORKERS), "--cluster", "{redis}"
            ),
        },
        "lines_per_s",
        "lines/s",
        True,
        measureCluster,
        [
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("server_cpu_pct", "workers CPU%"),
            ("redis_cpu_pct", "Redis CPU%"),
            ("load_cpu_pct", "load CPU%"),
        ],
    )
