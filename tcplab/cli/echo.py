"""
``tcplab echo ADDRESS [MESSAGE ...]``: the tutorials' TCP client, done right.

With messages, each is sent as a line and its reply printed before the next
is sent; then the client shuts down its sending side and prints whatever
else the server sends until it closes.  Without messages, stdin (a terminal
or a pipe, binary-safe) is relayed to the server and replies are printed as
they arrive, like ``nc``.

The lab options show what the wire really does: C{--chunk} splits what is
sent into small writes, C{--delay} pauses between them, C{--time} prints
each message's round-trip time, C{--trace}/C{--hexdump} show every chunk.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.cli.common import addClientOptions, connect, forProtocol, runCommand
from tcplab.cli.stdio import PacedWriter, interact, shutdownSending
from tcplab.errors import ExitCode, ProtocolViolation


class ConnectionClosed(Exception):
    """The server closed the connection while we were waiting for a reply."""


@implementer(IHalfCloseableProtocol)
class EchoClientProtocol(Protocol):
    """
    Show everything the server sends and let the command wait for replies.

    A reply is counted at each line end received; L{waitForLines} fires when
    enough have arrived.  L{closed} fires when the connection is gone.
    """

    def __init__(self, output: Callable[[bytes], None]) -> None:
        self.output = output
        self.linesSeen = 0
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waiters: list[tuple[int, defer.Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        """Print the chunk; count its line ends."""
        self.output(data)
        ends = data.count(b"\n")
        if ends:
            self.linesSeen += ends
            due = [w for w in self._waiters if w[0] <= self.linesSeen]
            self._waiters = [w for w in self._waiters if w[0] > self.linesSeen]
            for _, waiter in due:
                waiter.callback(None)

    def waitForLines(self, count: int) -> defer.Deferred[None]:
        """Fire once C{count} line ends have been received in all."""
        waiter: defer.Deferred[None] = defer.Deferred()
        if self.linesSeen >= count:
            waiter.callback(None)
        elif self.closed.called:
            waiter.errback(ConnectionClosed())
        else:
            self._waiters.append((count, waiter))
        return waiter

    def readConnectionLost(self) -> None:
        """The server sent EOF: nothing more will come, so close."""
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our half-close went through; keep reading."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Wake everything that waits."""
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(ConnectionClosed())
        self.closed.callback(None)


async def sendMessages(reactor: Any, args: argparse.Namespace) -> int:
    """Send each message, print its reply, then drain until the server closes."""
    out = sys.stdout.buffer

    def output(data: bytes) -> None:
        out.write(data)
        out.flush()

    client = EchoClientProtocol(output)
    await connect(reactor, args, forProtocol(lambda: client))
    writer = PacedWriter(reactor, client.transport, args.chunk, args.delay)
    messages = [m.encode("utf-8", "surrogateescape") + b"\n" for m in args.messages]
    if args.no_wait:
        await writer.write(b"".join(messages))
    else:
        for number, message in enumerate(messages, 1):
            expected = client.linesSeen + 1
            started = time.perf_counter()
            await writer.write(message)
            try:
                await client.waitForLines(expected)
            except ConnectionClosed:
                raise ProtocolViolation(
                    f"the server closed the connection after {number - 1} of "
                    f"{len(messages)} messages were answered"
                ) from None
            if args.time:
                elapsed = (time.perf_counter() - started) * 1000
                print(f"[message {number}: round trip {elapsed:.3f} ms]", file=sys.stderr)
    if not client.closed.called:
        shutdownSending(client.transport)
    await client.closed
    return ExitCode.OK


async def relayStdin(reactor: Any, args: argparse.Namespace) -> int:
    """Interactive session: stdin to the server, the server to stdout."""
    await interact(reactor, args, EchoClientProtocol, chunk=args.chunk, delay=args.delay)
    return ExitCode.OK


def register(subparsers: Any) -> None:
    """Add ``tcplab echo`` to the command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "echo",
        help="talk to an echo server (or any line server): send messages, print replies",
        description=(
            "Send each MESSAGE as a line and print the reply; with no MESSAGE, relay "
            "stdin to the server and print what comes back until either side closes."
        ),
    )
    addClientOptions(parser)
    parser.add_argument("messages", metavar="MESSAGE", nargs="*", help="lines to send")
    parser.add_argument(
        "--chunk", type=int, metavar="N", help="split what is sent into writes of N bytes"
    )
    parser.add_argument(
        "--delay",
        type=lambda v: float(v) / 1000,
        default=0.0,
        metavar="MS",
        help="pause this many milliseconds between writes",
    )
    parser.add_argument("--time", action="store_true", help="print each round-trip time")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="send all messages at once instead of waiting for each reply",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``tcplab echo``."""
    if args.chunk is not None and args.chunk < 1:
        print("tcplab: --chunk must be at least 1", file=sys.stderr)
        return ExitCode.USAGE
    return runCommand(
        lambda reactor: (sendMessages if args.messages else relayStdin)(reactor, args)
    )
