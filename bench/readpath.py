"""
In-process echo read-path microbenchmark: server CPU time per echoed message.

C{python -m bench echo} measures wall-clock rates against a load generator
on another core, and on a shared machine one run can differ from the next
by half; even its CPU time per message moves with how many messages each
read happens to carry.  This one fixes the batch: the echo service as
twistd builds it (L{EchoFactory} behind a L{ConnectionObserver} with the
service's read size and fast paths) listens on loopback under the real
reactor, plain sockets in the same process send every connection C{depth}
messages, and one reactor iteration reads and answers them all.  Only the
reactor's iterations are timed (thread CPU time), so the figure is the
server's own cost per message: epoll dispatch, C{recv}, the wrapper, the
protocol and the C{send}.  Use it for A/B comparisons (put the other tree
first on C{PYTHONPATH})::

    .venv/bin/python -m bench.readpath --conns 50 --depth 16 --size 64
    .venv/bin/python -m bench.readpath --conns 1 --depth 1 --size 64   # ping-pong
    .venv/bin/python -m bench.readpath --twistd   # the real twistd, its CPU time
    .venv/bin/python -m bench.readpath --c-peer   # the C echo server, the same way

With C{--twistd} the real C{twistd -n tcplab-echo} serves the same lockstep
rounds from its own process (pinned to CPU 0, the client on CPU 1), and its
CPU time (C{/proc/PID/schedstat}) over the rounds is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
from typing import Any

from bench.processes import (
    BIN,
    CLIENT_CPU,
    SERVER_CPU,
    BenchError,
    buildLoadgen,
    freePort,
    isListening,
    pinned,
)
from tcplab.echo import EchoFactory
from tcplab.observe import ConnectionObserver
from tcplab.sending import BULK_READ_SIZE


class LockstepClients:
    """
    C{conns} loopback connections that each send C{depth} messages of
    C{size} bytes in one C{send}, then wait until all of it is echoed: the
    server reads every connection's batch in one C{recv}.
    """

    def __init__(self, port: int, conns: int, depth: int, size: int) -> None:
        self.clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
        for client in self.clients:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.setblocking(False)
        self.payload = bytes(i % 251 for i in range(size * depth))

    def send(self) -> dict[socket.socket, bytearray]:
        """Send every connection its batch; where each one's echo goes."""
        for client in self.clients:
            client.sendall(self.payload)
        return {client: bytearray() for client in self.clients}

    def receive(self, received: dict[socket.socket, bytearray]) -> None:
        """Take what has arrived; forget the connections that got everything back."""
        for client, data in list(received.items()):
            try:
                data += client.recv(65536)
            except BlockingIOError:
                continue
            if len(data) >= len(self.payload):
                if data != self.payload:
                    raise AssertionError("echoed bytes differ from what was sent")
                del received[client]

    def close(self) -> None:
        """Close every connection."""
        for client in self.clients:
            client.close()


def inProcess(conns: int, depth: int, size: int, rounds: int) -> dict[str, Any]:
    """
    The service in this process: time only the reactor's iterations; the
    server's CPU time per message.
    """
    from tcplab.reactors import defaultReactor

    reactor = defaultReactor()
    observer = ConnectionObserver(
        EchoFactory(), "bench", readSize=BULK_READ_SIZE, writeDirectly=True
    )
    port = reactor.listenTCP(0, observer, interface="127.0.0.1")
    try:
        from tcplab.tap.listening import readDirectly
    except ImportError:  # a tree from before tcplab.directread
        pass
    else:
        readDirectly(port)
    clients = LockstepClients(port.getHost().port, conns, depth, size)
    while len(observer.openConnections()) < conns:
        reactor.iterate(0.01)
    serverNs = 0
    iterations = 0
    try:
        for _ in range(rounds):
            received = clients.send()
            while received:
                started = time.thread_time_ns()
                reactor.iterate(0.1)
                serverNs += time.thread_time_ns() - started
                iterations += 1
                clients.receive(received)
    finally:
        clients.close()
        port.stopListening()
        while observer.openConnections():
            reactor.iterate(0.01)
    return figures(conns, depth, size, rounds, serverNs, iterations / rounds)


def cpuNs(pid: int) -> int:
    """A process's CPU time so far, in nanoseconds (from /proc/PID/schedstat)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


def againstServer(
    conns: int, depth: int, size: int, rounds: int, peer: bool = False
) -> dict[str, Any]:
    """
    The real C{twistd -n tcplab-echo} (or, with C{peer}, the C echo server
    of C{bench/build/loadgen serve}), pinned to CPU 0, this client on CPU 1;
    the server's CPU time per message (it does nothing else meanwhile).
    """
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    port = freePort()
    if peer:
        command = [str(buildLoadgen()), "serve", "127.0.0.1", str(port)]
    else:
        listen = f"tcp:{port}:interface=127.0.0.1"
        twistd = [str(BIN / "twistd"), "--pidfile=", "-l", "/dev/null", "-n", "tcplab-echo"]
        command = [*twistd, "--listen", listen]
    server = subprocess.Popen(pinned(SERVER_CPU, command))
    try:
        deadline = time.monotonic() + 20
        while not isListening(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise BenchError("the echo server did not start")
            time.sleep(0.05)
        clients = LockstepClients(port, conns, depth, size)
        for _ in range(20):  # warm up
            received = clients.send()
            while received:
                clients.receive(received)
        started = cpuNs(server.pid)
        for _ in range(rounds):
            received = clients.send()
            while received:
                clients.receive(received)
        serverNs = cpuNs(server.pid) - started
        clients.close()
    finally:
        server.terminate()
        server.wait()
    return figures(conns, depth, size, rounds, serverNs, None)


def figures(
    conns: int, depth: int, size: int, rounds: int, serverNs: int, iterations: float | None
) -> dict[str, Any]:
    """One result row."""
    return {
        "conns": conns,
        "depth": depth,
        "size": size,
        "rounds": rounds,
        "iterations_per_round": iterations,
        "ns_per_message": round(serverNs / (conns * depth * rounds), 1),
        "ns_per_read": round(serverNs / (conns * rounds), 1),
    }


def main() -> None:
    """Run once and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument(
        "--c-peer", action="store_true", help="measure the C echo server (loadgen serve)"
    )
    parser.add_argument(
        "--twistd", action="store_true", help="measure the real twistd in its own process"
    )
    options = parser.parse_args()
    shape = (options.conns, options.depth, options.size, options.rounds)
    if options.c_peer:
        result = againstServer(*shape, peer=True)
    else:
        result = againstServer(*shape) if options.twistd else inProcess(*shape)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
