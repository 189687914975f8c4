"""
What ``tcplab ls|get|put|rm`` share: a connection that is re-opened after it
drops, retries that back off, per-path failures, progress and summaries.

``--retries N`` reconnects (or, for a file another connection is uploading,
asks again) up to N times per transfer, waiting L{FIRST_DELAY} seconds before
the first retry and twice as long before each next one, at most
L{MAX_DELAY}: 0.5, 1, 2, 4, 8, 10, 10 ... seconds.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec, Protocol, TypeVar

from twisted.internet.task import deferLater

from tcplab.cli.common import connect, forProtocol, readPassword
from tcplab.cli.parsers import FIRST_DELAY, MAX_DELAY
from tcplab.cli.running import ICommandReactor
from tcplab.errors import ConnectError, ExitCode, TcplabError
from tcplab.files import wire
from tcplab.files.client import DOWNLOAD_READ_SIZE, ConnectionLostError, FileClient
from tcplab.files.replies import BUSY, RemoteError, printable

T = TypeVar("T")
P = ParamSpec("P")


def retryDelays(first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> Iterator[float]:
    """The waits before each retry: C{first}, doubling, never over C{cap}."""
    delay = first
    while True:
        yield min(delay, cap)
        delay *= 2


def plural(count: int, word: str) -> str:
    """C{1 retry}, C{2 retries}, C{0 files}: a count with its noun."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word[:-1]}ies" if word.endswith("y") else f"{count} {word}s"


def say(text: str) -> None:
    """
    A note on stderr.  Whatever it quotes is escaped once more here, at the
    last moment, so no text from the network can reach the terminal raw
    (escaping is idempotent: an escape is printable text).
    """
    print(f"tcplab: {printable(text)}", file=sys.stderr)


def retryable(error: TcplabError) -> bool:
    """Whether trying again may help: a lost connection, or a file busy elsewhere."""
    if isinstance(error, RemoteError):
        return error.code == BUSY
    return isinstance(error, ConnectionLostError | ConnectError)


class Session:
    """
    A connection to the file server that can be re-opened after it drops.

    @ivar failures: the exit code of the first failed path (0: none).
    @ivar firstDelay: seconds before the first retry (L{FIRST_DELAY}).
    @ivar maxDelay: the longest wait between retries (L{MAX_DELAY}).
    """

    firstDelay = FIRST_DELAY
    maxDelay = MAX_DELAY

    def __init__(self, reactor: ICommandReactor, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.args = args
        self.password = readPassword(args)
        self.client: FileClient | None = None
        self.failures = 0

    @property
    def talkative(self) -> bool:
        """Whether to report each finished transfer: C{-v}, or a terminal without C{-q}."""
        args = self.args
        if getattr(args, "verbose", False):
            return True
        return not getattr(args, "quiet", False) and sys.stderr.isatty()

    async def connected(self) -> FileClient:
        """The current connection, (re)connecting and logging in if needed."""
        if self.client is None or self.client.disconnected:
            client = await connect(
                self.reactor,
                self.args,
                forProtocol(FileClient),
                readSize=DOWNLOAD_READ_SIZE,
                writeDirectly=True,
            )
            assert isinstance(client, FileClient)
            if self.args.user:
                await client.login(self.args.user, self.password or "")
            self.client = client
        return self.client

    async def retrying(self, what: str, attempt: Callable[[FileClient], Awaitable[T]]) -> T:
        """
        Run C{attempt} on the connection; with C{--retries}, reconnect after
        a lost connection and ask again after C{busy}, backing off in between.
        """
        retries = getattr(self.args, "retries", 0)
        delays = retryDelays(self.firstDelay, self.maxDelay)
        while True:
            try:
                return await attempt(await self.connected())
            except (ConnectionLostError, ConnectError, RemoteError) as e:
                if retries <= 0 or not retryable(e):
                    raise
                retries -= 1
                delay = next(delays)
                if not isinstance(e, RemoteError):
                    self.client = None
                    again = "reconnecting"
                else:
                    again = "trying again"
                say(
                    f"{printable(what)}: {e.message}; {again} in {delay:g} s "
                    f"({plural(retries, 'retry')} left)"
                )
                await deferLater(self.reactor, delay, lambda: None)

    def failed(self, what: str, error: TcplabError, verb: str) -> None:
        """Report one path's failure and remember the first exit code."""
        if isinstance(error, RemoteError) and error.code == wire.AUTH_REQUIRED:
            error = TcplabError(
                f"the server wants a login to {verb} (use --user NAME)", ExitCode.AUTH
            )
        print(f"tcplab: {printable(what)}: {printable(error.message)}", file=sys.stderr)
        if not self.failures:
            self.failures = int(error.exitCode)

    def close(self) -> None:
        """Hang up."""
        if self.client is not None and self.client.transport is not None:
            self.client.transport.loseConnection()


class ProgressBar(Protocol):
    """A progress display (a tqdm bar): told of each chunk moved, then closed."""

    def update(self, n: int) -> object:
        """C{n} more bytes moved."""

    def close(self) -> None:
        """The transfer is over: take the bar away."""


class NoProgress:
    """No display (with --quiet or off a terminal): tqdm is not even imported."""

    def update(self, n: int) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to take away."""


def progressBar(args: argparse.Namespace, name: str, total: int, initial: int) -> ProgressBar:
    """A tqdm bar on a terminal (bytes, rate, ETA); none with --quiet or off a TTY."""
    if args.quiet or not sys.stderr.isatty():
        return NoProgress()
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=printable(name),
        leave=False,
    )


def humanSize(count: float) -> str:
    """C{1.5 MiB}, C{512 B}: a byte count for people."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def summary(source: str, destination: str, size: int, moved: int, seconds: float) -> str:
    """
    The line that says a transfer worked: what went where, how much moved
    in how long, and that it was verified.
    """
    line = f"{printable(source)} -> {printable(destination)}: {humanSize(size)}"
    if moved != size:
        line += f" ({humanSize(moved)} of it moved now, the rest was already there)"
    rate = f", {humanSize(moved / seconds)}/s" if seconds > 0 and moved else ""
    return f"{line} in {seconds:.1f} s{rate}, SHA-256 verified"


def localFileErrors(
    transfer: Callable[P, Awaitable[None]],
) -> Callable[P, Awaitable[None]]:
    """
    Report an C{OSError} of C{transfer} -- a local file that cannot be
    opened, read or written -- as a one-line L{TcplabError}.
    """

    @functools.wraps(transfer)
    async def reported(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await transfer(*args, **kwargs)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise TcplabError(
                printable(f"{where}{e.strerror or e}"), ExitCode.LOCAL_FILE
            ) from None

    return reported


def remoteJoin(*parts: str) -> str:
    """Join remote path components with C{/}."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))
