"""
``tcplab chat ADDRESS [--nick NAME | --user NAME]``: an interactive chat client.

Incoming lines are printed as they arrive while you type (Twisted's stdio,
no threads); stdin may be a pipe, so
``printf '/nick bob\\nhello\\n' | tcplab chat HOST:PORT`` works in scripts.
The client leaves with ``/quit`` at the end of stdin and exits when the
server closes the connection, or C{--quit-wait} seconds later if it does
not.  It distrusts the server as the server distrusts it: control
characters are escaped, a line over 64 KiB is shown cut short with a
marker, a last line without a line end is still shown.  With C{--user},
nothing is sent from stdin until the server has confirmed the login; a
refused login is exit status 9 with the server's reason.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from tcplab.cli.common import escapeControls, readPassword, runCommand
from tcplab.cli.running import ICommandReactor
from tcplab.cli.stdio import EndOfInput, PacedWriter, RelayedClient, interact
from tcplab.errors import ExitCode, TcplabError

MAX_LINE = 64 * 1024
"""The longest line shown in full, in bytes."""

LOGIN_TIMEOUT = 60.0
"""Seconds to wait for the server to accept or refuse a login (it may slow guessers down)."""

NOTICE = "*** "
ERROR_NOTICE = NOTICE + "error: "

_LINE_END = re.compile(rb"\r\n|\r|\n")


class TruncatingLineSplitter:
    """
    Split a byte stream into lines (``\\n``, ``\\r\\n`` or ``\\r``), keeping
    at most C{maxLength} bytes of each: an over-long line comes out cut
    short, with the number of bytes left out, instead of being lost.
    """

    def __init__(self, maxLength: int = MAX_LINE) -> None:
        self.maxLength = maxLength
        self._kept = b""
        self._dropped = 0
        self._afterCR = False

    def feed(self, data: bytes) -> Iterator[tuple[bytes, int]]:
        """Take a chunk; yield each completed line as (kept bytes, bytes left out)."""
        if self._afterCR and data[:1] == b"\n":
            data = data[1:]
        self._afterCR = False
        pieces = _LINE_END.split(data)
        rest = pieces.pop()
        for piece in pieces:
            self._add(piece)
            yield self._take()
        if pieces and data.endswith(b"\r"):
            self._afterCR = True
        self._add(rest)

    def flush(self) -> tuple[bytes, int] | None:
        """The unfinished last line, if any (the stream has ended)."""
        if not self._kept and not self._dropped:
            return None
        return self._take()

    def _add(self, piece: bytes) -> None:
        room = max(0, self.maxLength - len(self._kept))
        self._kept += piece[:room]
        self._dropped += max(0, len(piece) - room)

    def _take(self) -> tuple[bytes, int]:
        line = (self._kept, self._dropped)
        self._kept, self._dropped = b"", 0
        return line


def showLine(kept: bytes, dropped: int) -> str:
    """The text to print for a line: escaped, with a marker if it was cut short."""
    text = escapeControls(kept.decode("utf-8", "replace"))
    if dropped:
        text += f" [... line cut short: {dropped} more bytes not shown]"
    return text


_RENAMED = re.compile(r"\*\*\* (?:you are|\S+ is) now known as (\S+)")


def renamedTo(text: str, nick: str) -> bool:
    """
    Whether C{text} is the server's notice that we are now C{nick}: ``***
    you are now known as NICK``, or the room's ``*** OLD is now known as
    NICK`` (nicknames are unique, so that can only be us while we wait).
    """
    match = _RENAMED.fullmatch(text)
    return match is not None and match.group(1).casefold() == nick.casefold()


class LoginRefused(TcplabError):
    """The server refused C{--user}'s login."""

    exitCode = ExitCode.AUTH


class ChatClientProtocol(RelayedClient):
    """
    Print every line from the server, escaped (see L{showLine}), and, while
    a login is pending, watch for the server's verdict on it.

    @ivar loginResult: fires when the server confirms the pending login,
        fails with L{LoginRefused} when it answers with an error.
    """

    def __init__(self, output: Callable[[bytes], None]) -> None:
        self.output = output
        self.splitter = TruncatingLineSplitter()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.lost = False
        """The connection is gone."""
        self.loginAs: str | None = None
        self.loginResult: defer.Deferred[None] | None = None

    def expectLogin(self, nick: str) -> defer.Deferred[None]:
        """Watch for the outcome of ``/nick NICK PASSWORD``."""
        self.loginAs = nick
        self.loginResult = defer.Deferred()
        return self.loginResult

    def dataReceived(self, data: bytes) -> None:
        """Show each complete line."""
        for kept, dropped in self.splitter.feed(data):
            self.lineReceived(kept, dropped)

    def lineReceived(self, kept: bytes, dropped: int) -> None:
        """Show one line; settle a pending login on the server's answer."""
        text = showLine(kept, dropped)
        self.output(text.encode("utf-8") + b"\n")
        if self.loginResult is None or self.loginResult.called or self.loginAs is None:
            return
        if renamedTo(text, self.loginAs):
            self.loginResult.callback(None)
        elif text.startswith(ERROR_NOTICE):
            self.loginResult.errback(
                LoginRefused(f"login as {self.loginAs} failed: {text[len(ERROR_NOTICE) :]}")
            )

    def connectionLost(self, reason: Failure | None = None) -> None:
        """The server closed the connection: show a last unfinished line; done."""
        self.lost = True
        last = self.splitter.flush()
        if last is not None:
            self.lineReceived(*last)
        if self.loginResult is not None and not self.loginResult.called:
            self.loginResult.errback(
                LoginRefused(f"login as {self.loginAs} failed: the server closed the connection")
            )
        self.closed.callback(None)


def quitAtEOF(reactor: IReactorTime, wait: float) -> EndOfInput[ChatClientProtocol]:
    """
    At the end of stdin, leave politely; if the server does not close
    within C{wait} seconds (it ignores ``/quit``), close ourselves.
    """

    def leave(client: ChatClientProtocol, writer: PacedWriter) -> None:
        transport = writer.transport
        if client.closed.called:
            return
        transport.write(b"/quit\r\n")
        timer = reactor.callLater(wait, transport.loseConnection)
        client.closed.addBoth(lambda result: timer.cancel() if timer.active() else None)

    return leave


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


async def chat(reactor: ICommandReactor, args: argparse.Namespace) -> int:
    """Run one chat session."""
    user = str(args.user or "")

    async def loggedIn(client: ChatClientProtocol) -> None:
        """Hold stdin back until the server has accepted the login."""
        verdict = client.expectLogin(user)
        verdict.addTimeout(LOGIN_TIMEOUT, reactor)
        try:
            await verdict
        except defer.TimeoutError:
            raise LoginRefused(
                f"login as {user}: no answer from the server within {LOGIN_TIMEOUT:g}s"
            ) from None

    await interact(
        reactor,
        args,
        ChatClientProtocol,
        atEOF=quitAtEOF(reactor, args.quit_wait),
        greeting=greeting(args),
        ready=loggedIn if user else None,
        farewell=b"/quit\r\n",
    )
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    """Run ``tcplab chat``."""
    return runCommand(lambda reactor: chat(reactor, args))
