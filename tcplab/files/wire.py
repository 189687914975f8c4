"""
The file service's wire format, pure: frames, messages, error codes.

Every message is one frame: a 4-byte big-endian length, then the payload
(the framing of Twisted's C{Int32StringReceiver}, decoded here by
L{FrameDecoder}).  A payload starting with C{{} is a control message, a JSON
object; a payload starting with the byte C{0x00} is a data chunk, the rest of
the payload being file bytes.  docs/protocol.md is the full description.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import EllipsisType
from typing import TypedDict, TypeVar

from tcplab.jsontypes import JSONObject

Kind = TypeVar("Kind", str, int, bool)


class DownloadStart(TypedDict):
    """A download's header, as sent: the file's size and mtime, and where the data starts."""

    ok: bool
    size: int
    offset: int
    mtime: int


class ListingPage(TypedDict):
    """One page of a listing, as sent: its entries and whether more follow."""

    ok: bool
    entries: list[JSONObject]
    more: bool


MAX_FRAME = 64 * 1024
"""The largest frame payload either side accepts, in bytes."""

CHUNK_SIZE = MAX_FRAME - 1
"""File bytes per data frame (the payload is a marker byte plus the chunk)."""

MAX_CONTROL = 16 * 1024
"""The largest control message (JSON) accepted."""

DATA = b"\x00"
"""The first byte of a data frame."""

PREFIX = struct.Struct(">I")

# Error codes: stable, machine-readable, documented in docs/protocol.md.
NOT_FOUND = "not_found"
NOT_ALLOWED = "not_allowed"
EXISTS = "exists"
TOO_LARGE = "too_large"
BAD_REQUEST = "bad_request"
CHECKSUM_MISMATCH = "checksum_mismatch"
NO_SPACE = "no_space"
SERVER_ERROR = "server_error"
AUTH_REQUIRED = "auth_required"
AUTH_FAILED = "auth_failed"
BUSY = "busy"
ERROR_CODES = frozenset(
    [
        NOT_FOUND,
        NOT_ALLOWED,
        EXISTS,
        TOO_LARGE,
        BAD_REQUEST,
        CHECKSUM_MISMATCH,
        NO_SPACE,
        SERVER_ERROR,
        AUTH_REQUIRED,
        AUTH_FAILED,
        BUSY,
    ]
)

PAGE_ENTRIES = 256
"""At most this many entries in one page of a listing."""

PAGE_BYTES = 15 * 1024
"""A listing page is cut before its JSON passes this size (under L{MAX_CONTROL})."""

OPERATIONS = ("list", "stat", "get", "put", "delete", "login")


class ProtocolError(Exception):
    """
    A request or reply that cannot be honoured, with its wire error code.

    @ivar code: one of L{ERROR_CODES}.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FrameTooLarge(Exception):
    """A peer announced a frame over L{MAX_FRAME}; nothing of it was read."""

    def __init__(self, length: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds {MAX_FRAME}")
        self.length = length


class FrameDecoder:
    """
    Turn a byte stream into frame payloads, sans I/O.

    Bytes go in with L{feed}; complete payloads come out, one at a time,
    with L{nextFrame}, so the caller decides when to take the next one (it
    stops while a request is being answered).  Nothing beyond one frame's
    prefix is buffered for a frame over L{MAX_FRAME}: L{FrameTooLarge} is
    raised as soon as its length is seen.

    @ivar framesDecoded: frames taken so far (a marker for slow-drip checks).
    """

    def __init__(self, maxFrame: int = MAX_FRAME) -> None:
        self.maxFrame = maxFrame
        self.framesDecoded = 0
        self._buffer = bytearray()
        self._offset = 0

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer."""
        if self._offset and self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        self._buffer += data

    def nextFrame(self) -> bytes | None:
        """
        The next complete payload, or L{None} until more bytes arrive.

        @raise FrameTooLarge: the next frame announces more than C{maxFrame}.
        """
        buffer, offset = self._buffer, self._offset
        available = len(buffer) - offset
        if available < PREFIX.size:
            return None
        (length,) = PREFIX.unpack_from(buffer, offset)
        if length > self.maxFrame:
            raise FrameTooLarge(length)
        end = offset + PREFIX.size + length
        if end > len(buffer):
            return None
        payload = bytes(buffer[offset + PREFIX.size : end])
        if end == len(buffer):
            buffer.clear()
            self._offset = 0
        elif end > 1024 * 1024:
            del buffer[:end]
            self._offset = 0
        else:
            self._offset = end
        self.framesDecoded += 1
        return payload

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken as frames."""
        return len(self._buffer) - self._offset


def frame(payload: bytes) -> bytes:
    """Prefix C{payload} with its length."""
    return PREFIX.pack(len(payload)) + payload


def dataFrame(chunk: bytes) -> bytes:
    """A whole data frame (prefix, marker, bytes) for one chunk."""
    return PREFIX.pack(len(chunk) + 1) + DATA + chunk


def encode(message: Mapping[str, object]) -> bytes:
    """The payload of a control message."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def errorMessage(code: str, message: str) -> JSONObject:
    """An error reply."""
    return {"ok": False, "error": code, "message": message}


def _noConstants(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def _noDuplicates(pairs: list[tuple[str, object]]) -> JSONObject:
    result: JSONObject = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def listingPages(
    entries: Iterator[JSONObject],
) -> Iterator[ListingPage]:
    """
    Cut a listing into page messages (``{"ok": true, "entries": [...],
    "more": ...}``), each at most L{PAGE_ENTRIES} entries and about
    L{PAGE_BYTES} of JSON; the last one says ``"more": false``.

    Entries are pulled from C{entries} only as pages are taken, so a caller
    can stat a directory's entries a page at a time.
    """
    page: list[JSONObject] = []
    size = 0
    for entry in entries:
        length = len(encode(entry)) + 1
        if page and (len(page) >= PAGE_ENTRIES or size + length > PAGE_BYTES):
            yield {"ok": True, "entries": page, "more": True}
            page, size = [], 0
        page.append(entry)
        size += length
    yield {"ok": True, "entries": page, "more": False}


def decode(payload: bytes) -> JSONObject:
    """
    Parse a control message strictly: a JSON object, no NaN/Infinity, no
    duplicate keys, bounded size and depth.

    @raise ProtocolError: with code L{BAD_REQUEST}.
    """
    if len(payload) > MAX_CONTROL:
        raise ProtocolError(BAD_REQUEST, f"control message over {MAX_CONTROL} bytes")
    try:
        message = json.loads(
            payload.decode("utf-8"),
            parse_constant=_noConstants,
            object_pairs_hook=_noDuplicates,
        )
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise ProtocolError(BAD_REQUEST, f"malformed JSON: {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, "a control message must be a JSON object")
    return message


def field(
    message: JSONObject, name: str, kind: type[Kind], default: Kind | EllipsisType = ...
) -> Kind:
    """
    C{message[name]}, checked to be exactly of C{kind} (a C{bool} is not an
    C{int}; integers must be non-negative and finite).

    @raise ProtocolError: missing or of the wrong type.
    """
    if name not in message:
        if isinstance(default, EllipsisType):
            raise ProtocolError(BAD_REQUEST, f"missing field {name!r}")
        return default
    value = message[name]
    if not isinstance(value, kind) or type(value) is not kind:
        raise ProtocolError(BAD_REQUEST, f"field {name!r} must be {kind.__name__}")
    if isinstance(value, int) and not 0 <= value < 2**63:
        raise ProtocolError(BAD_REQUEST, f"field {name!r} out of range")
    return value


@dataclass(frozen=True)
class Request:
    """A validated client request."""

    op: str
    path: str = ""
    offset: int = 0
    size: int = 0
    overwrite: bool = False
    resume: bool = True
    user: str = ""
    password: str = ""


def parseRequest(payload: bytes) -> Request:
    """
    Validate a request's control message.

    @raise ProtocolError: with code L{BAD_REQUEST}.
    """
    message = decode(payload)
    op = field(message, "op", str)
    if op not in OPERATIONS:
        raise ProtocolError(BAD_REQUEST, f"unknown op {op!r}")
    if op == "login":
        return Request(
            op, user=field(message, "user", str), password=field(message, "password", str)
        )
    path = field(message, "path", str, "")
    if op == "get":
        return Request(op, path, offset=field(message, "offset", int, 0))
    if op == "put":
        return Request(
            op,
            path,
            size=field(message, "size", int),
            overwrite=field(message, "overwrite", bool, False),
            resume=field(message, "resume", bool, True),
        )
    return Request(op, path)


def parseDigest(payload: bytes) -> str:
    """
    The SHA-256 a sender announces after an upload's data: ``{"sha256": HEX}``.

    @raise ProtocolError: with code L{BAD_REQUEST}.
    """
    digest = field(decode(payload), "sha256", str)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ProtocolError(BAD_REQUEST, "sha256 must be 64 lower-case hex digits")
    return digest
