"""
``tcplab chat ADDRESS [--nick NAME]``: an interactive chat client.

Incoming lines are printed as they arrive while you type (Twisted's stdio,
no threads); stdin may be a pipe, so
``printf '/nick bob\\nhello\\n' | tcplab chat HOST:PORT`` works in scripts.
The client leaves with ``/quit`` at the end of stdin and exits when the
server closes the connection.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from tcplab.cli.common import (
    addAuthOptions,
    addClientOptions,
    escapeControls,
    readPassword,
    runCommand,
)
from tcplab.cli.stdio import interact
from tcplab.errors import ExitCode
from tcplab.lines import LineProtocol


class ChatClientProtocol(LineProtocol):
    """Print every line from the server, with control characters escaped."""

    maxLineLength = 64 * 1024

    def __init__(self, output: Callable[[bytes], None]) -> None:
        self.output = output
        self.closed: defer.Deferred[None] = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Show one line."""
        text = escapeControls(line.decode("utf-8", "replace"))
        self.output(text.encode("utf-8") + b"\n")

    def connectionLost(self, reason: Failure | None = None) -> None:
        """The server closed the connection: we are done."""
        self.closed.callback(None)


def quitAtEOF(transport: Any) -> None:
    """At the end of stdin, leave politely; the server then closes."""
    if transport.connected:
        transport.write(b"/quit\r\n")


def greeting(args: argparse.Namespace) -> bytes:
    """The first lines to send: skip history, pick a nickname, log in."""
    lines = []
    if args.no_history:
        lines.append("/nohistory")
    password = readPassword(args)
    if args.user:
        lines.append(f"/nick {args.user} {password}")
    elif args.nick:
        lines.append(f"/nick {args.nick}")
    return "".join(f"{line}\r\n" for line in lines).encode()


async def chat(reactor: Any, args: argparse.Namespace) -> int:
    """Run one chat session."""
    await interact(reactor, args, ChatClientProtocol, atEOF=quitAtEOF, greeting=greeting(args))
    return ExitCode.OK


def register(subparsers: Any) -> None:
    """Add ``tcplab chat`` to the command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="join a tcplab chat server (or any line chat)",
        description="Chat interactively; lines from stdin are sent, lines from the "
        "server printed. Type /help once connected for the commands.",
    )
    addClientOptions(parser)
    addAuthOptions(parser)
    parser.add_argument("--nick", metavar="NAME", help="pick this nickname on arrival")
    parser.add_argument(
        "--no-history", action="store_true", help="do not replay the room's recent messages"
    )
    parser.set_defaults(run=lambda args: runCommand(lambda reactor: chat(reactor, args)))
