"""
The file service's domain errors, and the one place they become wire codes.

L{SafeRoot<tcplab.files.root.SafeRoot>}, the storage and the session raise
these; they know nothing of the protocol.  L{wireError} maps each to its
error code of docs/protocol.md, so a new error or a changed code is one line
here.
"""

from __future__ import annotations

from tcplab.files import wire


class FileServiceError(Exception):
    """
    Something the file service refuses or cannot do, with a sentence for the
    peer.

    @ivar message: the human-readable explanation sent with the error code.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(FileServiceError):
    """No such file or directory."""


class NotAllowed(FileServiceError):
    """Outside the root, a partial file, read-only server, not readable, not deletable."""


class AlreadyExists(FileServiceError):
    """The target exists and overwriting was not asked for."""


class TooLarge(FileServiceError):
    """An upload over the server's size limit."""


class BadRequest(FileServiceError):
    """A request that is well-formed JSON but makes no sense (bad path, bad offset)."""


class ChecksumMismatch(FileServiceError):
    """An upload whose bytes do not have the SHA-256 its sender announced."""


class NoSpace(FileServiceError):
    """The server's disk (or quota) is full."""


class Busy(FileServiceError):
    """
    The name is being uploaded by another connection (its partial is locked),
    or the server holds as many uploads or verifications as it allows: try
    again later.
    """


class AuthRequired(FileServiceError):
    """The operation needs a login."""


class AuthFailed(FileServiceError):
    """Wrong user name or password."""


class StorageFailure(FileServiceError):
    """Anything else the server's storage could not do (a read or write error)."""


WIRE_CODES: dict[type[FileServiceError], str] = {
    NotFound: wire.NOT_FOUND,
    NotAllowed: wire.NOT_ALLOWED,
    AlreadyExists: wire.EXISTS,
    TooLarge: wire.TOO_LARGE,
    BadRequest: wire.BAD_REQUEST,
    ChecksumMismatch: wire.CHECKSUM_MISMATCH,
    NoSpace: wire.NO_SPACE,
    Busy: wire.BUSY,
    AuthRequired: wire.AUTH_REQUIRED,
    AuthFailed: wire.AUTH_FAILED,
    StorageFailure: wire.SERVER_ERROR,
}
"""Each domain error's wire code (docs/protocol.md, *Requests and replies*)."""


def wireError(error: FileServiceError | wire.ProtocolError) -> wire.ProtocolError:
    """The wire error (code and message) that answers C{error}."""
    if isinstance(error, wire.ProtocolError):
        return error
    for kind in type(error).__mro__:
        code = WIRE_CODES.get(kind)
        if code is not None:
            return wire.ProtocolError(code, error.message)
    return wire.ProtocolError(wire.SERVER_ERROR, error.message)
