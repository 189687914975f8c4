"""
The file server's replies as the client sees them: typed records, validated
as strictly as the server validates requests.

A server is not trusted: every field of every reply is checked for its exact
type and a sane range (a C{bool} is not an integer, sizes are 0 to 2^63-1,
times fall between the years 1 and 9999, names hold no C{/} or NUL, types are
the documented ones) before the client acts on it.  Anything else raises
L{MalformedReply}, which the command line reports in one line with exit
status 8 -- never a C{TypeError} or C{OverflowError} traceback.  The JSON
itself is parsed by L{tcplab.files.wire.decode} (bounded size, no NaN, no
duplicate keys, nesting bounded by the recursion limit, all caught).

Strings that came from the network may hold anything, terminal escapes
included: show them through L{printable}.  The errors a client meets live
here too: L{RemoteError} (the server said no), L{MalformedReply},
L{ChecksumMismatch}, L{ConnectionLostError}, L{OperationInProgress}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tcplab.errors import ExitCode, ProtocolViolation, TcplabError
from tcplab.files import wire

BUSY = "busy"
"""The error for a C{put} whose target another connection is uploading."""

EXIT_CODES = {
    wire.NOT_FOUND: ExitCode.NOT_FOUND,
    wire.NOT_ALLOWED: ExitCode.NOT_ALLOWED,
    wire.TOO_LARGE: ExitCode.NOT_ALLOWED,
    wire.AUTH_REQUIRED: ExitCode.AUTH,
    wire.AUTH_FAILED: ExitCode.AUTH,
    wire.EXISTS: ExitCode.EXISTS,
    wire.CHECKSUM_MISMATCH: ExitCode.CHECKSUM,
    wire.BAD_REQUEST: ExitCode.PROTOCOL,
    BUSY: ExitCode.BUSY,
}
"""The exit status of each error code; others (C{no_space}, C{server_error}) are 1."""

MAX_SIZE = 2**63 - 1
"""The largest size or offset a reply may carry."""

MIN_MTIME = -62135596800
"""0001-01-01T00:00:00Z: an mtime before this is not a real time."""

MAX_MTIME = 253402300799
"""9999-12-31T23:59:59Z: an mtime after this is not a real time."""

MAX_TEXT = 4096
"""The longest string field (a name, a message) a reply may carry, in characters."""

EntryKind = Literal["file", "dir", "other"]
ENTRY_KINDS: tuple[EntryKind, ...] = ("file", "dir", "other")

# Control characters (C0, DEL, C1), lone surrogates (which cannot even be
# encoded for printing), line and paragraph separators (terminals and
# splitlines() break lines at them), and format characters such as the bidi
# overrides, which reorder what a reader sees.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)


def printable(text: str) -> str:
    """
    C{text} with every character that could act on a terminal or hide what
    it says (controls, escapes, bidi overrides, line separators, lone
    surrogates) shown as a Python escape such as C{\\x1b} or C{\\u202e}.
    """
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class MalformedReply(ProtocolViolation):
    """The server's reply is not what the protocol allows (exit status 8)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"protocol error: {why}")


class RemoteError(TcplabError):
    """
    The server refused or failed an operation.

    @ivar code: the protocol's error code (C{not_found}, C{busy} ...), as
        sent (a code this client does not know exits with status 1).
    @ivar serverMessage: the server's explanation exactly as sent; the
        exception's C{message} is the same text made safe to print.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(printable(message), EXIT_CODES.get(code, ExitCode.FAILURE))
        self.code = code
        self.serverMessage = message


class ChecksumMismatch(TcplabError):
    """What arrived does not have the SHA-256 the sender announced."""

    exitCode = ExitCode.CHECKSUM


class ConnectionLostError(ProtocolViolation):
    """The connection ended in the middle of an operation."""


class OperationInProgress(TcplabError):
    """
    An operation was started while another one was still running on the
    same connection (the protocol does one at a time: wait for the first,
    or open a second connection).
    """


@dataclass(frozen=True)
class Entry:
    """
    One remote file or directory, from C{list} or C{stat}.

    @ivar name: its name (no C{/}, no NUL; may hold anything else, so show
        it through L{printable}).
    @ivar kind: C{file}, C{dir} or C{other}; for a symbolic link, the kind
        of what it points to.
    @ivar size: bytes (0 for directories).
    @ivar mtime: last modification, Unix seconds.
    @ivar symlink: it is a symbolic link inside the server's root.
    """

    name: str
    kind: EntryKind
    size: int
    mtime: int
    symlink: bool = False

    @property
    def isDir(self) -> bool:
        """Whether this is a directory (or a link to one)."""
        return self.kind == "dir"

    @property
    def isFile(self) -> bool:
        """Whether this is a regular file (or a link to one)."""
        return self.kind == "file"


@dataclass(frozen=True)
class ListPage:
    """One page of a listing; C{more} says another page follows."""

    entries: tuple[Entry, ...]
    more: bool


@dataclass(frozen=True)
class DownloadHeader:
    """What a C{get} announces before the data: the file's size, the offset, its mtime."""

    size: int
    offset: int
    mtime: int


