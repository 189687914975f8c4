"""
``tcplab put``: uploads, resumed from what the server kept, directory trees
with C{-r}, and standard input with C{-}.

``put -r`` uploads regular files only: FIFOs, sockets and devices (which
would block or never end) are skipped with a warning, and symbolic links to
directories are not followed.  ``--as NAME/`` (a trailing C{/}) names a
directory, as with C{cp}: the file keeps its own name inside it.

``put ADDRESS - --as NAME`` uploads standard input.  The protocol announces
the size before the data, so a pipe is read to its end first (into an
anonymous temporary file); a redirected regular file is sent directly.  An
upload from a pipe cannot be resumed by running the command again (the
input is gone), though ``--retries`` resumes it within the same run.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from twisted.internet import defer, fdesc
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

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
from tcplab.files import wire
from tcplab.files.client import FileClient
from tcplab.files.replies import RemoteError, printable

STDIN = "-"
"""The LOCAL that means standard input."""

READ_SIZE = 64 * 1024


def uploadPlan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """
    Each LOCAL and its remote path: its own name under C{--to}, or C{--as}
    for one LOCAL (C{--as DIR/}: its own name inside DIR).
    """
    locals_: list[str] = args.local
    if args.remoteName is not None:
        if len(locals_) != 1:
            raise TcplabError("--as names one upload; give exactly one LOCAL", ExitCode.USAGE)
        [local] = locals_
        name = args.remoteName
        if name.endswith("/") and remoteJoin(name):
            if local == STDIN:
                raise TcplabError("--as for - must name a file, not a directory", ExitCode.USAGE)
            return [(local, remoteJoin(args.to, name, Path(local).resolve().name))]
        if not remoteJoin(name):
            raise TcplabError(f"--as {name!r} is not a file name", ExitCode.USAGE)
        return [(local, remoteJoin(args.to, name))]
    if STDIN in locals_:
        raise TcplabError("uploading standard input (-) needs --as NAME", ExitCode.USAGE)
    return [(local, remoteJoin(args.to, Path(local).resolve().name)) for local in locals_]


def specialKind(mode: int) -> str | None:
    """What a non-regular, non-directory file is (C{a FIFO} ...); L{None} for the others."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "a special file"
    return None


async def putCommand(reactor: ICommandReactor, args: argparse.Namespace) -> int:
    """Upload each LOCAL (trees with -r) into --to, or one LOCAL --as a name."""
    plan = uploadPlan(args)
    session = Session(reactor, args)
    try:
        for local, remote in plan:
            try:
                if local == STDIN:
                    await putStdin(session, remote)
                    continue
                path = Path(local)
                if path.is_dir():
                    if not args.recursive:
                        raise TcplabError(
                            f"{printable(local)} is a directory (use -r)", ExitCode.USAGE
                        )
                    await putTree(session, path, remote)
                elif path.is_file():
                    await putFile(session, path, remote)
                elif path.exists():
                    kind = specialKind(path.stat().st_mode)
                    raise TcplabError(
                        f"{printable(local)} is {kind}, not a regular file "
                        "(to upload what it gives, use: put ADDRESS - --as NAME < it)",
                        ExitCode.LOCAL_FILE,
                    )
                else:
                    raise TcplabError(f"{printable(local)}: no such file", ExitCode.NOT_FOUND)
            except TcplabError as e:
                session.failed(f"put {local}", e, "put")
    finally:
        session.close()
    return session.failures


async def putTree(session: Session, local: Path, remote: str) -> None:
    """Upload the regular files of a local directory tree under C{remote}."""

    def unreadable(error: OSError) -> None:
        reason = TcplabError(error.strerror or str(error), ExitCode.LOCAL_FILE)
        session.failed(f"put {error.filename}", reason, "put")

    for directory, subdirectories, files in os.walk(local, onerror=unreadable):
        subdirectories.sort()
        for name in subdirectories:
            if (Path(directory) / name).is_symlink():
                say(
                    f"skipping '{printable(str(Path(directory) / name))}': "
                    "a symbolic link to a directory (not followed)"
                )
        for name in sorted(files):
            path = Path(directory) / name
            try:
                kind = specialKind(path.stat().st_mode)
            except OSError as e:
                kind = f"unreadable ({e.strerror})"
            if kind is not None:
                say(f"skipping '{printable(str(path))}': {kind}")
                continue
            relative = path.relative_to(local).as_posix()
            try:
                await putFile(session, path, remoteJoin(remote, relative))
            except TcplabError as e:
                session.failed(f"put {path}", e, "put")


