"""
A chat room's state: its members, how broadcasts reach them, its history.

Part of the hub (L{tcplab.chat.hub}), free of any network code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from tcplab.chat.events import ChatEvent, Delivery
from tcplab.chat.fanout import RoomFeed
from tcplab.interfaces import IRoomBatchMember

__all__ = ["ChatParticipant", "Room"]


class ChatParticipant(Protocol):
    """What the hub needs of a participant: somewhere to hand what it hears."""

    def receive(self, delivery: Delivery) -> None:
        """Take one event, private message, notice or history replay."""


@dataclass(eq=False)
class Room:
    """
    A room: its members, in joining order, and its recent messages.

    Members that take broadcasts in batches (L{IRoomBatchMember}) hear them
    through the room's L{RoomFeed}, once per reactor iteration; the others,
    the C{listeners}, get one C{receive} per broadcast.
    """

    name: str
    historySize: int
    members: dict[ChatParticipant, None] = field(default_factory=dict)
    listeners: dict[ChatParticipant, None] = field(default_factory=dict)
    """The members that take one C{receive} per broadcast (not the feed)."""
    feed: RoomFeed | None = None
    """Made when the first member that takes batches joins."""
    history: deque[ChatEvent] = field(init=False)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.historySize)

    def add(self, participant: ChatParticipant) -> None:
        """
        A member joins (after its arrival was announced): it hears what is
        said from now on.  The feed sends through the batch of the first
        member that took it; a batch member of another batch (a second
        factory on the same hub) is served as a listener, correct but
        without the fast path.
        """
        self.members[participant] = None
        if IRoomBatchMember.providedBy(participant):
            batch = participant.writeBatch
            if self.feed is None:
                self.feed = RoomFeed(batch, self.members, self.listeners)
            if batch is self.feed.batch:
                self.feed.join(participant)
                return
        self.listeners[participant] = None

    def remove(self, participant: ChatParticipant) -> None:
        """A member leaves, with what was said while it was here."""
        if participant not in self.members:
            return
        del self.members[participant]
        if participant in self.listeners:
            del self.listeners[participant]
        elif self.feed is not None:
            self.feed.leave(participant)

    def catchUp(self, participant: ChatParticipant) -> None:
        """Queue for a batch member the lines said so far this iteration (see L{RoomFeed})."""
        feed = self.feed
        if feed is not None and feed.lines and participant not in self.listeners:
            feed.catchUp(participant)

    def broadcast(self, delivery: Delivery, exclude: ChatParticipant | None = None) -> None:
        """
        Hand C{delivery} (one object for all) to every member but C{exclude}:
        recorded once in the feed for the batch members, handed to each
        listener.
        """
        feed = self.feed
        if feed is not None and feed.size:
            feed.record(delivery, exclude)
        for participant in self.listeners:
            if participant is not exclude:
                participant.receive(delivery)
