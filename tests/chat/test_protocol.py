"""Tests for L{tcplab.chat.protocol}, with in-memory transports and a fake clock."""

from __future__ import annotations

from twisted.cred import strcred
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tcplab.auth import Authenticator
from tcplab.chat import ChatFactory, ChatHub
from tcplab.chat.protocol import ChatProtocol


class Client:
    """One in-memory chat connection."""

    def __init__(self, factory: ChatFactory, port: int = 1000) -> None:
        address = IPv4Address("TCP", "127.0.0.1", port)
        self.protocol: ChatProtocol = factory.buildProtocol(address)  # type: ignore[assignment]
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)

    def send(self, *lines: str) -> None:
        self.protocol.dataReceived("".join(f"{line}\n" for line in lines).encode())

    def lines(self) -> list[str]:
        self.protocol.factory.reactor.advance(0)  # the end of the reactor iteration
        data = self.transport.value().decode()
        self.transport.clear()
        return data.split("\r\n")[:-1]


def makeFactory(**kwargs: object) -> tuple[ChatFactory, Clock]:
    clock = Clock()
    return ChatFactory(ChatHub(clock=clock.seconds), reactor=clock, **kwargs), clock  # type: ignore[arg-type]


def test_welcome_then_join_with_history_after_delay() -> None:
    """A client is greeted with its guest nick and joins the lobby after the join delay."""
    factory, clock = makeFactory()
    client = Client(factory)
    assert client.lines() == ["*** Welcome to tcplab chat, guest1. Type /help for commands."]
    clock.advance(0.3)
    assert client.lines() == ["*** end of history"]
    assert factory.hub.usersIn("#lobby") == ["guest1"]


def test_nohistory_first_line_skips_replay() -> None:
    """A bot's first line /nohistory joins without the replay."""
    factory, clock = makeFactory()
    talker = Client(factory)
    talker.send("/nick alice", "remember me")
    bot = Client(factory, 1001)
    bot.lines()
    bot.send("/nohistory")
    clock.advance(1)
    assert bot.lines() == []
    assert factory.hub.usersIn("#lobby") == ["alice", "guest2"]


def test_long_line_refused_connection_kept() -> None:
    """An over-long line gets an error, is not relayed, and the connection stays."""
    factory, clock = makeFactory(maxLine=20)
    alice, bob = Client(factory), Client(factory, 1001)
    clock.advance(1)
    alice.lines(), bob.lines()
    alice.send("x" * 100, "short")
    assert alice.lines() == ["*** error: line too long (100 bytes, at most 20); not sent"]
    assert bob.lines() == ["<guest1> short"]
    assert not alice.transport.disconnecting


def test_flood_warned_then_disconnected() -> None:
    """Past the burst a client is told to wait; flooding on gets it disconnected."""
    factory, clock = makeFactory(floodRate=1, floodBurst=10)
    flooder, other = Client(factory), Client(factory, 1001)
    clock.advance(1)
    flooder.lines(), other.lines()
    flooder.send(*[f"line {n}" for n in range(12)])
    assert len(other.lines()) == 10, "a burst of 10 goes through"
    assert flooder.lines() == ["*** error: slow down: wait 1.0s (that line was not sent)"]
    assert not flooder.transport.disconnecting
    flooder.send(*[f"more {n}" for n in range(40)])
    assert flooder.transport.disconnecting
    assert "*** error: disconnected for flooding" in flooder.lines()
    assert other.lines() == ["*** guest1 left #lobby (flooding)"]


def test_flood_control_off_with_zero_rate() -> None:
    """--flood-rate 0 disables flood control."""
    factory, clock = makeFactory(floodRate=0)
    a, b = Client(factory), Client(factory, 1001)
    clock.advance(1)
    b.lines()
    a.send(*[f"n{i}" for i in range(100)])
    assert len(b.lines()) == 100


def test_slow_consumer_cut_past_bound() -> None:
    """A client whose transport paused us is cut once its queued output passes the bound."""
    factory, clock = makeFactory(maxPending=1000, floodRate=0)
    talker, sleeper = Client(factory), Client(factory, 1001)
    clock.advance(1)
    sleeper.protocol.pauseProducing()  # what the transport does when its buffer is full
    for n in range(30):
        talker.send(f"message number {n} " + "x" * 20)
        clock.advance(0)  # each line in its own reactor iteration
    assert sleeper.transport.disconnected, "aborted, not left to grow"
    queued = len(sleeper.transport.value())
    talker.send("after the cut")
    clock.advance(0)
    assert len(sleeper.transport.value()) == queued, "nothing more is queued for it"
    assert not talker.transport.disconnecting


def test_slow_consumer_recovers_when_resumed() -> None:
    """A client that catches up is not cut: the count restarts when it resumes."""
    factory, clock = makeFactory(maxPending=1000, floodRate=0)
    talker, reader = Client(factory), Client(factory, 1001)
    clock.advance(1)
    for _ in range(5):
        reader.protocol.pauseProducing()
        for n in range(10):
            talker.send(f"message {n} " + "x" * 40)
        reader.protocol.resumeProducing()
    assert not reader.transport.disconnected


def test_exit_and_quit() -> None:
    """The bare line 'exit' and /quit both say bye and close, announcing the reason."""
    factory, clock = makeFactory()
    a, b, c = Client(factory), Client(factory, 1001), Client(factory, 1002)
    clock.advance(1)
    c.lines()
    a.send("exit")
    b.send("/quit gone fishing")
    assert a.transport.disconnecting and b.transport.disconnecting
    assert c.lines() == [
        "*** guest1 left #lobby (exit)",
        "*** guest2 left #lobby (quit: gone fishing)",
    ]


def test_unknown_command_and_usage_errors() -> None:
    """Unknown commands and malformed ones get one-line errors."""
    factory, clock = makeFactory()
    a = Client(factory)
    clock.advance(1)
    a.lines()
    a.send("/frobnicate", "/msg bob", "/me", "/join")
    assert a.lines() == [
        "*** error: unknown command /frobnicate; try /help",
        "*** error: usage: /msg NICK TEXT",
        "*** error: usage: /me ACTION",
        "*** error: usage: /join ROOM [nohistory]",
    ]


def test_help_lists_commands() -> None:
    """/help lists every command as notices."""
    factory, clock = makeFactory()
    a = Client(factory)
    clock.advance(1)
    a.lines()
    a.send("/help")
    text = "\n".join(a.lines())
    for command in ["/nick", "/who", "/msg", "/me", "/join", "/rooms", "/quit"]:
        assert command in text


def test_registered_nick_needs_password() -> None:
    """With --auth, a nickname that is an account needs its password."""
    clock = Clock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock)
    factory = ChatFactory(ChatHub(), authenticator=auth, reactor=clock)
    mallory, alice = Client(factory), Client(factory, 1001)
    clock.advance(1)
    mallory.lines(), alice.lines()
    mallory.send("/nick alice")
    assert mallory.lines() == ["*** error: alice is a registered nickname: /nick alice PASSWORD"]
    mallory.send("/nick alice guess")
    clock.advance(1)
    assert mallory.lines() == ["*** error: wrong password for alice"]
    alice.send("/nick alice secret")
    assert alice.protocol.nick == "alice"
    assert mallory.protocol.nick == "guest1"
