"""
``tcplab ls|get|put|rm ADDRESS ...``: the file service's command line.

Downloads go to a hidden partial file beside their destination and are
renamed only once their SHA-256 matches; an interrupted get or put resumes
where it stopped when run again (the part already there is hashed into the
check, not trusted), and ``--retries N`` reconnects and resumes by itself.
Local names come from what you asked for (or C{-o}), never from the server;
names the server lists are shown with control characters escaped.
"""

from __future__ import annotations

import argparse
import functools
import os
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from tcplab.cli.common import (
    addAuthOptions,
    addClientOptions,
    connect,
    escapeControls,
    forProtocol,
    readPassword,
    runCommand,
)
from tcplab.errors import ConnectError, ExitCode, TcplabError
from tcplab.files.client import ChecksumMismatch, ConnectionLostError, FileClient, RemoteError
from tcplab.files.root import PARTIAL_SUFFIX

T = TypeVar("T")
Command = Callable[[Any, argparse.Namespace], Awaitable[int]]


class Session:
    """
    A connection to the file server that can be re-opened after it drops.

    @ivar failures: the exit code of the first failed path (0: none).
    """

    def __init__(self, reactor: Any, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.args = args
        self.password = readPassword(args)
        self.client: FileClient | None = None
        self.failures = 0

    async def connected(self) -> FileClient:
        """The current connection, (re)connecting and logging in if needed."""
        if self.client is None or self.client._lost is not None:
            client = await connect(self.reactor, self.args, forProtocol(FileClient))
            assert isinstance(client, FileClient)
            if self.args.user:
                await client.login(self.args.user, self.password or "")
            self.client = client
        return self.client

    async def retrying(self, what: str, attempt: Callable[[FileClient], Awaitable[T]]) -> T:
        """Run C{attempt}, reconnecting up to C{--retries} times if the connection drops."""
        retries = getattr(self.args, "retries", 0)
        while True:
            try:
                return await attempt(await self.connected())
            except (ConnectionLostError, ConnectError) as e:
                if retries <= 0:
                    raise
                retries -= 1
                self.client = None
                say(f"{what}: {e.message}; reconnecting ({retries} retries left)")

    def failed(self, what: str, error: TcplabError) -> None:
        """Report one path's failure and remember the first exit code."""
        print(f"tcplab: {what}: {error.message}", file=sys.stderr)
        if not self.failures:
            self.failures = int(error.exitCode)

    def close(self) -> None:
        """Hang up."""
        if self.client is not None and self.client.transport is not None:
            self.client.transport.loseConnection()


def say(text: str) -> None:
    """A note on stderr."""
    print(f"tcplab: {text}", file=sys.stderr)


def progressBar(args: argparse.Namespace, name: str, total: int, initial: int) -> Any:
    """A tqdm bar on a terminal (bytes, rate, ETA); none with --quiet or off a TTY."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=escapeControls(name),
        disable=args.quiet or not sys.stderr.isatty(),
        leave=False,
    )


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


def remoteJoin(*parts: str) -> str:
    """Join remote path components with C{/}."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def localFileErrors(
    transfer: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    """
    Report an C{OSError} of C{transfer} -- a local file that cannot be
    opened, read or written -- as a one-line L{TcplabError}.
    """

    @functools.wraps(transfer)
    async def reported(*args: Any, **kwargs: Any) -> None:
        try:
            await transfer(*args, **kwargs)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise TcplabError(f"{where}{e.strerror or e}", ExitCode.LOCAL_FILE) from None

    return reported


# ls


async def listCommand(reactor: Any, args: argparse.Namespace) -> int:
    """Print a remote directory (or one file's line)."""
    session = Session(reactor, args)
    try:
        client = await session.connected()
        info = await client.stat(args.path)
        entries = await client.list(args.path) if info["type"] == "dir" else [info]
    finally:
        session.close()
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["mtime"]))
        name = escapeControls(entry["name"]) + ("/" if entry["type"] == "dir" else "")
        size = "-" if entry["type"] == "dir" else str(entry["size"])
        print(f"{size:>14}  {when}  {name}")
    return ExitCode.OK


