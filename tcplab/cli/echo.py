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

from twisted.internet import defer

from tcplab.cli.common import connect, forProtocol, runCommand
from tcplab.cli.echoclient import ConnectionClosed, EchoClientProtocol
from tcplab.cli.parsers import RAW_QUIET
from tcplab.cli.running import ICommandReactor
from tcplab.cli.stdio import PacedWriter, StdoutSink, interact
from tcplab.errors import ExitCode, ProtocolViolation


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
    reactor: ICommandReactor,
    client: EchoClientProtocol,
    args: argparse.Namespace,
    first: bool = False,
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


async def sendMessages(reactor: ICommandReactor, args: argparse.Namespace) -> int:
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


async def exchange(
    reactor: ICommandReactor, client: EchoClientProtocol, args: argparse.Namespace
) -> int:
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
    reactor: ICommandReactor,
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


async def relayStdin(reactor: ICommandReactor, args: argparse.Namespace) -> int:
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


def run(args: argparse.Namespace) -> int:
    """Run ``tcplab echo``."""
    if args.chunk is not None and args.chunk < 1:
        print("tcplab: --chunk must be at least 1", file=sys.stderr)
        return ExitCode.USAGE
    return runCommand(
        lambda reactor: (sendMessages if args.messages else relayStdin)(reactor, args)
    )
