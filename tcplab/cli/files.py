"""
``tcplab ls|get|put|rm ADDRESS ...``: the file service's command line.

Downloads go to a hidden partial file beside their destination and are
renamed only once their SHA-256 matches; an interrupted get or put resumes
where it stopped when run again (the part already there is hashed into the
check, not trusted), and ``--retries N`` reconnects and resumes by itself,
backing off between attempts.  Local names come from what you asked for (or
C{-o}), never from the server; everything the server sends is shown with
control characters escaped.  The commands themselves live in
L{tcplab.cli.files_get}, L{tcplab.cli.files_put} and, shared,
L{tcplab.cli.files_session}.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from tcplab.cli.common import addAuthOptions, addClientOptions, runCommand
from tcplab.cli.files_get import getCommand
from tcplab.cli.files_put import putCommand
from tcplab.cli.files_session import FIRST_DELAY, MAX_DELAY, Session
from tcplab.errors import ExitCode, TcplabError
from tcplab.files.replies import Entry, printable

Command = Callable[[Any, argparse.Namespace], Awaitable[int]]


def formatTime(mtime: int) -> str:
    """An mtime as local C{YYYY-MM-DD HH:MM} (the raw seconds if the platform cannot)."""
    try:
        return datetime.datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return str(mtime)


def formatEntry(entry: Entry) -> str:
    """One line of ``tcplab ls``: size, time, name (C{/} for a directory, C{@} for a link)."""
    name = printable(entry.name) + ("/" if entry.isDir else "") + ("@" if entry.symlink else "")
    size = "-" if entry.isDir else str(entry.size)
    return f"{size:>14}  {formatTime(entry.mtime):>16}  {name}"


async def listCommand(reactor: Any, args: argparse.Namespace) -> int:
    """Print a remote directory (or one file's line)."""
    session = Session(reactor, args)
    try:
        client = await session.connected()
        info = await client.stat(args.path)
        entries = await client.list(args.path) if info.isDir else [info]
    except TcplabError as e:
        session.failed(f"ls {args.path or '/'}", e, "list")
        return session.failures
    finally:
        session.close()
    for entry in entries:
        print(formatEntry(entry))
    return ExitCode.OK


async def removeCommand(reactor: Any, args: argparse.Namespace) -> int:
    """Delete each REMOTE."""
    session = Session(reactor, args)
    try:
        for remote in args.remote:
            try:
                client = await session.connected()
                await client.delete(remote)
            except TcplabError as e:
                session.failed(f"rm {remote}", e, "delete")
    finally:
        session.close()
    return session.failures


def register(subparsers: Any) -> None:
    """Add ``tcplab ls``, ``get``, ``put`` and ``rm``."""

    def command(name: str, summary: str, main: Command) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name, help=summary, description=summary
        )
        addClientOptions(parser)
        addAuthOptions(parser)
        parser.set_defaults(
            main=main, run=lambda args: runCommand(lambda reactor: main(reactor, args))
        )
        return parser

    ls = command("ls", "list a remote directory of a tcplab-files server", listCommand)
    ls.add_argument("path", metavar="PATH", nargs="?", default="", help="remote directory")

    for name, summary, main in [
        ("get", "download files (resumable, SHA-256 verified)", getCommand),
        ("put", "upload files (resumable, SHA-256 verified)", putCommand),
    ]:
        parser = command(name, summary, main)
        if name == "get":
            parser.add_argument("remote", metavar="REMOTE", nargs="+")
            parser.add_argument(
                "-o",
                "--output",
                metavar="LOCAL",
                help="file (one REMOTE) or directory (a trailing / creates it); - for stdout",
            )
            parser.add_argument(
                "-L",
                "--follow-links",
                dest="followLinks",
                action="store_true",
                help="with -r, descend into symbolic links to directories too (a link loop "
                "is recognised and skipped)",
            )
        else:
            parser.add_argument(
                "local",
                metavar="LOCAL",
                nargs="+",
                help="files (trees with -r); - for stdin",
            )
            parser.add_argument("--to", metavar="REMOTE_DIR", default="", help="remote directory")
            parser.add_argument(
                "--as",
                dest="remoteName",
                metavar="NAME",
                help="the remote name of a single LOCAL (default: its own name; "
                "NAME/ puts it inside that directory); needed for - (stdin)",
            )
        parser.add_argument("-r", "--recursive", action="store_true", help="whole directory trees")
        parser.add_argument("--overwrite", action="store_true", help="replace existing files")
        parser.add_argument(
            "--retries",
            type=int,
            default=0,
            metavar="N",
            help="when the connection drops or the file is busy, try again up to N times, "
            f"resuming, waiting {FIRST_DELAY:g} s and then twice as long each time "
            f"(at most {MAX_DELAY:g} s)",
        )
        parser.add_argument(
            "-q", "--quiet", action="store_true", help="no progress bar and no summary"
        )
        parser.add_argument(
            "-v", "--verbose", action="store_true", help="report each file, also off a terminal"
        )

    rm = command("rm", "delete remote files", removeCommand)
    rm.add_argument("remote", metavar="REMOTE", nargs="+")
