"""
What the hub tells its participants and observers: typed events, no bytes.

The hub decides who hears what; the protocol decides how it looks on the
wire (L{tcplab.chat.wire.render}).  One event object is handed to every
member of a room, so the protocol can render it once for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["message", "action", "announcement", "join", "leave", "nick"]
"""The kinds of L{ChatEvent}: what can happen in a room."""

EVENT_KINDS: tuple[EventKind, ...] = ("message", "action", "announcement", "join", "leave", "nick")


@dataclass(frozen=True, slots=True, eq=False)
class ChatEvent:
    """
    Something that happened in a room, as its members and observers see it.

    @ivar kind: what happened (see L{EventKind}).
    @ivar room: the room's name (C{#lobby}).
    @ivar nick: who did it; L{None} for an announcement.  For C{nick}, the
        old nickname.
    @ivar text: the (sanitised) text; for C{leave}, the reason; for
        C{nick}, the new nickname; empty for C{join}.
    @ivar time: when, in seconds since the epoch (the hub's clock).
    """

    kind: EventKind
    room: str
    nick: str | None
    text: str
    time: float


@dataclass(frozen=True, slots=True, eq=False)
class PrivateMessage:
    """
    A private message, as one of its two ends sees it.

    @ivar sender: who wrote it.
    @ivar recipient: who it is for.
    @ivar text: the (sanitised) text.
    @ivar echo: L{True} for the sender's own copy.
    """

    sender: str
    recipient: str
    text: str
    echo: bool


@dataclass(frozen=True, slots=True, eq=False)
class Notice:
    """A server notice for one participant (C{guest1 is now known as bob}, before a join)."""

    text: str


@dataclass(frozen=True, slots=True, eq=False)
class HistoryReplay:
    """A room's recent messages, oldest first, sent to a member that joins it."""

    room: str
    entries: tuple[ChatEvent, ...]


Delivery = ChatEvent | PrivateMessage | Notice | HistoryReplay
"""Everything the hub hands a participant."""
