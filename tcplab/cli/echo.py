"""
``tcplab echo ADDRESS [MESSAGE ...]``: the tutorials' TCP client, done right.

With messages, each is sent as a line and its reply printed before the next
is sent; then the client shuts down its sending side and prints whatever
else the server sends until it closes.  Without messages, stdin (a terminal
or a pipe, binary-safe) is relayed to the server and replies are printed as
they arrive, like ``nc``.

Servers from the tutorials rarely end replies with a line end or close when
asked, so, as with nc and socat: C{-w SECONDS} bounds the wait for each reply
(a reply that has started arriving counts); C{--raw} sends messages as they
are, takes whatever one read brings as the reply (the tutorials'
``recv(1024)``) and ends with a close instead of a half-close, which those
servers answer with endless replies to ``recv() == b''``; C{--greeting} reads
the server's welcome before sending.  Whatever the mode, after its input
ends the client reads at most what the server still owes plus
C{--eof-limit} bytes, so no server can flood the terminal.

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

from tcplab.cli.common import addClientOptions, connect, forProtocol, runCommand
from tcplab.cli.echoclient import ConnectionClosed, EchoClientProtocol
from tcplab.cli.stdio import PacedWriter, StdoutSink, interact
from tcplab.errors import ExitCode, ProtocolViolation

DEFAULT_EOF_LIMIT = 4096
"""Bytes read after our own EOF beyond what the server still owes us."""

RAW_QUIET = 1.0
"""With --raw, seconds of silence after the last reply before we close."""


def note(text: str) -> None:
    """A remark on stderr."""
    print(f"tcplab: {text}", file=sys.stderr)


def reportCutOff(client: EchoClientProtocol, limit: int) -> None:
    """Say that the server was hung up on for sending on after our input ended."""
    if client.cutOff:
        note(
            "the server kept sending after the end of input; stopped reading "
            f"{limit} bytes past what it owed (--eof-limit)"
        )


async def awaitReply(
    reactor: Any, client: EchoClientProtocol, args: argparse.Namespace, first: bool = False
) -> bool:
    """
    Wait for the next reply, at most C{-w} seconds; return whether one came
    (a reply that started arriving in time counts).

    @raise ConnectionClosed: the server closed without a reply.
    """
    since = 0 if first else client.chunksSeen
    waiting = client.waitForReply(args.raw, first=first)
    if args.wait is not None:
        waiting.addTimeout(args.wait, reactor)
    try:
        await waiting
    except defer.TimeoutError:
        return client.replyStarted(since)
    return True


async def sendMessages(reactor: Any, args: argparse.Namespace) -> int:
    """Send each message, print its reply, then drain until the server closes."""
    sink = StdoutSink()
    client = EchoClientProtocol(sink.write, reactor)
    sink.onGone = client.hangUp
    try:
        return await exchange(reactor, client, args)
    except ProtocolViolation:
        if sink.gone:
            return ExitCode.OK  # stdout's reader left (| head): we stopped, as asked
        raise


async def exchange(reactor: Any, client: EchoClientProtocol, args: argparse.Namespace) -> int:
    """Connect, send the messages with their replies, then drain."""
    await connect(reactor, args, forProtocol(lambda: client))
    writer = PacedWriter(reactor, client.transport, args.chunk, args.delay)
    end = b"" if args.raw else b"\n"
    messages = [m.encode("utf-8", "surrogateescape") + end for m in args.messages]
    if args.greeting:
        try:
            await awaitReply(reactor, client, args, first=True)
        except ConnectionClosed:
            raise ProtocolViolation(
                "the server closed the connection before its greeting"
            ) from None
    if args.no_wait:
        await writer.write(b"".join(messages))
    else:
        for number, message in enumerate(messages, 1):
            await sendOne(reactor, client, writer, args, number, message, len(messages))
    if args.raw:
        quiet = RAW_QUIET if args.wait is None else args.wait
        client.finishSending(writer.sent, args.eof_limit, quiet, halfClose=False)
    else:
        client.finishSending(writer.sent, args.eof_limit, args.wait)
    await client.closed
    reportCutOff(client, args.eof_limit)
    return ExitCode.OK


async def sendOne(
    reactor: Any,
    client: EchoClientProtocol,
    writer: PacedWriter,
    args: argparse.Namespace,
    number: int,
    message: bytes,
    total: int,
) -> None:
    """Send message C{number} of C{total} and wait for its reply."""
    started = time.perf_counter()
    waiting = awaitReply(reactor, client, args)
    # The wait is registered before the write, so a reply cannot slip past it.
    reply = defer.ensureDeferred(waiting)
    await writer.write(message)
    try:
        answered = await reply
    except ConnectionClosed:
        if args.raw and number == total:
            return  # a raw server's answer to a last message such as "exit" is to close
        raise ProtocolViolation(
            f"the server closed the connection after {number - 1} of "
            f"{total} messages were answered"
        ) from None
    if not answered:
        raise ProtocolViolation(f"no reply to message {number} of {total} within {args.wait:g}s")
    if args.time:
        elapsed = (time.perf_counter() - started) * 1000
        print(f"[message {number}: round trip {elapsed:.3f} ms]", file=sys.stderr)


async def relayStdin(reactor: Any, args: argparse.Namespace) -> int:
    """Interactive session: stdin to the server, the server to stdout."""

    def makeClient(output: Callable[[bytes], None]) -> EchoClientProtocol:
        return EchoClientProtocol(output, reactor)

    def atEOF(client: EchoClientProtocol, writer: PacedWriter) -> None:
        client.finishSending(writer.sent, args.eof_limit, args.wait)

    client = await interact(
        reactor, args, makeClient, atEOF=atEOF, chunk=args.chunk, delay=args.delay
    )
    reportCutOff(client, args.eof_limit)
    return ExitCode.OK


def nonNegativeSeconds(value: str) -> float:
    """An argparse type: seconds, at least 0."""
    seconds = float(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return seconds


def byteCount(value: str) -> int:
    """An argparse type: a number of bytes, at least 0."""
    count = int(value)
    if count < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return count


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
    parser.add_argument(
        "-w",
        "--wait",
        type=nonNegativeSeconds,
        metavar="SECONDS",
        help="wait at most this long for each reply (one that has started arriving "
        "counts) and, after the end of input, for the server to close (default: no limit)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="for servers without line ends (the tutorials'): send each MESSAGE as it is, "
        "take whatever one read brings as its reply (a close after the last MESSAGE "
        "answers it), then read on until the server closes or is quiet for -w seconds "
        f"(default {RAW_QUIET:g}) and close, as the tutorials' clients do, without "
        "half-closing first",
    )
    parser.add_argument(
        "--greeting",
        action="store_true",
        help="the server speaks first: wait for its welcome before sending",
    )
    parser.add_argument(
        "--eof-limit",
        type=byteCount,
        default=DEFAULT_EOF_LIMIT,
        metavar="BYTES",
        help="after the end of input, read what the server still owes plus at most "
        f"BYTES more, then hang up (default {DEFAULT_EOF_LIMIT})",
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
