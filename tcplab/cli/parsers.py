"""
The ``tcplab`` command line's parsers, built without importing any
subcommand's implementation (or Twisted): ``tcplab --version`` and
``tcplab echo --help`` cost the interpreter and argparse, nothing more.

Each subcommand's parser records what runs it as a L{Deferred import
<LazyCall>} (C{args.run}, and C{args.main} for the file commands), so only
the chosen subcommand's modules are imported, and only once it runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any, TypeAlias

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a connection to be established."""

PASSWORD_VARIABLE = "TCPLAB_PASSWORD"
"""The environment variable the client reads a password from."""

DEFAULT_EOF_LIMIT = 4096
"""Bytes read after our own EOF beyond what the server still owes us."""

RAW_QUIET = 1.0
"""With --raw, seconds of silence after the last reply before we close."""

DEFAULT_QUIT_WAIT = 5.0
"""Seconds to wait for the chat server to close after our /quit."""

FIRST_DELAY = 0.5
"""Seconds before the first retry of a file transfer."""

MAX_DELAY = 10.0
"""The longest wait between two retries of a file transfer, in seconds."""


STREAMS_ONLY = {"digests": False, "quickExit": True}
"""
Defaults for a command that hashes nothing and writes only to stdout and
stderr (C{echo}, C{chat}): it needs none of OpenSSL's digests
(L{tcplab.tlsfree.leaveOutOpenSSL}), and once it has returned its status
and flushed those two streams, the interpreter's clean-up has nothing left
to save (L{tcplab.cli.console}).  Other commands hash and write files: they
get OpenSSL's SHA-256 and the full clean-up (C{digests} and C{quickExit} are
absent from their arguments, which means yes and no).
"""


class LazyCall:
    """
    A function named by module and attribute, imported on its first call:
    a parser can point at a subcommand without importing it.
    """

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    # Any: the target's signature is known only once it is imported.
    def load(self) -> Any:
        """Import the function (once: Python caches modules) and return it."""
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self, *args: Any) -> Any:
        """Import the function and call it."""
        return self.load()(*args)

    def __repr__(self) -> str:
        return f"<LazyCall {self.module}.{self.name}>"


