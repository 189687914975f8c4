"""
Exit codes and the one-line errors shared by the ``tcplab`` client and the
twistd plugins.

Expected failures (a refused connection, a missing file, a busy port) are
raised as L{TcplabError} with an exit code and a human sentence; the command
line prints the sentence on one line and exits with the code, never with a
traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit statuses; each expected failure has its own."""

    OK = 0
    FAILURE = 1
    """An unexpected error (a bug): reported with its traceback."""
    USAGE = 2
    """Bad command-line arguments."""
    CONNECT = 3
    """Could not connect: refused, unknown host, timeout, TLS failure."""
    NOT_FOUND = 4
    NOT_ALLOWED = 5
    CHECKSUM = 6
    """A transfer arrived but its SHA-256 does not match."""
    EXISTS = 7
    PROTOCOL = 8
    """The peer broke the protocol or closed the connection mid-operation."""
    AUTH = 9
    """Authentication failed or is required."""
    CANNOT_LISTEN = 10
    """A server could not listen: port in use, bad endpoint description."""
    LOCAL_FILE = 11
    """A local file could not be read or written: no such directory, disk full, permissions."""
    BUSY = 12
    """The server is busy with the same file (another connection is uploading it)."""
    INTERRUPTED = 130


class TcplabError(Exception):
    """
    An expected failure with a one-line explanation and an exit code.

    @ivar message: the sentence shown to the user.
    @ivar exitCode: the process exit status it maps to.
    """

    exitCode: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, exitCode: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exitCode is not None:
            self.exitCode = exitCode

    def __str__(self) -> str:
        return self.message


class ConnectError(TcplabError):
    """We could not reach the server at all."""

    exitCode = ExitCode.CONNECT


class ProtocolViolation(TcplabError):
    """The peer sent something the protocol does not allow, or hung up mid-way."""

    exitCode = ExitCode.PROTOCOL


class CannotListen(TcplabError):
    """A service could not open one of its listening addresses."""

    exitCode = ExitCode.CANNOT_LISTEN
