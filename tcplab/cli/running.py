"""
Running a ``tcplab`` subcommand in the reactor: its expected failures become
one line and an exit status, and Ctrl-C (SIGINT) becomes ``tcplab:
interrupted`` and 130 in every subcommand, never a traceback.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from twisted.internet import defer, error
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorFromThreads,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
)

from tcplab.errors import ExitCode, TcplabError


class ICommandReactor(
    IReactorCore,
    IReactorTime,
    IReactorTCP,
    IReactorFDSet,
    IReactorFromThreads,
    IReactorPluggableNameResolver,
):
    """
    The reactor a command runs on: Twisted's global reactor, which provides
    all of these (L{runCommand} hands it over; no class declares the
    combination, so it is named here for the commands' type hints).
    """


Command = Callable[[ICommandReactor], Awaitable[int]]
"""A command's body: given the reactor, run and return the exit status."""

INTERRUPT_GRACE = 2.0
"""Seconds a command has, after Ctrl-C, to put its affairs in order."""


class Interrupted(TcplabError):
    """The user pressed Ctrl-C (SIGINT)."""

    exitCode = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted")


_blockingCalls = [0]
"""How many blocking calls (a password prompt) Ctrl-C must break out of."""


@contextmanager
def interruptibleBlockingCall() -> Iterator[None]:
    """
    Around a call that blocks the reactor (a terminal prompt): Ctrl-C
    raises L{Interrupted} there, as the reactor cannot run the handler.
    """
    _blockingCalls[0] += 1
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        _blockingCalls[0] -= 1


class CommandRun:
    """
    One command's coroutine in the reactor, with Ctrl-C handling.

    Ctrl-C cancels the coroutine -- what it awaits fails with
    L{defer.CancelledError}, so its C{finally} blocks run: a download keeps
    its partial file, connections are closed -- and the command exits 130
    with one line, ``tcplab: interrupted``.  A command that has not
    finished L{INTERRUPT_GRACE} seconds later, or a second Ctrl-C, stops the
    reactor at once.

    @ivar status: the exit status once the reactor has stopped.
    """

    def __init__(self, reactor: ICommandReactor, main: Command) -> None:
        self.reactor = reactor
        self.main = main
        self.status = int(ExitCode.FAILURE)
        self.interrupted = False
        self.running: defer.Deferred[None] | None = None

    async def guarded(self) -> None:
        """Run the command; turn its expected failures into a line and a status."""
        try:
            self.status = await self.main(self.reactor)
        except Interrupted:
            self.interrupted = True
        except TcplabError as e:
            if not self.interrupted:
                print(f"tcplab: {e.message}", file=sys.stderr)
                self.status = e.exitCode
        except Exception:
            if not self.interrupted:
                traceback.print_exc()
                self.status = ExitCode.FAILURE
        finally:
            self.stopReactor()

    def start(self) -> None:
        """Start the command (the reactor is running)."""
        if not self.interrupted:
            self.running = defer.ensureDeferred(self.guarded())

    def interrupt(self) -> None:
        """Ctrl-C: cancel the command, then stop in any case after the grace period."""
        if self.interrupted or self.running is None:
            self.interrupted = True
            self.stopReactor()
            return
        self.interrupted = True
        self.reactor.callLater(INTERRUPT_GRACE, self.stopReactor)
        self.running.cancel()

    def onSignal(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler: hand over to the reactor, or break out of a prompt."""
        self.reactor.callFromThread(self.interrupt)
        if _blockingCalls[0]:
            raise KeyboardInterrupt

    def stopReactor(self) -> None:
        """Stop the reactor unless it is already stopping."""
        with suppress(error.ReactorNotRunning):
            self.reactor.stop()

    def run(self) -> int:
        """Run the reactor until the command is done; return the exit status."""
        previous = signal.signal(signal.SIGINT, self.onSignal)
        try:
            self.reactor.callWhenRunning(self.start)
            self.reactor.run()
        finally:
            signal.signal(signal.SIGINT, previous)
        if self.interrupted:
            print(f"tcplab: {Interrupted().message}", file=sys.stderr)
            return int(ExitCode.INTERRUPTED)
        return self.status


def runCommand(main: Command) -> int:
    """
    Run C{main(reactor)} in the reactor and return the exit status.

    A L{TcplabError} becomes one line on stderr (``tcplab: ...``) and its
    exit code; Ctrl-C gives ``tcplab: interrupted`` and 130 (see
    L{CommandRun}); anything else is a bug and shows its traceback.
    """
    from tcplab.reactors import defaultReactor

    return CommandRun(defaultReactor(), main).run()