# get


async def getCommand(reactor: Any, args: argparse.Namespace) -> int:
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
                elif info["type"] == "dir":
                    if not args.recursive:
                        raise TcplabError(f"{remote} is a directory (use -r)", ExitCode.USAGE)
                    await getTree(session, remote, localTarget(args, remote, single, True))
                else:
                    await getFile(session, remote, info, localTarget(args, remote, single, False))
            except TcplabError as e:
                session.failed(f"get {remote}", e)
    finally:
        session.close()
    return session.failures


def localTarget(args: argparse.Namespace, remote: str, single: bool, isDir: bool) -> Path:
    """Where REMOTE lands: -o exactly for one file, else the remote base name in -o or '.'."""
    output = Path(args.output) if args.output else Path(".")
    if single and args.output and not output.is_dir():
        return output
    name = remote.rstrip("/").rsplit("/", 1)[-1]
    if not isSafeLocalName(name):
        name = "download"
    return output / name


async def getTree(session: Session, remote: str, local: Path) -> None:
    """Download a remote directory tree into C{local}."""
    local.mkdir(parents=True, exist_ok=True)
    entries = await session.retrying(remote, partial(FileClient.list, path=remote))
    for entry in entries:
        name = entry.get("name", "")
        if not isinstance(name, str) or not isSafeLocalName(name):
            say(f"skipping unsafe name {escapeControls(str(name))!r} in {remote}")
            continue
        child = remoteJoin(remote, name)
        try:
            if entry["type"] == "dir":
                await getTree(session, child, local / name)
            elif entry["type"] == "file":
                await getFile(session, child, entry, local / name)
        except TcplabError as e:
            session.failed(f"get {child}", e)


@localFileErrors
async def getFile(session: Session, remote: str, info: dict[str, Any], destination: Path) -> None:
    """Download one file through a partial file, resuming and verifying."""
    args = session.args
    if isSpecialFile(destination):
        # /dev/null, a FIFO, a terminal: write straight into it, never
        # replace it with a regular file.
        with open(destination, "wb") as stream:
            await getToStream(session, remote, info, stream)
        return
    if destination.exists() and not args.overwrite:
        raise TcplabError(f"{destination} exists (use --overwrite)", ExitCode.EXISTS)
    partialFile = destination.with_name(f".{destination.name}{PARTIAL_SUFFIX}")
    size = int(info["size"])
    with open(partialFile, "a+b") as file:
        if file.seek(0, os.SEEK_END) > size:
            file.truncate(0)
        restarted = False
        while True:
            offset = file.seek(0, os.SEEK_END)
            bar = progressBar(args, remote, size, offset)
            try:
                await session.retrying(
                    remote, partial(resumeGet, remote=remote, file=file, bar=bar)
                )
                break
            except ChecksumMismatch:
                if offset == 0 or restarted:
                    file.truncate(0)
                    raise
                say(f"{remote}: the partial download did not match; downloading it again")
                file.truncate(0)
                restarted = True
            finally:
                bar.close()
        file.flush()
        os.fsync(file.fileno())
    os.replace(partialFile, destination)
    if args.verbose:
        say(f"{remote} -> {destination} ({size} bytes, SHA-256 verified)")


async def resumeGet(client: FileClient, remote: str, file: BinaryIO, bar: Any) -> None:
    """One download attempt from wherever the partial file ends."""
    offset = file.seek(0, os.SEEK_END)
    bar.n = offset
    await client.get(remote, file, offset, prefix=file, progress=bar.update)


