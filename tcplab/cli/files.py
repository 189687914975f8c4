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

from tcplab.cli.common import runCommand
from tcplab.cli.files_session import Session
from tcplab.cli.running import ICommandReactor
from tcplab.errors import ExitCode, TcplabError
from tcplab.files.replies import Entry, printable

Command = Callable[[ICommandReactor, argparse.Namespace], Awaitable[int]]


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


async def listCommand(reactor: ICommandReactor, args: argparse.Namespace) -> int:
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


async def removeCommand(reactor: ICommandReactor, args: argparse.Namespace) -> int:
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


def run(args: argparse.Namespace) -> int:
    """Run ``tcplab ls``, ``get``, ``put`` or ``rm``: the C{main} its parser chose."""
    main: Command = args.main
    return runCommand(lambda reactor: main(reactor, args))
