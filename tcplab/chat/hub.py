"""
The chat's state and rules, free of any network code.

L{ChatHub} holds the rooms, the nicknames and each room's history, and does
the relaying: a message is formatted once into bytes and handed to every
member's C{deliver}.  Line protocols are members; so can be anything else
with a C{nick}, a C{room} and a C{deliver(bytes)} -- which is how tests and
other programs drive the hub without sockets.

Embedding API (see the README for a bot)::

    hub.announce("#lobby", "backup starts in 5 minutes")   # server notice
    hub.post("#lobby", "weatherbot", "sunny, 21 C")          # a message as a nick
    unsubscribe = hub.observe(lambda event: print(event))    # every room event
    hub.usersIn("#lobby"), hub.rooms()
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Protocol

from tcplab.chat import text as wire

DEFAULT_ROOM = "#lobby"
DEFAULT_HISTORY = 50
DEFAULT_ANNOUNCE_LIMIT = 1000
"""Rooms larger than this hear no join and leave notices (as Twitch chat does)."""


class ChatError(Exception):
    """A request the hub refuses; the message is shown to the user."""


class ChatMember(Protocol):
    """What the hub needs of a participant."""

    nick: str
    room: Room | None

    def deliver(self, data: bytes) -> None:
        """Send one or more formatted lines to this participant."""


@dataclass(frozen=True)
class ChatEvent:
    """
    Something that happened in a room, as observers see it.

    @ivar kind: C{message}, C{action}, C{announcement}, C{join}, C{leave}
        or C{nick}.
    @ivar text: the (sanitised) text; for C{nick}, the new nickname.
    """

    kind: str
    room: str
    nick: str | None
    text: str
    time: float


@dataclass(eq=False)
class Room:
    """A room: its members, in joining order, and its recent history."""

    name: str
    historySize: int
    members: dict[ChatMember, None] = field(default_factory=dict)
    history: deque[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.historySize)

    def broadcast(self, data: bytes, exclude: ChatMember | None = None) -> None:
        """Deliver C{data} to every member but C{exclude}."""
        for member in self.members:
            if member is not exclude:
                member.deliver(data)


class ChatHub:
    """
    Rooms, nicknames, history and relaying for one chat service.

    @ivar historySize: how many messages a newcomer to a room is shown
        (0 disables history).
    @ivar announceLimit: join and leave notices go to rooms of at most this
        many members (0: to every room).  Each notice reaches everyone in
        the room, so announcing every arrival costs the square of the room's
        size: in a room of thousands, mostly idle, that is all the server
        would do.  C{/who} still tells who is there, and observers still
        see every join and leave.
    """

    def __init__(
        self,
        historySize: int = DEFAULT_HISTORY,
        defaultRoom: str = DEFAULT_ROOM,
        clock: Callable[[], float] = time.time,
        announceLimit: int = DEFAULT_ANNOUNCE_LIMIT,
    ) -> None:
        self.historySize = historySize
        self.announceLimit = announceLimit
        self.defaultRoom = defaultRoom
        self.clock = clock
        self.nicks: dict[str, ChatMember] = {}
        self._rooms: dict[str, Room] = {}
        self._observers: list[Callable[[ChatEvent], None]] = []
        self._guestNumbers = count(1)

    # Membership

    def connect(self, member: ChatMember) -> str:
        """Give a new participant a free guest nickname and return it."""
        while True:
            nick = f"guest{next(self._guestNumbers)}"
            if nick not in self.nicks:  # already folded
                break
        member.nick = nick
        member.room = None
        self.nicks[nick] = member
        return nick

    def disconnect(self, member: ChatMember, reason: str) -> None:
        """Remove a participant everywhere, telling its room why it left."""
        self._leaveRoom(member, reason)
        if self.nicks.get(member.nick.casefold()) is member:
            del self.nicks[member.nick.casefold()]

    def join(self, member: ChatMember, roomName: str, withHistory: bool = True) -> Room:
        """
        Move C{member} into a room (created on first use), replaying its
        history unless C{withHistory} is false.

        @raise ChatError: the room name is invalid.
        """
        name = wire.normalizeRoom(roomName)
        if name is None:
            raise ChatError(f"invalid room name {roomName!r}")
        if member.room is not None and member.room.name == name:
            raise ChatError(f"you are already in {name}")
        self._leaveRoom(member, f"joined {name}")
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self.historySize)
        self._announceArrivalOrDeparture(room, f"{member.nick} joined {name}")
        room.members[member] = None
        member.room = room
        self._emit("join", room, member.nick, "")
        if withHistory and self.historySize:
            replay = b"".join(room.history) + wire.line(wire.END_OF_HISTORY)
            member.deliver(replay)
        return room

    def _leaveRoom(self, member: ChatMember, reason: str) -> None:
        room = member.room
        if room is None:
            return
        room.members.pop(member, None)
        member.room = None
        self._announceArrivalOrDeparture(room, f"{member.nick} left {room.name} ({reason})")
        self._emit("leave", room, member.nick, reason)
        if not room.members and not room.history and room.name != self.defaultRoom:
            del self._rooms[room.name]

    def _announceArrivalOrDeparture(self, room: Room, text: str) -> None:
        """Tell the room (not counting the one arriving or leaving), unless it is too big."""
        if not self.announceLimit or len(room.members) < self.announceLimit:
            room.broadcast(wire.notice(text))

    def rename(self, member: ChatMember, nick: str) -> None:
        """
        Change C{member}'s nickname (unique ignoring case).

        @raise ChatError: the nickname is invalid or taken; the old one stays.
        """
        if not wire.isValidNick(nick):
            raise ChatError(f"invalid nickname {nick!r}: {wire.NICK_RULES}")
        holder = self.nicks.get(nick.casefold())
        if holder is not None and holder is not member:
            raise ChatError(f"nickname {nick} is taken")
        old = member.nick
        if old == nick:
            return
        del self.nicks[old.casefold()]
        key = nick.casefold()
        self.nicks[nick if key == nick else key] = member  # one string when equal
        member.nick = nick
        if member.room is not None:
            member.room.broadcast(wire.notice(f"{old} is now known as {nick}"))
            self._emit("nick", member.room, old, nick)
        else:
            member.deliver(wire.notice(f"you are now known as {nick}"))

    # Talking

    def say(self, member: ChatMember, text: str) -> None:
        """Relay an ordinary line from C{member} to everyone else in its room."""
        room = self._roomOf(member)
        self._relay(room, member, f"<{member.nick}> {text}", "message", text)

    def act(self, member: ChatMember, text: str) -> None:
        """Relay an action (C{/me waves}) to everyone else in the room."""
        room = self._roomOf(member)
        self._relay(room, member, f"* {member.nick} {text}", "action", text)

    def whisper(self, member: ChatMember, nick: str, text: str) -> None:
        """
        Send a private message to C{nick}.

        @raise ChatError: nobody has that nickname.
        """
        target = self.nicks.get(nick.casefold())
        if target is None:
            raise ChatError(f"no such nickname: {nick}")
        target.deliver(wire.line(f"[private] <{member.nick}> {text}"))
        member.deliver(wire.line(f"[private to {target.nick}] {text}"))

    def announce(self, roomName: str, text: str) -> None:
        """Send a server notice to everyone in a room (for embedding programs)."""
        room = self._room(roomName)
        text = wire.sanitize(text)
        room.broadcast(wire.notice(text))
        self._emit("announcement", room, None, text)

    def post(self, roomName: str, nick: str, text: str) -> None:
        """
        Post a message to a room as C{nick}, as if a member had said it (for
        bots and other programs); it is kept in the history.

        @raise ChatError: the nickname or the room name is invalid.
        """
        if not wire.isValidNick(nick):
            raise ChatError(f"invalid nickname {nick!r}: {wire.NICK_RULES}")
        text = wire.sanitize(text)
        self._relay(self._room(roomName), None, f"<{nick}> {text}", "message", text, nick)

    def _relay(
        self,
        room: Room,
        sender: ChatMember | None,
        formatted: str,
        kind: str,
        text: str,
        nick: str | None = None,
    ) -> None:
        data = wire.line(formatted)
        room.broadcast(data, exclude=sender)
        now = self.clock()
        if self.historySize:
            room.history.append(wire.line(f"[{wire.timestamp(now)}] {formatted}"))
        if self._observers:
            self._emit(kind, room, nick or (sender.nick if sender else None), text, now)

    # Looking around

    def usersIn(self, roomName: str) -> list[str]:
        """The nicknames in a room, in joining order."""
        name = wire.normalizeRoom(roomName)
        room = self._rooms.get(name or "")
        return [m.nick for m in room.members] if room else []

    def rooms(self) -> dict[str, int]:
        """Every room with its number of members."""
        return {name: len(room.members) for name, room in sorted(self._rooms.items())}

    def observe(self, observer: Callable[[ChatEvent], None]) -> Callable[[], None]:
        """Call C{observer} with every L{ChatEvent}; return a function that stops it."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _room(self, roomName: str) -> Room:
        name = wire.normalizeRoom(roomName)
        if name is None:
            raise ChatError(f"invalid room name {roomName!r}")
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self.historySize)
        return room

    def _roomOf(self, member: ChatMember) -> Room:
        if member.room is None:
            raise ChatError("you are not in a room: /join ROOM")
        return member.room

    def _emit(
        self, kind: str, room: Room, nick: str | None, text: str, when: float | None = None
    ) -> None:
        if self._observers:
            event = ChatEvent(kind, room.name, nick, text, when or self.clock())
            for observer in list(self._observers):
                observer(event)