def nonNegativeSeconds(value: str) -> float:
    """An argparse type: seconds, at least 0."""
    seconds = float(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return seconds


def byteCount(value: str) -> int:
    """An argparse type: a number of bytes, at least 0."""
    count = int(value)
    if count < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return count


def milliseconds(value: str) -> float:
    """An argparse type: milliseconds given, seconds returned."""
    return float(value) / 1000


def addClientOptions(parser: argparse.ArgumentParser) -> None:
    """Add ADDRESS and the options every client command takes."""
    parser.add_argument("address", metavar="ADDRESS", help="HOST:PORT or an endpoint description")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up connecting after this long (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print every chunk read or written (size, direction, time) on stderr",
    )
    parser.add_argument(
        "--hexdump", action="store_true", help="with --trace, also dump each chunk in hex"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="connect to HOST:PORT with TLS, verifying the server against the system's CAs",
    )
    parser.add_argument(
        "--cafile",
        metavar="PEM",
        help="connect to HOST:PORT with TLS, verifying the server against this CA "
        "certificate (a self-signed server certificate works too)",
    )


def addAuthOptions(parser: argparse.ArgumentParser) -> None:
    """Add C{--user} (the password comes from the environment or a prompt)."""
    parser.add_argument(
        "--user",
        metavar="NAME",
        help=f"log in as NAME; the password is read from ${PASSWORD_VARIABLE}, "
        "or asked for on the terminal (never taken on the command line)",
    )


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The C{add_subparsers()} result each command registers with."""


def registerEcho(subparsers: Subparsers) -> None:
    """Add ``tcplab echo`` (run by L{tcplab.cli.echo.run})."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "echo",
        help="talk to an echo server (or any line server): send messages, print replies",
        description=(
            "Send each MESSAGE as a line and print the reply; with no MESSAGE, relay "
            "stdin to the server and print what comes back until either side closes."
        ),
    )
    addClientOptions(parser)
    parser.add_argument("messages", metavar="MESSAGE", nargs="*", help="lines to send")
    parser.add_argument(
        "--chunk", type=int, metavar="N", help="split what is sent into writes of N bytes"
    )
    parser.add_argument(
        "--delay",
        type=milliseconds,
        default=0.0,
        metavar="MS",
        help="pause this many milliseconds between writes",
    )
    parser.add_argument("--time", action="store_true", help="print each round-trip time")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="send all messages at once instead of waiting for each reply",
    )
    parser.add_argument(
        "-w",
        "--wait",
        type=nonNegativeSeconds,
        metavar="SECONDS",
        help="wait at most this long for each reply (one that has started arriving "
        "counts) and, after the end of input, for the server to close (default: no limit)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="for servers without line ends (the tutorials'): send each MESSAGE as it is, "
        "take whatever one read brings as its reply (a close after the last MESSAGE "
        "answers it), then read on until the server closes or is quiet for -w seconds "
        f"(default {RAW_QUIET:g}) and close, as the tutorials' clients do, without "
        "half-closing first",
    )
    parser.add_argument(
        "--greeting",
        action="store_true",
        help="the server speaks first: wait for its welcome before sending",
    )
    parser.add_argument(
        "--eof-limit",
        type=byteCount,
        default=DEFAULT_EOF_LIMIT,
        metavar="BYTES",
        help="after the end of input, read what the server still owes plus at most "
        f"BYTES more, then hang up (default {DEFAULT_EOF_LIMIT})",
    )
    parser.set_defaults(run=LazyCall("tcplab.cli.echo", "run"), **STREAMS_ONLY)


def registerChat(subparsers: Subparsers) -> None:
    """Add ``tcplab chat`` (run by L{tcplab.cli.chat.run})."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="join a tcplab chat server (or any line chat)",
        description="Chat interactively; lines from stdin are sent, lines from the "
        "server printed. Type /help once connected for the commands.",
    )
    addClientOptions(parser)
    addAuthOptions(parser)
    parser.add_argument("--nick", metavar="NAME", help="pick this nickname on arrival")
    parser.add_argument(
        "--no-history", action="store_true", help="do not replay the room's recent messages"
    )
    parser.add_argument(
        "--quit-wait",
        type=float,
        default=DEFAULT_QUIT_WAIT,
        metavar="SECONDS",
        help="at the end of input, after /quit, wait this long for the server to close "
        f"before closing ourselves (default {DEFAULT_QUIT_WAIT:g})",
    )
    parser.set_defaults(run=LazyCall("tcplab.cli.chat", "run"), **STREAMS_ONLY)


def registerFiles(subparsers: Subparsers) -> None:
    """Add ``tcplab ls``, ``get``, ``put`` and ``rm`` (run by L{tcplab.cli.files.run})."""

    def command(name: str, summary: str, main: LazyCall) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name, help=summary, description=summary
        )
        addClientOptions(parser)
        addAuthOptions(parser)
        parser.set_defaults(main=main, run=LazyCall("tcplab.cli.files", "run"))
        return parser

    ls = command(
        "ls",
        "list a remote directory of a tcplab-files server",
        LazyCall("tcplab.cli.files", "listCommand"),
    )
    ls.add_argument("path", metavar="PATH", nargs="?", default="", help="remote directory")

    get = command(
        "get",
        "download files (resumable, SHA-256 verified)",
        LazyCall("tcplab.cli.files_get", "getCommand"),
    )
    get.add_argument("remote", metavar="REMOTE", nargs="+")
    get.add_argument(
        "-o",
        "--output",
        metavar="LOCAL",
        help="file (one REMOTE) or directory (a trailing / creates it); - for stdout",
    )
    get.add_argument(
        "-L",
        "--follow-links",
        dest="followLinks",
        action="store_true",
        help="with -r, descend into symbolic links to directories too (a link loop "
        "is recognised and skipped)",
    )
    put = command(
        "put",
        "upload files (resumable, SHA-256 verified)",
        LazyCall("tcplab.cli.files_put", "putCommand"),
    )
    put.add_argument(
        "local", metavar="LOCAL", nargs="+", help="files (trees with -r); - for stdin"
    )
    put.add_argument("--to", metavar="REMOTE_DIR", default="", help="remote directory")
    put.add_argument(
        "--as",
        dest="remoteName",
        metavar="NAME",
        help="the remote name of a single LOCAL (default: its own name; "
        "NAME/ puts it inside that directory); needed for - (stdin)",
    )
    for parser in (get, put):
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

    rm = command("rm", "delete remote files", LazyCall("tcplab.cli.files", "removeCommand"))
    rm.add_argument("remote", metavar="REMOTE", nargs="+")


Register: TypeAlias = "Callable[[Subparsers], None]"
"""A function adding one or more subcommands' parsers."""

REGISTERS: tuple[tuple[tuple[str, ...], Register], ...] = (
    (("echo",), registerEcho),
    (("chat",), registerChat),
    (("ls", "get", "put", "rm"), registerFiles),
)
"""
Each parser builder with the subcommands it adds, in the order ``--help``
shows them: a command line naming one subcommand needs only its builder.
"""

COMMAND_NAMES = frozenset(name for names, _ in REGISTERS for name in names)
"""Every subcommand's name."""
