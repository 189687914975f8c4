"""
The ``tcplab`` command: one client for every tcplab service.

The parsers live in L{tcplab.cli.parsers} and name each subcommand's
implementation (C{tcplab.cli.echo}, C{chat}, C{files}) without importing it:
only the subcommand that runs is imported, so ``--version`` and ``--help``
start without Twisted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tcplab import __version__
from tcplab.cli.parsers import REGISTERS
from tcplab.errors import ExitCode
from tcplab.tlsfree import cannotUseTLS, leaveOutTLS


def buildParser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's own parser, by name."""
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
    for register in REGISTERS:
        register(subparsers)
    return parser, dict(subparsers.choices)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``tcplab`` command line and return its exit status; Ctrl-C
    before the command is under way (while parsing, say) is exit 130 too.
    """
    try:
        return runMain(argv)
    except KeyboardInterrupt:
        print("tcplab: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def runMain(argv: Sequence[str] | None) -> int:
    """Parse the command line and run the subcommand."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, commands = buildParser()
    position = next((i for i, arg in enumerate(arguments) if arg in commands), None)
    if position is None:
        parser.parse_args(arguments)  # --help, --version, or a usage error: exits
        return 2
    # Intermixed parsing lets options and positionals come in any order
    # ("tcplab echo HOST:PORT --time hello world").
    args = commands[arguments[position]].parse_intermixed_args(arguments[position + 1 :])
    leaveOutTLS(cannotUseTLS(args))
    status: int = args.run(args)
    return status
