"""
Tests for L{tcplab.chat.fanout}: a room's broadcasts recorded once and
handed out once per reactor iteration keep every member's output what
per-line delivery would give, in the same order.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer_only

from tcplab.chat import ChatFactory
from tcplab.chat.protocol import ChatProtocol
from tcplab.interfaces import IGracefulStop, IRoomBatchMember
from tests.chat.memorychat import Chat, User
from tests.chat.test_hub import Member


def inOneIteration(user: User, *lines: str) -> None:
    """Have C{user} send C{lines}, handled at once: nothing is sent until the iteration ends."""
    for line in lines:
        user.protocol.dataReceived(line.encode() + b"\n")


def test_protocol_takes_room_batches() -> None:
    """A chat connection declares it takes its room's broadcasts in batches."""
    assert IRoomBatchMember.implementedBy(ChatProtocol)


def test_sender_left_out_others_share_one_buffer() -> None:
    """Everyone but the sender hears an iteration's lines, as one buffer shared by all."""
    chat = Chat(floodRate=0)
    alice, bob, carol = chat.joined("alice", "bob", "carol")
    sent: dict[str, list[bytes]] = {"bob": [], "carol": []}
    for user, name in ((bob, "bob"), (carol, "carol")):
        original = user.protocol.send

        def recording(data: bytes, name: str = name, original: Any = original) -> None:
            sent[name].append(data)
            original(data)

        user.protocol.send = recording  # type: ignore[method-assign]
    inOneIteration(alice, "one", "two")
    assert alice.lines() == []
    assert bob.lines() == carol.lines() == ["<alice> one", "<alice> two"]
    assert sent["bob"] == [b"<alice> one\r\n<alice> two\r\n"]
    assert sent["bob"][0] is sent["carol"][0]


def test_room_lines_come_before_a_reply() -> None:
    """A reply comes after the room lines said before it in its iteration, before later ones."""
    chat = Chat(floodRate=0)
    alice, bob = chat.joined("alice", "bob")
    inOneIteration(alice, "before")
    inOneIteration(bob, "/who")
    inOneIteration(alice, "after")
    assert bob.lines() == ["<alice> before", "*** in #lobby: alice, bob", "<alice> after"]


def test_private_message_keeps_its_place() -> None:
    """A private message arrives between the room lines said before and after it."""
    chat = Chat(floodRate=0)
    alice, bob, carol = chat.joined("alice", "bob", "carol")
    inOneIteration(alice, "one")
    inOneIteration(carol, "/msg bob psst")
    inOneIteration(alice, "two")
    assert bob.lines() == ["<alice> one", "[private] <carol> psst", "<alice> two"]
    assert carol.lines() == ["<alice> one", "[private to bob] psst", "<alice> two"]


def test_joiner_hears_nothing_said_before_it_joined() -> None:
    """A member joining mid-iteration gets what was said before only in its history replay."""
    chat = Chat(floodRate=0)
    (alice,) = chat.joined("alice")
    bob = chat.connect()
    bob.lines()
    inOneIteration(alice, "before")
    chat.factory.hub.join(bob.protocol, "#lobby")
    bob.protocol.joined = True
    inOneIteration(alice, "after")
    lines = bob.lines()
    assert [line.split("] ", 1)[-1] for line in lines] == [
        "<alice> before",
        "*** end of history",
        "<alice> after",
    ]
    assert lines[0].startswith("[")  # the replay's timestamp: not heard live


def test_leaver_takes_what_was_said_while_it_was_there() -> None:
    """A member moving rooms mid-iteration hears the old room until it leaves, then the new one."""
    chat = Chat(floodRate=0, hub=None)
    alice, bob, carol = chat.joined("alice", "bob", "carol")
    inOneIteration(carol, "/join #side nohistory")
    inOneIteration(alice, "one")
    inOneIteration(bob, "/join #side nohistory")
    inOneIteration(alice, "two")
    inOneIteration(carol, "hello side")
    assert bob.lines() == [
        "*** carol left #lobby (joined #side)",
        "<alice> one",
        "<carol> hello side",
    ]
    assert alice.lines() == [
        "*** carol left #lobby (joined #side)",
        "*** bob left #lobby (joined #side)",
    ]
    assert carol.lines() == ["*** bob joined #side"]


def test_quitting_member_gets_room_lines_then_bye() -> None:
    """A member that quits mid-iteration gets what its room said before, then its goodbye."""
    chat = Chat(floodRate=0)
    alice, bob = chat.joined("alice", "bob")
    inOneIteration(alice, "last words")
    inOneIteration(bob, "/quit")
    assert bob.lines() == ["<alice> last words", "*** bye"]
    assert alice.lines() == ["*** bob left #lobby (quit)"]


