"""
In-memory chat users for protocol tests: a L{ChatFactory} on a memory clock
and clients connected to it over tests/memory.py, read line by line.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock

from tcplab.chat import ChatFactory, ChatHub
from tcplab.chat.protocol import ChatProtocol
from tests.memory import MemoryConnection, connectInMemory


class User:
    """One in-memory chat connection, read line by line."""

    def __init__(self, chat: Chat, connection: MemoryConnection) -> None:
        self.chat = chat
        self.connection = connection
        self.protocol: ChatProtocol = connection.server
        self.seen = 0

    def send(self, *lines: str | bytes) -> None:
        """Send C{lines}, then let every connection move its bytes."""
        data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
        self.connection.clientSends(data)
        self.chat.flush()

    def lines(self) -> list[str]:
        """The lines received since the last call."""
        self.chat.flush()
        data = self.connection.received()
        new, self.seen = data[self.seen :], len(data)
        return new.decode().split("\r\n")[:-1]

    @property
    def closed(self) -> bool:
        """Whether the connection is gone."""
        return bool(self.connection.client.closed.called)


class Chat:
    """A chat factory on a memory clock, and users connected to it."""

    def __init__(self, hub: ChatHub | None = None, **kwargs: Any) -> None:
        self.clock = MemoryReactorClock()
        self.hub = hub if hub is not None else ChatHub(clock=self.clock.seconds)
        self.factory = ChatFactory(self.hub, reactor=self.clock, **kwargs)
        self.ports = iter(range(40000, 50000))
        self.users: list[User] = []

    def connect(self) -> User:
        """A new user connected from its own port."""
        peer = IPv4Address("TCP", "127.0.0.1", next(self.ports))
        user = User(self, connectInMemory(self.factory, clock=self.clock, peer=peer))
        self.users.append(user)
        return user

    def flush(self) -> None:
        """Move bytes on every connection until none moves (one pump per connection)."""
        while any([user.connection.pump.flush() for user in self.users]):
            pass

    def joined(self, *nicks: str) -> list[User]:
        """Users that picked C{nicks} as their first line, with what they saw cleared."""
        users = []
        for nick in nicks:
            user = self.connect()
            user.send(f"/nick {nick}")
            users.append(user)
        self.advance(1)
        for user in users:
            user.lines()
        return users

    def advance(self, seconds: float) -> None:
        """Let C{seconds} pass, then move every byte."""
        self.clock.advance(seconds)
        self.flush()