@dataclass(frozen=True)
class Downloaded:
    """A verified download: the whole file's size, where this transfer began, its SHA-256."""

    size: int
    offset: int
    mtime: int
    sha256: str


@dataclass(frozen=True)
class Uploaded:
    """A verified upload: size, SHA-256, and the offset the server resumed from."""

    size: int
    offset: int
    sha256: str


def checkReply(message: wire.JSONObject) -> wire.JSONObject:
    """
    C{message} if it is a successful reply (C{"ok": true}).

    @raise RemoteError: it is a well-formed error reply.
    @raise MalformedReply: it is neither.
    """
    ok = message.get("ok")
    if ok is True:
        return message
    if ok is not False:
        raise MalformedReply("a reply without a boolean 'ok'")
    code = text(message, "error")
    if not code:
        raise MalformedReply("an error reply with an empty code")
    raise RemoteError(code, text(message, "message"))


def text(message: Mapping[str, object], name: str) -> str:
    """The string field C{name}, bounded in length."""
    value = message.get(name)
    if type(value) is not str:
        raise MalformedReply(f"{name!r} must be a string")
    if len(value) > MAX_TEXT:
        raise MalformedReply(f"{name!r} is over {MAX_TEXT} characters")
    return value


def integer(message: Mapping[str, object], name: str, low: int = 0, high: int = MAX_SIZE) -> int:
    """The integer field C{name} (not a C{bool}, not a float), from C{low} to C{high}."""
    value = message.get(name)
    if type(value) is not int:
        raise MalformedReply(f"{name!r} must be an integer")
    if not low <= value <= high:
        raise MalformedReply(f"{name!r} out of range: {value}")
    return value


def flag(message: Mapping[str, object], name: str, default: bool) -> bool:
    """The optional boolean field C{name}."""
    value = message.get(name, default)
    if type(value) is not bool:
        raise MalformedReply(f"{name!r} must be true or false")
    return value


def digest(message: Mapping[str, object]) -> str:
    """The C{sha256} field: 64 lower-case hex digits."""
    value = message.get("sha256")
    if (
        type(value) is not str
        or len(value) != 64
        or any(c not in "0123456789abcdef" for c in value)
    ):
        raise MalformedReply("'sha256' must be 64 lower-case hex digits")
    return value


def parseEntry(message: Mapping[str, object], listed: bool = True) -> Entry:
    """
    An entry of a listing (C{listed}) or a C{stat} reply.  A listed name is
    one path component: not empty, not C{.} or C{..}.
    """
    name = text(message, "name")
    if "/" in name or "\x00" in name:
        raise MalformedReply("a name with '/' or NUL in it")
    if listed and name in ("", ".", ".."):
        raise MalformedReply(f"a listed entry named {name!r}")
    kind = message.get("type")
    if type(kind) is not str or kind not in ENTRY_KINDS:
        raise MalformedReply("an entry whose 'type' is not file, dir or other")
    return Entry(
        name=name,
        kind=kind,
        size=integer(message, "size"),
        mtime=integer(message, "mtime", MIN_MTIME, MAX_MTIME),
        symlink=flag(message, "symlink", False),
    )


def parseListPage(message: Mapping[str, object]) -> ListPage:
    """One page of a listing; a reply without C{more} is a whole (last) page."""
    entries = message.get("entries")
    if type(entries) is not list:
        raise MalformedReply("'entries' must be a list")
    parsed = []
    for entry in entries:
        if type(entry) is not dict:
            raise MalformedReply("a listing entry must be an object")
        parsed.append(parseEntry(entry))
    return ListPage(tuple(parsed), flag(message, "more", False))


def parseDownloadHeader(message: Mapping[str, object], offset: int) -> DownloadHeader:
    """A C{get} header for a request from C{offset}: the size covers the offset."""
    size = integer(message, "size")
    if integer(message, "offset") != offset:
        raise MalformedReply(f"the download starts at {message['offset']}, not at {offset}")
    if size < offset:
        raise MalformedReply(f"a file of {size} bytes announced for offset {offset}")
    return DownloadHeader(size, offset, integer(message, "mtime", MIN_MTIME, MAX_MTIME))


def parseDone(message: Mapping[str, object]) -> str:
    """The trailer of a C{get} or the final reply of a C{put}: its SHA-256."""
    if message.get("done") is not True:
        raise MalformedReply("expected the end of the transfer")
    return digest(message)


def parseUploadOffset(message: Mapping[str, object], size: int) -> int:
    """The offset a C{put} resumes from: 0 to the upload's size."""
    return integer(message, "offset", 0, size)