def test_lines_are_freed_once_the_batch_runs() -> None:
    """The room's record of an iteration is empty once every member has its share."""
    chat = Chat(floodRate=0)
    alice, bob = chat.joined("alice", "bob")
    inOneIteration(alice, "one", "two")
    room = chat.hub._rooms["#lobby"]
    assert room.feed is not None and len(room.feed.lines) == 2
    assert bob.lines() == ["<alice> one", "<alice> two"]
    assert room.feed.lines == [] and room.feed.excluded == [] and room.feed.ahead == {}
    assert chat.factory.writeBatch.pending == {}


def test_slow_consumer_cut_by_one_iteration_of_lines() -> None:
    """A member not reading is cut when one iteration's share passes its bound."""
    chat = Chat(maxPending=1000, floodRate=0)
    talker, sleeper, reader = chat.joined("talker", "sleeper", "reader")
    sleeper.protocol.pauseProducing()
    inOneIteration(talker, *[f"message number {n} " + "x" * 40 for n in range(30)])
    chat.flush()
    assert sleeper.closed
    assert not reader.closed
    lines = reader.lines()
    assert len(lines) == 31 and lines[29] == f"<talker> message number 29 {'x' * 40}"
    assert lines[30].startswith("*** sleeper left #lobby")


def test_plain_participants_still_get_every_line() -> None:
    """A participant that does not take batches (a bot) gets each line through receive."""
    chat = Chat(floodRate=0)
    alice, bob = chat.joined("alice", "bob")
    bot = Member()
    chat.hub.connect(bot)
    chat.hub.rename(bot, "bot")
    chat.hub.join(bot, "#lobby")
    bot.clear()
    inOneIteration(alice, "one", "/me waves")
    chat.hub.say(bot, "beep")
    assert bot.clear() == ["<alice> one", "* alice waves"]
    assert bob.lines() == ["*** bot joined #lobby", "<alice> one", "* alice waves", "<bot> beep"]
    assert alice.lines() == ["*** bot joined #lobby", "<bot> beep"]


@implementer_only(IPushProducer, IGracefulStop)
class PerLineProtocol(ChatProtocol):
    """A chat connection that takes one C{receive} per line: how every member was served before."""


class PerLineFactory(ChatFactory):
    """Builds L{PerLineProtocol}s."""

    def buildProtocol(self, addr: object) -> ChatProtocol:  # type: ignore[override]
        protocol = PerLineProtocol()
        protocol.factory = self
        return protocol


USERS = 4
actions = st.lists(
    st.tuples(
        st.sampled_from(["say", "who", "msg", "join", "lobby", "quit", "end"]),
        st.integers(0, USERS - 1),
        st.integers(0, USERS - 1),
    ),
    max_size=30,
)


def play(chat: Chat, plan: list[tuple[str, int, int]]) -> list[list[str]]:
    """Run C{plan} with four users; what each of them received."""
    users = chat.joined(*[f"u{n}" for n in range(USERS)])
    gone: set[int] = set()
    for number, (action, who, other) in enumerate(plan):
        if who in gone:
            continue
        user = users[who]
        if action == "say":
            inOneIteration(user, f"line {number}")
        elif action == "who":
            inOneIteration(user, "/who")
        elif action == "msg":
            inOneIteration(user, f"/msg u{other} private {number}")
        elif action == "join":
            inOneIteration(user, "/join #side nohistory")
        elif action == "lobby":
            inOneIteration(user, "/join #lobby nohistory")
        elif action == "quit":
            inOneIteration(user, "/quit")
            gone.add(who)
        else:
            chat.flush()
    chat.flush()
    return [user.lines() for user in users]


@settings(deadline=None, max_examples=60)
@given(actions)
def test_batches_match_per_line_delivery(plan: list[tuple[str, int, int]]) -> None:
    """
    Whatever the mix of lines, replies, private messages, room changes,
    quits and iteration ends, every member receives exactly what per-line
    delivery gives it, in the same order.
    """
    batched = Chat(floodRate=0)
    perLine = Chat(floodRate=0)
    perLine.factory = PerLineFactory(perLine.hub, reactor=perLine.clock, floodRate=0)
    assert play(batched, plan) == play(perLine, plan)


def test_members_of_a_second_factory_on_the_same_hub_hear_everything() -> None:
    """Connections of two factories sharing a hub all hear the room, in order."""
    first = Chat(floodRate=0)
    second = Chat(hub=first.hub, floodRate=0)
    (alice,) = first.joined("alice")
    (bob,) = second.joined("bob")
    (carol,) = first.joined("carol")
    room = first.hub._rooms["#lobby"]
    assert list(room.listeners) == [bob.protocol]
    inOneIteration(alice, "one")
    inOneIteration(bob, "two")
    inOneIteration(carol, "/who")
    second.flush()
    assert bob.lines() == ["*** carol joined #lobby", "<alice> one"]
    assert carol.lines() == ["<alice> one", "<bob> two", "*** in #lobby: alice, bob, carol"]
    assert alice.lines() == ["*** bob joined #lobby", "*** carol joined #lobby", "<bob> two"]
