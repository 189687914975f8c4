"""
One chat across several processes: the hub's side of C{--cluster}.

L{ClusterHub} is a L{ChatHub} that tells a bus (L{IClusterBus}, in practice
L{tcplab.chat.clusterlink.ClusterLink} over Redis) about everything its own
participants do -- connecting, joining, renaming, talking, leaving -- and
applies what the other nodes publish.  A member on another node is a
L{RemoteMember} in this hub's rooms: C{/who}, nickname uniqueness, join and
leave notices and history work as on one node, and a private message to a
remote member is handed to the bus by that member.

Every record names its member by an id (C{NODE.N}), not by nickname, so a
rename that loses a race for a nickname, or one that arrives late, never
confuses who is who.
"""

# IClusterBus is a zope Interface: its methods take no self.
# ruff: noqa: N805

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from itertools import count
from typing import Any

from twisted.logger import Logger
from zope.interface import Attribute, Interface

from tcplab.chat import names, wire
from tcplab.chat.events import ChatEvent, Delivery, EventKind, Notice, PrivateMessage
from tcplab.chat.hub import ChatError, ChatHub, ChatParticipant

__all__ = ["ClusterHub", "IClusterBus", "RemoteMember", "newNodeId"]

LINK_LOST = "link to other servers lost; you are still talking to users on this server"
LINK_BACK = "link to other servers restored"


def newNodeId() -> str:
    """A random node id: four hex digits, also the prefix of this node's guest names."""
    return os.urandom(2).hex()


class IClusterBus(Interface):
    """Where a L{ClusterHub} sends what its own participants do."""

    up = Attribute("Whether the link to the other nodes is up.")

    def publish(
        record: Mapping[str, object],
        member: tuple[str, str, str] | None = None,
        history: tuple[str, str] | None = None,
    ) -> None:
        """
        Send C{record} to every node, in order; C{member} is C{(op, id,
        value)} for the members table (op C{set} or C{del}), C{history} is
        C{(room, entry)} to append to a room's shared history.
        """

    def claim(
        record: Mapping[str, object],
        memberId: str,
        memberValue: str,
        newKey: str,
        oldKey: str,
        answer: Callable[[bool], None],
    ) -> None:
        """Claim nickname key C{newKey}; if ours, send C{record}; C{answer} says which."""

    def quit(record: Mapping[str, object], memberId: str, key: str) -> None:
        """Send C{record}, forget the member and release its nickname key."""


class RemoteMember:
    """A participant on another node, as this hub sees it."""

    __slots__ = ("hub", "memberId", "node")

    def __init__(self, hub: ClusterHub, memberId: str, node: str) -> None:
        self.hub = hub
        self.memberId = memberId
        self.node = node

    def receive(self, delivery: Delivery) -> None:
        """Room events reach it on its own node; a private message is forwarded there."""
        if isinstance(delivery, PrivateMessage) and not delivery.echo:
            self.hub.forwardPrivate(self.memberId, delivery)

    def __repr__(self) -> str:
        return f"<RemoteMember {self.memberId}>"


