"""
The hooks a tcplab protocol or factory may offer to the shared plumbing.

The service plumbing (connection bookkeeping, timeouts, shutdown drain,
refusals) asks for these with C{providedBy} instead of guessing with
C{getattr}, so a misspelt hook is a type error, not a silent no-op.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


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


class IBindingService(Interface):
    """
    A service that opens a listening port (TCP, UNIX, TLS, UDP) of its own.

    It binds in C{privilegedStartService} (before twistd drops root), or in
    C{startService} when nobody called that first; a failure to bind is
    raised there as L{tcplab.errors.CannotListen} when it is known at once,
    and always fails C{listening}.  A L{tcplab.tap.listening.ListeningService}
    binds all of its binding children or none.
    """

    listening = Attribute(
        "A Deferred that fires with the listening port once bound, or fails with CannotListen."
    )

    def bind() -> None:
        """Start listening (once; later calls do nothing)."""

    def release() -> object:
        """Stop listening or cancel the attempt; may return a Deferred."""


class IRoomBatchMember(Interface):
    """
    A hub participant that takes its room's broadcasts as bytes, once per
    reactor iteration (see L{tcplab.chat.fanout.RoomFeed}), instead of one C{receive} per line.

    It still gets C{receive} for what is addressed to it alone, and before
    it queues any line of its own (a reply) it calls the hub's C{catchUp}:
    that is what keeps the room's earlier lines in front of it.
    """

    writeBatch = Attribute("The L{tcplab.sending.WriteBatch} the member's output goes through.")

    def send(data: bytes) -> None:
        """Write C{data} out now (the batch calls this once per iteration)."""
