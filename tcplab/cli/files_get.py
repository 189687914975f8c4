"""
``tcplab get``: downloads through a hidden partial file, resumed and
verified, and directory trees with C{-r}.

Local names come from what the user asked for (or C{-o}), never from a path
the server chose: a name from a listing must be one safe path component.
``get -r`` terminates whatever the server lists: it does not descend into
symbolic links to directories (as ``rsync -r`` does not; it says so) unless
asked to with C{-L}, never into a directory whose listing repeats one above
it (a link loop, marked or not), and it stops at L{MAX_DEPTH} nested
directories.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import sys
import time
from functools import partial
from pathlib import Path
from typing import BinaryIO

from twisted.internet.interfaces import IReactorThreads

from tcplab.cli.files_session import (
    Session,
    localFileErrors,
    progressBar,
    remoteJoin,
    say,
    summary,
)
from tcplab.cli.running import ICommandReactor
from tcplab.errors import ExitCode, TcplabError
from tcplab.files.client import ChecksumMismatch, FileClient
from tcplab.files.download import Progress, WriteBehind, reserveSpace
from tcplab.files.replies import Entry, printable
from tcplab.files.root import PARTIAL_SUFFIX
from tcplab.files.work import ThreadedWork

MAX_DEPTH = 256
"""``get -r`` goes no deeper than this many nested directories."""

FALLBACK_NAME = "download"
"""The local name of a remote file whose own name is not safe to use."""

MAX_NAME_BYTES = 255
"""The longest file name most file systems take, in bytes."""


def isSafeLocalName(name: str) -> bool:
    """Whether a name from the server may be used as one local path component."""
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and name.isprintable()
        and not name.endswith(PARTIAL_SUFFIX)
    )


def partialFor(destination: Path) -> Path:
    """
    The hidden partial file of a download to C{destination}: C{.NAME.tcplab-partial},
    or a digest of the name when that would be too long for the file system.
    """
    name = f".{destination.name}{PARTIAL_SUFFIX}"
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        digest = hashlib.sha256(os.fsencode(destination.name)).hexdigest()[:32]
        name = f".{digest}{PARTIAL_SUFFIX}"
    return destination.with_name(name)


def makeDirectory(path: Path, parents: bool = False) -> None:
    """Create C{path} if missing, or say in one line why not (exit 11)."""
    try:
        path.mkdir(parents=parents, exist_ok=True)
    except OSError as e:
        raise TcplabError(printable(f"{path}: {e.strerror or e}"), ExitCode.LOCAL_FILE) from None


def isSpecialFile(path: Path) -> bool:
    """Whether C{path} exists and is neither a regular file nor a directory."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def localTarget(args: argparse.Namespace, remote: str, single: bool) -> Path:
    """
    Where REMOTE lands: C{-o} exactly for one file; otherwise the remote
    base name inside C{-o} (a directory; a trailing C{/} creates it, as
    rsync does) or inside the current directory.
    """
    output = args.output
    if output and single and not output.endswith("/") and not Path(output).is_dir():
        return Path(output)
    directory = Path(output) if output else Path(".")
    if output and output.endswith("/"):
        makeDirectory(directory)
    name = remote.rstrip("/").rsplit("/", 1)[-1]
    if not isSafeLocalName(name):
        say(
            f"{printable(remote)}: the remote name is not safe as a local file name; "
            f"saving it as '{FALLBACK_NAME}' (choose a name with -o)"
        )
        name = FALLBACK_NAME
    return directory / name


async def getCommand(reactor: ICommandReactor, args: argparse.Namespace) -> int:
    """Download each REMOTE (trees with -r)."""
    session = Session(reactor, args)
    single = len(args.remote) == 1
    toStdout = args.output == "-"
    if toStdout and (not single or args.recursive):
        raise TcplabError("-o - takes exactly one remote file", ExitCode.USAGE)
    try:
        for remote in args.remote:
            try:
                info = await session.retrying(remote, partial(FileClient.stat, path=remote))
                if toStdout:
                    await getToStream(session, remote, info, sys.stdout.buffer)
                elif info.isDir:
                    if not args.recursive:
                        raise TcplabError(
                            f"{printable(remote)} is a directory (use -r)", ExitCode.USAGE
                        )
                    await getTree(session, remote, localTarget(args, remote, single))
                elif info.isFile:
                    await getFile(session, remote, info, localTarget(args, remote, single))
                else:
                    raise TcplabError(
                        f"{printable(remote)} is not a regular file", ExitCode.NOT_ALLOWED
                    )
            except TcplabError as e:
                session.failed(f"get {remote}", e, "get")
    finally:
        session.close()
    return session.failures


Listing = tuple[Entry, ...]