class ClusterHub(ChatHub):
    """
    A L{ChatHub} that is one node of a cluster.

    @ivar node: this node's id.
    @ivar bus: where this node's own happenings go (set by the link).
    """

    log = Logger()

    # Any: ChatHub's own parameters, passed through unchanged.
    def __init__(self, *args: Any, node: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node = node or newNodeId()
        self.guestPrefix = f"guest{self.node}-"
        self.bus: IClusterBus | None = None
        self._serials = count(1)
        self._ids: dict[ChatParticipant, str] = {}
        self._local: dict[str, ChatParticipant] = {}
        self._remote: dict[str, RemoteMember] = {}
        self._seen: dict[str, int] = {}
        """The last sequence number applied from each node (duplicates are dropped)."""

    # This node's own participants: the hub's rules, then the bus.

    def connect(self, participant: ChatParticipant) -> str:
        """A new local participant: a guest name, claimed cluster-wide."""
        nick = super().connect(participant)
        memberId = f"{self.node}.{next(self._serials)}"
        self._ids[participant] = memberId
        self._local[memberId] = participant
        self._claim(participant, nick, "")
        return nick

    def disconnect(self, participant: ChatParticipant, reason: str) -> None:
        """A local participant left: everyone forgets it."""
        memberId = self._ids.pop(participant, None)
        if memberId is None or isinstance(participant, RemoteMember):
            super().disconnect(participant, reason)
            return
        nick = self.nickOf(participant)
        super().disconnect(participant, reason)
        del self._local[memberId]
        if self.bus is not None:
            record = {"k": "quit", "id": memberId, "reason": wire.sanitize(reason)}
            self.bus.quit(record, memberId, names.skeleton(nick))

    def join(self, participant: ChatParticipant, roomName: str, withHistory: bool = True) -> str:
        """Join locally, then tell the others."""
        name = super().join(participant, roomName, withHistory)
        memberId = self._ids.get(participant)
        if memberId is not None and self.bus is not None:
            record = {"k": "join", "id": memberId, "nick": self.nickOf(participant), "room": name}
            self.bus.publish(record, ("set", memberId, self._memberValue(participant)))
        return name

    def rename(self, participant: ChatParticipant, nick: str) -> str:
        """Rename locally, then claim the nickname cluster-wide (see L{_claim})."""
        old = self.nickOf(participant)
        shown = super().rename(participant, nick)
        if shown != old and participant in self._ids:
            self._claim(participant, shown, old)
        return shown

    def _claim(self, participant: ChatParticipant, nick: str, old: str) -> None:
        """
        Claim C{nick} for a local participant; if another node holds it, go
        back to C{old} (or a new guest name) and say why.
        """
        if self.bus is None:
            return
        memberId = self._ids[participant]
        record = {"k": "nick", "id": memberId, "nick": nick, "room": self.roomOf(participant)}

        def answer(ours: bool) -> None:
            if ours or participant not in self._ids or self.nickOf(participant) != nick:
                return
            self.log.info("nickname {nick} is held on another server", nick=nick)
            fallback = old or self._guestName()
            try:
                ChatHub.rename(self, participant, fallback)
            except ChatError:
                fallback = self._guestName()
                ChatHub.rename(self, participant, fallback)
            participant.receive(
                Notice(f"nickname {nick} is taken on another server; you are {fallback}")
            )
            self._claim(participant, fallback, nick)

        oldKey = names.skeleton(old) if old else names.skeleton(nick)
        self.bus.claim(
            record,
            memberId,
            self._memberValue(participant, nick),
            names.skeleton(nick),
            oldKey,
            answer,
        )

    def _guestName(self) -> str:
        while True:
            nick = f"{self.guestPrefix}{next(self._guestNumbers)}"
            if self.holderOf(nick) is None:
                return nick

    def say(self, participant: ChatParticipant, text: str) -> None:
        """Relay locally and to the other nodes (kept in the shared history)."""
        super().say(participant, text)
        self._published(participant, "message", text)

    def act(self, participant: ChatParticipant, text: str) -> None:
        """An action, locally and on the other nodes."""
        super().act(participant, text)
        self._published(participant, "action", text)

    def _published(self, participant: ChatParticipant, kind: str, text: str) -> None:
        memberId = self._ids.get(participant)
        if memberId is None or self.bus is None:
            return
        room = self.roomOf(participant) or ""
        nick = self.nickOf(participant)
        when = self.clock()
        record = {"k": kind, "id": memberId, "nick": nick, "room": room, "text": text, "t": when}
        entry = json.dumps({"k": kind, "nick": nick, "text": text, "t": when})
        self.bus.publish(record, history=(room, entry) if self.historySize else None)

    def announce(self, roomName: str, text: str) -> None:
        """A server notice to a room on every node."""
        super().announce(roomName, text)
        if self.bus is not None:
            self.bus.publish({"k": "announce", "room": self._roomName(roomName), "text": text})

    def post(self, roomName: str, nick: str, text: str) -> None:
        """A program's message to a room on every node (kept in the shared history)."""
        super().post(roomName, nick, text)
        if self.bus is not None:
            room, when = self._roomName(roomName), self.clock()
            shown = names.normalizeNick(nick) or nick
            record = {"k": "post", "room": room, "nick": shown, "text": text, "t": when}
            entry = json.dumps({"k": "message", "nick": shown, "text": text, "t": when})
            self.bus.publish(record, history=(room, entry) if self.historySize else None)

    def forwardPrivate(self, memberId: str, message: PrivateMessage) -> None:
        """A private message for a member on another node goes over the bus."""
        if self.bus is not None:
            record = {"k": "pm", "to": memberId, "from": message.sender, "text": message.text}
            self.bus.publish(record)

    def _memberValue(self, participant: ChatParticipant, nick: str | None = None) -> str:
        return json.dumps(
            {"nick": nick or self.nickOf(participant), "room": self.roomOf(participant)}
        )

    def localClaims(self) -> dict[str, ChatParticipant]:
        """The nickname keys this node's participants hold, for the heartbeat."""
        return {names.skeleton(self.nickOf(p)): p for p in self._ids}

    # What the other nodes did.

    def apply(self, node: str, seq: int, record: Mapping[str, object]) -> None:
        """Apply one record from another node (once: duplicates are dropped)."""
        if node == self.node or seq <= self._seen.get(node, 0):
            return
        self._seen[node] = seq
        try:
            self._apply(node, record)
        except ChatError as e:
            self.log.info("cluster record from {node} not applied: {why}", node=node, why=e)

    def _apply(self, node: str, record: Mapping[str, object]) -> None:
        kind = record.get("k")
        if kind == "pm":
            target = self._local.get(str(record.get("to")))
            if target is not None:
                sender = wire.sanitize(str(record.get("from", "?")))
                target.receive(
                    PrivateMessage(
                        sender, self.nickOf(target), wire.sanitize(str(record["text"])), False
                    )
                )
            return
        if kind == "announce":
            ChatHub.announce(self, str(record["room"]), str(record["text"]))
            return
        if kind == "post":
            ChatHub.post(self, str(record["room"]), str(record["nick"]), str(record["text"]))
            return
        memberId = str(record.get("id"))
        if kind == "quit":
            stub = self._remote.pop(memberId, None)
            if stub is not None:
                ChatHub.disconnect(self, stub, str(record.get("reason", "quit")))
            return
        stub = self._stub(node, memberId, record.get("nick"))
        if kind == "nick":
            ChatHub.rename(self, stub, str(record["nick"]))
        elif kind == "join":
            ChatHub.join(self, stub, str(record["room"]), withHistory=False)
        elif kind in ("message", "action"):
            room = record.get("room")
            if isinstance(room, str) and room and self.roomOf(stub) != room:
                # Its join was lost with a Redis that restarted empty.
                ChatHub.join(self, stub, room, withHistory=False)
            if self.roomOf(stub) is None:
                return
            text = wire.sanitize(str(record["text"]))
            if kind == "message":
                ChatHub.say(self, stub, text)
            else:
                ChatHub.act(self, stub, text)

    def _stub(self, node: str, memberId: str, nick: object) -> RemoteMember:
        """The local stand-in of a remote member, made (and named) on first sight."""
        stub = self._remote.get(memberId)
        if stub is None:
            stub = self._remote[memberId] = RemoteMember(self, memberId, node)
            ChatHub.connect(self, stub)
            if isinstance(nick, str):
                try:
                    ChatHub.rename(self, stub, nick)
                except ChatError as e:
                    self.log.info(
                        "remote member {id} keeps a guest name: {why}", id=memberId, why=e
                    )
        return stub

    def addRemote(self, node: str, memberId: str, nick: str, room: str | None) -> None:
        """A member another node had before we started (from its members table)."""
        if memberId in self._remote:
            return
        stub = self._stub(node, memberId, nick)
        if room:
            try:
                ChatHub.join(self, stub, room, withHistory=False)
            except ChatError as e:
                self.log.info("remote member {id} not placed: {why}", id=memberId, why=e)

    def nodeGone(self, node: str) -> None:
        """A node stopped beating: its members are gone."""
        for memberId, stub in list(self._remote.items()):
            if stub.node == node:
                del self._remote[memberId]
                ChatHub.disconnect(self, stub, "server gone")

    def remoteNodes(self) -> set[str]:
        """The other nodes this one knows members of."""
        return {stub.node for stub in self._remote.values()}

    def seedHistory(self, roomName: str, entries: list[str]) -> None:
        """A room's shared history, read from Redis by a node that starts."""
        name = wire.normalizeRoom(roomName)
        if name is None or not self.historySize:
            return
        room = self._room(name)
        if room.history:
            return
        for raw in entries:
            try:
                entry = json.loads(raw)
                kind: EventKind = "action" if entry.get("k") == "action" else "message"
                nick, text = wire.sanitize(str(entry["nick"])), wire.sanitize(str(entry["text"]))
                event = ChatEvent(kind, name, nick, text, float(entry["t"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                self.log.warn("bad history entry in Redis for {room} skipped", room=name)
                continue
            room.history.append(event)
        self._forgetIfUnused(room)

    def reannounce(self) -> None:
        """
        After an outage, tell the others again who is here (they may have
        shown this node's users as gone): each member's nickname and room.
        """
        if self.bus is None:
            return
        for participant, memberId in list(self._ids.items()):
            room = self.roomOf(participant)
            if room is not None:
                record = {
                    "k": "join",
                    "id": memberId,
                    "nick": self.nickOf(participant),
                    "room": room,
                }
                self.bus.publish(record, ("set", memberId, self._memberValue(participant)))

    def tellLocal(self, text: str) -> None:
        """A notice to every participant on this node."""
        notice = Notice(text)
        for participant in list(self._local.values()):
            participant.receive(notice)

    def renameLocal(self, key: str, participant: ChatParticipant) -> None:
        """After an outage another node holds this participant's nickname: rename it."""
        if participant not in self._ids:
            return
        nick = self.nickOf(participant)
        if names.skeleton(nick) != key:
            return
        fallback = self._guestName()
        ChatHub.rename(self, participant, fallback)
        participant.receive(
            Notice(
                f"nickname {nick} was taken on another server while the link was down; "
                f"you are {fallback}"
            )
        )
        self._claim(participant, fallback, nick)
