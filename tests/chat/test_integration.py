"""The chat over real loopback sockets: users, rooms, and every abuse case."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer

from tcplab.chat import ChatFactory, ChatHub
from tcplab.observe import ConnectionObserver
from tests.support import Collector, Loopback


async def startChat(loopback: Loopback, **kwargs: Any) -> tuple[int, ChatFactory]:
    limits = {k: kwargs.pop(k) for k in ("maxPerPeer", "maxConnections") if k in kwargs}
    kwargs.setdefault("joinDelay", 0.05)
    factory = ChatFactory(ChatHub(), **kwargs)
    port = await loopback.listen(ConnectionObserver(factory, "tcplab-chat", **limits))
    return port, factory


async def user(loopback: Loopback, port: int, nick: str) -> Collector:
    client: Collector = await loopback.connect(port)
    client.transport.write(f"/nick {nick}\r\n".encode())
    await client.waitForText(f"now known as {nick}".encode())
    await client.waitForText(b"end of history")
    client.received.clear()
    return client


@pytest_twisted.ensureDeferred
async def test_two_users_chat_privately_and_in_rooms(loopback: Loopback) -> None:
    """Two users exchange messages, a private message, /who, and move between rooms."""
    port, _ = await startChat(loopback)
    alice = await user(loopback, port, "alice")
    bob = await user(loopback, port, "bob")
    alice.transport.write(b"hello bob\r\n")
    await bob.waitForText(b"<alice> hello bob\r\n")
    bob.transport.write(b"/msg alice psst\n/who\n")
    await alice.waitForText(b"[private] <bob> psst\r\n")
    await bob.waitForText(b"*** in #lobby: alice, bob\r\n")
    bob.transport.write(b"/join dev\r\n")
    await alice.waitForText(b"*** bob left #lobby (joined #dev)")
    alice.transport.write(b"anyone?\r\n/rooms\r\n")
    await alice.waitForText(b"*** rooms: #dev (1), #lobby (1)")
    assert b"anyone?" not in bytes(bob.received)


@pytest_twisted.ensureDeferred
async def test_fan_out_to_many(loopback: Loopback) -> None:
    """One line reaches each of sixty connected users exactly once."""
    port, factory = await startChat(loopback, floodRate=0)
    users = [await user(loopback, port, f"u{n}") for n in range(60)]
    for other in users:
        other.received.clear()
    users[0].transport.write(b"to everyone\r\n")
    await defer.gatherResults(
        [defer.ensureDeferred(u.waitForText(b"<u0> to everyone")) for u in users[1:]]
    )
    assert all(bytes(u.received).count(b"to everyone") == 1 for u in users[1:])
    assert len(factory.hub.usersIn("#lobby")) == 60


@pytest_twisted.ensureDeferred
async def test_escape_sequences_never_relayed(loopback: Loopback) -> None:
    """Terminal escapes and control bytes sent by one user never reach another."""
    port, _ = await startChat(loopback)
    attacker = await user(loopback, port, "mallory")
    victim = await user(loopback, port, "victim")
    attacker.transport.write(b"\x1b[2J\x1b]0;owned\x07hi\x07\x00 \xff there\r\n")
    received = await victim.waitForText(b"<mallory>")
    await victim.waitForText(b"there\r\n")
    assert b"\x1b" not in received and b"\x07" not in received and b"\x00" not in received
    assert "<mallory> hi \ufffd there".encode() in bytes(victim.received)


@pytest_twisted.ensureDeferred
async def test_long_line_error_connection_survives(loopback: Loopback) -> None:
    """A line over 512 bytes is refused with an error; the sender keeps chatting."""
    port, _ = await startChat(loopback)
    alice = await user(loopback, port, "alice")
    bob = await user(loopback, port, "bob")
    alice.transport.write(b"A" * 5000 + b"\r\nstill here\r\n")
    await alice.waitForText(b"*** error: line too long (5000 bytes, at most 512); not sent")
    await bob.waitForText(b"<alice> still here")
    assert b"AAAA" not in bytes(bob.received)


@pytest_twisted.ensureDeferred
async def test_flooder_disconnected_others_unaffected(loopback: Loopback) -> None:
    """A flooding client is warned then disconnected; the others keep chatting."""
    port, _ = await startChat(loopback, floodRate=5, floodBurst=10)
    flooder = await user(loopback, port, "flooder")
    calm = await user(loopback, port, "calm")
    flooder.transport.write(b"".join(b"spam %d\r\n" % n for n in range(200)))
    await flooder.closed
    assert b"slow down: wait" in bytes(flooder.received)
    assert b"disconnected for flooding" in bytes(flooder.received)
    await calm.waitForText(b"*** flooder left #lobby (flooding)")
    # The burst of 10 lines, less the one spent on /nick.
    assert bytes(calm.received).count(b"<flooder> spam") == 9
    other = await user(loopback, port, "other")
    calm.transport.write(b"peace\r\n")
    await other.waitForText(b"<calm> peace")


@pytest_twisted.ensureDeferred
async def test_slow_reader_cut_others_keep_chatting(loopback: Loopback) -> None:
    """A client that stops reading is disconnected past the bound; a reader gets everything."""
    port, factory = await startChat(loopback, floodRate=0)
    sleeper = await user(loopback, port, "sleeper")
    reader = await user(loopback, port, "reader")
    talker = await user(loopback, port, "talker")
    sleeper.transport.pauseProducing()
    line = b"y" * 500
    sent = 0
    # Batches paced by the reader, so only the sleeper falls behind; bounded
    # at 40 MB in all, far more than loopback's socket buffers.
    while "sleeper" in factory.hub.usersIn("#lobby") and sent < 80000:
        talker.transport.write(b"".join(b"%06d %s\r\n" % (sent + n, line) for n in range(100)))
        sent += 100
        await reader.waitFor(sent * len(b"<talker> 000000 \r\n" + line))
    assert "sleeper" not in factory.hub.usersIn("#lobby")
    assert bytes(reader.received).count(b"<talker> ") == sent
    await reader.waitForText(b"*** sleeper left #lobby")


@pytest_twisted.ensureDeferred
async def test_abrupt_disconnect_announced(loopback: Loopback) -> None:
    """A client that vanishes (RST) is announced as gone and its nick is freed."""
    port, factory = await startChat(loopback)
    alice = await user(loopback, port, "alice")
    ghost = await user(loopback, port, "ghost")
    ghost.transport.write(b"half a li")
    ghost.transport.abortConnection()
    await alice.waitForText(b"*** ghost left #lobby (")
    assert factory.hub.holderOf("ghost") is None
    again = await user(loopback, port, "ghost")
    assert again is not None


@pytest_twisted.ensureDeferred
async def test_half_close_leaves_cleanly(loopback: Loopback) -> None:
    """A client that sends its last line and half-closes has the line relayed, then leaves."""
    port, _ = await startChat(loopback)
    alice = await user(loopback, port, "alice")
    leaver = await user(loopback, port, "leaver")
    leaver.transport.write(b"last words\r\n")
    leaver.transport.loseWriteConnection()
    await alice.waitForText(b"<leaver> last words")
    await alice.waitForText(b"*** leaver left #lobby")
    await leaver.closed


@pytest_twisted.ensureDeferred
async def test_per_address_and_total_limits(loopback: Loopback) -> None:
    """Clients past the per-address limit are told so in a notice and closed."""
    port, _ = await startChat(loopback, maxPerPeer=2)
    await user(loopback, port, "one")
    await user(loopback, port, "two")
    third: Collector = await loopback.connect(port)
    await third.closed
    assert (
        bytes(third.received) == b"*** error: too many connections from 127.0.0.1 (at most 2)\r\n"
    )
    full, _ = await startChat(loopback, maxConnections=1)
    await user(loopback, full, "only")
    extra: Collector = await loopback.connect(full)
    await extra.closed
    assert b"server full (1 connections)" in bytes(extra.received)


@pytest_twisted.ensureDeferred
async def test_readme_bot_example(loopback: Loopback) -> None:
    """The README's embedding example: a bot that greets joiners and answers !time."""
    # --- README example starts
    from tcplab.chat import ChatEvent, ChatFactory, ChatHub

    hub = ChatHub()

    def bot(event: ChatEvent) -> None:
        if event.kind == "join":
            hub.post(event.room, "greeter", f"welcome, {event.nick}!")
        elif event.kind == "message" and event.text == "!time":
            hub.announce(event.room, "it is tea time")

    hub.observe(bot)
    factory = ChatFactory(hub)  # listen with it: endpoints.serverFromString(...).listen(factory)
    # --- README example ends
    factory.joinDelay = 0.05
    port = await loopback.listen(factory)
    client: Collector = await loopback.connect(port)
    await client.waitForText(b"<greeter> welcome, guest1!")
    client.transport.write(b"!time\r\n")
    await client.waitForText(b"*** it is tea time")
