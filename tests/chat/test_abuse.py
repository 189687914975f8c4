"""Chat scenarios in memory: fan-out, hostile bytes, vanishing clients and connection limits."""

from __future__ import annotations

from twisted.internet.address import IPv4Address

from tcplab.observe import ConnectionObserver
from tests.chat.memorychat import Chat, User
from tests.memory import connectInMemory


def test_fan_out_to_many() -> None:
    """One line reaches each of sixty users exactly once, as one shared buffer."""
    chat = Chat(floodRate=0)
    users = chat.joined(*[f"u{n}" for n in range(60)])
    users[0].send("to everyone")
    for other in users[1:]:
        assert other.lines() == ["<u0> to everyone"]
    assert users[0].lines() == []


def test_escape_sequences_never_relayed() -> None:
    """Terminal escapes and control bytes sent by one user never reach another."""
    chat = Chat()
    attacker, victim = chat.joined("mallory", "victim")
    attacker.send(b"\x1b[2J\x1b]0;owned\x07hi\x07\x00 \xff there")
    assert victim.lines() == ["<mallory> hi \ufffd there"]


def test_abrupt_disconnect_announced() -> None:
    """A client that vanishes mid-line is announced as gone and its nick is freed."""
    chat = Chat()
    alice, ghost = chat.joined("alice", "ghost")
    ghost.connection.clientTransport.write(b"half a li")
    ghost.connection.clientTransport.loseConnection()
    chat.flush()
    assert alice.lines()[-1].startswith("*** ghost left #lobby (")
    assert chat.hub.holderOf("ghost") is None
    (again,) = chat.joined("ghost")
    assert chat.hub.nickOf(again.protocol) == "ghost"


def test_half_close_leaves_cleanly() -> None:
    """A client that sends its last line and half-closes has the line relayed, then leaves."""
    chat = Chat()
    alice, leaver = chat.joined("alice", "leaver")
    leaver.connection.clientTransport.write(b"last words\r\n")
    leaver.connection.clientTransport.loseWriteConnection()
    chat.flush()
    heard = alice.lines()
    assert heard[0] == "<leaver> last words" and heard[1].startswith("*** leaver left #lobby (")
    assert leaver.closed


def test_per_address_and_total_limits() -> None:
    """Clients past the per-address or total limit are told so in a notice and closed."""
    chat = Chat()
    limited = ConnectionObserver(chat.factory, "tcplab-chat", maxPerPeer=2, reactor=chat.clock)

    def connect(port: int) -> User:
        """A user from 127.0.0.1:C{port}, through the limits."""
        peer = IPv4Address("TCP", "127.0.0.1", port)
        user = User(chat, connectInMemory(limited, clock=chat.clock, peer=peer))
        chat.users.append(user)
        return user

    connect(40001), connect(40002)
    third = connect(40003)
    assert third.lines() == ["*** error: too many connections from 127.0.0.1 (at most 2)"]
    assert third.closed
    full = Chat()
    single = ConnectionObserver(full.factory, "tcplab-chat", maxConnections=1, reactor=full.clock)
    connectInMemory(single, clock=full.clock)
    extra = connectInMemory(single, clock=full.clock, peer=IPv4Address("TCP", "127.0.0.1", 1))
    assert b"server full (1 connections)" in extra.received()