@localFileErrors
async def putFile(session: Session, local: Path, remote: str) -> None:
    """Upload one local file, resuming what the server kept of an earlier attempt."""
    # Opened without blocking and checked once open: a FIFO swapped in after
    # the walk looked at the name must not hang the upload.
    fd = os.open(local, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as source:
        info = os.fstat(fd)
        kind = specialKind(info.st_mode)
        if kind is not None or stat.S_ISDIR(info.st_mode):
            raise TcplabError(
                f"{printable(str(local))} is {kind or 'a directory'}, not a regular file",
                ExitCode.LOCAL_FILE,
            )
        os.set_blocking(fd, True)
        await send(session, source, info.st_size, local.name, remote)


async def send(session: Session, source: BinaryIO, size: int, label: str, remote: str) -> None:
    """
    Upload C{size} bytes of a seekable C{source} as C{remote}, resuming,
    retrying (C{--retries}) and sending it all again if the server's partial
    did not match.
    """
    args = session.args
    began = time.monotonic()
    resumedFrom = [0]
    resume = True

    def started(offset: int) -> None:
        resumedFrom[0] = offset
        if offset and not args.quiet:
            say(f"{printable(remote)}: resuming at {offset} bytes")

    async def attempt(client: FileClient) -> None:
        bar = progressBar(args, label, size, 0)
        try:
            await client.put(
                remote,
                source,
                size,
                overwrite=args.overwrite,
                resume=resume,
                progress=bar.update,
                started=started,
            )
        finally:
            bar.close()

    while True:
        try:
            await session.retrying(remote, attempt)
            break
        except RemoteError as e:
            if e.code == wire.EXISTS:
                raise TcplabError(
                    f"{printable(remote)} exists on the server (use --overwrite)",
                    ExitCode.EXISTS,
                ) from None
            if e.code != wire.CHECKSUM_MISMATCH or not resume:
                raise
            say(
                f"{printable(remote)}: the server's partial upload did not match; "
                "sending it all again"
            )
            resume = False
    if session.talkative:
        moved = size - resumedFrom[0]
        say(summary(label, remote, size, moved, time.monotonic() - began))


async def putStdin(session: Session, remote: str) -> None:
    """Upload standard input as C{remote}: directly if it is a file, else spooled first."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
        if stat.S_ISREG(mode):
            with open(os.dup(sys.stdin.fileno()), "rb") as source:
                size = os.fstat(source.fileno()).st_size
                await send(session, source, size, "stdin", remote)
            return
        with tempfile.TemporaryFile(prefix="tcplab-put-") as spool:
            await spoolStdin(session.reactor, sys.stdin.fileno(), spool)
            size = spool.seek(0, os.SEEK_END)
            await send(session, spool, size, "stdin", remote)
    except OSError as e:
        raise TcplabError(
            printable(f"standard input: {e.strerror or e}"), ExitCode.LOCAL_FILE
        ) from None


@implementer(IReadDescriptor)
class StdinSpooler:
    """
    Copy a file descriptor (a pipe, a terminal) into a file until EOF,
    reading only when the reactor says it is readable, so the reactor stays
    responsive (Ctrl-C included) while a slow pipe trickles in.

    @ivar done: fires at EOF, or fails with the C{OSError} met.
    """

    def __init__(self, reactor: IReactorFDSet, fd: int, spool: BinaryIO) -> None:
        self.reactor = reactor
        self.fd = fd
        self.spool = spool
        self.done: defer.Deferred[None] = defer.Deferred()

    def fileno(self) -> int:
        """The descriptor read."""
        return self.fd

    def logPrefix(self) -> str:
        """How Twisted names us in its log."""
        return "stdin"

    def doRead(self) -> None:
        """Copy what is there; finish at EOF or on an error."""
        try:
            data = os.read(self.fd, READ_SIZE)
            if data:
                self.spool.write(data)
                return
        except BlockingIOError:
            return
        except OSError as e:
            self.finish(Failure(e))
            return
        self.finish(None)

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor saw the writer hang up (epoll's HUP once all was read)
        or is stopping: what is left is read, and only a real EOF is one.
        """
        while not self.done.called:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                # Not at its end: the reactor is stopping (Ctrl-C).
                self.finish(
                    Failure(
                        TcplabError(
                            "interrupted while reading standard input", ExitCode.INTERRUPTED
                        )
                    )
                )
                return
            except OSError as e:
                self.finish(Failure(e))
                return
            if not data:
                self.finish(None)
                return
            self.spool.write(data)

    def finish(self, failure: Failure | None) -> None:
        """Stop reading and report."""
        if self.done.called:
            return
        self.reactor.removeReader(self)
        if failure is None:
            self.done.callback(None)
        else:
            self.done.errback(failure)


async def spoolStdin(reactor: IReactorFDSet, fd: int, spool: BinaryIO) -> None:
    """Read C{fd} to its end into C{spool}, without blocking the reactor."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fdesc.setNonBlocking(fd)
    spooler = StdinSpooler(reactor, fd, spool)
    try:
        reactor.addReader(spooler)
        await spooler.done
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
