"""
The chat's state and rules, free of any network code.

L{ChatHub} holds the rooms, each participant's nickname and room (in its
own records: participants are never written to), and each room's history.
It emits typed events (L{tcplab.chat.events}): one L{ChatEvent} object per
happening, handed to every member of the room concerned and to observers.
A participant is anything with a C{receive(delivery)} method -- the line
protocol renders what it receives as bytes; tests and other programs drive
the hub with plain objects.  A participant that declares
L{tcplab.interfaces.IRoomBatchMember} hears its room's broadcasts through
the room's feed instead (L{tcplab.chat.fanout}): recorded once per line,
handed out once per reactor iteration.

Embedding API (see the README for a bot)::

    hub.announce("#lobby", "backup starts in 5 minutes")   # server notice
    hub.post("#lobby", "weatherbot", "sunny, 21 C")          # a message as a nick
    unsubscribe = hub.observe(lambda event: print(event))    # every room event
    hub.usersIn("#lobby"), hub.rooms()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from twisted.logger import Logger

from tcplab.chat import names, wire
from tcplab.chat.events import (
    ChatEvent,
    EventKind,
    HistoryReplay,
    Notice,
    PrivateMessage,
)
from tcplab.chat.room import ChatParticipant, Room

__all__ = ["ChatError", "ChatEvent", "ChatHub", "ChatParticipant", "Room"]

DEFAULT_ROOM = "#lobby"
DEFAULT_HISTORY = 50
DEFAULT_ANNOUNCE_LIMIT = 1000
"""Rooms larger than this hear no join and leave notices (as Twitch chat does)."""
DEFAULT_MAX_ROOMS = 1000
"""Rooms that may exist at once (the default room included)."""
DEFAULT_ROOM_EXPIRY = 600.0
"""Seconds an empty room keeps its history before it is freed."""


class ChatError(Exception):
    """A request the hub refuses; the message is shown to the user."""


@dataclass(slots=True, eq=False)
class Member:
    """The hub's record of one participant."""

    participant: ChatParticipant
    nick: str
    key: str
    """L{names.nickKey} of the nickname: what uniqueness is decided on."""
    skeleton: str | None
    """
    L{names.skeleton} of the nickname: what look-alikes are caught with;
    L{None} for a guest whose skeleton is worked out from its nickname
    (L{names.GuestSkeletons}), which is then in no skeleton table.
    """
    room: Room | None = None


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
    @ivar maxRooms: how many rooms may exist at once (0: no limit); a new
        room past it is refused.
    @ivar roomExpiry: seconds an empty room keeps its history before the
        room is freed (an empty room without history goes at once).  The
        default room is never freed.
    """

    log = Logger()
    guestPrefix = "guest"
    """What guest nicknames start with (a cluster node adds its id)."""

    def __init__(
        self,
        historySize: int = DEFAULT_HISTORY,
        defaultRoom: str = DEFAULT_ROOM,
        clock: Callable[[], float] = time.time,
        announceLimit: int = DEFAULT_ANNOUNCE_LIMIT,
        maxRooms: int = DEFAULT_MAX_ROOMS,
        roomExpiry: float = DEFAULT_ROOM_EXPIRY,
    ) -> None:
        self.historySize = historySize
        self.announceLimit = announceLimit
        self.maxRooms = maxRooms
        self.roomExpiry = roomExpiry
        self.defaultRoom = wire.normalizeRoom(defaultRoom) or DEFAULT_ROOM
        self.clock = clock
        self._members: dict[ChatParticipant, Member] = {}
        self._nicks: dict[str, Member] = {}
        self._skeletons: dict[str, Member] = {}
        self._rooms: dict[str, Room] = {}
        self._emptySince: dict[str, float] = {}
        """Empty rooms with history, oldest first, with when they emptied."""
        self._observers: list[Callable[[ChatEvent], None]] = []
        self._guestNumbers = count(1)
        self._guestSkeletons = names.GuestSkeletons(self.guestPrefix)

    # Membership

    def connect(self, participant: ChatParticipant) -> str:
        """Give a new participant a free guest nickname and return it."""
        while True:
            nick = f"{self.guestPrefix}{next(self._guestNumbers)}"
            skeleton = names.skeleton(nick)
            if (
                nick not in self._nicks
                and skeleton not in self._skeletons
                and self._guestLookingLike(skeleton) is None
            ):
                break
        derived = self._guests().derived(nick) == skeleton
        member = Member(participant, nick, nick, None if derived else skeleton)
        self._members[participant] = member
        self._nicks[nick] = member
        if not derived:
            self._skeletons[skeleton] = member
        return nick

    def disconnect(self, participant: ChatParticipant, reason: str) -> None:
        """Remove a participant everywhere, telling its room why it left."""
        member = self._members.pop(participant, None)
        if member is None:
            return
        self._leaveRoom(member, wire.sanitize(reason))
        if self._nicks.get(member.key) is member:
            del self._nicks[member.key]
        if member.skeleton is not None and self._skeletons.get(member.skeleton) is member:
            del self._skeletons[member.skeleton]

    def join(self, participant: ChatParticipant, roomName: str, withHistory: bool = True) -> str:
        """
        Move a participant into a room (created on first use), replaying its
        history unless C{withHistory} is false; return the room's name.

        @raise ChatError: the room name is invalid, or the room would be new
            and there are too many.
        """
        member = self._member(participant)
        self._expireRooms()
        name = wire.normalizeRoom(roomName)
        if name is None:
            raise ChatError(f"invalid room name {roomName!r}: {wire.ROOM_RULES}")
        if member.room is not None and member.room.name == name:
            raise ChatError(f"you are already in {name}")
        room = self._room(name)
        self._leaveRoom(member, f"joined {name}")
        event = ChatEvent("join", name, member.nick, "", self.clock())
        self._announceArrivalOrDeparture(room, event)
        room.add(participant)
        self._emptySince.pop(name, None)
        member.room = room
        if withHistory and self.historySize:
            participant.receive(HistoryReplay(name, tuple(room.history)))
        # After the replay, so that what an observer says in answer (a bot's
        # greeting) reaches the newcomer once, live, and not again replayed.
        self._emit(event)
        return name

    def _leaveRoom(self, member: Member, reason: str) -> None:
        room = member.room
        if room is None:
            return
        room.remove(member.participant)
        member.room = None
        event = ChatEvent("leave", room.name, member.nick, reason, self.clock())
        self._announceArrivalOrDeparture(room, event)
        self._emit(event)
        if not room.members and room.name != self.defaultRoom:
            if room.history and self.roomExpiry > 0:
                self._emptySince[room.name] = self.clock()
            else:
                del self._rooms[room.name]

    def _announceArrivalOrDeparture(self, room: Room, event: ChatEvent) -> None:
        """Tell the room (not counting the one arriving or leaving), unless it is too big."""
        if not self.announceLimit or len(room.members) < self.announceLimit:
            room.broadcast(event)

    def rename(self, participant: ChatParticipant, nick: str) -> str:
        """
        Change a participant's nickname and return it as shown (NFKC).

        @raise ChatError: the nickname is invalid, taken (in any case or
            normalisation) or a look-alike of one in use; the old one stays.
        """
        member = self._member(participant)
        shown = names.normalizeNick(nick)
        if shown is None:
            raise ChatError(f"invalid nickname {nick!r}: {names.NICK_RULES}")
        holder = self.holderOf(shown)
        if holder is not None and holder is not member:
            if holder.key == names.nickKey(shown):
                raise ChatError(f"nickname {shown} is taken")
            raise ChatError(f"nickname {shown} looks too much like {holder.nick}, who is here")
        old = member.nick
        if old == shown:
            return shown
        del self._nicks[member.key]
        if member.skeleton is not None and self._skeletons.get(member.skeleton) is member:
            del self._skeletons[member.skeleton]
        key = names.nickKey(shown)
        member.nick, member.key = shown, shown if key == shown else key
        member.skeleton = names.skeleton(shown)
        self._nicks[member.key] = member
        self._skeletons[member.skeleton] = member
        room = member.room
        if room is not None:
            event = ChatEvent("nick", room.name, old, shown, self.clock())
            room.broadcast(event)
            self._emit(event)
        else:
            participant.receive(Notice(f"{old} is now known as {shown}"))
        return shown

    def holderOf(self, nick: str) -> Member | None:
        """Who holds C{nick}, or a nickname that looks like it; L{None} if nobody."""
        holder = self._nicks.get(names.nickKey(nick))
        if holder is not None:
            return holder
        shape = names.skeleton(nick)
        return self._skeletons.get(shape) or self._guestLookingLike(shape)

    def _guests(self) -> names.GuestSkeletons:
        """The guest skeletons for the current L{guestPrefix} (a cluster node sets its own)."""
        if self._guestSkeletons.prefix != self.guestPrefix:
            self._guestSkeletons = names.GuestSkeletons(self.guestPrefix)
        return self._guestSkeletons

    def _guestLookingLike(self, shape: str) -> Member | None:
        """The guest whose worked-out skeleton is C{shape}, if one is connected."""
        guestNick = self._guests().nickFor(shape)
        if guestNick is None:
            return None
        guest = self._nicks.get(guestNick)
        if guest is None or guest.skeleton is not None or guest.nick != guestNick:
            return None
        return guest

    # Talking

    def say(self, participant: ChatParticipant, text: str) -> None:
        """Relay an ordinary line from a participant to everyone else in its room."""
        member = self._member(participant)
        self._relay(self._roomOf(member), member, "message", text, member.nick)

    def act(self, participant: ChatParticipant, text: str) -> None:
        """Relay an action (C{/me waves}) to everyone else in the room."""
        member = self._member(participant)
        self._relay(self._roomOf(member), member, "action", text, member.nick)

    def whisper(self, participant: ChatParticipant, nick: str, text: str) -> None:
        """
        Send a private message to C{nick}.

        @raise ChatError: nobody has that nickname.
        """
        sender = self._member(participant)
        target = self._nicks.get(names.nickKey(nick))
        if target is None:
            raise ChatError(f"no such nickname: {wire.sanitize(nick)}")
        target.participant.receive(PrivateMessage(sender.nick, target.nick, text, False))
        participant.receive(PrivateMessage(sender.nick, target.nick, text, True))

    def announce(self, roomName: str, text: str) -> None:
        """Send a server notice to everyone in a room (for embedding programs)."""
        room = self._room(self._roomName(roomName))
        event = ChatEvent("announcement", room.name, None, wire.sanitize(text), self.clock())
        room.broadcast(event)
        self._emit(event)
        self._forgetIfUnused(room)

    def post(self, roomName: str, nick: str, text: str) -> None:
        """
        Post a message to a room as C{nick}, as if a member had said it (for
        bots and other programs); it is kept in the history.

        @raise ChatError: the nickname or the room name is invalid.
        """
        shown = names.normalizeNick(nick)
        if shown is None:
            raise ChatError(f"invalid nickname {nick!r}: {names.NICK_RULES}")
        room = self._room(self._roomName(roomName))
        self._relay(room, None, "message", wire.sanitize(text), shown)
        self._forgetIfUnused(room)

    def _relay(
        self, room: Room, sender: Member | None, kind: EventKind, text: str, nick: str
    ) -> None:
        event = ChatEvent(kind, room.name, nick, text, self.clock())
        room.broadcast(event, exclude=sender.participant if sender is not None else None)
        if self.historySize:
            room.history.append(event)
        self._emit(event)

    def catchUp(self, participant: ChatParticipant) -> None:
        """
        Queue for a participant that takes its room's broadcasts in batches
        (L{IRoomBatchMember}) what its room said so far this reactor
        iteration.  Such a participant calls this before it queues a line of
        its own, so the line comes after what the room said before it.
        """
        member = self._members.get(participant)
        if member is not None and member.room is not None:
            member.room.catchUp(participant)

    # Looking around

    def nickOf(self, participant: ChatParticipant) -> str:
        """A connected participant's nickname."""
        return self._member(participant).nick

    def roomOf(self, participant: ChatParticipant) -> str | None:
        """The name of the room a participant is in, if any."""
        room = self._member(participant).room
        return room.name if room is not None else None

    def usersIn(self, roomName: str) -> list[str]:
        """The nicknames in a room, in joining order."""
        room = self._rooms.get(wire.normalizeRoom(roomName) or "")
        return [self._members[p].nick for p in room.members] if room else []

    def rooms(self) -> dict[str, int]:
        """Every room with its number of members (empty rooms past their time are gone)."""
        self._expireRooms()
        return {name: len(room.members) for name, room in sorted(self._rooms.items())}

    def observe(self, observer: Callable[[ChatEvent], None]) -> Callable[[], None]:
        """Call C{observer} with every L{ChatEvent}; return a function that stops it."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    # Internals

    def _member(self, participant: ChatParticipant) -> Member:
        member = self._members.get(participant)
        if member is None:
            raise ChatError("not connected")
        return member

    def _roomName(self, roomName: str) -> str:
        name = wire.normalizeRoom(roomName)
        if name is None:
            raise ChatError(f"invalid room name {roomName!r}: {wire.ROOM_RULES}")
        return name

    def _room(self, name: str) -> Room:
        """The room called C{name} (normalised), created if there is room for it."""
        room = self._rooms.get(name)
        if room is not None:
            return room
        self._expireRooms()
        if self.maxRooms and len(self._rooms) >= self.maxRooms and name != self.defaultRoom:
            raise ChatError(
                f"too many rooms (at most {self.maxRooms}); join an existing one (/rooms)"
            )
        room = self._rooms[name] = Room(name, self.historySize)
        return room

    def _forgetIfUnused(self, room: Room) -> None:
        """A room that a program spoke to without members keeps only what a left room would."""
        if room.members or room.name == self.defaultRoom or room.name in self._emptySince:
            return
        if room.history and self.roomExpiry > 0:
            self._emptySince[room.name] = self.clock()
        else:
            del self._rooms[room.name]

    def _expireRooms(self) -> None:
        """Free the empty rooms whose history has been kept long enough."""
        deadline = self.clock() - self.roomExpiry
        while self._emptySince:
            name, since = next(iter(self._emptySince.items()))
            if since > deadline:
                break
            del self._emptySince[name]
            self._rooms.pop(name, None)

    def _roomOf(self, member: Member) -> Room:
        if member.room is None:
            raise ChatError("you are not in a room: /join ROOM")
        return member.room

    def _emit(self, event: ChatEvent) -> None:
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                # An observer's failure (a full disk under the chat log, a
                # buggy bot) is the operator's problem, never the sender's.
                self.log.failure("chat observer {observer!r} failed", observer=observer)
