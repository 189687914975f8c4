"""
The ``tcplab`` command: one client for every tcplab service.

The parsers live in L{tcplab.cli.parsers} and name each subcommand's
implementation (C{tcplab.cli.echo}, C{chat}, C{files}) without importing it:
only the subcommand that runs is imported, so ``--version`` and ``--help``
start without Twisted.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from typing import NoReturn

from tcplab import __version__
from tcplab.cli.parsers import COMMAND_NAMES, REGISTERS
from tcplab.errors import ExitCode
from tcplab.tlsfree import cannotUseTLS, leaveOutTLS


def buildParser(
    command: str | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """
    The top-level parser and each subcommand's own parser, by name: every
    subcommand's, or only those added along with C{command} (all that
    running it needs: a third fewer parsers to build for ``tcplab echo``).
    """
    parser = argparse.ArgumentParser(
        prog="tcplab",
        description=(
            "Client for the tcplab services. ADDRESS is HOST:PORT ([::1]:PORT for IPv6) "
            "or a Twisted client endpoint description such as tcp:host=H:port=P, "
            "tls:H:P or unix:path=/tmp/s.sock."
        ),
        epilog=(
            "Exit status: 0 ok, 1 internal error (a bug: please report it), 2 usage, "
            "3 cannot connect, 4 not found, 5 not allowed, 6 checksum mismatch, 7 exists, "
            "8 protocol error or connection lost, 9 authentication failed, "
            "10 (servers only) cannot listen, 11 local file error, 12 busy (another "
            "upload of that file is running), 130 interrupted (Ctrl-C)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tcplab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for names, register in REGISTERS:
        if command is None or command in names:
            register(subparsers)
    return parser, dict(subparsers.choices)


def console() -> NoReturn:
    """
    The ``tcplab`` command itself: run L{main} and exit with its status.

    A command that writes only to stdout and stderr (C{args.quickExit}:
    echo, chat) has nothing left to save once it returns, so after those
    two streams are flushed the process ends at once, without the
    interpreter's clean-up of every module Twisted loaded: about 30 ms of a
    0.2 s ``tcplab echo HOST:PORT hello`` (bench/RESULTS.md).  The process
    is the command's own, so it also starts with the garbage collector
    paused (L{collectorPaused}).
    """
    status, quickExit = runCommandLine(None, pauseCollector=True)
    if quickExit:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):  # a closed pipe: nothing to save
                stream.flush()
        os._exit(status)
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``tcplab`` command line and return its exit status; Ctrl-C
    before the command is under way (while parsing, say) is exit 130 too.
    The collector is left alone: the process may be another program's.
    """
    return runCommandLine(argv)[0]


def runCommandLine(argv: Sequence[str] | None, pauseCollector: bool = False) -> tuple[int, bool]:
    """
    L{main}'s work: the exit status, and whether the process may end
    without the interpreter's clean-up (the command asked for
    C{quickExit}).  With C{pauseCollector} (for L{console}, whose process
    is the command's own) start-up runs in L{collectorPaused}, which
    freezes every object the process has.
    """
    try:
        return runMain(argv, pauseCollector)
    except KeyboardInterrupt:
        print("tcplab: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED), False


@contextmanager
def collectorPaused() -> Iterator[None]:
    """
    Keep Python's cyclic garbage collector from running while the command
    starts (parsing, then importing the subcommand and Twisted), and freeze
    what start-up made before the collector comes back on.

    Importing Twisted's networking makes some 50,000 objects (modules,
    classes, functions, interface declarations) that live as long as the
    process, so the collector's young generations fill up again and again:
    about 70 collections, 10 ms of a 0.15 s ``tcplab echo HOST:PORT hello``,
    that find next to nothing to free.  Pausing alone would only defer that
    work to the first collection afterwards; L{gc.freeze} moves those
    objects out of every later collection instead (Python's own advice for
    objects that live for good).  The price is that the few reference
    cycles start-up leaves behind (about 1,300 objects) are never freed.
    Reference counting frees memory as always, and the collector is back on
    (if it was on) before the command runs, so a long interactive session
    collects reference cycles as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def runMain(argv: Sequence[str] | None, pauseCollector: bool = False) -> tuple[int, bool]:
    """
    Parse the command line and run the subcommand; its exit status, and
    whether it may end without the interpreter's clean-up.  With
    C{pauseCollector}, parsing and importing the subcommand run in
    L{collectorPaused}.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    with collectorPaused() if pauseCollector else nullcontext():
        position = next((i for i, arg in enumerate(arguments) if arg in COMMAND_NAMES), None)
        if position is None:
            buildParser()[0].parse_args(arguments)  # --help, --version, a usage error: exits
            return 2, False
        command = arguments[position]
        # Intermixed parsing lets options and positionals come in any order
        # ("tcplab echo HOST:PORT --time hello world").
        args = buildParser(command)[1][command].parse_intermixed_args(arguments[position + 1 :])
        leaveOutTLS(cannotUseTLS(args), digests=getattr(args, "digests", True))
        args.run.load()  # the subcommand's modules, Twisted's among them
    status: int = args.run(args)
    return status, bool(getattr(args, "quickExit", False))
