"""
A room's broadcasts recorded once per line and handed out once per reactor iteration.

Handing every line to every member (C{receive}, render, queue) costs a few
hundred nanoseconds per member per line: at a thousand members and forty
lines an iteration that is all the server does.  A L{RoomFeed} instead
records each broadcast once -- its rendered bytes and who was left out (the
sender) -- and when the connections' L{WriteBatch} runs, after the reactor
iteration, gives each member its share: every member that heard all of the
iteration's lines gets the same joined buffer, so the per-member work is
once per iteration, not once per line (what a C server does with one
C{writev} per client per round).

Members that take this path declare it (L{tcplab.interfaces.IRoomBatchMember}); any other
participant (a remote cluster member, a test's recorder, a program) keeps
getting one C{receive} per line.  What keeps a member's output in order:

  - Before anything addressed to a member alone (a command's reply, a
    private message, a notice, the history replayed on joining) is queued,
    the member takes the room's lines recorded so far (L{RoomFeed.catchUp},
    through L{tcplab.chat.hub.ChatHub.catchUp}), so it comes after them.
  - A member that joins while lines are recorded starts after them: it
    hears nothing said before it joined.
  - A member that leaves takes what was recorded while it was there first.
  - Lines are freed when the batch runs, once every member has its share:
    the feed holds at most one reactor iteration of lines.  What a member
    is sent then goes through its C{send}, which keeps the slow-consumer
    bound per member.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tcplab.chat import wire
from tcplab.chat.events import Delivery
from tcplab.interfaces import IRoomBatchMember

if TYPE_CHECKING:
    from tcplab.sending import WriteBatch

__all__ = ["IRoomBatchMember", "RoomFeed"]


class RoomFeed:
    """
    One room's broadcasts during the current reactor iteration, for the
    members that take them in batches (see the module docstring).

    @ivar members: the room's members, in joining order (the room's own
        mapping: the feed keeps no per-member table of its own).
    @ivar listeners: those of them that take one C{receive} per line
        instead, skipped here.
    @ivar size: how many members take the feed; nothing is recorded while
        there are none.
    """

    __slots__ = ("ahead", "batch", "excluded", "lines", "listeners", "members", "size")

    def __init__(
        self, batch: WriteBatch, members: Mapping[Any, None], listeners: Mapping[Any, None]
    ) -> None:
        self.batch = batch
        self.members = members
        self.listeners = listeners
        self.size = 0
        self.lines: list[bytes] = []
        """This iteration's lines, rendered, in order."""
        self.excluded: list[object] = []
        """For each line, the member that does not hear it (its sender), or L{None}."""
        self.ahead: dict[object, int] = {}
        """Members that already have the lines before this index (joined or caught up)."""

    def record(self, delivery: Delivery, exclude: object = None) -> None:
        """Record a broadcast (once for the whole room), due at the end of the iteration."""
        lines = self.lines
        if not lines:
            self.batch.addFlusher(self)
        lines.append(wire.render(delivery))
        self.excluded.append(exclude)

    def join(self, member: object) -> None:
        """A member joins: it hears what is recorded from now on."""
        self.size += 1
        if self.lines:
            self.ahead[member] = len(self.lines)

    def leave(self, member: object) -> None:
        """A member leaves: it takes what was recorded while it was here, and no more."""
        self.catchUp(member)
        self.ahead.pop(member, None)
        self.size -= 1

    def catchUp(self, member: Any) -> None:
        """Queue for C{member} now the lines recorded so far that it has not had."""
        lines = self.lines
        if not lines:
            return
        start = self.ahead.get(member, 0)
        self.ahead[member] = len(lines)
        data = self._share(member, start, lines, self.excluded)
        if data:
            self.batch.deliver(member, data)

    @staticmethod
    def _share(member: object, start: int, lines: list[bytes], excluded: list[object]) -> bytes:
        """The lines from C{start} on that C{member} hears, joined."""
        if start:
            lines, excluded = lines[start:], excluded[start:]
        return b"".join([line for line, who in zip(lines, excluded) if who is not member])

    def flush(self) -> None:
        """
        Give every member its share of this iteration's lines (called by the
        batch once per iteration, before it sends).  Everyone who heard all
        of them -- all but the senders and those who joined or caught up
        meanwhile -- gets the same buffer.
        """
        lines, excluded, ahead = self.lines, self.excluded, self.ahead
        if not lines:
            return
        self.lines, self.excluded, self.ahead = [], [], {}
        shared = lines[0] if len(lines) == 1 else b"".join(lines)
        special = {member for member in excluded if member is not None}
        special.update(ahead)
        listeners = self.listeners
        deliver = self.batch.deliver
        for member in self.members:
            if member in special:
                if listeners and member in listeners:
                    continue
                data = self._share(member, ahead.get(member, 0), lines, excluded)
                if data:
                    deliver(member, data)
            elif not listeners or member not in listeners:
                deliver(member, shared)
