"""
The chat over real loopback sockets: a smoke test, the slow reader (the real
transport's buffer filling up), and the README's bot as written.  Everything
else about the protocol is tested in memory (test_protocol.py, test_abuse.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

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


def readmeBlock(marker: str) -> str:
    """The code block that follows C{marker} in README.md."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    after = text[text.index(marker) :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```", start)]


@pytest_twisted.ensureDeferred
async def test_readme_bot_example(loopback: Loopback) -> None:
    """The README's bot, run as written: each newcomer greeted once, by the nick they chose."""
    namespace: dict[str, Any] = {}
    exec(readmeBlock("<!-- chat-bot-example"), namespace)
    factory: ChatFactory = namespace["factory"]
    port = await loopback.listen(factory)
    # An nc-style client whose first line picks its nickname.
    alice: Collector = await loopback.connect(port)
    alice.transport.write(b"/nick alice\n")
    await alice.waitForText(b"<greeter> welcome, alice!")
    # One that joins as a guest, then picks a nickname.
    bob: Collector = await loopback.connect(port)
    await bob.waitForText(b"end of history")
    bob.transport.write(b"/nick bob\n")
    await bob.waitForText(b"<greeter> welcome, bob!")
    bob.transport.write(b"!time\n")
    await bob.waitForText(b"*** it is tea time")
    await alice.waitForText(b"*** it is tea time")
    for client in (alice, bob):
        heard = bytes(client.received)
        assert heard.count(b"welcome, alice!") == 1 and heard.count(b"welcome, bob!") == 1
        assert b"welcome, guest" not in heard