def isSpecialFile(path: Path) -> bool:
    """Whether C{path} exists and is neither a regular file nor a directory."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


async def getToStream(
    session: Session, remote: str, info: dict[str, Any], stream: BinaryIO
) -> None:
    """Stream one file into an open stream (no partial, no resume), verified at the end."""
    if info["type"] != "file":
        raise TcplabError(f"{remote} is not a file", ExitCode.USAGE)
    client = await session.connected()
    bar = progressBar(session.args, remote, int(info["size"]), 0)
    try:
        await client.get(remote, stream, progress=bar.update)
    finally:
        bar.close()
    stream.flush()


# put


def uploadPlan(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """Each LOCAL and its remote path: its own name under --to, or --as for one file."""
    if args.remoteName is not None:
        if len(args.local) != 1:
            raise TcplabError("--as names one upload; give exactly one LOCAL", ExitCode.USAGE)
        if not remoteJoin(args.remoteName):
            raise TcplabError(f"--as {args.remoteName!r} is not a file name", ExitCode.USAGE)
        return [(Path(args.local[0]), remoteJoin(args.to, args.remoteName))]
    return [(Path(path), remoteJoin(args.to, Path(path).resolve().name)) for path in args.local]


async def putCommand(reactor: Any, args: argparse.Namespace) -> int:
    """Upload each LOCAL (trees with -r) into --to, or one LOCAL --as a name."""
    plan = uploadPlan(args)
    session = Session(reactor, args)
    try:
        for local, remote in plan:
            try:
                if local.is_dir():
                    if not args.recursive:
                        raise TcplabError(f"{local} is a directory (use -r)", ExitCode.USAGE)
                    await putTree(session, local, remote)
                elif local.is_file():
                    await putFile(session, local, remote)
                else:
                    raise TcplabError(f"{local}: no such file", ExitCode.NOT_FOUND)
            except TcplabError as e:
                session.failed(f"put {local}", e)
    finally:
        session.close()
    return session.failures


async def putTree(session: Session, local: Path, remote: str) -> None:
    """Upload a local directory tree under C{remote}."""
    for directory, _, files in os.walk(local):
        for name in sorted(files):
            path = Path(directory) / name
            relative = path.relative_to(local).as_posix()
            try:
                await putFile(session, path, remoteJoin(remote, relative))
            except TcplabError as e:
                session.failed(f"put {path}", e)


@localFileErrors
async def putFile(session: Session, local: Path, remote: str) -> None:
    """Upload one file, resuming what the server kept of an earlier attempt."""
    args = session.args
    with open(local, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        resume = True
        while True:
            bar = progressBar(args, local.name, size, 0)
            try:
                attempt = partial(
                    FileClient.put,
                    path=remote,
                    source=source,
                    size=size,
                    overwrite=args.overwrite,
                    resume=resume,
                    progress=bar.update,
                )
                await session.retrying(remote, attempt)
                break
            except RemoteError as e:
                if e.code != "checksum_mismatch" or not resume:
                    raise
                say(f"{remote}: the server's partial upload did not match; sending it all again")
                resume = False
            finally:
                bar.close()
    if args.verbose:
        say(f"{local} -> {remote} ({size} bytes, SHA-256 verified)")


# rm


async def removeCommand(reactor: Any, args: argparse.Namespace) -> int:
    """Delete each REMOTE."""
    session = Session(reactor, args)
    try:
        for remote in args.remote:
            try:
                client = await session.connected()
                await client.delete(remote)
            except TcplabError as e:
                session.failed(f"rm {remote}", e)
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
        parser.set_defaults(run=lambda args: runCommand(lambda reactor: main(reactor, args)))
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
                help="file (one REMOTE) or directory; - for stdout",
            )
        else:
            parser.add_argument("local", metavar="LOCAL", nargs="+")
            parser.add_argument("--to", metavar="REMOTE_DIR", default="", help="remote directory")
            parser.add_argument(
                "--as",
                dest="remoteName",
                metavar="NAME",
                help="the remote name of a single LOCAL (default: its own name)",
            )
        parser.add_argument("-r", "--recursive", action="store_true", help="whole directory trees")
        parser.add_argument("--overwrite", action="store_true", help="replace existing files")
        parser.add_argument(
            "--retries",
            type=int,
            default=0,
            metavar="N",
            help="reconnect and resume up to N times",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        parser.add_argument("-v", "--verbose", action="store_true", help="report each file")

    rm = command("rm", "delete remote files", removeCommand)
    rm.add_argument("remote", metavar="REMOTE", nargs="+")
