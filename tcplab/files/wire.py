"""
The file service's wire format, pure: frames, messages, error codes.

Every message is one C{Int32StringReceiver} frame: a 4-byte big-endian
length, then the payload.  A payload starting with C{{} is a control message,
a JSON object; a payload starting with the byte C{0x00} is a data chunk, the
rest of the payload being file bytes.  docs/protocol.md is the full
description.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

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
    ]
)

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


def frame(payload: bytes) -> bytes:
    """Prefix C{payload} with its length."""
    return PREFIX.pack(len(payload)) + payload


def dataFrame(chunk: bytes) -> bytes:
    """A whole data frame (prefix, marker, bytes) for one chunk."""
    return PREFIX.pack(len(chunk) + 1) + DATA + chunk


def encode(message: dict[str, Any]) -> bytes:
    """The payload of a control message."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def errorMessage(code: str, message: str) -> dict[str, Any]:
    """An error reply."""
    return {"ok": False, "error": code, "message": message}


def _noConstants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _noDuplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def decode(payload: bytes) -> dict[str, Any]:
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


def field(message: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    """
    C{message[name]}, checked to be exactly of C{kind} (a C{bool} is not an
    C{int}; integers must be non-negative and finite).

    @raise ProtocolError: missing or of the wrong type.
    """
    if name not in message:
        if default is ...:
            raise ProtocolError(BAD_REQUEST, f"missing field {name!r}")
        return default
    value: Any = message[name]
    if type(value) is not kind:
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