async def getTree(
    session: Session, remote: str, local: Path, ancestors: tuple[Listing, ...] = ()
) -> None:
    """
    Download a remote directory tree into C{local}.

    @param ancestors: the listings of the directories above this one.  A
        directory listing exactly what one of them does (names, kinds,
        sizes and times) is a link loop on a server that does not mark
        links (older servers): it is skipped, so even then the walk ends.
    """
    if len(ancestors) >= MAX_DEPTH:
        raise TcplabError(
            f"more than {MAX_DEPTH} nested directories; not descending further",
            ExitCode.PROTOCOL,
        )
    entries: Listing = tuple(await session.retrying(remote, lambda client: client.list(remote)))
    if entries in ancestors:
        say(
            f"skipping '{printable(remote)}': it lists exactly what a directory above it "
            "does (a symbolic link loop)"
        )
        return
    makeDirectory(local)
    for entry in entries:
        child = remoteJoin(remote, entry.name)
        if not isSafeLocalName(entry.name):
            say(f"skipping '{printable(child)}': not safe as a local file name")
            continue
        try:
            if entry.isDir and entry.symlink and not session.args.followLinks:
                say(
                    f"skipping '{printable(child)}': a symbolic link to a directory (not followed)"
                )
            elif entry.isDir:
                await getTree(session, child, local / entry.name, (*ancestors, entries))
            elif entry.isFile:
                await getFile(session, child, entry, local / entry.name)
            else:
                say(f"skipping '{printable(child)}': not a regular file")
        except TcplabError as e:
            session.failed(f"get {child}", e, "get")


@localFileErrors
async def getFile(session: Session, remote: str, info: Entry, destination: Path) -> None:
    """Download one file through a partial file, resuming and verifying."""
    args = session.args
    if isSpecialFile(destination):
        # /dev/null, a FIFO, a terminal: write straight into it, never
        # replace it with a regular file.
        with open(destination, "wb") as stream:
            await getToStream(session, remote, info, stream)
        return
    if destination.exists() and not args.overwrite:
        raise TcplabError(
            f"{printable(str(destination))} exists (use --overwrite)", ExitCode.EXISTS
        )
    partialFile = partialFor(destination)
    began = time.monotonic()
    # Unbuffered: the download gathers each read's pieces into one writev.
    with open(partialFile, "a+b", buffering=0) as file:
        if file.seek(0, os.SEEK_END) > info.size:
            file.truncate(0)
        initial = file.seek(0, os.SEEK_END)
        startedAt = initial
        behind = writeBehind(session.reactor, file.fileno())

        async def attempt(client: FileClient) -> None:
            nonlocal startedAt
            startedAt = file.seek(0, os.SEEK_END)
            reserveSpace(file.fileno(), info.size)
            await resumeGet(session, client, remote, file, info.size, behind)

        restarted = False
        try:
            while True:
                try:
                    await session.retrying(remote, attempt)
                    break
                except ChecksumMismatch:
                    file.truncate(0)
                    if startedAt == 0 or restarted:
                        raise
                    say(
                        f"{printable(remote)}: the partial download did not match; "
                        "downloading it again"
                    )
                    initial = 0
                    restarted = True
        finally:
            if behind is not None:
                await behind.drain()  # never close the file under a running flush
        size = file.seek(0, os.SEEK_END)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partialFile, destination)
    if session.talkative:
        say(summary(remote, str(destination), size, size - initial, time.monotonic() - began))


def writeBehind(reactor: object, fd: int) -> WriteBehind | None:
    """
    A L{WriteBehind} flushing C{fd} in C{reactor}'s thread pool while a
    download writes it (L{None} for a reactor without threads: the final
    C{fsync} then does it all).
    """
    threaded = IReactorThreads(reactor, None)
    if threaded is None:
        return None
    return WriteBehind(fd, ThreadedWork(threaded, maxThreads=1, maxPending=1))


async def resumeGet(
    session: Session,
    client: FileClient,
    remote: str,
    file: BinaryIO,
    size: int,
    behind: WriteBehind | None = None,
) -> None:
    """One download attempt from wherever the partial file ends."""
    offset = file.seek(0, os.SEEK_END)
    if offset and not session.args.quiet:
        say(f"{printable(remote)}: resuming at {offset} bytes")
    bar = progressBar(session.args, remote, size, offset)
    progress: Progress = bar.update
    if behind is not None:
        update, wrote = bar.update, behind.wrote

        def progress(count: int) -> None:
            update(count)
            wrote(count)

    try:
        await client.get(remote, file, offset, prefix=file, progress=progress)
    finally:
        bar.close()


async def getToStream(session: Session, remote: str, info: Entry, stream: BinaryIO) -> None:
    """Stream one file into an open stream (no partial, no resume), verified at the end."""
    if not info.isFile:
        raise TcplabError(f"{printable(remote)} is not a file", ExitCode.USAGE)
    client = await session.connected()
    bar = progressBar(session.args, remote, info.size, 0)
    try:
        await client.get(remote, stream, progress=bar.update)
    finally:
        bar.close()
    stream.flush()
