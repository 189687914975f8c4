"""
The hooks a tcplab protocol or factory may offer to the shared plumbing.

The service plumbing (connection bookkeeping, timeouts, shutdown drain,
refusals) asks for these with C{providedBy} instead of guessing with
C{getattr}, so a misspelt hook is a type error, not a silent no-op.
"""

from __future__ import annotations

from zope.interface import Interface


class IMessageProgress(Interface):
    """A protocol that can say whether a message (line, frame) is half-received."""

    def messageInProgress() -> object | None:
        """
        L{None} when no message is half-received; otherwise a marker that
        changes with every message completed (a count).  A peer that keeps
        the same message unfinished past the message timeout is a slow-drip
        client and is disconnected; a long upload of many frames is not.
        """


class IGracefulStop(Interface):
    """A protocol that winds down by itself when the server stops."""

    def serverStopping() -> None:
        """
        The server is shutting down: say goodbye and close when convenient
        (a running transfer may finish first).  A protocol without this hook
        is closed once its pending output is sent.
        """


class IRefusalFormat(Interface):
    """A factory whose protocol has its own way of saying "refused, because"."""

    def refusal(reason: str) -> bytes:
        """The bytes sent to a peer refused for C{reason} (one line or frame)."""
