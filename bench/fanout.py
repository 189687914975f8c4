"""
In-process chat fan-out microbenchmark: CPU time per delivered line.

The socket benchmarks (C{python -m bench chat}) measure wall-clock rates on a
machine other work shares, where one run can differ from the next by half.
This one runs the chat service's own fan-out path -- C{lineReceived},
flood control, the hub's broadcast, the room's feed (L{tcplab.chat.fanout}),
rendering, L{tcplab.sending.WriteBatch} and each connection's C{send} --
against transports that only count bytes, checks that every byte due was
written, and reports process CPU time per delivery, which other load
disturbs far less.  Use it for A/B comparisons of the hot path, run from the
other tree's directory with that tree first on C{PYTHONPATH} (C{python -m}
puts the current directory first)::

    .venv/bin/python -m bench.fanout --clients 1000 --senders 10 --rounds 200
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from tcplab.chat.protocol import ChatFactory, ChatProtocol


class CountingTransport:
    """A transport that only counts what is written to it."""

    def __init__(self, port: int) -> None:
        self.written = 0
        self.peer = IPv4Address("TCP", "127.0.0.1", port)

    def write(self, data: bytes) -> None:
        """Count C{data}."""
        self.written += len(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Accept the protocol as its producer (it is never paused here)."""

    def getPeer(self) -> IPv4Address:
        """The fake peer's address."""
        return self.peer

    def loseConnection(self) -> None:
        """Not used by the benchmark."""

    abortConnection = loseConnection


def run(clients: int, senders: int, window: int, rounds: int) -> dict[str, float]:
    """
    Connect C{clients}, then for C{rounds} reactor iterations have each of
    C{senders} send C{window} lines and flush the batch; the CPU time per
    delivery.
    """
    clock = Clock()
    factory = ChatFactory(floodRate=100000, floodBurst=1000, reactor=clock)
    protocols: list[ChatProtocol] = []
    for i in range(clients):
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, ChatProtocol)
        protocol.makeConnection(CountingTransport(40000 + i))
        protocol.joinDefault(False)
        protocols.append(protocol)
    clock.advance(0)  # flush the greetings
    before = sum(protocol.transport.written for protocol in protocols)
    talkers = protocols[:senders]
    lines = [f"line {n} from the benchmark".encode() for n in range(window)]
    start = time.process_time()
    for _ in range(rounds):
        for talker in talkers:
            for line in lines:
                talker.lineReceived(line)
        clock.advance(0.001)  # flood control's tokens come back (100 a round): any --rounds
    cpu = time.process_time() - start
    deliveries = rounds * senders * window * (clients - 1)
    written = sum(protocol.transport.written for protocol in protocols) - before
    expected = (
        rounds
        * (clients - 1)
        * sum(
            len(f"<{factory.hub.nickOf(talker)}> ".encode()) * window
            + sum(len(line) + 2 for line in lines)
            for talker in talkers
        )
    )
    if written != expected:
        raise SystemExit(f"fan-out lost or duplicated bytes: {written} written, {expected} due")
    return {
        "deliveries": deliveries,
        "cpu_s": round(cpu, 3),
        "ns_per_delivery": round(cpu / deliveries * 1e9, 1),
    }


def main() -> None:
    """Run the benchmark a few times and print each result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    options = parser.parse_args()
    for _ in range(options.reps):
        result = run(options.clients, options.senders, options.window, options.rounds)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
